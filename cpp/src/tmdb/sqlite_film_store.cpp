// Films in the SQLite broker's file (tables film_sessions and films, schema.sql version 4). One
// connection per store, serialised by a mutex; every change is one IMMEDIATE transaction, which
// also orders the processes sharing the file.
#include <mutex>

#include "brokers/sqlite/sqlite_broker.hpp"
#include "brokers/sqlite/sqlite_handle.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job.hpp"
#include "cinejobs/title_match.hpp"
#include "tmdb/film_stores.hpp"

namespace cinejobs::detail {
namespace {

std::optional<int> optional_int(const SqliteStatement& s, int column) {
  if (s.column_is_null(column)) return std::nullopt;
  return static_cast<int>(s.column_int(column));
}

SqliteStatement& bind_optional(SqliteStatement& s, int index, std::optional<std::int64_t> value) {
  return value ? s.bind(index, *value) : s.bind_null(index);
}

constexpr std::string_view kFilmColumns =
    "session_id, position, input, title, year, original_title, kind, season, episode, status, "
    "tmdb_id, confidence, query, record, error, finished_at, synced_at";

// read_film reads a row selected with kFilmColumns.
Film read_film(const SqliteStatement& s) {
  Film f;
  f.session_id = s.column_text(0);
  f.position = static_cast<int>(s.column_int(1));
  f.input.input = s.column_text(2);
  f.input.title = s.column_text(3);
  f.input.year = optional_int(s, 4);
  f.input.original_title = s.column_text(5);
  f.input.kind = s.column_text(6);
  f.input.season = optional_int(s, 7);
  f.input.episode = optional_int(s, 8);
  f.status = film_status_from(s.column_text(9));
  f.outcome.status = f.status;
  if (!s.column_is_null(10)) f.outcome.tmdb_id = s.column_int(10);
  if (!s.column_is_null(11)) f.outcome.confidence = s.column_double(11);
  f.outcome.query = s.column_text(12);
  f.outcome.record = s.column_text(13);
  f.outcome.error = s.column_text(14);
  f.finished_at = s.column_int(15);
  f.synced_at = s.column_int(16);
  return f;
}

std::string select_films(std::string_view where) {
  return "SELECT " + std::string(kFilmColumns) + " FROM films " + std::string(where);
}

class SqliteFilmStore final : public FilmStore {
 public:
  explicit SqliteFilmStore(const SqliteConfig& config)
      : db_(config.path, config.busy_timeout, config.synchronous_full) {
    migrate_sqlite(db_);
  }

  std::string_view kind() const noexcept override { return "sqlite"; }

  std::string create_session(std::string_view source,
                             const std::vector<FilmInput>& films) override {
    if (films.empty()) throw ConfigError("a film session needs at least one film");
    const std::string id = new_job_id();
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    SqliteStatement session(db_,
                            "INSERT INTO film_sessions (id, source, total, remaining, created_at) "
                            "VALUES (?1, ?2, ?3, ?3, ?4)");
    session.bind(1, std::string_view(id))
        .bind(2, source)
        .bind(3, static_cast<std::int64_t>(films.size()))
        .bind(4, now_ms());
    session.step();
    SqliteStatement insert(db_,
                           "INSERT INTO films (session_id, position, input, title, year, "
                           "original_title, kind, season, episode, search_key) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    for (std::size_t i = 0; i < films.size(); ++i) {
      const FilmInput& f = films[i];
      const std::string search_key = normalize_title(f.title);  // bound without a copy
      StatementScope scope(insert);
      insert.bind(1, std::string_view(id))
          .bind(2, static_cast<std::int64_t>(i))
          .bind(3, std::string_view(f.input))
          .bind(4, std::string_view(f.title));
      bind_optional(insert, 5, f.year);
      insert.bind(6, std::string_view(f.original_title)).bind(7, std::string_view(f.kind));
      bind_optional(insert, 8, f.season);
      bind_optional(insert, 9, f.episode);
      insert.bind(10, std::string_view(search_key));
      insert.step();
    }
    tx.commit();
    return id;
  }

  std::optional<FilmSession> session(const std::string& id) override {
    std::lock_guard lock(mutex_);
    SqliteStatement s(db_,
                      "SELECT id, source, total, created_at, coalesce(finished_at, 0) "
                      "FROM film_sessions WHERE id = ?1");
    s.bind(1, std::string_view(id));
    if (!s.step()) return std::nullopt;
    return count_films_locked(read_session(s));
  }

  std::vector<FilmSession> sessions(int limit) override {
    std::lock_guard lock(mutex_);
    SqliteStatement s(db_,
                      "SELECT id, source, total, created_at, coalesce(finished_at, 0) "
                      "FROM film_sessions ORDER BY created_at DESC, id LIMIT ?1");
    s.bind(1, static_cast<std::int64_t>(limit));
    std::vector<FilmSession> out;
    while (s.step()) out.push_back(read_session(s));
    for (FilmSession& session : out) session = count_films_locked(std::move(session));
    return out;
  }

  std::optional<Film> film(const std::string& session_id, int position) override {
    std::lock_guard lock(mutex_);
    SqliteStatement s(db_, select_films("WHERE session_id = ?1 AND position = ?2"));
    s.bind(1, std::string_view(session_id)).bind(2, static_cast<std::int64_t>(position));
    if (!s.step()) return std::nullopt;
    return read_film(s);
  }

  std::vector<Film> films(const std::string& session_id,
                          std::optional<FilmStatus> status) override {
    std::lock_guard lock(mutex_);
    SqliteStatement s(db_, select_films("WHERE session_id = ?1 AND (?2 IS NULL OR status = ?2) "
                                        "ORDER BY position"));
    s.bind(1, std::string_view(session_id));
    status ? s.bind(2, to_string(*status)) : s.bind_null(2);
    return read_all(s);
  }

  std::vector<Film> search(std::string_view text, int limit) override {
    const std::string pattern = like_pattern(text);  // bound without a copy
    std::lock_guard lock(mutex_);
    SqliteStatement s(db_, select_films("WHERE search_key LIKE ?1 ESCAPE '\\' "
                                        "ORDER BY session_id, position LIMIT ?2"));
    s.bind(1, std::string_view(pattern)).bind(2, static_cast<std::int64_t>(limit));
    return read_all(s);
  }

  FinishResult finish(const std::string& session_id, int position,
                      const FilmOutcome& outcome) override {
    check_outcome(outcome);
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    const std::int64_t now = now_ms();
    SqliteStatement update(db_,
                           "UPDATE films SET status = ?3, tmdb_id = ?4, confidence = ?5, "
                           "query = ?6, record = ?7, error = ?8, finished_at = ?9 "
                           "WHERE session_id = ?1 AND position = ?2 AND status = 'pending'");
    update.bind(1, std::string_view(session_id))
        .bind(2, static_cast<std::int64_t>(position))
        .bind(3, to_string(outcome.status));
    bind_optional(update, 4, outcome.tmdb_id);
    outcome.confidence ? update.bind(5, *outcome.confidence) : update.bind_null(5);
    update.bind(6, std::string_view(outcome.query));
    outcome.record.empty() ? update.bind_null(7) : update.bind(7, std::string_view(outcome.record));
    outcome.error.empty() ? update.bind_null(8) : update.bind(8, std::string_view(outcome.error));
    update.bind(9, now);
    update.step();
    if (db_.changes() == 0) {
      SqliteStatement exists(db_, "SELECT 1 FROM films WHERE session_id = ?1 AND position = ?2");
      exists.bind(1, std::string_view(session_id)).bind(2, static_cast<std::int64_t>(position));
      if (!exists.step()) {
        throw ConfigError("no film " + std::to_string(position) + " in session " + session_id);
      }
      return {};  // finished before: a redelivered job changes nothing
    }
    SqliteStatement count(db_,
                          "UPDATE film_sessions SET remaining = remaining - 1, finished_at = "
                          "CASE WHEN remaining = 1 THEN ?2 ELSE finished_at END WHERE id = ?1 "
                          "RETURNING remaining");
    count.bind(1, std::string_view(session_id)).bind(2, now);
    const bool last = count.step() && count.column_int(0) == 0;
    count.reset();
    tx.commit();
    return {true, last};
  }

  std::vector<Film> unsynced(const std::string& session_id, int limit) override {
    std::lock_guard lock(mutex_);
    SqliteStatement s(db_, select_films("WHERE session_id = ?1 AND status = 'enriched' AND "
                                        "synced_at IS NULL ORDER BY position LIMIT ?2"));
    s.bind(1, std::string_view(session_id)).bind(2, static_cast<std::int64_t>(limit));
    return read_all(s);
  }

  void mark_synced(const std::string& session_id, const std::vector<int>& positions) override {
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    SqliteStatement s(db_,
                      "UPDATE films SET synced_at = ?3 WHERE session_id = ?1 AND position = ?2 "
                      "AND synced_at IS NULL");
    const std::int64_t now = now_ms();
    for (int position : positions) {
      StatementScope scope(s);
      s.bind(1, std::string_view(session_id)).bind(2, static_cast<std::int64_t>(position));
      s.bind(3, now);
      s.step();
    }
    tx.commit();
  }

 private:
  static FilmSession read_session(const SqliteStatement& s) {
    FilmSession session;
    session.id = s.column_text(0);
    session.source = s.column_text(1);
    session.total = static_cast<int>(s.column_int(2));
    session.created_at = s.column_int(3);
    session.finished_at = s.column_int(4);
    return session;
  }

  FilmSession count_films_locked(FilmSession session) {
    SqliteStatement s(db_,
                      "SELECT status, count(*), count(synced_at) FROM films "
                      "WHERE session_id = ?1 GROUP BY status");
    s.bind(1, std::string_view(session.id));
    while (s.step()) {
      count_status(session, film_status_from(s.column_text(0)), static_cast<int>(s.column_int(1)));
      session.synced += static_cast<int>(s.column_int(2));
    }
    return session;
  }

  static std::vector<Film> read_all(SqliteStatement& s) {
    std::vector<Film> out;
    while (s.step()) out.push_back(read_film(s));
    return out;
  }

  SqliteDatabase db_;
  std::mutex mutex_;  // one connection: every use is serialised
};

}  // namespace

std::shared_ptr<FilmStore> open_sqlite_film_store(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to the film store
  return std::make_shared<SqliteFilmStore>(parse_sqlite_url(url, unused));
}

}  // namespace cinejobs::detail
