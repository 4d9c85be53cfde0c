#include <pybind11/stl.h>

#include <tuple>

#include "bindings.hpp"
#include "cinejobs/release_name.hpp"
#include "cinejobs/title_match.hpp"

namespace cinejobs::bindings {

namespace {

// An empty string is "the name did not say": None on the Python side.
py::object text_or_none(const std::string& text) {
  return text.empty() ? py::object(py::none()) : py::object(py::str(text));
}

py::dict release_to_dict(const ReleaseName& r) {
  py::dict d;
  d["title"] = r.title;
  d["year"] = r.year;
  d["season"] = r.season;
  d["episode"] = r.episode;
  d["last_episode"] = r.last_episode;
  d["air_date"] = text_or_none(r.air_date);
  d["resolution"] = text_or_none(r.resolution);
  d["source"] = text_or_none(r.source);
  d["codec"] = text_or_none(r.codec);
  d["audio"] = text_or_none(r.audio);
  d["channels"] = text_or_none(r.channels);
  d["group"] = text_or_none(r.group);
  d["tags"] = r.tags;
  d["kind"] = std::string(to_string(r.kind));
  d["enrichable"] = r.enrichable;
  d["reason"] = text_or_none(r.reason);
  return d;
}

// (id, title, original_title, year, popularity): the fields rank_candidates reads.
using CandidateTuple =
    std::tuple<std::int64_t, std::string, std::string, std::optional<int>, double>;

}  // namespace

void register_tmdb(py::module_& m) {
  // Parsing and matching are pure CPU work on short strings: holding the GIL costs less than
  // releasing it.
  m.def(
      "parse_release_name",
      [](std::string_view name) { return release_to_dict(parse_release_name(name)); },
      py::arg("name"));
  m.def("normalize_title", &normalize_title, py::arg("title"));
  m.def("title_similarity", &title_similarity, py::arg("a"), py::arg("b"));
  m.def(
      "rank_candidates",
      [](std::string title, std::optional<int> year, std::string original_title,
         const std::vector<CandidateTuple>& items) {
        std::vector<TitleCandidate> candidates;
        candidates.reserve(items.size());
        for (const auto& [id, name, original, released, popularity] : items) {
          candidates.push_back(TitleCandidate{id, name, original, released, popularity});
        }
        const auto ranked = rank_candidates(
            TitleQuery{std::move(title), year, std::move(original_title)}, std::move(candidates));
        py::list out;
        for (const auto& r : ranked) {
          const TitleCandidate& c = r.candidate;
          out.append(py::make_tuple(c.id, c.title, c.original_title, c.year, c.popularity,
                                    r.confidence, r.similarity, r.year_score));
        }
        return out;
      },
      py::arg("title"), py::arg("year"), py::arg("original_title"), py::arg("candidates"));
  m.def(
      "search_fallbacks",
      [](std::string title, std::optional<int> year, std::string original_title) {
        std::vector<std::pair<std::string, std::optional<int>>> out;
        for (auto& q :
             search_fallbacks(TitleQuery{std::move(title), year, std::move(original_title)})) {
          out.emplace_back(std::move(q.title), q.year);
        }
        return out;
      },
      py::arg("title"), py::arg("year"), py::arg("original_title"));
}

}  // namespace cinejobs::bindings
