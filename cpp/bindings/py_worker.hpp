// PyWorker: the object behind _core.Worker (register_worker.cpp), shared with the bindings that
// read a worker (register_metrics.cpp).
#pragma once

#include <memory>

#include "bindings.hpp"
#include "cinejobs/worker.hpp"

namespace cinejobs::bindings {

// PyWorker owns a Worker. Destroying a Worker joins threads that may need the GIL to finish a
// Python handler, so the GIL is released first.
struct PyWorker {
  std::unique_ptr<Worker> worker;
  PyWorker() = default;
  PyWorker(const PyWorker&) = delete;
  PyWorker& operator=(const PyWorker&) = delete;
  ~PyWorker() {
    py::gil_scoped_release release;
    worker.reset();
  }
};

}  // namespace cinejobs::bindings
