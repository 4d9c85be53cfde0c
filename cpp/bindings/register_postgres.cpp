#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/migrate.hpp"
#include "cinejobs/postgres.hpp"
#include "job_dict.hpp"

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
        const Job job =
            job_from_fields({std::move(task), std::move(queue), std::move(args), std::move(kwargs),
                             priority, run_at, max_attempts, std::move(unique_key), timeout_ms});
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
