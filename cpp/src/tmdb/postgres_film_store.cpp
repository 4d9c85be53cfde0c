// Films in the PostgreSQL broker's schema (tables film_sessions and films, migration 0004). A
// film's final state and its session's count are one transaction; the session row's lock orders
// concurrent finishes, so exactly one of them sees remaining reach zero.
#include <cstdio>
#include <pqxx/pqxx>
#include <type_traits>

#include "brokers/postgres/pg_connection.hpp"
#include "brokers/postgres/postgres_broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job.hpp"
#include "cinejobs/title_match.hpp"
#include "tmdb/film_stores.hpp"

namespace cinejobs::detail {
namespace {

std::optional<int> optional_int(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<int>();
}

std::string text_or_empty(const pqxx::field& f) { return f.is_null() ? "" : f.as<std::string>(); }

Film read_film(const pqxx::row& r) {
  Film f;
  f.session_id = r[0].as<std::string>();
  f.position = r[1].as<int>();
  f.input.input = r[2].as<std::string>();
  f.input.title = r[3].as<std::string>();
  f.input.year = optional_int(r[4]);
  f.input.original_title = r[5].as<std::string>();
  f.input.kind = r[6].as<std::string>();
  f.input.season = optional_int(r[7]);
  f.input.episode = optional_int(r[8]);
  f.status = film_status_from(r[9].as<std::string>());
  f.outcome.status = f.status;
  if (!r[10].is_null()) f.outcome.tmdb_id = r[10].as<std::int64_t>();
  if (!r[11].is_null()) f.outcome.confidence = r[11].as<double>();
  f.outcome.query = text_or_empty(r[12]);
  f.outcome.record = text_or_empty(r[13]);
  f.outcome.error = text_or_empty(r[14]);
  f.finished_at = r[15].is_null() ? 0 : r[15].as<std::int64_t>();
  f.synced_at = r[16].is_null() ? 0 : r[16].as<std::int64_t>();
  return f;
}

std::vector<Film> read_films(const pqxx::result& result) {
  std::vector<Film> out;
  out.reserve(result.size());
  for (const auto& row : result) out.push_back(read_film(row));
  return out;
}

FilmSession read_session(const pqxx::row& r) {
  FilmSession s;
  s.id = r[0].as<std::string>();
  s.source = r[1].as<std::string>();
  s.total = r[2].as<int>();
  s.created_at = r[3].as<std::int64_t>();
  s.finished_at = r[4].is_null() ? 0 : r[4].as<std::int64_t>();
  return s;
}

// libpqxx 6 has no std::optional parameters: optional values go as text, and a null pointer
// is sent (and copied) as NULL.
const char* nullable(const std::string& text) { return text.empty() ? nullptr : text.c_str(); }

template <class T>
std::string text_of(const std::optional<T>& value) {
  if (!value) return {};
  if constexpr (std::is_floating_point_v<T>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", *value);
    return buf;
  } else {
    return std::to_string(*value);
  }
}

class PostgresFilmStore final : public FilmStore {
 public:
  explicit PostgresFilmStore(const PostgresConfig& config)
      : schema_("\"" + config.schema + "\""),
        pool_(make_pg_target(config.conninfo, config.redacted_url), nullptr) {
    if (config.migrate) migrate_postgres(config);
    const bool exists = pool_.run("looking for the films table", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_params("SELECT to_regclass($1) IS NOT NULL", schema_ + ".films")[0][0]
          .as<bool>();
    });
    if (!exists) {
      throw ConfigError("the cinejobs schema '" + config.schema + "' in " + pool_.target().where() +
                        " has no films table (schema version 4): run `cinejobs migrate --broker " +
                        config.redacted_url + "`");
    }
  }

  std::string_view kind() const noexcept override { return "postgres"; }

  std::string create_session(std::string_view source,
                             const std::vector<FilmInput>& films) override {
    if (films.empty()) throw ConfigError("a film session needs at least one film");
    const std::string id = new_job_id();
    pool_.run("creating a film session", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params("INSERT INTO " + schema_ +
                         ".film_sessions (id, source, total, remaining, created_at) "
                         "VALUES ($1, $2, $3, $3, $4)",
                     id, std::string(source), static_cast<int>(films.size()), now_ms());
      pqxx::stream_to copy(
          tx, schema_ + ".films",
          std::vector<std::string>{"session_id", "position", "input", "title", "year",
                                   "original_title", "kind", "season", "episode", "search_key"});
      for (std::size_t i = 0; i < films.size(); ++i) {
        const FilmInput& f = films[i];
        const std::string year = text_of(f.year), season = text_of(f.season),
                          episode = text_of(f.episode);
        copy << std::make_tuple(id, static_cast<int>(i), f.input, f.title, nullable(year),
                                f.original_title, f.kind, nullable(season), nullable(episode),
                                normalize_title(f.title));
      }
      copy.complete();
      tx.commit();
    });
    return id;
  }

  std::optional<FilmSession> session(const std::string& id) override {
    return pool_.run("reading a film session", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      const pqxx::result r =
          tx.exec_params("SELECT id, source, total, created_at, finished_at FROM " + schema_ +
                             ".film_sessions WHERE id = $1",
                         id);
      if (r.empty()) return std::optional<FilmSession>();
      return std::optional<FilmSession>(count_films(tx, read_session(r[0])));
    });
  }

  std::vector<FilmSession> sessions(int limit) override {
    return pool_.run("listing film sessions", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      const pqxx::result r =
          tx.exec_params("SELECT id, source, total, created_at, finished_at FROM " + schema_ +
                             ".film_sessions ORDER BY created_at DESC, id LIMIT $1",
                         limit);
      std::vector<FilmSession> out;
      for (const auto& row : r) out.push_back(count_films(tx, read_session(row)));
      return out;
    });
  }

  std::optional<Film> film(const std::string& session_id, int position) override {
    return pool_.run("reading a film", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_params(select_films("WHERE session_id = $1 AND position = $2"),
                                            session_id, position);
      if (r.empty()) return std::optional<Film>();
      return std::optional<Film>(read_film(r[0]));
    });
  }

  std::vector<Film> films(const std::string& session_id,
                          std::optional<FilmStatus> status) override {
    const std::string wanted = status ? std::string(to_string(*status)) : std::string();
    return pool_.run("listing films", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return read_films(
          tx.exec_params(select_films("WHERE session_id = $1 AND ($2::text IS NULL OR status = $2) "
                                      "ORDER BY position"),
                         session_id, nullable(wanted)));
    });
  }

  std::vector<Film> search(std::string_view text, int limit) override {
    const std::string pattern = like_pattern(text);
    return pool_.run("searching films", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return read_films(tx.exec_params(
          select_films("WHERE search_key LIKE $1 ESCAPE '\\' ORDER BY session_id, position "
                       "LIMIT $2"),
          pattern, limit));
    });
  }

  FinishResult finish(const std::string& session_id, int position,
                      const FilmOutcome& outcome) override {
    check_outcome(outcome);
    return pool_.run("storing a film's outcome", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      const std::int64_t now = now_ms();
      const std::string tmdb_id = text_of(outcome.tmdb_id),
                        confidence = text_of(outcome.confidence);
      const pqxx::result updated = tx.exec_params(
          "UPDATE " + schema_ +
              ".films SET status = $3, tmdb_id = $4, confidence = $5, query = $6, "
              "record = $7::jsonb, error = $8, finished_at = $9 "
              "WHERE session_id = $1 AND position = $2 AND status = 'pending' RETURNING 1",
          session_id, position, std::string(to_string(outcome.status)), nullable(tmdb_id),
          nullable(confidence), outcome.query, nullable(outcome.record), nullable(outcome.error),
          now);
      if (updated.empty()) {
        const pqxx::result exists = tx.exec_params(
            "SELECT 1 FROM " + schema_ + ".films WHERE session_id = $1 AND position = $2",
            session_id, position);
        if (exists.empty()) {
          throw ConfigError("no film " + std::to_string(position) + " in session " + session_id);
        }
        return FinishResult{};  // finished before: a redelivered job changes nothing
      }
      const pqxx::result left =
          tx.exec_params("UPDATE " + schema_ +
                             ".film_sessions SET remaining = remaining - 1, finished_at = "
                             "CASE WHEN remaining = 1 THEN $2 ELSE finished_at END WHERE id = $1 "
                             "RETURNING remaining",
                         session_id, now);
      tx.commit();
      return FinishResult{true, !left.empty() && left[0][0].as<int>() == 0};
    });
  }

  std::vector<Film> unsynced(const std::string& session_id, int limit) override {
    return pool_.run("listing films to sync", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return read_films(tx.exec_params(
          select_films("WHERE session_id = $1 AND status = 'enriched' AND synced_at IS NULL "
                       "ORDER BY position LIMIT $2"),
          session_id, limit));
    });
  }

  void mark_synced(const std::string& session_id, const std::vector<int>& positions) override {
    if (positions.empty()) return;
    std::string list = "{";
    for (std::size_t i = 0; i < positions.size(); ++i) {
      if (i) list += ',';
      list += std::to_string(positions[i]);
    }
    list += '}';
    pool_.run("marking films synced", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params("UPDATE " + schema_ +
                         ".films SET synced_at = $3 WHERE session_id = $1 "
                         "AND position = ANY($2::integer[]) AND synced_at IS NULL",
                     session_id, list, now_ms());
      tx.commit();
    });
  }

 private:
  std::string select_films(std::string_view where) const {
    return "SELECT session_id, position, input, title, year, original_title, kind, season, "
           "episode, status, tmdb_id, confidence, query, record::text, error, finished_at, "
           "synced_at FROM " +
           schema_ + ".films " + std::string(where);
  }

  FilmSession count_films(pqxx::transaction_base& tx, FilmSession session) const {
    const pqxx::result r =
        tx.exec_params("SELECT status, count(*), count(synced_at) FROM " + schema_ +
                           ".films WHERE session_id = $1 GROUP BY status",
                       session.id);
    for (const auto& row : r) {
      count_status(session, film_status_from(row[0].as<std::string>()), row[1].as<int>());
      session.synced += row[2].as<int>();
    }
    return session;
  }

  std::string schema_;  // quoted
  PgPool pool_;
};

}  // namespace

std::shared_ptr<FilmStore> open_postgres_film_store(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to the film store
  return std::make_shared<PostgresFilmStore>(parse_postgres_url(url, unused));
}

}  // namespace cinejobs::detail
