// The TMDB client's pure parts (query encoding, cache keys, what an answer means), its options,
// and the client and HttpClient against a scripted local HTTP server: credentials, gzip, retries,
// not-found answers cached, and the cache consulted before the rate limiter. The Python suite
// (tests/python/test_tmdb_client.py) drives the client against the TMDB stand-in.
#include "cinejobs/tmdb_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cache/stores.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/http_client.hpp"
#include "tmdb/tmdb_protocol.hpp"

using namespace cinejobs;
using namespace cinejobs::detail;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------------------------
// Query encoding and cache keys

TEST(TmdbQuery, PercentEncodesAllButUnreservedCharacters) {
  EXPECT_EQ(percent_encode("Amélie & co/?=+~._-"), "Am%C3%A9lie%20%26%20co%2F%3F%3D%2B~._-");
  EXPECT_EQ(query_string({{"query", "fight club"}, {"page", "1"}}), "query=fight%20club&page=1");
  EXPECT_EQ(query_string({}), "");
}

TEST(TmdbCacheKey, SortsTheParametersAndLeavesTheApiKeyOut) {
  const QueryParams a = {{"query", "Heat"}, {"language", "en-US"}, {"api_key", "secret"}};
  const QueryParams b = {{"language", "en-US"}, {"query", "Heat"}};
  EXPECT_EQ(tmdb_cache_key("/search/movie", a), "GET /search/movie?language=en-US&query=Heat");
  EXPECT_EQ(tmdb_cache_key("/search/movie", a), tmdb_cache_key("/search/movie", b));
  EXPECT_EQ(tmdb_cache_key("/configuration", {}), "GET /configuration");
}

TEST(TmdbCacheKey, DiffersByPathLanguageAndEveryOtherParameter) {
  const std::string base = tmdb_cache_key("/movie/550", {{"language", "en-US"}});
  EXPECT_NE(base, tmdb_cache_key("/movie/551", {{"language", "en-US"}}));
  EXPECT_NE(base, tmdb_cache_key("/movie/550", {{"language", "fr-FR"}}));
  EXPECT_NE(base, tmdb_cache_key("/movie/550", {{"language", "en-US"}, {"append", "credits"}}));
  // Encoded, so a value cannot pass for two parameters.
  EXPECT_NE(tmdb_cache_key("/s", {{"query", "a&page=2"}}),
            tmdb_cache_key("/s", {{"query", "a"}, {"page", "2"}}));
}

// ---------------------------------------------------------------------------------------------
// What an answer means

TEST(TmdbErrorBody, ReadsStatusCodeAndMessageOrNothing) {
  const TmdbErrorBody e = read_tmdb_error(
      R"({"success":false,"status_code":7,"status_message":"Invalid API key: You must be granted a valid key."})");
  EXPECT_EQ(e.status_code, 7);
  EXPECT_EQ(e.status_message, "Invalid API key: You must be granted a valid key.");
  EXPECT_EQ(read_tmdb_error("<html>502 Bad Gateway</html>").status_code, 0);
  EXPECT_EQ(read_tmdb_error("[1,2]").status_code, 0);
}

std::string error_body(int code, const std::string& message) {
  return R"({"success":false,"status_code":)" + std::to_string(code) + R"(,"status_message":")" +
         message + R"("})";
}

TEST(TmdbClassify, AJsonObjectIsAnAnswerAnythingElseIsRetried) {
  EXPECT_EQ(classify_tmdb_response(200, R"({"id":550})").outcome, TmdbOutcome::kOk);
  const TmdbVerdict half = classify_tmdb_response(200, "{\"id\":55\0<!-- upstream -->");
  EXPECT_EQ(half.outcome, TmdbOutcome::kRetry);
  EXPECT_NE(half.problem.find("malformed"), std::string::npos) << half.problem;
  EXPECT_EQ(classify_tmdb_response(200, "[]").outcome, TmdbOutcome::kRetry);
  EXPECT_EQ(classify_tmdb_response(200, "").outcome, TmdbOutcome::kRetry);
}

TEST(TmdbClassify, RefusedCredentialsAreAuthFailuresWithTmdbsMessage) {
  for (int code : {3, 7, 10, 14, 36}) {
    const TmdbVerdict v = classify_tmdb_response(401, error_body(code, "Authentication failed"));
    EXPECT_EQ(v.outcome, TmdbOutcome::kAuthFailed) << code;
    EXPECT_NE(v.problem.find("status_code " + std::to_string(code) + ": Authentication failed"),
              std::string::npos)
        << v.problem;
  }
  EXPECT_EQ(classify_tmdb_response(401, "").outcome, TmdbOutcome::kAuthFailed);
}

TEST(TmdbClassify, NotFoundRateLimitedServerErrorsAndRefusals) {
  EXPECT_EQ(classify_tmdb_response(404, error_body(34, "The resource ...")).outcome,
            TmdbOutcome::kNotFound);
  EXPECT_EQ(classify_tmdb_response(404, "Not Found").outcome, TmdbOutcome::kNotFound);
  EXPECT_EQ(classify_tmdb_response(429, error_body(25, "over the limit")).outcome,
            TmdbOutcome::kRateLimited);
  for (long status : {500L, 502L, 503L, 504L, 408L}) {
    EXPECT_EQ(classify_tmdb_response(status, error_body(11, "Internal error")).outcome,
              TmdbOutcome::kRetry)
        << status;
  }
  const TmdbVerdict gateway =
      classify_tmdb_response(502, "<html>\r\n<head><title>502 Bad Gateway</title></head>");
  EXPECT_NE(gateway.problem.find("HTTP 502 (body: <html>"), std::string::npos) << gateway.problem;
  EXPECT_EQ(gateway.problem.find('\n'), std::string::npos) << "one line for messages";
  const TmdbVerdict invalid = classify_tmdb_response(422, error_body(5, "Invalid parameters"));
  EXPECT_EQ(invalid.outcome, TmdbOutcome::kFailed);
  EXPECT_EQ(invalid.problem, "HTTP 422 (status_code 5: Invalid parameters)");
  EXPECT_EQ(classify_tmdb_response(400, error_body(22, "Invalid page")).outcome,
            TmdbOutcome::kFailed);
}

// ---------------------------------------------------------------------------------------------
// Options and the limiter

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(TmdbClientOptions, FromEnvironmentReadsBaseUrlKeyAndToken) {
  {
    ScopedEnv url("TMDB_BASE_URL", "http://127.0.0.1:1/3");
    ScopedEnv key("TMDB_API_KEY", "k");
    ScopedEnv token("TMDB_READ_TOKEN", "t");
    const TmdbClientOptions o = TmdbClientOptions::from_environment();
    EXPECT_EQ(o.base_url, "http://127.0.0.1:1/3");
    EXPECT_EQ(o.api_key, "k");
    EXPECT_EQ(o.read_token, "t");
  }
  ScopedEnv url("TMDB_BASE_URL", nullptr);
  ScopedEnv key("TMDB_API_KEY", nullptr);
  ScopedEnv token("TMDB_READ_TOKEN", nullptr);
  const TmdbClientOptions o = TmdbClientOptions::from_environment();
  EXPECT_EQ(o.base_url, kTmdbPublicBaseUrl);
  EXPECT_TRUE(o.api_key.empty() && o.read_token.empty());
}

TEST(TmdbClientOptions, TheClientRefusesMissingCredentialsABadUrlAndNoAttempts) {
  TmdbClientOptions o;
  try {
    TmdbClient client(o);
    ADD_FAILURE() << "a client without credentials was made";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("TMDB_API_KEY"), std::string::npos) << e.what();
  }
  o.api_key = "k";
  o.base_url = "ftp://example.invalid/3";
  EXPECT_THROW(TmdbClient{o}, ConfigError);
  o.base_url = "http://127.0.0.1:1/3";
  o.max_attempts = 0;
  EXPECT_THROW(TmdbClient{o}, ConfigError);
}

TEST(TmdbRateLimiter, IsNamedTmdbWithBurstOneAndAStretchedPeriod) {
  const auto limiter = make_tmdb_rate_limiter(make_local_rate_limit_store(), "40/10s");
  EXPECT_EQ(limiter->name(), "tmdb");
  EXPECT_EQ(limiter->burst(), 1);
  EXPECT_EQ(limiter->rate().count, 40);
  EXPECT_EQ(limiter->rate().period, 10200ms);
  EXPECT_THROW(make_tmdb_rate_limiter(make_local_rate_limit_store(), "forty"), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// A scripted HTTP server: answers each request on 127.0.0.1 with the next of its responses
// (raw HTTP/1.1, keep-alive) and records the request heads.

std::string http(int status, const std::string& body, const std::string& headers = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
         headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> responses)
      : responses_(responses.begin(), responses.end()) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener_, 8) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::jthread([this](std::stop_token stop) { serve(stop); });
  }
  ~ScriptedServer() {
    thread_.request_stop();
    thread_.join();
    ::close(listener_);
  }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/3"; }
  std::vector<std::string> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  static bool readable(int fd, const std::stop_token& stop) {
    pollfd p{fd, POLLIN, 0};
    while (!stop.stop_requested()) {
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void serve(const std::stop_token& stop) {
    while (readable(listener_, stop)) {
      const int conn = ::accept(listener_, nullptr, nullptr);
      if (conn < 0) continue;
      std::string buffer;
      char chunk[4096];
      while (readable(conn, stop)) {
        const ssize_t n = ::recv(conn, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        buffer.append(chunk, static_cast<std::size_t>(n));
        for (auto end = buffer.find("\r\n\r\n"); end != std::string::npos;
             end = buffer.find("\r\n\r\n")) {
          std::string response;
          {
            std::lock_guard lock(mutex_);
            requests_.push_back(buffer.substr(0, end));
            response = responses_.empty() ? http(500, "{}") : responses_.front();
            if (!responses_.empty()) responses_.pop_front();
          }
          buffer.erase(0, end + 4);
          (void)::send(conn, response.data(), response.size(), MSG_NOSIGNAL);
        }
      }
      ::close(conn);
    }
  }

  int listener_ = -1;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::deque<std::string> responses_;
  std::vector<std::string> requests_;
  std::jthread thread_;
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// 'Fight Club' as gzip compressed it: {"id":550,"title":"Fight Club"}.
const std::string kGzipBody(
    "\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xab\x56\xca\x4c\x51\xb2\x32\x35\x35\xd0\x51\x2a"
    "\xc9\x2c\xc9\x49\x55\xb2\x52\x72\xcb\x4c\xcf\x28\x51\x70\xce\x29\x4d\x52\xaa\x05\x00\x25"
    "\xf5\x0d\xd1\x1f\x00\x00\x00",
    51);

TEST(HttpClient, AsksForCompressedAnswersAndDecodesGzip) {
  ScriptedServer server({http(200, kGzipBody, "Content-Encoding: gzip\r\n")});
  HttpClient client({server.base_url(), 2s, 5s, {}});
  const HttpResponse response = client.request("GET", "/movie/550");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, R"({"id":550,"title":"Fight Club"})");
  ASSERT_EQ(server.requests().size(), 1U);
  EXPECT_TRUE(has(server.requests()[0], "Accept-Encoding: ")) << server.requests()[0];
  EXPECT_TRUE(has(server.requests()[0], "gzip")) << server.requests()[0];
}

TmdbClientOptions options_for(const ScriptedServer& server) {
  TmdbClientOptions o;
  o.base_url = server.base_url();
  o.api_key = "key-123";
  o.backoff = 1ms;
  o.timeout = 5s;
  return o;
}

TEST(TmdbClient, SendsTheKeyInTheQueryOrTheTokenAsABearerHeader) {
  ScriptedServer server({http(200, "{}"), http(200, "{}")});
  TmdbClientOptions o = options_for(server);
  TmdbClient(o).movie(550, "credits");
  o.read_token = "token-456";
  TmdbClient(o).movie(550, "credits");
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_TRUE(has(requests[0],
                  "GET /3/movie/550?language=en-US&append_to_response=credits&api_key=key-123 "))
      << requests[0];
  EXPECT_FALSE(has(requests[0], "Authorization")) << requests[0];
  EXPECT_TRUE(has(requests[1], "Authorization: Bearer token-456")) << requests[1];
  EXPECT_FALSE(has(requests[1], "api_key")) << "the token is preferred: " << requests[1];
}

TEST(TmdbClient, RetriesServerErrorsAndMalformedBodiesThenAnswers) {
  ScriptedServer server({http(500, error_body(11, "Internal error")), http(200, "{\"id\":5"),
                         http(200, R"({"id":550})")});
  TmdbClient client(options_for(server));
  EXPECT_EQ(client.movie(550), R"({"id":550})");
  EXPECT_EQ(client.stats().requests, 3U);
  EXPECT_EQ(client.stats().retries, 2U);
}

TEST(TmdbClient, GivesUpAfterMaxAttemptsNamingThePathAndNeverTheKey) {
  TmdbClientOptions o;
  o.base_url = "http://127.0.0.1:1/3";  // nothing listens on port 1: connection refused
  o.api_key = "key-123";
  o.backoff = 1ms;
  o.max_attempts = 2;
  TmdbClient client(o);
  try {
    client.movie(550, "");
    ADD_FAILURE() << "no error without a server";
  } catch (const TmdbError& e) {
    const std::string message = e.what();
    EXPECT_TRUE(has(message, "GET /movie/550?language=en-US")) << message;
    EXPECT_TRUE(has(message, "failed 2 times")) << message;
    EXPECT_FALSE(has(message, "key-123")) << message;
  }
  EXPECT_EQ(client.stats().requests, 2U);
}

TEST(TmdbClient, RefusedCredentialsThrowAtOnceSayingWhatToSet) {
  ScriptedServer server(
      {http(401, error_body(7, "Invalid API key: You must be granted a valid key."))});
  TmdbClient client(options_for(server));
  try {
    MovieSearch search;
    search.query = "Heat";
    client.search_movie(search);
    ADD_FAILURE() << "no error for a refused key";
  } catch (const TmdbAuthError& e) {
    const std::string message = e.what();
    EXPECT_TRUE(has(message, "Invalid API key")) << message;
    EXPECT_TRUE(has(message, "TMDB_API_KEY") && has(message, "TMDB_READ_TOKEN")) << message;
    EXPECT_FALSE(has(message, "key-123")) << message;
  }
  EXPECT_EQ(server.requests().size(), 1U) << "retrying cannot help";
}

TEST(TmdbClient, NotFoundIsCachedAndACachedAnswerTakesNoLimiterUnit) {
  ScriptedServer server(
      {http(404, error_body(34, "The resource could not be found.")), http(200, R"({"id":550})")});
  TmdbClientOptions o = options_for(server);
  o.cache = std::make_shared<detail::MemoryResponseCache>();
  o.limiter = std::make_shared<RateLimiter>(make_local_rate_limit_store(), "tmdb", Rate{2, 1h}, 2);
  o.on_wait = [] { throw std::runtime_error("the call waited for the rate limiter"); };
  TmdbClient client(o);
  EXPECT_EQ(client.movie(999'999'999), std::nullopt);
  EXPECT_EQ(client.movie(550), R"({"id":550})");
  // Both units of the hour are spent: only the cache can answer now without waiting.
  EXPECT_EQ(client.movie(999'999'999), std::nullopt);
  EXPECT_EQ(client.movie(550), R"({"id":550})");
  EXPECT_EQ(server.requests().size(), 2U);
  const TmdbClientStats stats = client.stats();
  EXPECT_EQ(stats.cache_hits, 2U);
  EXPECT_EQ(stats.not_found, 2U);
  EXPECT_EQ(o.cache->get("GET /movie/999999999?append_to_response=credits%2Ckeywords%2C"
                         "external_ids%2Crelease_dates&language=en-US"),
            "null");
}

}  // namespace
