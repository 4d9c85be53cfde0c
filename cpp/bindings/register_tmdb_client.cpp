// cinejobs._core.TmdbClient and ResponseCache: conversions, the GIL, and signal checks during
// long waits; every decision is TmdbClient's. Bodies cross as JSON text; the Python layer parses
// them.
#include <pybind11/stl.h>

#include <cmath>

#include "bindings.hpp"
#include "cinejobs/response_cache.hpp"
#include "cinejobs/tmdb_client.hpp"

namespace cinejobs::bindings {

namespace {

std::chrono::seconds whole_seconds(double seconds) {
  return std::chrono::seconds(static_cast<std::int64_t>(std::ceil(seconds)));
}

std::shared_ptr<ResponseCache> open_cache(const std::string& url) {
  py::gil_scoped_release release;  // connecting to a shared store is network I/O
  return open_response_cache(url);
}

// make_client starts from the environment (TMDB_BASE_URL, TMDB_API_KEY, TMDB_READ_TOKEN); what
// Python gives (not None) wins.
std::unique_ptr<TmdbClient> make_client(const std::optional<std::string>& api_key,
                                        const std::optional<std::string>& read_token,
                                        const std::optional<std::string>& base_url,
                                        const std::string& language, double timeout,
                                        double connect_timeout, int max_attempts, double backoff,
                                        const std::optional<std::string>& rate_limit,
                                        const std::string& rate_limit_store,
                                        const std::optional<std::string>& cache, double cache_ttl) {
  TmdbClientOptions options = TmdbClientOptions::from_environment();
  if (api_key) options.api_key = *api_key;
  if (read_token) options.read_token = *read_token;
  if (base_url) options.base_url = *base_url;
  options.language = language;
  options.timeout = to_ms(timeout);
  options.connect_timeout = to_ms(connect_timeout);
  options.max_attempts = max_attempts;
  options.backoff = to_ms(backoff);
  options.cache_ttl = whole_seconds(cache_ttl);
  // Waits run without the GIL; every 100 ms it is taken to let Python run its signal handlers,
  // so Ctrl-C ends a long wait (the exception ends the call).
  options.on_wait = [] {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  };
  {
    py::gil_scoped_release release;  // opening shared stores is network I/O
    if (rate_limit) {
      options.limiter =
          make_tmdb_rate_limiter(open_rate_limit_store(rate_limit_store), *rate_limit);
    }
    if (cache) options.cache = open_response_cache(*cache);
  }
  return std::make_unique<TmdbClient>(std::move(options));
}

py::dict stats_dict(const TmdbClientStats& s) {
  py::dict d;
  d["requests"] = s.requests;
  d["cache_hits"] = s.cache_hits;
  d["retries"] = s.retries;
  d["rate_limited"] = s.rate_limited;
  d["not_found"] = s.not_found;
  d["limiter_wait"] = static_cast<double>(s.limiter_wait.count()) / 1000.0;
  return d;
}

}  // namespace

void register_tmdb_client(py::module_& m) {
  py::class_<ResponseCache, std::shared_ptr<ResponseCache>>(m, "ResponseCache")
      .def(py::init(&open_cache), py::arg("url"))
      .def_property_readonly("kind", [](const ResponseCache& c) { return std::string(c.kind()); })
      .def(
          "get",
          [](ResponseCache& c, const std::string& key) {
            py::gil_scoped_release release;  // a store round trip
            return c.get(key);
          },
          py::arg("key"))
      .def(
          "put",
          [](ResponseCache& c, const std::string& key, const std::string& body, double ttl) {
            py::gil_scoped_release release;  // a store round trip
            c.put(key, body, whole_seconds(ttl));
          },
          py::arg("key"), py::arg("body"), py::arg("ttl"))
      .def("prune", [](ResponseCache& c) {
        py::gil_scoped_release release;  // a store round trip
        return c.prune();
      });

  // Every call below releases the GIL for the whole request: TmdbClient is safe to share between
  // threads, its arguments are C++ copies by then, and the result is converted after the GIL is
  // taken back.
  py::class_<TmdbClient>(m, "TmdbClient")
      .def(py::init(&make_client), py::kw_only(), py::arg("api_key"), py::arg("read_token"),
           py::arg("base_url"), py::arg("language"), py::arg("timeout"), py::arg("connect_timeout"),
           py::arg("max_attempts"), py::arg("backoff"), py::arg("rate_limit"),
           py::arg("rate_limit_store"), py::arg("cache"), py::arg("cache_ttl"))
      .def_property_readonly("base_url", [](const TmdbClient& c) { return c.options().base_url; })
      .def_property_readonly("language", [](const TmdbClient& c) { return c.options().language; })
      .def_property_readonly("auth",
                             [](const TmdbClient& c) {
                               return c.options().read_token.empty() ? "api_key" : "read_token";
                             })
      .def_property_readonly("cache_kind",
                             [](const TmdbClient& c) -> std::optional<std::string> {
                               const auto& cache = c.options().cache;
                               if (!cache) return std::nullopt;
                               return std::string(cache->kind());
                             })
      .def(
          "get",
          [](TmdbClient& c, const std::string& path,
             const std::vector<std::pair<std::string, std::string>>& params) {
            py::gil_scoped_release release;
            return c.get(path, params);
          },
          py::arg("path"), py::arg("params"))
      .def(
          "search_movie",
          [](TmdbClient& c, std::string query, std::optional<int> year,
             std::optional<int> primary_release_year, std::string language, bool include_adult,
             int page) {
            const MovieSearch search{std::move(query),    year,          primary_release_year,
                                     std::move(language), include_adult, page};
            py::gil_scoped_release release;
            return c.search_movie(search);
          },
          py::arg("query"), py::arg("year"), py::arg("primary_release_year"), py::arg("language"),
          py::arg("include_adult"), py::arg("page"))
      .def(
          "search_tv",
          [](TmdbClient& c, std::string query, std::optional<int> first_air_date_year,
             std::string language, bool include_adult, int page) {
            const TvSearch search{std::move(query), first_air_date_year, std::move(language),
                                  include_adult, page};
            py::gil_scoped_release release;
            return c.search_tv(search);
          },
          py::arg("query"), py::arg("first_air_date_year"), py::arg("language"),
          py::arg("include_adult"), py::arg("page"))
      .def(
          "movie",
          [](TmdbClient& c, std::int64_t id, const std::string& append_to_response) {
            py::gil_scoped_release release;
            return c.movie(id, append_to_response);
          },
          py::arg("id"), py::arg("append_to_response"))
      .def(
          "tv",
          [](TmdbClient& c, std::int64_t id, const std::string& append_to_response) {
            py::gil_scoped_release release;
            return c.tv(id, append_to_response);
          },
          py::arg("id"), py::arg("append_to_response"))
      .def(
          "find_by_imdb_id",
          [](TmdbClient& c, const std::string& imdb_id) {
            py::gil_scoped_release release;
            return c.find_by_imdb_id(imdb_id);
          },
          py::arg("imdb_id"))
      .def("images",
           [](TmdbClient& c) {
             TmdbImages images;
             {
               py::gil_scoped_release release;
               images = c.images();
             }
             py::dict d;
             d["secure_base_url"] = images.secure_base_url;
             d["poster_sizes"] = images.poster_sizes;
             return d;
           })
      .def("stats", [](const TmdbClient& c) { return stats_dict(c.stats()); });
}

}  // namespace cinejobs::bindings
