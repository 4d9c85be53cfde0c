// What the film stores share: status names, outcome checks, search patterns, and the choice of
// store by URL.
#include "cinejobs/film_store.hpp"

#include <map>
#include <mutex>

#include "cinejobs/errors.hpp"
#include "cinejobs/title_match.hpp"
#include "tmdb/film_stores.hpp"

namespace cinejobs {

std::string_view to_string(FilmStatus status) noexcept {
  switch (status) {
    case FilmStatus::kPending:
      return "pending";
    case FilmStatus::kEnriched:
      return "enriched";
    case FilmStatus::kNotFound:
      return "not_found";
    case FilmStatus::kFailed:
      return "failed";
  }
  return "pending";
}

FilmStatus film_status_from(std::string_view text) {
  for (FilmStatus s :
       {FilmStatus::kPending, FilmStatus::kEnriched, FilmStatus::kNotFound, FilmStatus::kFailed}) {
    if (to_string(s) == text) return s;
  }
  throw ConfigError("unknown film status '" + std::string(text) +
                    "': expected pending, enriched, not_found or failed");
}

std::shared_ptr<FilmStore> open_film_store(std::string_view url) {
  // One store per URL in a process: every handler thread shares its connections.
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<FilmStore>, std::less<>> open;
  std::lock_guard lock(mutex);
  if (auto it = open.find(url); it != open.end()) {
    if (auto store = it->second.lock()) return store;
  }
  std::shared_ptr<FilmStore> store;
  const std::string_view scheme = url.substr(0, url.find("://"));
  if (scheme == "sqlite") {
    store = detail::open_sqlite_film_store(url);
  } else if (scheme == "postgres" || scheme == "postgresql") {
    store = detail::open_postgres_film_store(url);
  } else {
    throw ConfigError("cannot keep films at '" + std::string(url) +
                      "': films live in a SQLite or PostgreSQL database (sqlite:///films.db, "
                      "postgresql://host/db); with a Redis broker, give a film store URL too");
  }
  open[std::string(url)] = store;
  return store;
}

namespace detail {

std::string like_pattern(std::string_view text) {
  std::string out = "%";
  for (char c : normalize_title(text)) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  out += '%';
  return out;
}

void check_outcome(const FilmOutcome& outcome) {
  if (outcome.status == FilmStatus::kPending) {
    throw ConfigError("a film's outcome must be final (enriched, not_found or failed)");
  }
  if (outcome.status == FilmStatus::kEnriched && (!outcome.tmdb_id || outcome.record.empty())) {
    throw ConfigError("an enriched film needs its tmdb_id and record");
  }
}

void count_status(FilmSession& session, FilmStatus status, int count) {
  switch (status) {
    case FilmStatus::kPending:
      session.pending += count;
      break;
    case FilmStatus::kEnriched:
      session.enriched += count;
      break;
    case FilmStatus::kNotFound:
      session.not_found += count;
      break;
    case FilmStatus::kFailed:
      session.failed += count;
      break;
  }
}

}  // namespace detail
}  // namespace cinejobs
