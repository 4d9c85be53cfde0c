#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "job_dict.hpp"

namespace cinejobs::bindings {

namespace {

std::shared_ptr<Broker> open(const std::string& url, std::size_t max_payload_bytes,
                             double result_ttl) {
  BrokerOptions options;
  options.max_payload_bytes = max_payload_bytes;
  options.result_ttl = to_ms(result_ttl);
  py::gil_scoped_release release;  // opening touches the filesystem or the network
  return open_broker(url, options);
}

}  // namespace

void register_broker(py::module_& m) {
  py::class_<Broker, std::shared_ptr<Broker>>(m, "Broker")
      .def(py::init(&open), py::arg("url"), py::kw_only(),
           py::arg("max_payload_bytes") = BrokerOptions{}.max_payload_bytes,
           py::arg("result_ttl") = 86400.0)
      .def_property_readonly("url", &Broker::url)
      .def_property_readonly("kind", [](const Broker& b) { return std::string(b.kind()); })
      .def(
          "enqueue",
          [](Broker& b, std::string task, std::string queue, std::string args, std::string kwargs,
             int priority, std::int64_t run_at, int max_attempts,
             std::optional<std::string> unique_key, std::int64_t timeout_ms) {
            Job job = job_from_fields({std::move(task), std::move(queue), std::move(args),
                                       std::move(kwargs), priority, run_at, max_attempts,
                                       std::move(unique_key), timeout_ms});
            py::gil_scoped_release release;
            EnqueueResult r = b.enqueue(job);
            return std::make_pair(std::move(r.id), r.created);
          },
          py::arg("task"), py::arg("queue"), py::arg("args_json"), py::arg("kwargs_json"),
          py::arg("priority"), py::arg("run_at_ms"), py::arg("max_attempts"), py::arg("unique_key"),
          py::arg("timeout_ms"))
      .def(
          "enqueue_many",
          [](Broker& b, std::vector<EnqueueTuple> items) {
            std::vector<Job> jobs;
            jobs.reserve(items.size());
            for (auto& item : items) jobs.push_back(job_from_fields(std::move(item)));
            std::vector<EnqueueResult> results;
            {
              py::gil_scoped_release release;
              results = b.enqueue_many(jobs);
            }
            py::list out(results.size());
            for (std::size_t i = 0; i < results.size(); ++i) {
              out[i] = py::make_tuple(std::move(results[i].id), results[i].created);
            }
            return out;
          },
          py::arg("jobs"))
      .def(
          "get",
          [](Broker& b, const std::string& id) -> py::object {
            std::optional<Job> job;
            {
              py::gil_scoped_release release;
              job = b.get(id);
            }
            if (!job) return py::none();
            return job_to_dict(*job);
          },
          py::arg("job_id"))
      .def(
          "list",
          [](Broker& b, std::optional<std::string> queue, std::optional<std::string> state,
             std::optional<std::string> task, std::size_t limit, std::size_t offset) {
            ListParams params{std::move(queue), std::nullopt, std::move(task), limit, offset};
            if (state) params.state = parse_job_state(*state);
            std::vector<Job> jobs;
            {
              py::gil_scoped_release release;
              jobs = b.list(params);
            }
            py::list out;
            for (const Job& job : jobs) out.append(job_to_dict(job));
            return out;
          },
          py::kw_only(), py::arg("queue") = py::none(), py::arg("state") = py::none(),
          py::arg("task") = py::none(), py::arg("limit") = 100, py::arg("offset") = 0)
      .def("counts",
           [](Broker& b) {
             std::vector<QueueCount> counts;
             {
               py::gil_scoped_release release;
               counts = b.counts();
             }
             py::list out;
             for (const auto& c : counts) {
               out.append(py::make_tuple(c.queue, std::string(to_string(c.state)), c.count));
             }
             return out;
           })
      .def(
          "cancel",
          [](Broker& b, const std::string& id) {
            JobState state;
            {
              py::gil_scoped_release release;
              state = b.cancel(id);
            }
            return std::string(to_string(state));
          },
          py::arg("job_id"))
      .def("recover_expired",
           [](Broker& b) {
             py::gil_scoped_release release;
             RecoverReport r = b.recover_expired();
             return std::make_pair(r.requeued, r.failed);
           })
      .def("prune_finished",
           [](Broker& b) {
             py::gil_scoped_release release;
             return b.prune_finished();
           })
      .def(
          "purge",
          [](Broker& b, const std::string& queue) {
            py::gil_scoped_release release;
            return b.purge(queue);
          },
          py::arg("queue") = "")
      .def(
          "wait_for_update",
          [](Broker& b, const std::string& id, double timeout) {
            // Blocks up to `timeout` and touches no Python object.
            py::gil_scoped_release release;
            b.wait_for_update(id, to_ms(timeout));
          },
          py::arg("job_id"), py::arg("timeout"));

  m.def("new_job_id", &new_job_id);
  m.def("now_ms", &now_ms);
  m.def(
      "job_to_json", [](const py::dict& d) { return to_json(job_from_dict(d)); }, py::arg("job"));
  m.def(
      "job_from_json", [](const std::string& text) { return job_to_dict(job_from_json(text)); },
      py::arg("text"));
}

}  // namespace cinejobs::bindings
