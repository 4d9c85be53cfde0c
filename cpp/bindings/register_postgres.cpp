#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/migrate.hpp"
#include "cinejobs/postgres.hpp"

namespace cinejobs::bindings {

void register_postgres(py::module_& m) {
  m.def(
      "migrate",
      [](const std::string& url) {
        py::gil_scoped_release release;  // migrating talks to the server
        return migrate_broker(url);
      },
      py::arg("url"));
  m.def(
      "postgres_enqueue_statement",
      [](const std::string& schema, std::string task, std::string queue, std::string args,
         std::string kwargs, int priority, std::int64_t run_at, int max_attempts,
         std::optional<std::string> unique_key, std::int64_t timeout_ms,
         std::size_t max_payload_bytes) {
        Job job;
        job.task = std::move(task);
        job.queue = std::move(queue);
        job.args = std::move(args);
        job.kwargs = std::move(kwargs);
        job.priority = priority;
        job.run_at = run_at;
        job.max_attempts = max_attempts;
        job.unique_key = std::move(unique_key);
        job.timeout_ms = timeout_ms;
        BrokerOptions options;
        options.max_payload_bytes = max_payload_bytes;
        SqlStatement statement = postgres_enqueue_statement(schema, job, options);
        py::list params;
        for (auto& p : statement.params) {
          if (std::holds_alternative<std::monostate>(p)) {
            params.append(py::none());
          } else if (const auto* n = std::get_if<std::int64_t>(&p)) {
            params.append(py::int_(*n));
          } else {
            params.append(py::str(std::get<std::string>(p)));
          }
        }
        return py::make_tuple(std::move(statement.sql), params);
      },
      py::arg("schema"), py::arg("task"), py::arg("queue"), py::arg("args_json"),
      py::arg("kwargs_json"), py::arg("priority"), py::arg("run_at_ms"), py::arg("max_attempts"),
      py::arg("unique_key"), py::arg("timeout_ms"), py::kw_only(),
      py::arg("max_payload_bytes") = BrokerOptions{}.max_payload_bytes);
}

}  // namespace cinejobs::bindings
