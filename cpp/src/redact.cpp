#include "cinejobs/redact.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace cinejobs {
namespace {

constexpr std::string_view kMask = "***";

constexpr std::array<std::string_view, 10> kSecretKeys = {
    "password", "pass",   "passwd", "token",       "secret",
    "api_key",  "apikey", "key",    "sslpassword", "access_token"};

bool is_secret_key(std::string_view key) {
  return std::any_of(kSecretKeys.begin(), kSecretKeys.end(), [key](std::string_view secret) {
    return key.size() == secret.size() &&
           std::equal(key.begin(), key.end(), secret.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == b;
           });
  });
}

// Characters that end a URL quoted in a message: whitespace and the quotes messages put around
// it. A URL's own characters never include them unescaped.
bool ends_token(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0 || c == '\'' || c == '"' || c == '`' ||
         c == '<' || c == '>';
}

bool is_key_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// mask_userinfo replaces the password of every scheme://user:password@ in `text`.
std::string mask_userinfo(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t done = 0;
  for (auto sep = text.find("://"); sep != std::string_view::npos;
       sep = text.find("://", sep + 3)) {
    const std::size_t start = sep + 3;
    if (start < done) continue;
    // The authority (with any user information) runs to the query, the fragment or the end of
    // the token. A path starting right after :// (sqlite:////abs.db) has no user information.
    std::size_t end = start;
    while (end < text.size() && !ends_token(text[end]) && text[end] != '?' && text[end] != '#') {
      ++end;
    }
    if (end == start || text[start] == '/') continue;
    // The last '@' ends the user information, so a password may hold '@' (and the '/' the Redis
    // parser accepts); a path with an '@' after user:x only masks more than needed.
    const std::string_view span = text.substr(start, end - start);
    const auto at = span.rfind('@');
    if (at == std::string_view::npos) continue;
    const auto colon = span.find(':');
    if (colon == std::string_view::npos || colon > at || colon + 1 == at) continue;
    out.append(text.substr(done, start + colon + 1 - done));
    out.append(kMask);
    done = start + at;
  }
  out.append(text.substr(done));
  return out;
}

// mask_pairs replaces the value of every secret key=value: a URL query parameter (after ? or &)
// or a libpq connection string item (after whitespace, `key = 'quoted value'` too).
std::string mask_pairs(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t done = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (!is_key_char(text[i]) || (i > 0 && is_key_char(text[i - 1]))) continue;
    std::size_t key_end = i;
    while (key_end < text.size() && is_key_char(text[key_end])) ++key_end;
    const std::string_view key = text.substr(i, key_end - i);
    std::size_t eq = key_end;
    while (eq < text.size() && text[eq] == ' ') ++eq;
    if (eq >= text.size() || text[eq] != '=' || !is_secret_key(key)) {
      i = key_end - 1;
      continue;
    }
    std::size_t value = eq + 1;
    while (value < text.size() && text[value] == ' ') ++value;  // libpq allows `password = x`
    std::size_t value_end = value;
    if (value < text.size() && text[value] == '\'') {
      // libpq quoting: 'it''s' is not libpq's, \' is; stop at the first unescaped quote.
      value_end = value + 1;
      while (value_end < text.size() && text[value_end] != '\'') {
        value_end += text[value_end] == '\\' ? std::size_t{2} : std::size_t{1};
      }
      value_end = std::min(value_end + 1, text.size());
    } else {
      while (value_end < text.size() && !ends_token(text[value_end]) && text[value_end] != '&' &&
             text[value_end] != '#' && text[value_end] != ';' && text[value_end] != ',' &&
             text[value_end] != ')') {
        ++value_end;
      }
    }
    if (value_end == value) {
      i = value;
      continue;
    }
    out.append(text.substr(done, value - done));
    out.append(kMask);
    done = value_end;
    i = value_end - 1;
  }
  out.append(text.substr(done));
  return out;
}

}  // namespace

std::string redact_url(std::string_view text) { return mask_pairs(mask_userinfo(text)); }

}  // namespace cinejobs
