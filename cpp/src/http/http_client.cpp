#include "cinejobs/http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <mutex>

#include "cinejobs/redact.hpp"

namespace cinejobs {
namespace {

// curl_global_init is not thread-safe: run it once, before the first handle.
void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct SlistDeleter {
  void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

void append(Slist& list, const std::string& header) {
  curl_slist* grown = curl_slist_append(list.get(), header.c_str());
  if (grown == nullptr) throw HttpError("out of memory building HTTP headers");
  (void)list.release();
  list.reset(grown);
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  static_cast<HttpResponse*>(user)->body.append(data, size * count);
  return size * count;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  const std::string_view line(data, size * count);
  // A new status line (after a redirect or a 100 Continue) starts a new set of headers.
  if (line.starts_with("HTTP/")) response->headers.clear();
  const auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name = trim(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    response->headers.emplace_back(std::move(name), trim(line.substr(colon + 1)));
  }
  return size * count;
}

}  // namespace

struct HttpClient::Handle {
  struct Deleter {
    void operator()(CURL* curl) const noexcept { curl_easy_cleanup(curl); }
  };
  std::unique_ptr<CURL, Deleter> curl;
};

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::optional<std::chrono::seconds> HttpResponse::retry_after() const {
  const auto value = header("retry-after");
  if (!value) return std::nullopt;
  long long seconds = 0;
  const auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), seconds);
  if (ec != std::errc() || end != value->data() + value->size() || seconds < 0) {
    return std::nullopt;
  }
  return std::chrono::seconds(seconds);
}

HttpClient::HttpClient(HttpClientOptions options)
    : options_(std::move(options)), handle_(std::make_unique<Handle>()) {
  if (!options_.base_url.starts_with("http://") && !options_.base_url.starts_with("https://")) {
    throw ConfigError("HTTP base URL '" + redact_url(options_.base_url) +
                      "' must start with http:// or https://");
  }
  while (options_.base_url.ends_with('/')) options_.base_url.pop_back();
  init_curl_once();
  handle_->curl.reset(curl_easy_init());
  if (!handle_->curl) throw HttpError("curl_easy_init failed");
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::request(std::string_view method, std::string_view path,
                                 std::string_view body, const std::vector<std::string>& headers) {
  CURL* curl = handle_->curl.get();
  // Options set by an earlier request must not leak into this one; the connection is kept.
  curl_easy_reset(curl);
  const std::string url = options_.base_url + std::string(path);
  const std::string verb(method);
  Slist list;
  for (const auto& h : options_.headers) append(list, h);
  for (const auto& h : headers) append(list, h);
  // libcurl would otherwise send "Expect: 100-continue" for large bodies and wait for it.
  append(list, "Expect:");

  HttpResponse response;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, verb.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
  // "": advertise every encoding this libcurl can decode (gzip, deflate, ...) and decode the
  // answer; JSON shrinks several times over.
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  // libcurl's defaults, set again because a credential must never go to a server whose
  // certificate was not checked: the peer's chain and that it names this host.
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!body.empty() || verb == "POST" || verb == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  if (verb == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);

  const CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) {
    throw HttpError(verb + " " + redact_url(url) + " got no response (" + curl_easy_strerror(code) +
                    "): is the server running and reachable there?");
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

}  // namespace cinejobs
