#include "bindings.hpp"
#include "cinejobs/celery.hpp"

namespace cinejobs::bindings {

void register_celery(py::module_& m) {
  m.def(
      "open_celery_broker",
      [](std::string broker_url, std::string backend_url, double visibility_timeout,
         double result_expires) {
        CeleryBrokerOptions options;
        options.broker_url = std::move(broker_url);
        options.backend_url = std::move(backend_url);
        options.visibility_timeout = to_ms(visibility_timeout);
        options.result_expires = to_ms(result_expires);
        py::gil_scoped_release release;  // opening connects to the servers
        return open_celery_broker(options);
      },
      py::arg("broker_url"), py::kw_only(), py::arg("backend_url") = "",
      py::arg("visibility_timeout") = 3600.0, py::arg("result_expires") = 86400.0);
}

}  // namespace cinejobs::bindings
