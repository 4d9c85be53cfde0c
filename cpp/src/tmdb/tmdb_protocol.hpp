// The pure parts of the TMDB client, kept apart so they can be tested without a server: query
// encoding, cache keys, and what an answer of TMDB's v3 API means (its error bodies are
// {"success": false, "status_code": N, "status_message": "..."}).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cinejobs::detail {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// percent_encode escapes everything but RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~),
// so a space is %20 and UTF-8 bytes are escaped one by one.
std::string percent_encode(std::string_view text);

// query_string writes name=value pairs, percent-encoded, joined by '&', in the given order.
std::string query_string(const QueryParams& params);

// tmdb_cache_key: "GET " + path + "?" + the parameters sorted by name (then value), without
// api_key; just "GET " + path when there are none. The same request always gives the same key,
// whatever the order of its parameters and whichever credential it is sent with.
std::string tmdb_cache_key(std::string_view path, const QueryParams& params);

// The body stored in the cache for "not found": never a JSON object, so never a real body.
inline constexpr std::string_view kNotFoundMarker = "null";

// TmdbErrorBody: what an error body says (status_code 0 when the body is not TMDB's error
// document, e.g. a gateway's HTML page).
struct TmdbErrorBody {
  std::int64_t status_code = 0;
  std::string status_message;
};
TmdbErrorBody read_tmdb_error(std::string_view body);

// json_object_problem returns why `body` is not one JSON object (simdjson's reason, or the kind
// of value it holds), or nullopt when it is one.
std::optional<std::string> json_object_problem(std::string_view body);

enum class TmdbOutcome {
  kOk,           // 2xx with a JSON object: the answer
  kNotFound,     // 404 or status_code 34: a result, cached like one
  kAuthFailed,   // 401 or an authentication status_code: retrying cannot help
  kRateLimited,  // 429 or status_code 25: pause for Retry-After and retry
  kRetry,        // 5xx, 408, or a 2xx whose body is not a JSON object: retry after a backoff
  kFailed,       // any other status (400 invalid page, 422 invalid parameters): do not retry
};

// TmdbVerdict: what to do with an answer, and for anything but kOk a description of it for
// messages: "HTTP 500 (status_code 11: Internal error: ...)".
struct TmdbVerdict {
  TmdbOutcome outcome = TmdbOutcome::kOk;
  std::string problem;
};
TmdbVerdict classify_tmdb_response(long http_status, std::string_view body);

}  // namespace cinejobs::detail
