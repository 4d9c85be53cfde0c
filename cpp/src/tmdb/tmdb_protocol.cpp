#include "tmdb/tmdb_protocol.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>

namespace cinejobs::detail {
namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// TMDB's status codes for refused credentials (all sent with HTTP 401): authentication failed
// (3, 14), invalid API key (7), suspended API key (10), device or session denied (16, 17),
// invalid username, password or token (30-33, 35), no permission (36, 38, 39).
constexpr std::array<std::int64_t, 14> kAuthStatusCodes = {3,  7,  10, 14, 16, 17, 30,
                                                           31, 32, 33, 35, 36, 38, 39};
constexpr std::int64_t kNotFoundStatusCode = 34;
constexpr std::int64_t kRateLimitedStatusCode = 25;

// parser returns this thread's simdjson parser: it keeps its buffers between documents.
simdjson::dom::parser& parser() {
  thread_local simdjson::dom::parser p;
  return p;
}

std::string describe(long http_status, const TmdbErrorBody& error, std::string_view body) {
  std::string out = "HTTP " + std::to_string(http_status);
  if (error.status_code != 0) {
    out += " (status_code " + std::to_string(error.status_code);
    if (!error.status_message.empty()) out += ": " + error.status_message;
    out += ")";
  } else if (!body.empty()) {
    // Not TMDB's error document (a gateway's page): a short, single-line excerpt.
    std::string excerpt(body.substr(0, 120));
    std::replace_if(
        excerpt.begin(), excerpt.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; },
        ' ');
    out += " (body: " + excerpt + (body.size() > 120 ? "..." : "") + ")";
  }
  return out;
}

}  // namespace

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (unreserved(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0F]);
    }
  }
  return out;
}

std::string query_string(const QueryParams& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out.append(percent_encode(name)).append("=").append(percent_encode(value));
  }
  return out;
}

std::string tmdb_cache_key(std::string_view path, const QueryParams& params) {
  QueryParams kept;
  kept.reserve(params.size());
  for (const auto& param : params) {
    if (param.first != "api_key") kept.push_back(param);
  }
  std::sort(kept.begin(), kept.end());
  std::string key = "GET ";
  key.append(path);
  if (!kept.empty()) key.append("?").append(query_string(kept));
  return key;
}

TmdbErrorBody read_tmdb_error(std::string_view body) {
  TmdbErrorBody out;
  simdjson::dom::element doc;
  if (parser().parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) return out;
  simdjson::dom::object object;
  if (doc.get(object) != simdjson::SUCCESS) return out;
  std::int64_t code = 0;
  if (object["status_code"].get(code) == simdjson::SUCCESS) out.status_code = code;
  std::string_view message;
  if (object["status_message"].get(message) == simdjson::SUCCESS) out.status_message = message;
  return out;
}

std::optional<std::string> json_object_problem(std::string_view body) {
  simdjson::dom::element doc;
  if (const auto error = parser().parse(body.data(), body.size()).get(doc);
      error != simdjson::SUCCESS) {
    return std::string("not valid JSON (") + simdjson::error_message(error) + ")";
  }
  if (doc.type() != simdjson::dom::element_type::OBJECT) {
    return std::string("a JSON value that is not an object");
  }
  return std::nullopt;
}

TmdbVerdict classify_tmdb_response(long http_status, std::string_view body) {
  if (http_status >= 200 && http_status < 300) {
    if (auto problem = json_object_problem(body)) {
      return {TmdbOutcome::kRetry,
              "HTTP " + std::to_string(http_status) + " with a malformed body: " + *problem};
    }
    return {TmdbOutcome::kOk, {}};
  }
  const TmdbErrorBody error = read_tmdb_error(body);
  std::string problem = describe(http_status, error, body);
  const bool auth_code = std::find(kAuthStatusCodes.begin(), kAuthStatusCodes.end(),
                                   error.status_code) != kAuthStatusCodes.end();
  if (http_status == 401 || auth_code) return {TmdbOutcome::kAuthFailed, std::move(problem)};
  if (http_status == 404 || error.status_code == kNotFoundStatusCode) {
    return {TmdbOutcome::kNotFound, std::move(problem)};
  }
  if (http_status == 429 || error.status_code == kRateLimitedStatusCode) {
    return {TmdbOutcome::kRateLimited, std::move(problem)};
  }
  // 408: a proxy gave up waiting for TMDB; like a 5xx, the next try may get through.
  if (http_status >= 500 || http_status == 408) return {TmdbOutcome::kRetry, std::move(problem)};
  return {TmdbOutcome::kFailed, std::move(problem)};
}

}  // namespace cinejobs::detail
