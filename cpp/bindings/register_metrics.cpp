#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "bindings.hpp"
#include "cinejobs/metrics.hpp"
#include "py_worker.hpp"

namespace cinejobs::bindings {

void register_metrics(py::module_& m) {
  py::class_<WorkerMetrics, JobObserver, std::shared_ptr<WorkerMetrics>>(m, "WorkerMetrics")
      .def(py::init<>());

  m.def(
      "render_metrics",
      [](const PyWorker* worker, std::shared_ptr<WorkerMetrics> metrics,
         std::shared_ptr<Broker> broker) {
        std::string text;
        {
          // The broker read is a round trip. The worker, metrics and broker stay alive meanwhile:
          // the caller's arguments hold them, and nothing here touches a Python object.
          py::gil_scoped_release release;
          std::optional<WorkerGauges> gauges;
          if (worker != nullptr && worker->worker) gauges = worker_gauges(*worker->worker);
          text = render_metrics(metrics.get(), gauges, broker.get());
        }
        return text;
      },
      py::arg("worker") = nullptr, py::arg("metrics") = nullptr, py::arg("broker") = nullptr);

  m.def(
      "count_child_restart", [](std::string_view cause) { count_child_restart(cause); },
      py::arg("cause"));
}

}  // namespace cinejobs::bindings
