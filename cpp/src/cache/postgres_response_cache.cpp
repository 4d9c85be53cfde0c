// The response cache in the PostgreSQL broker's schema (table response_cache, migration 0004):
// each call is one statement, expiry judged by the server's clock so that every worker on any
// machine agrees. A put is an upsert; prune deletes the expired rows.
#include <pqxx/pqxx>

#include "brokers/postgres/pg_connection.hpp"
#include "brokers/postgres/postgres_broker.hpp"
#include "cache/stores.hpp"
#include "cinejobs/errors.hpp"

namespace cinejobs::detail {
namespace {

constexpr std::string_view kNowMs = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

std::string sql(std::string_view text, const std::string& table) {
  std::string out(text);
  for (auto [placeholder, value] :
       {std::pair<std::string_view, std::string_view>{"{table}", table}, {"{now}", kNowMs}}) {
    for (auto at = out.find(placeholder); at != std::string::npos; at = out.find(placeholder)) {
      out.replace(at, placeholder.size(), value);
    }
  }
  return out;
}

// $1 key.
constexpr std::string_view kGetSql =
    "SELECT body FROM {table} WHERE key = $1 AND expires_at > {now}";
// $1 key, $2 body, $3 time to live in ms.
constexpr std::string_view kPutSql =
    "INSERT INTO {table} (key, body, expires_at) VALUES ($1, $2, {now} + $3::bigint) "
    "ON CONFLICT (key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at";
constexpr std::string_view kEraseSql = "DELETE FROM {table} WHERE key = $1";
constexpr std::string_view kPruneSql = "DELETE FROM {table} WHERE expires_at <= {now}";

class PostgresResponseCache final : public ResponseCache {
 public:
  explicit PostgresResponseCache(const PostgresConfig& config)
      : schema_(config.schema),
        table_("\"" + config.schema + "\".response_cache"),
        pool_(make_pg_target(config.conninfo, config.redacted_url), [this](pqxx::connection& c) {
          c.prepare("cj_cache_get", sql(kGetSql, table_));
          c.prepare("cj_cache_put", sql(kPutSql, table_));
          c.prepare("cj_cache_erase", sql(kEraseSql, table_));
          c.prepare("cj_cache_prune", sql(kPruneSql, table_));
        }) {
    if (config.migrate) migrate_postgres(config);
    // Checked at open, so that a schema of an older cinejobs is refused with what to do rather
    // than by every call with PostgreSQL's "relation does not exist".
    const bool exists = pool_.run("looking for the response cache table", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_params("SELECT to_regclass($1) IS NOT NULL", table_)[0][0].as<bool>();
    });
    if (!exists) {
      throw ConfigError("the cinejobs schema '" + schema_ + "' in " + pool_.target().where() +
                        " has no response_cache table (schema version 4): run `cinejobs "
                        "migrate --broker " +
                        config.redacted_url + "`");
    }
  }

  std::string_view kind() const noexcept override { return "postgres"; }

  std::optional<std::string> get(const std::string& key) override {
    return pool_.run("reading the response cache",
                     [&](pqxx::connection& c) -> std::optional<std::string> {
                       pqxx::nontransaction tx(c);
                       const pqxx::result r = tx.exec_prepared("cj_cache_get", key);
                       if (r.empty()) return std::nullopt;
                       return r[0][0].as<std::string>();
                     });
  }

  void put(const std::string& key, std::string_view body, std::chrono::seconds ttl) override {
    pool_.run("writing the response cache", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      if (ttl <= std::chrono::seconds::zero()) {
        tx.exec_prepared("cj_cache_erase", key);  // expired at once: the same as no entry
      } else {
        tx.exec_prepared("cj_cache_put", key, std::string(body),  // libpqxx 6: no string_view
                         std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count());
      }
    });
  }

  std::size_t prune() override {
    return pool_.run("pruning the response cache", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return static_cast<std::size_t>(tx.exec_prepared("cj_cache_prune").affected_rows());
    });
  }

 private:
  std::string schema_;
  std::string table_;
  PgPool pool_;
};

}  // namespace

std::shared_ptr<ResponseCache> open_postgres_response_cache(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to a cache
  return std::make_shared<PostgresResponseCache>(parse_postgres_url(url, unused));
}

}  // namespace cinejobs::detail
