// The TMDB enrichment pipeline: how one film is matched and enriched (enrich_film), and the
// native handlers that run it inside any worker, the Python one and cinejobs-worker alike.
//
// Three passes over a session's films (film_store.hpp):
//   ingest  the caller creates the session (every film pending, searchable at once) and enqueues
//           one tmdb.enrich job per film, unique by session and position;
//   enrich  tmdb.enrich finds the film on TMDB and stores its final state, once: a job delivered
//           again after a crash finds the film finished and makes no request;
//   sync    enriched records go through a Batcher into a search index (Elasticsearch's _bulk),
//           each film stamped synced once the index took it; tmdb.sync (enqueued when a session
//           finishes) sends whatever a crash left unsynced.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cinejobs/film_store.hpp"
#include "cinejobs/title_match.hpp"
#include "cinejobs/tmdb_client.hpp"

namespace cinejobs {

class Worker;

struct EnrichOptions {
  // The best candidate is taken when its confidence (title_match.hpp) reaches this: a right
  // title in the wrong year (at most 0.75) still matches, a different title does not.
  double min_confidence = 0.65;
  std::size_t max_cast = 10;
};

// parse_search_results reads TMDB's search/movie or search/tv body into candidates; results
// without a usable id or title are skipped. Throws TmdbError for a body that is not a search
// result.
std::vector<TitleCandidate> parse_search_results(std::string_view body);

// build_record turns a movie/{id} or tv/{id} body (with credits, keywords, external_ids
// appended) into the enriched record: a JSON object with tmdb_id, media_type, title,
// original_title, year, release_date, overview, runtime, genres, directors, cast, keywords,
// imdb_id, poster_url, popularity, vote_average, vote_count, and season and episode for an
// episode. Missing and null fields become null or empty lists.
std::string build_record(std::string_view details, const FilmInput& film, const TmdbImages& images,
                         const EnrichOptions& options);

// enrich_film searches TMDB for one film (then each of search_fallbacks until a candidate is
// confident enough), fetches the best match's details and returns the outcome: enriched or
// not_found. TmdbAuthError and TmdbError propagate: the caller decides about retries.
FilmOutcome enrich_film(TmdbClient& client, const FilmInput& film,
                        const EnrichOptions& options = {});

// TmdbPipelineOptions: what the native handlers use. Empty URLs default to the broker's.
struct TmdbPipelineOptions {
  TmdbClientOptions client = TmdbClientOptions::from_environment();
  std::string rate = std::string(kTmdbDefaultRate);  // TMDB_RATE_LIMIT; "" for no limit
  std::string rate_limit_store;  // where the shared limit is kept; "local" for this process
  std::string cache_url;         // response cache; "none" disables it
  std::string film_store_url;    // CINEJOBS_FILM_STORE; a Redis broker needs one
  std::string sync_url;          // CINEJOBS_SYNC_URL: Elasticsearch base URL; "" disables sync
  std::string sync_index = "films";
  EnrichOptions enrich;

  // from_environment reads TMDB_*, CINEJOBS_FILM_STORE and CINEJOBS_SYNC_URL.
  static TmdbPipelineOptions from_environment();
};

// Task names and queue of the native handlers.
inline constexpr std::string_view kTmdbEnrichTask = "tmdb.enrich";
inline constexpr std::string_view kTmdbSyncTask = "tmdb.sync";
inline constexpr std::string_view kTmdbQueue = "tmdb";

// enrich_unique_key: the unique key of a film's tmdb.enrich job, so that enqueueing a session
// again (a resume) never doubles a live job.
std::string enrich_unique_key(std::string_view session_id, int position);
// enrich_kwargs: the kwargs of a film's tmdb.enrich job.
std::string enrich_kwargs(std::string_view session_id, int position);

// register_tmdb_handlers adds tmdb.enrich (kwargs {"session", "position"}) and tmdb.sync
// (kwargs {"session"}) to `worker`. The TMDB client, cache, limiter and stores are made on the
// first job, so a worker that never sees one needs no credentials.
void register_tmdb_handlers(Worker& worker, TmdbPipelineOptions options);

}  // namespace cinejobs
