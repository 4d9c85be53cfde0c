// Rate limits in the PostgreSQL broker's schema (table rate_limits, migration 0002): each step
// is one statement, an upsert that locks the key's row, applies the GCRA step on the server's
// clock and returns the decision; concurrent steps on one key queue on the row lock.
#include <pqxx/pqxx>

#include "brokers/postgres/pg_connection.hpp"
#include "brokers/postgres/postgres_broker.hpp"
#include "cinejobs/errors.hpp"
#include "rate_limit/stores.hpp"

namespace cinejobs::detail {
namespace {

// The same maths as gcra_step: with e = now + n * interval (the tat a fresh key gets),
// new_tat = max(tat + n * interval, e) and the step admits when new_tat - now <= capacity.
// $1 key, $2 interval_us, $3 capacity_us, $4 n.
constexpr std::string_view kStepSql =
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now) "
    "INSERT INTO {table} AS r (key, tat, admitted) "
    "SELECT $1::text, clock.now + $2::bigint * $4::bigint, true FROM clock "
    "ON CONFLICT (key) DO UPDATE SET "
    "admitted = GREATEST(r.tat + $2::bigint * $4::bigint, excluded.tat) - excluded.tat "
    "  + $2::bigint * $4::bigint <= $3::bigint, "
    "tat = CASE WHEN GREATEST(r.tat + $2::bigint * $4::bigint, excluded.tat) - excluded.tat "
    "  + $2::bigint * $4::bigint <= $3::bigint "
    "  THEN GREATEST(r.tat + $2::bigint * $4::bigint, excluded.tat) ELSE r.tat END "
    "RETURNING r.admitted, "
    "CASE WHEN r.admitted THEN 0 "
    "  ELSE r.tat + $2::bigint * $4::bigint - $3::bigint - (SELECT now FROM clock) END";

// $1 key, $2 how far past now the tat must be (gcra_pause_tat(0, 0, ...)).
constexpr std::string_view kPauseSql =
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now) "
    "INSERT INTO {table} AS r (key, tat, admitted) "
    "SELECT $1::text, clock.now + $2::bigint, true FROM clock "
    "ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, excluded.tat)";

std::string for_table(std::string_view sql, const std::string& table) {
  std::string out(sql);
  const std::string_view placeholder = "{table}";
  out.replace(out.find(placeholder), placeholder.size(), table);
  return out;
}

class PostgresRateLimitStore final : public RateLimitStore {
 public:
  explicit PostgresRateLimitStore(const PostgresConfig& config)
      : schema_(config.schema),
        table_("\"" + config.schema + "\".rate_limits"),
        pool_(make_pg_target(config.conninfo, config.redacted_url), [this](pqxx::connection& c) {
          c.prepare("cj_rate_limit_step", for_table(kStepSql, table_));
          c.prepare("cj_rate_limit_pause", for_table(kPauseSql, table_));
        }) {
    if (config.migrate) migrate_postgres(config);
    const bool exists = pool_.run("looking for the rate limit table", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_params("SELECT to_regclass($1) IS NOT NULL", table_)[0][0].as<bool>();
    });
    if (!exists) {
      throw ConfigError("the cinejobs schema '" + schema_ + "' in " + pool_.target().where() +
                        " has no rate_limits table (schema version 2): run `cinejobs migrate "
                        "--broker " +
                        config.redacted_url + "`");
    }
  }

  std::string_view kind() const noexcept override { return "postgres"; }

  RateDecision step(const std::string& key, const GcraLimit& limit, int n) override {
    return pool_.run("taking a rate limit unit", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_rate_limit_step", key, limit.interval.count(),
                                              limit.capacity.count(), static_cast<std::int64_t>(n));
      return RateDecision{r[0][0].as<bool>(), Micros(r[0][1].as<std::int64_t>())};
    });
  }

  void pause(const std::string& key, const GcraLimit& limit, Micros duration) override {
    pool_.run("pausing a rate limit", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      tx.exec_prepared("cj_rate_limit_pause", key, gcra_pause_tat(0, 0, limit, duration));
    });
  }

 private:
  std::string schema_;
  std::string table_;
  PgPool pool_;
};

}  // namespace

std::shared_ptr<RateLimitStore> open_postgres_rate_limit_store(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to a rate limit
  return std::make_shared<PostgresRateLimitStore>(parse_postgres_url(url, unused));
}

}  // namespace cinejobs::detail
