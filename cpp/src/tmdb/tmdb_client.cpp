// TmdbClient: the cache first (a cached answer costs no rate limit unit), then the shared
// limiter, then one GET on a pooled HttpClient, and the answer read by classify_tmdb_response.
// HttpClients are kept on a free list: each serves one call at a time and keeps its connection
// to TMDB open between calls, so a pipeline of N threads holds about N connections.
#include "cinejobs/tmdb_client.hpp"

#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include "cinejobs/http_client.hpp"
#include "cinejobs/metrics.hpp"
#include "cinejobs/redact.hpp"
#include "tmdb/tmdb_protocol.hpp"

namespace cinejobs {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kMaxBackoff{30'000};
constexpr milliseconds kWakeEvery{100};
// Retry-After is always sent by TMDB with a 429; a gateway's 429 may lack it.
constexpr std::chrono::seconds kDefaultRetryAfter{1};
constexpr std::size_t kMaxIdleHttpClients = 32;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// redact masks every occurrence of a credential (libcurl's messages quote the URL, and the v3
// key is in its query).
std::string redact(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
  return text;
}

// backoff_delay: the wait before retry number `retry` (1-based): base doubled each time, capped,
// with the upper half jittered so that clients failing together do not retry together.
milliseconds backoff_delay(milliseconds base, int retry) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const double doubled = static_cast<double>(base.count()) * std::pow(2.0, retry - 1);
  const double capped = std::min(doubled, static_cast<double>(kMaxBackoff.count()));
  std::uniform_real_distribution<double> half(0.0, capped / 2);
  return milliseconds(static_cast<std::int64_t>(capped / 2 + half(rng)));
}

std::string credential_name(const TmdbClientOptions& o) {
  return o.read_token.empty() ? "the v3 API key (TMDB_API_KEY, sent as api_key)"
                              : "the v4 read access token (TMDB_READ_TOKEN, sent as a Bearer "
                                "token)";
}

}  // namespace

TmdbClientOptions TmdbClientOptions::from_environment() {
  TmdbClientOptions options;
  if (std::string url = env("TMDB_BASE_URL"); !url.empty()) options.base_url = std::move(url);
  options.api_key = env("TMDB_API_KEY");
  options.read_token = env("TMDB_READ_TOKEN");
  return options;
}

std::shared_ptr<RateLimiter> make_tmdb_rate_limiter(std::shared_ptr<RateLimitStore> store,
                                                    std::string_view rate) {
  Rate stretched = parse_rate(rate);
  const auto margin = static_cast<std::int64_t>(
      std::llround(static_cast<double>(stretched.period.count()) * kTmdbRateMargin));
  stretched.period += Micros(margin);
  return std::make_shared<RateLimiter>(std::move(store), "tmdb", stretched, 1);
}

struct TmdbClient::Impl {
  TmdbClientOptions options;
  HttpClientOptions http_options;

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<HttpClient>> idle;  // free list, most recently used last

  std::atomic<std::uint64_t> requests{0}, cache_hits{0}, retries{0}, rate_limited{0}, not_found{0};
  std::atomic<std::int64_t> limiter_wait_us{0};

  std::mutex images_mutex;
  std::optional<TmdbImages> images;  // set once, from the first configuration answer

  // HttpLease hands an HttpClient to one call and puts it back on the free list afterwards.
  class HttpLease {
   public:
    HttpLease(Impl& impl, std::unique_ptr<HttpClient> client) noexcept
        : impl_(impl), client_(std::move(client)) {}
    ~HttpLease() { impl_.give_back(std::move(client_)); }
    HttpLease(const HttpLease&) = delete;
    HttpLease& operator=(const HttpLease&) = delete;
    HttpClient* operator->() const noexcept { return client_.get(); }

   private:
    Impl& impl_;
    std::unique_ptr<HttpClient> client_;
  };

  HttpLease lease() {
    {
      std::lock_guard lock(pool_mutex);
      if (!idle.empty()) {
        std::unique_ptr<HttpClient> client = std::move(idle.back());
        idle.pop_back();
        return HttpLease(*this, std::move(client));
      }
    }
    return HttpLease(*this, std::make_unique<HttpClient>(http_options));
  }

  void give_back(std::unique_ptr<HttpClient> client) noexcept {
    std::lock_guard lock(pool_mutex);
    if (idle.size() < kMaxIdleHttpClients) idle.push_back(std::move(client));
  }

  // wait sleeps for `duration`, calling on_wait at least every kWakeEvery.
  void wait(milliseconds duration) const {
    const auto until = Clock::now() + duration;
    if (!options.on_wait) {
      std::this_thread::sleep_until(until);
      return;
    }
    for (auto now = Clock::now(); now < until; now = Clock::now()) {
      std::this_thread::sleep_until(std::min(until, now + kWakeEvery));
      options.on_wait();
    }
  }

  // take_unit waits for the shared limiter's next unit.
  void take_unit() {
    if (!options.limiter) return;
    AcquireOptions acquire;
    if (options.on_wait) {
      acquire.on_wake = options.on_wait;
      acquire.wake_every = kWakeEvery;
    }
    const auto start = Clock::now();
    const bool taken = options.limiter->acquire(1, acquire);
    limiter_wait_us += std::chrono::duration_cast<Micros>(Clock::now() - start).count();
    if (!taken) throw TmdbError("the TMDB rate limiter gave up waiting for a unit");
  }
};

TmdbClient::TmdbClient(TmdbClientOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& impl = *impl_;
  impl.options = std::move(options);
  const TmdbClientOptions& o = impl.options;
  if (o.api_key.empty() && o.read_token.empty()) {
    throw ConfigError(
        "no TMDB credentials: set TMDB_API_KEY (a v3 API key) or TMDB_READ_TOKEN (a v4 read "
        "access token), both found on TMDB's API settings page");
  }
  if (o.max_attempts < 1) {
    throw ConfigError("TMDB client max_attempts must be at least 1, got " +
                      std::to_string(o.max_attempts));
  }
  if (o.backoff < milliseconds::zero() || o.timeout < milliseconds::zero() ||
      o.connect_timeout < milliseconds::zero()) {
    throw ConfigError("TMDB client timeouts and backoff must not be negative");
  }
  if (o.cache && o.cache_ttl <= std::chrono::seconds::zero()) {
    throw ConfigError("TMDB client cache_ttl must be at least one second");
  }
  impl.http_options.base_url = o.base_url;
  impl.http_options.connect_timeout = o.connect_timeout;
  impl.http_options.timeout = o.timeout;
  impl.http_options.headers.emplace_back("Accept: application/json");
  if (!o.read_token.empty()) {
    impl.http_options.headers.push_back("Authorization: Bearer " + o.read_token);
  }
  // The first client checks the base URL (ConfigError) and starts the free list.
  impl.give_back(std::make_unique<HttpClient>(impl.http_options));
}

TmdbClient::~TmdbClient() = default;

std::optional<std::string> TmdbClient::get(
    std::string_view path, const std::vector<std::pair<std::string, std::string>>& params) {
  Impl& impl = *impl_;
  const TmdbClientOptions& o = impl.options;
  if (path.empty() || path.front() != '/') {
    throw ConfigError("TMDB path '" + std::string(path) + "' must start with '/'");
  }
  const std::string key = detail::tmdb_cache_key(path, params);
  if (o.cache) {
    if (std::optional<std::string> hit = o.cache->get(key)) {
      ++impl.cache_hits;
      if (*hit == detail::kNotFoundMarker) {
        ++impl.not_found;
        return std::nullopt;
      }
      return hit;
    }
  }

  detail::QueryParams sent;
  sent.reserve(params.size() + 1);
  for (const auto& param : params) {
    if (param.first != "api_key") sent.push_back(param);
  }
  if (o.read_token.empty()) sent.emplace_back("api_key", o.api_key);
  std::string target(path);
  if (const std::string query = detail::query_string(sent); !query.empty()) {
    target.append("?").append(query);
  }
  // Messages name the request by its cache key: method, path and query, without credentials.
  const std::string& request = key;

  int failures = 0;     // attempts that ended in a transport error, a 5xx or a malformed body
  int turned_away = 0;  // 429 answers (not failures: see the header)
  std::string last_problem;
  for (;;) {
    impl.take_unit();
    ++impl.requests;
    std::optional<HttpResponse> response;
    detail::TmdbVerdict verdict;
    try {
      response = impl.lease()->request("GET", target);
      verdict = detail::classify_tmdb_response(response->status, response->body);
    } catch (const HttpError& e) {
      verdict = {detail::TmdbOutcome::kRetry, redact(e.what(), o.api_key)};
    }
    switch (verdict.outcome) {
      case detail::TmdbOutcome::kOk:
        if (o.cache) o.cache->put(key, response->body, o.cache_ttl);
        return std::move(response->body);
      case detail::TmdbOutcome::kNotFound:
        ++impl.not_found;
        if (o.cache) o.cache->put(key, detail::kNotFoundMarker, o.cache_ttl);
        return std::nullopt;
      case detail::TmdbOutcome::kAuthFailed:
        throw TmdbAuthError("TMDB refused " + credential_name(o) + " for " + request + ": " +
                            verdict.problem +
                            ". Set TMDB_API_KEY to a valid v3 API key or TMDB_READ_TOKEN to a "
                            "v4 read access token (TMDB's API settings page shows both)");
      case detail::TmdbOutcome::kFailed:
        throw TmdbError("TMDB refused " + request + ": " + verdict.problem);
      case detail::TmdbOutcome::kRateLimited: {
        ++impl.rate_limited;
        if (++turned_away >= 2 * o.max_attempts) {
          throw TmdbError("TMDB turned " + request + " away " + std::to_string(turned_away) +
                          " times (" + verdict.problem +
                          "): is another client using the same key, or the rate limit set "
                          "above TMDB's?");
        }
        const std::chrono::seconds pause = response->retry_after().value_or(kDefaultRetryAfter);
        count_tmdb_429_pause();
        if (o.limiter) {
          // Every worker sharing the limiter holds back, not only this call.
          o.limiter->pause_for(pause);
        } else {
          impl.wait(pause);
        }
        continue;
      }
      case detail::TmdbOutcome::kRetry:
        last_problem = std::move(verdict.problem);
        if (++failures >= o.max_attempts) {
          throw TmdbError("TMDB " + request + " failed " + std::to_string(failures) +
                          (failures == 1 ? " time" : " times") + "; the last: " + last_problem);
        }
        ++impl.retries;
        impl.wait(backoff_delay(o.backoff, failures));
        continue;
    }
  }
}

namespace {

// found: the answer of a call for which TMDB's "not found" can only mean a wrong base URL.
std::string found(std::optional<std::string> body, const TmdbClientOptions& o,
                  std::string_view what) {
  if (!body) {
    throw TmdbError("TMDB answered 404 to " + std::string(what) + " at " + redact_url(o.base_url) +
                    ": is TMDB_BASE_URL right? (TMDB's is " + std::string(kTmdbPublicBaseUrl) +
                    ")");
  }
  return std::move(*body);
}

std::string language_of(const std::string& given, const TmdbClientOptions& o) {
  return given.empty() ? o.language : given;
}

}  // namespace

std::string TmdbClient::search_movie(const MovieSearch& search) {
  std::vector<std::pair<std::string, std::string>> params = {
      {"query", search.query},
      {"include_adult", search.include_adult ? "true" : "false"},
      {"language", language_of(search.language, impl_->options)},
      {"page", std::to_string(search.page)},
  };
  if (search.year) params.emplace_back("year", std::to_string(*search.year));
  if (search.primary_release_year) {
    params.emplace_back("primary_release_year", std::to_string(*search.primary_release_year));
  }
  return found(get("/search/movie", params), impl_->options, "a movie search");
}

std::string TmdbClient::search_tv(const TvSearch& search) {
  std::vector<std::pair<std::string, std::string>> params = {
      {"query", search.query},
      {"include_adult", search.include_adult ? "true" : "false"},
      {"language", language_of(search.language, impl_->options)},
      {"page", std::to_string(search.page)},
  };
  if (search.first_air_date_year) {
    params.emplace_back("first_air_date_year", std::to_string(*search.first_air_date_year));
  }
  return found(get("/search/tv", params), impl_->options, "a TV search");
}

std::optional<std::string> TmdbClient::movie(std::int64_t id, std::string_view append_to_response) {
  std::vector<std::pair<std::string, std::string>> params = {{"language", impl_->options.language}};
  if (!append_to_response.empty()) {
    params.emplace_back("append_to_response", std::string(append_to_response));
  }
  return get("/movie/" + std::to_string(id), params);
}

std::optional<std::string> TmdbClient::tv(std::int64_t id, std::string_view append_to_response) {
  std::vector<std::pair<std::string, std::string>> params = {{"language", impl_->options.language}};
  if (!append_to_response.empty()) {
    params.emplace_back("append_to_response", std::string(append_to_response));
  }
  return get("/tv/" + std::to_string(id), params);
}

std::string TmdbClient::find_by_imdb_id(std::string_view imdb_id) {
  if (imdb_id.empty()) throw ConfigError("find_by_imdb_id needs an IMDb id such as tt0137523");
  return found(get("/find/" + detail::percent_encode(imdb_id),
                   {{"external_source", "imdb_id"}, {"language", impl_->options.language}}),
               impl_->options, "a find by IMDb id");
}

const TmdbImages& TmdbClient::images() {
  Impl& impl = *impl_;
  {
    std::lock_guard lock(impl.images_mutex);
    if (impl.images) return *impl.images;
  }
  // Fetched without the mutex: a call may wait (and take the GIL in on_wait), and nothing may
  // wait for the GIL while holding a mutex. Two first callers may both fetch; one answer stays.
  const std::string body = found(get("/configuration", {}), impl.options, "/configuration");
  simdjson::dom::parser parser;
  simdjson::dom::object images;
  if (parser.parse(body).at_key("images").get(images) != simdjson::SUCCESS) {
    throw TmdbError("TMDB's /configuration has no \"images\" object");
  }
  TmdbImages out;
  std::string_view base;
  if (images["secure_base_url"].get(base) != simdjson::SUCCESS) {
    throw TmdbError("TMDB's /configuration has no images.secure_base_url");
  }
  out.secure_base_url = base;
  simdjson::dom::array sizes;
  if (images["poster_sizes"].get(sizes) == simdjson::SUCCESS) {
    for (const simdjson::dom::element size : sizes) {
      std::string_view text;
      if (size.get(text) == simdjson::SUCCESS) out.poster_sizes.emplace_back(text);
    }
  }
  std::lock_guard lock(impl.images_mutex);
  if (!impl.images) impl.images = std::move(out);
  return *impl.images;  // never changed once set, so the reference stays valid
}

TmdbClientStats TmdbClient::stats() const {
  const Impl& impl = *impl_;
  TmdbClientStats s;
  s.requests = impl.requests.load();
  s.cache_hits = impl.cache_hits.load();
  s.retries = impl.retries.load();
  s.rate_limited = impl.rate_limited.load();
  s.not_found = impl.not_found.load();
  s.limiter_wait = std::chrono::duration_cast<milliseconds>(Micros(impl.limiter_wait_us.load()));
  return s;
}

const TmdbClientOptions& TmdbClient::options() const noexcept { return impl_->options; }

}  // namespace cinejobs
