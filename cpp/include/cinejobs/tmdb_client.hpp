// TmdbClient: The Movie Database's v3 API over HttpClient, safe to share between threads.
//
// Each call is one GET (or none, when the response cache has it) that goes through the shared
// rate limiter first. TMDB's documented errors are read from the body's status_code:
//   * invalid key or token (401: status_code 7, 3, 10, ...) throws TmdbAuthError, which stops a
//     pipeline with one clear message instead of one per film;
//   * not found (404, status_code 34) is a result: nullopt, cached like a hit;
//   * 429 pauses the shared limiter for Retry-After, for every worker, and retries;
//   * 5xx, timeouts, refused connections and malformed bodies retry with exponential backoff,
//     and throw TmdbError when the retry budget is spent.
// A 429 is TMDB asking to wait, not a failure: it does not use one of max_attempts, but a call
// that is turned away 2 * max_attempts times throws TmdbError (a limit far below TMDB's, or
// another client on the same key, would otherwise keep it waiting for ever).
// Bodies are returned as the JSON text TMDB sent, checked to be a JSON object.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cinejobs/errors.hpp"
#include "cinejobs/rate_limiter.hpp"
#include "cinejobs/response_cache.hpp"

namespace cinejobs {

// TmdbError: TMDB could not answer (after retries), or answered something unusable.
class TmdbError : public Error {
 public:
  using Error::Error;
};

// TmdbAuthError: TMDB refused the credentials. Retrying cannot help.
class TmdbAuthError : public TmdbError {
 public:
  using TmdbError::TmdbError;
};

inline constexpr std::string_view kTmdbPublicBaseUrl = "https://api.themoviedb.org/3";
inline constexpr std::string_view kTmdbDefaultRate = "40/10s";

struct TmdbClientOptions {
  std::string base_url{kTmdbPublicBaseUrl};  // TMDB_BASE_URL
  std::string api_key;                       // v3 key, sent as ?api_key= (TMDB_API_KEY)
  std::string read_token;  // v4 read-access token, sent as a Bearer token (TMDB_READ_TOKEN);
                           // preferred over api_key when both are set
  std::string language = "en-US";
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{15000};  // one request
  int max_attempts = 5;                      // per call: the first try and four retries
  std::chrono::milliseconds backoff{500};    // first retry's wait, doubled each time, jittered
  // Shared limiter (null: no limit). make_tmdb_rate_limiter builds the usual one.
  std::shared_ptr<RateLimiter> limiter;
  std::shared_ptr<ResponseCache> cache;  // null: no cache
  std::chrono::seconds cache_ttl{std::chrono::hours(24 * 7)};
  // on_wait, when set, is called at least every 100 ms while a call waits (for the limiter, a
  // Retry-After or a backoff); an exception it throws ends the call. The Python bindings check
  // for signals there, so Ctrl-C ends a long wait.
  std::function<void()> on_wait;

  // from_environment reads TMDB_BASE_URL, TMDB_API_KEY and TMDB_READ_TOKEN over the defaults.
  static TmdbClientOptions from_environment();
};

// make_tmdb_rate_limiter: the limiter named "tmdb" on `store` at `rate` ("40/10s"), burst 1.
// Its period is stretched by kTmdbRateMargin: TMDB counts requests as they arrive, and network
// jitter brings arrivals closer together than they were sent.
inline constexpr double kTmdbRateMargin = 0.02;
std::shared_ptr<RateLimiter> make_tmdb_rate_limiter(std::shared_ptr<RateLimitStore> store,
                                                    std::string_view rate = kTmdbDefaultRate);

struct MovieSearch {
  std::string query;
  std::optional<int> year;
  std::optional<int> primary_release_year;
  std::string language;  // empty: the client's
  bool include_adult = false;
  int page = 1;
};

struct TvSearch {
  std::string query;
  std::optional<int> first_air_date_year;
  std::string language;
  bool include_adult = false;
  int page = 1;
};

// TmdbClientStats: counters since the client was made.
struct TmdbClientStats {
  std::uint64_t requests = 0;                 // HTTP requests sent (retries included)
  std::uint64_t cache_hits = 0;               // calls answered from the cache
  std::uint64_t retries = 0;                  // requests repeated after a 5xx, timeout or bad body
  std::uint64_t rate_limited = 0;             // 429 answers received
  std::uint64_t not_found = 0;                // calls that ended in not found
  std::chrono::milliseconds limiter_wait{0};  // time spent waiting for the rate limiter
};

// TmdbImages: what configuration says about images.
struct TmdbImages {
  std::string secure_base_url;  // "https://image.tmdb.org/t/p/"
  std::vector<std::string> poster_sizes;
};

class TmdbClient {
 public:
  // Throws ConfigError when neither api_key nor read_token is set, or the base URL is bad.
  explicit TmdbClient(TmdbClientOptions options);
  ~TmdbClient();
  TmdbClient(const TmdbClient&) = delete;
  TmdbClient& operator=(const TmdbClient&) = delete;

  // get: GET base_url + path with params (URL-encoded here; credentials added here), through
  // limiter and cache. nullopt for not found. The other calls are get() with TMDB's paths.
  std::optional<std::string> get(std::string_view path,
                                 const std::vector<std::pair<std::string, std::string>>& params);

  std::string search_movie(const MovieSearch& search);
  std::string search_tv(const TvSearch& search);
  std::optional<std::string> movie(std::int64_t id, std::string_view append_to_response =
                                                        "credits,keywords,external_ids,"
                                                        "release_dates");
  std::optional<std::string> tv(std::int64_t id,
                                std::string_view append_to_response = "credits,external_ids");
  // find_by_imdb_id: find/{imdb_id}?external_source=imdb_id.
  std::string find_by_imdb_id(std::string_view imdb_id);
  // configuration: fetched on first use, then kept for the client's life.
  const TmdbImages& images();

  TmdbClientStats stats() const;
  const TmdbClientOptions& options() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cinejobs
