#include "job_dict.hpp"

#include <pybind11/stl.h>

namespace cinejobs::bindings {

namespace py = pybind11;

py::dict job_to_dict(const Job& job) {
  py::dict d;
  d["id"] = job.id;
  d["task"] = job.task;
  d["queue"] = job.queue;
  d["args"] = job.args;
  d["kwargs"] = job.kwargs;
  d["priority"] = job.priority;
  d["run_at"] = job.run_at;
  d["attempt"] = job.attempt;
  d["max_attempts"] = job.max_attempts;
  d["unique_key"] = job.unique_key ? py::cast(*job.unique_key) : py::none();
  d["timeout_ms"] = job.timeout_ms;
  d["state"] = std::string(to_string(job.state));
  if (job.progress) {
    py::dict p;
    p["fraction"] = job.progress->fraction;
    p["step"] = job.progress->step;
    p["message"] = job.progress->message;
    d["progress"] = p;
  } else {
    d["progress"] = py::none();
  }
  d["result"] = job.result ? py::cast(*job.result) : py::none();
  if (job.error) {
    py::dict e;
    e["type"] = job.error->type;
    e["message"] = job.error->message;
    e["traceback"] = job.error->traceback;
    d["error"] = e;
  } else {
    d["error"] = py::none();
  }
  d["created_at"] = job.created_at;
  d["started_at"] = job.started_at;
  d["finished_at"] = job.finished_at;
  d["cancel_requested"] = job.cancel_requested;
  return d;
}

namespace {
template <typename T>
void read(const py::dict& d, const char* key, T& out) {
  if (d.contains(key) && !d[key].is_none()) out = d[key].cast<T>();
}
}  // namespace

Job job_from_fields(EnqueueTuple fields) {
  Job job;
  auto& [task, queue, args, kwargs, priority, run_at, max_attempts, unique_key, timeout_ms] =
      fields;
  job.task = std::move(task);
  job.queue = std::move(queue);
  job.args = std::move(args);
  job.kwargs = std::move(kwargs);
  job.priority = priority;
  job.run_at = run_at;
  job.max_attempts = max_attempts;
  job.unique_key = std::move(unique_key);
  job.timeout_ms = timeout_ms;
  return job;
}

Job job_from_dict(const py::dict& d) {
  Job job;
  read(d, "id", job.id);
  read(d, "task", job.task);
  read(d, "queue", job.queue);
  read(d, "args", job.args);
  read(d, "kwargs", job.kwargs);
  read(d, "priority", job.priority);
  read(d, "run_at", job.run_at);
  read(d, "attempt", job.attempt);
  read(d, "max_attempts", job.max_attempts);
  if (d.contains("unique_key") && !d["unique_key"].is_none()) {
    job.unique_key = d["unique_key"].cast<std::string>();
  }
  read(d, "timeout_ms", job.timeout_ms);
  if (d.contains("state")) job.state = parse_job_state(d["state"].cast<std::string>());
  if (d.contains("progress") && !d["progress"].is_none()) {
    auto p = d["progress"].cast<py::dict>();
    job.progress = Progress{p["fraction"].cast<double>(), p["step"].cast<std::string>(),
                            p["message"].cast<std::string>()};
  }
  if (d.contains("result") && !d["result"].is_none()) job.result = d["result"].cast<std::string>();
  if (d.contains("error") && !d["error"].is_none()) {
    auto e = d["error"].cast<py::dict>();
    job.error = JobFailure{e["type"].cast<std::string>(), e["message"].cast<std::string>(),
                           e["traceback"].cast<std::string>()};
  }
  read(d, "created_at", job.created_at);
  read(d, "started_at", job.started_at);
  read(d, "finished_at", job.finished_at);
  read(d, "cancel_requested", job.cancel_requested);
  return job;
}

}  // namespace cinejobs::bindings
