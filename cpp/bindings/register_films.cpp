// The film store and the TMDB pipeline's job shapes, for cinejobs.films. Records cross as JSON
// text (the Python side parses them); everything that touches the database releases the GIL.
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/film_store.hpp"
#include "cinejobs/tmdb_pipeline.hpp"

namespace cinejobs::bindings {

namespace {

py::object text_or_none(const std::string& text) {
  return text.empty() ? py::object(py::none()) : py::object(py::str(text));
}

py::dict film_to_dict(const Film& f) {
  py::dict d;
  d["session_id"] = f.session_id;
  d["position"] = f.position;
  d["input"] = f.input.input;
  d["title"] = f.input.title;
  d["year"] = f.input.year;
  d["original_title"] = f.input.original_title;
  d["kind"] = f.input.kind;
  d["season"] = f.input.season;
  d["episode"] = f.input.episode;
  d["status"] = std::string(to_string(f.status));
  d["tmdb_id"] = f.outcome.tmdb_id;
  d["confidence"] = f.outcome.confidence;
  d["query"] = text_or_none(f.outcome.query);
  d["record"] = text_or_none(f.outcome.record);
  d["error"] = text_or_none(f.outcome.error);
  d["finished_at"] = f.finished_at;
  d["synced_at"] = f.synced_at;
  return d;
}

py::dict session_to_dict(const FilmSession& s) {
  py::dict d;
  d["id"] = s.id;
  d["source"] = s.source;
  d["total"] = s.total;
  d["pending"] = s.pending;
  d["enriched"] = s.enriched;
  d["not_found"] = s.not_found;
  d["failed"] = s.failed;
  d["synced"] = s.synced;
  d["created_at"] = s.created_at;
  d["finished_at"] = s.finished_at;
  d["finished"] = s.finished();
  return d;
}

template <class T, class F>
py::list to_list(const std::vector<T>& items, F convert) {
  py::list out;
  for (const T& item : items) out.append(convert(item));
  return out;
}

// FilmInput from the dict cinejobs.films builds: title required, the rest optional.
FilmInput film_input(const py::dict& d) {
  FilmInput f;
  f.title = d["title"].cast<std::string>();
  f.input = d.contains("input") ? d["input"].cast<std::string>() : f.title;
  if (d.contains("year") && !d["year"].is_none()) f.year = d["year"].cast<int>();
  if (d.contains("original_title") && !d["original_title"].is_none()) {
    f.original_title = d["original_title"].cast<std::string>();
  }
  if (d.contains("kind")) f.kind = d["kind"].cast<std::string>();
  if (d.contains("season") && !d["season"].is_none()) f.season = d["season"].cast<int>();
  if (d.contains("episode") && !d["episode"].is_none()) f.episode = d["episode"].cast<int>();
  return f;
}

}  // namespace

void register_films(py::module_& m) {
  py::class_<FilmStore, std::shared_ptr<FilmStore>>(m, "FilmStore")
      .def(py::init([](const std::string& url) {
             py::gil_scoped_release release;
             return open_film_store(url);
           }),
           py::arg("url"))
      .def_property_readonly("kind", [](const FilmStore& s) { return std::string(s.kind()); })
      .def(
          "create_session",
          [](FilmStore& s, const std::string& source, const py::list& films) {
            std::vector<FilmInput> inputs;
            inputs.reserve(films.size());
            for (const py::handle item : films) inputs.push_back(film_input(item.cast<py::dict>()));
            py::gil_scoped_release release;
            return s.create_session(source, inputs);
          },
          py::arg("source"), py::arg("films"))
      .def(
          "session",
          [](FilmStore& s, const std::string& id) -> py::object {
            std::optional<FilmSession> found;
            {
              py::gil_scoped_release release;
              found = s.session(id);
            }
            return found ? py::object(session_to_dict(*found)) : py::object(py::none());
          },
          py::arg("id"))
      .def(
          "sessions",
          [](FilmStore& s, int limit) {
            std::vector<FilmSession> found;
            {
              py::gil_scoped_release release;
              found = s.sessions(limit);
            }
            return to_list(found, session_to_dict);
          },
          py::arg("limit") = 50)
      .def(
          "film",
          [](FilmStore& s, const std::string& session_id, int position) -> py::object {
            std::optional<Film> found;
            {
              py::gil_scoped_release release;
              found = s.film(session_id, position);
            }
            return found ? py::object(film_to_dict(*found)) : py::object(py::none());
          },
          py::arg("session_id"), py::arg("position"))
      .def(
          "films",
          [](FilmStore& s, const std::string& session_id, std::optional<std::string> status) {
            std::optional<FilmStatus> wanted;
            if (status) wanted = film_status_from(*status);
            std::vector<Film> found;
            {
              py::gil_scoped_release release;
              found = s.films(session_id, wanted);
            }
            return to_list(found, film_to_dict);
          },
          py::arg("session_id"), py::arg("status") = py::none())
      .def(
          "search",
          [](FilmStore& s, const std::string& text, int limit) {
            std::vector<Film> found;
            {
              py::gil_scoped_release release;
              found = s.search(text, limit);
            }
            return to_list(found, film_to_dict);
          },
          py::arg("text"), py::arg("limit") = 50);

  m.def("enrich_unique_key", &enrich_unique_key, py::arg("session_id"), py::arg("position"));
  m.def("enrich_kwargs", &enrich_kwargs, py::arg("session_id"), py::arg("position"));
  m.attr("TMDB_ENRICH_TASK") = std::string(kTmdbEnrichTask);
  m.attr("TMDB_SYNC_TASK") = std::string(kTmdbSyncTask);
  m.attr("TMDB_QUEUE") = std::string(kTmdbQueue);
}

}  // namespace cinejobs::bindings
