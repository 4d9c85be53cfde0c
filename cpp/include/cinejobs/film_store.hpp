// FilmStore: the enrichment pipeline's records, kept in the broker's own database (SQLite file or
// PostgreSQL schema; tables film_sessions and films, schema version 4).
//
// A session is one imported film list. Ingest writes every film as `pending` in one transaction,
// searchable at once; enrichment gives each film one final state (enriched, not_found or failed)
// and a final state is never overwritten, so a job delivered again after a crash finds its film
// finished and does nothing. The transaction that finishes a session's last film also stamps the
// session finished. Sync marks enriched films once a search index has taken them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs {

enum class FilmStatus { kPending, kEnriched, kNotFound, kFailed };

std::string_view to_string(FilmStatus status) noexcept;
// film_status_from reads "pending", "enriched", "not_found" or "failed"; ConfigError otherwise.
FilmStatus film_status_from(std::string_view text);

// FilmInput: one line of an imported list, as ingest understood it.
struct FilmInput {
  std::string input;  // the line as given (a release name, or the CSV row as JSON)
  std::string title;
  std::optional<int> year;
  std::string original_title;
  std::string kind = "movie";  // "movie" or "episode"
  std::optional<int> season;
  std::optional<int> episode;
};

// FilmOutcome: what enrichment found for one film.
struct FilmOutcome {
  FilmStatus status = FilmStatus::kFailed;
  std::optional<std::int64_t> tmdb_id;
  std::optional<double> confidence;
  std::string query;   // the search that found the match (or the last one tried)
  std::string record;  // JSON object of the enriched record; empty unless enriched
  std::string error;   // why it failed; empty unless failed
};

struct Film {
  std::string session_id;
  int position = 0;  // 0-based line of the list
  FilmInput input;
  FilmStatus status = FilmStatus::kPending;
  FilmOutcome outcome;           // status repeated in outcome.status
  std::int64_t finished_at = 0;  // epoch ms; 0 while pending
  std::int64_t synced_at = 0;    // epoch ms; 0 until a sync took it
};

struct FilmSession {
  std::string id;
  std::string source;
  int total = 0;
  int pending = 0;  // films without a final state
  int enriched = 0;
  int not_found = 0;
  int failed = 0;
  int synced = 0;
  std::int64_t created_at = 0;
  std::int64_t finished_at = 0;  // 0 until every film has a final state
  bool finished() const noexcept { return finished_at != 0; }
};

class FilmStore {
 public:
  virtual ~FilmStore() = default;
  virtual std::string_view kind() const noexcept = 0;  // "sqlite" or "postgres"

  // create_session ingests `films` as one new session (one transaction) and returns its id.
  // Throws ConfigError for an empty list.
  virtual std::string create_session(std::string_view source,
                                     const std::vector<FilmInput>& films) = 0;
  virtual std::optional<FilmSession> session(const std::string& id) = 0;
  // sessions lists sessions, newest first.
  virtual std::vector<FilmSession> sessions(int limit) = 0;

  virtual std::optional<Film> film(const std::string& session_id, int position) = 0;
  // films lists a session's films in list order, optionally only those of one status.
  virtual std::vector<Film> films(const std::string& session_id,
                                  std::optional<FilmStatus> status = std::nullopt) = 0;
  // search finds films of every session whose title contains `text` (normalised as titles are
  // for matching), enriched or not: a film is searchable from the moment it is ingested.
  virtual std::vector<Film> search(std::string_view text, int limit) = 0;

  // finish gives a pending film its final outcome (kPending is refused with ConfigError). It
  // changes nothing when the film already had a final state. Throws ConfigError when there is no
  // such film.
  struct FinishResult {
    bool changed = false;           // false: the film was final already
    bool session_finished = false;  // this call gave the session's last film its final state
  };
  virtual FinishResult finish(const std::string& session_id, int position,
                              const FilmOutcome& outcome) = 0;

  // unsynced returns up to `limit` enriched films of the session no sync has taken yet;
  // mark_synced stamps them.
  virtual std::vector<Film> unsynced(const std::string& session_id, int limit) = 0;
  virtual void mark_synced(const std::string& session_id, const std::vector<int>& positions) = 0;
};

// open_film_store opens the store in a broker's database: sqlite:// or postgresql:// URLs with
// their broker's query parameters. Stores of one URL are shared within the process. Throws
// ConfigError for other URLs (a Redis broker keeps no films: give a SQLite or PostgreSQL store)
// and for a PostgreSQL schema not migrated to version 4; BrokerUnavailable when unreachable.
std::shared_ptr<FilmStore> open_film_store(std::string_view url);

}  // namespace cinejobs
