// open_broker: the one place broker URLs are parsed and a broker kind chosen.
#include "broker_url.hpp"

#include <charconv>
#include <map>

#include "brokers/postgres/postgres_broker.hpp"
#include "brokers/sqlite/sqlite_broker.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"

namespace cinejobs {
namespace {

[[noreturn]] void malformed(std::string_view url, std::string_view why) {
  throw ConfigError("malformed broker URL '" + std::string(url) + "': " + std::string(why));
}

std::string percent_decode(std::string_view url, std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= text.size() ||
        std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16).ptr !=
            text.data() + i + 3) {
      malformed(url, "bad percent escape");
    }
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view url, std::string_view query) {
  std::map<std::string, std::string> params;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) malformed(url, "query parameter without '=' value");
    params[percent_decode(url, item.substr(0, eq))] = percent_decode(url, item.substr(eq + 1));
  }
  return params;
}

std::int64_t parse_number(std::string_view url, const std::string& key, const std::string& text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < 0) {
    malformed(url, "parameter " + key + " must be a non-negative integer, got '" + text + "'");
  }
  return value;
}

}  // namespace

namespace detail {

std::string url_percent_decode(std::string_view url, std::string_view text) {
  return percent_decode(url, text);
}

bool apply_common_url_parameter(std::string_view url, const std::string& key,
                                const std::string& value, BrokerOptions& options) {
  if (key == "result_ttl_s") {
    options.result_ttl = std::chrono::seconds(parse_number(url, key, value));
  } else if (key == "max_payload_bytes") {
    options.max_payload_bytes = static_cast<std::size_t>(parse_number(url, key, value));
  } else {
    return false;
  }
  return true;
}

}  // namespace detail

std::shared_ptr<Broker> open_broker(std::string_view url, BrokerOptions options) {
  if (url.empty()) {
    throw ConfigError("empty broker URL: use sqlite:///path.db (or set CINEJOBS_BROKER)");
  }
  const auto colon = url.find("://");
  if (colon == std::string_view::npos) {
    malformed(url, "no scheme; broker URLs look like sqlite:///path.db");
  }
  const std::string_view scheme = url.substr(0, colon);
  if (scheme == "postgres" || scheme == "postgresql") {
    detail::PostgresConfig config = detail::parse_postgres_url(url, options);
    return detail::open_postgres_broker(std::string(url), std::move(config), options);
  }
  if (scheme == "redis" || scheme == "rediss" || scheme == "unix") {
    throw ConfigError("the " + std::string(scheme) +
                      " broker is not available in this version of cinejobs yet; use "
                      "sqlite:///path.db");
  }
  if (scheme != "sqlite") {
    throw ConfigError("unknown broker URL scheme '" + std::string(scheme) + "' in '" +
                      std::string(url) + "': supported is sqlite:///path.db");
  }

  std::string_view rest = url.substr(colon + 3);
  if (rest.empty() || rest.front() != '/') {
    malformed(url,
              "SQLite URLs have three slashes before a relative path (sqlite:///jobs.db) and four "
              "before an absolute one (sqlite:////var/lib/jobs.db)");
  }
  rest.remove_prefix(1);
  const auto question = rest.find('?');
  const std::string path = percent_decode(url, rest.substr(0, question));
  if (path.empty()) malformed(url, "no database file path");
  const auto params = question == std::string_view::npos
                          ? std::map<std::string, std::string>{}
                          : parse_query(url, rest.substr(question + 1));

  detail::SqliteConfig config;
  config.path = path;
  for (const auto& [key, value] : params) {
    if (detail::apply_common_url_parameter(url, key, value, options)) {
      continue;
    } else if (key == "busy_timeout_ms") {
      config.busy_timeout = std::chrono::milliseconds(parse_number(url, key, value));
    } else if (key == "synchronous") {
      if (value != "normal" && value != "full") {
        malformed(url, "synchronous must be 'normal' or 'full', got '" + value + "'");
      }
      config.synchronous_full = value == "full";
    } else {
      malformed(url, "unknown parameter '" + key +
                         "' (known: result_ttl_s, max_payload_bytes, busy_timeout_ms, "
                         "synchronous)");
    }
  }
  return detail::open_sqlite_broker(std::string(url), std::move(config), options);
}

}  // namespace cinejobs
