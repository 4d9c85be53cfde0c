// Shared declarations of the cinejobs._core module. The bindings decide nothing: they convert
// arguments with the GIL held, release it around everything that blocks, and map errors.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>

namespace cinejobs::bindings {

namespace py = pybind11;

void register_errors(py::module_& m);
void register_broker(py::module_& m);
void register_worker(py::module_& m);
void register_postgres(py::module_& m);
void register_batcher(py::module_& m);
void register_celery(py::module_& m);
void register_tmdb(py::module_& m);
void register_scheduler(py::module_& m);
void register_rate_limit(py::module_& m);
void register_tmdb_client(py::module_& m);
void register_films(py::module_& m);
void register_metrics(py::module_& m);

// Python passes durations as float seconds.
inline std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0));
}

}  // namespace cinejobs::bindings
