// HttpClient: a small HTTP/1.1 client over libcurl for the services cinejobs talks to
// (Elasticsearch's _bulk API, TMDB): a base URL, default headers and timeouts, one request()
// call returning status, headers and body. Answers may come compressed (it asks for gzip and
// decodes it); TLS certificates and host names are always verified. It reuses its connection
// between calls (keep-alive); one HttpClient serves one thread at a time. HTTP error statuses
// are returned, not thrown: the caller decides what a 429 or a 404 means. Transport failures
// (refused, timed out, reset) throw HttpError.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cinejobs/errors.hpp"

namespace cinejobs {

// HttpError: the request did not get a response (connection refused, timeout, DNS, reset).
class HttpError : public Error {
 public:
  using Error::Error;
};

struct HttpClientOptions {
  std::string base_url;  // "http://127.0.0.1:9200"; request paths are appended to it
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{30000};  // whole request; zero means none
  std::vector<std::string> headers;          // sent with every request: "Name: value"
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  // header returns the first header of that (lower-case) name.
  std::optional<std::string> header(std::string_view name) const;
  // retry_after reads Retry-After given in seconds (an HTTP date is not supported: nullopt).
  std::optional<std::chrono::seconds> retry_after() const;
};

class HttpClient {
 public:
  // Throws ConfigError for a base URL that is not http:// or https://.
  explicit HttpClient(HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // request sends `method` to base_url + path with `body` (when not empty) and the extra
  // headers. Throws HttpError when no response arrives.
  HttpResponse request(std::string_view method, std::string_view path, std::string_view body = {},
                       const std::vector<std::string>& headers = {});

  const HttpClientOptions& options() const noexcept { return options_; }

 private:
  struct Handle;
  HttpClientOptions options_;
  std::unique_ptr<Handle> handle_;
};

}  // namespace cinejobs
