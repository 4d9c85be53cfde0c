// open_broker: the one place broker URLs are parsed and a broker kind chosen.
#include "broker_url.hpp"

#include <charconv>
#include <map>
#include <optional>

#include "brokers/postgres/postgres_broker.hpp"
#include "brokers/redis/redis_broker.hpp"
#include "brokers/sqlite/sqlite_broker.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs {
namespace {

[[noreturn]] void malformed(std::string_view url, std::string_view why) {
  throw ConfigError("malformed broker URL '" + redact_url(url) + "': " + std::string(why));
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

int parse_database(std::string_view url, const std::string& text) {
  const std::int64_t db = parse_number(url, "database number", text);
  if (db > 1'000'000) malformed(url, "database number " + text + " is out of range");
  return static_cast<int>(db);
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

// parse_redis_url: redis://[[user]:password@]host[:port][/db][?params] and
// unix://[[user]:password@]/path/redis.sock[?db=N&params].
RedisConfig parse_redis_url(std::string_view url, BrokerOptions& options) {
  const auto colon = url.find("://");
  const bool unix_socket = url.substr(0, colon) == "unix";
  std::string_view rest = url.substr(colon + 3);
  const auto question = rest.find('?');
  const auto params = question == std::string_view::npos
                          ? std::map<std::string, std::string>{}
                          : parse_query(url, rest.substr(question + 1));
  rest = rest.substr(0, question);

  RedisConfig config;
  RedisEndpoint& endpoint = config.endpoint;
  // Credentials: everything before the last '@' (a password may contain '@' only escaped, but
  // the path of a unix socket never holds one).
  const auto at = rest.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto sep = credentials.find(':');
    if (sep == std::string_view::npos) {
      // redis://user@host: a user without a password is refused by every Redis; say so.
      malformed(url,
                "credentials need a password: redis://:PASSWORD@host or "
                "redis://USER:PASSWORD@host");
    }
    endpoint.user = percent_decode(url, credentials.substr(0, sep));
    endpoint.password = percent_decode(url, credentials.substr(sep + 1));
    if (endpoint.password.empty()) malformed(url, "empty password after ':'");
  }

  if (unix_socket) {
    if (rest.empty() || rest.front() != '/') {
      malformed(url, "unix socket URLs name an absolute path: unix:///run/redis/redis.sock?db=0");
    }
    endpoint.unix_path = percent_decode(url, rest);
  } else {
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
      const std::string_view db = rest.substr(slash + 1);
      if (!db.empty()) endpoint.db = parse_database(url, std::string(db));
    }
    std::optional<std::string_view> port;
    if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
      const auto close = authority.find(']');
      if (close == std::string_view::npos) malformed(url, "unclosed '[' in the host");
      endpoint.host = std::string(authority.substr(1, close - 1));
      const std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') malformed(url, "expected ':port' after ']'");
        port = after.substr(1);
      }
    } else {
      const auto port_sep = authority.rfind(':');
      endpoint.host = percent_decode(url, authority.substr(0, port_sep));
      if (port_sep != std::string_view::npos) port = authority.substr(port_sep + 1);
    }
    if (endpoint.host.empty()) {
      malformed(url, "no host; Redis URLs look like redis://127.0.0.1:6379/0");
    }
    if (port) {
      const std::int64_t number = parse_number(url, "port", std::string(*port));
      if (number < 1 || number > 65535) malformed(url, "port must be 1..65535");
      endpoint.port = static_cast<int>(number);
    }
  }

  for (const auto& [key, value] : params) {
    if (apply_common_url_parameter(url, key, value, options)) continue;
    if (key == "prefix") {
      if (value.empty()) malformed(url, "prefix must not be empty (the default is cinejobs:)");
      config.prefix = value;
    } else if (key == "timeout_ms") {
      const std::int64_t ms = parse_number(url, key, value);
      if (ms == 0) malformed(url, "timeout_ms must be at least 1");
      endpoint.timeout = std::chrono::milliseconds(ms);
    } else if (key == "db" && unix_socket) {
      endpoint.db = parse_database(url, value);
    } else if (key == "password" && unix_socket) {
      if (!endpoint.password.empty()) malformed(url, "password given twice");
      endpoint.password = value;
    } else {
      malformed(url, "unknown parameter '" + key +
                         "' (known: prefix, timeout_ms, result_ttl_s, max_payload_bytes" +
                         (unix_socket ? ", db, password)" : ")"));
    }
  }
  return config;
}

// parse_sqlite_url: sqlite:///relative.db and sqlite:////absolute.db, with parameters.
SqliteConfig parse_sqlite_url(std::string_view url, BrokerOptions& options) {
  const auto colon = url.find("://");
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

  SqliteConfig config;
  config.path = path;
  for (const auto& [key, value] : params) {
    if (apply_common_url_parameter(url, key, value, options)) {
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
  return config;
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
  if (scheme == "redis" || scheme == "unix") {
    detail::RedisConfig config = detail::parse_redis_url(url, options);
    return detail::open_redis_broker(std::string(url), std::move(config), options);
  }
  if (scheme == "rediss") {
    throw ConfigError(
        "rediss:// (Redis over TLS) is not supported: this cinejobs is built on "
        "hiredis without TLS; use redis:// on a trusted network or through a TLS "
        "tunnel (stunnel, spiped)");
  }
  if (scheme != "sqlite") {
    throw ConfigError("unknown broker URL scheme '" + std::string(scheme) + "' in '" +
                      redact_url(url) +
                      "': supported are sqlite:///path.db, redis://host:port/db, "
                      "unix:///path/redis.sock and postgresql://host/db");
  }

  detail::SqliteConfig config = detail::parse_sqlite_url(url, options);
  return detail::open_sqlite_broker(std::string(url), std::move(config), options);
}

}  // namespace cinejobs
