// What the film stores share: status names, outcome checks, search patterns, and the choice of
// store by URL.
#include "cinejobs/film_store.hpp"

#include "cinejobs/errors.hpp"
#include "cinejobs/redact.hpp"
#include "cinejobs/title_match.hpp"
#include "shared_per_url.hpp"
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
  return detail::shared_per_url<FilmStore>(
      url, [](std::string_view where) -> std::shared_ptr<FilmStore> {
        const std::string_view scheme = where.substr(0, where.find("://"));
        if (scheme == "sqlite") {
          return detail::open_sqlite_film_store(where);
        } else if (scheme == "postgres" || scheme == "postgresql") {
          return detail::open_postgres_film_store(where);
        } else {
          throw ConfigError(
              "cannot keep films at '" + redact_url(where) +
              "': films live in a SQLite or PostgreSQL database (sqlite:///films.db, "
              "postgresql://host/db); with a Redis broker, give a film store URL too");
        }
      });
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
