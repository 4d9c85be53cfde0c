#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/child_process.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/job_context.hpp"
#include "cinejobs/log.hpp"
#include "cinejobs/tmdb_pipeline.hpp"
#include "cinejobs/worker.hpp"
#include "py_worker.hpp"

namespace cinejobs::bindings {

namespace {

// PyRunner keeps a Python callable alive for a C++ handler. C++ may drop it on any thread, so
// its reference is released with the GIL held.
struct PyRunner {
  py::object fn;
  explicit PyRunner(py::object f) : fn(std::move(f)) {}
  PyRunner(const PyRunner&) = delete;
  PyRunner& operator=(const PyRunner&) = delete;
  ~PyRunner() {
    if (!Py_IsInitialized()) {
      (void)fn.release();  // the interpreter is gone; nothing left to free
      return;
    }
    py::gil_scoped_acquire gil;
    fn = py::object();
  }
};

// PersistentThreadState gives a C++ handler thread one Python thread state for its whole life.
// Without it every job would create and destroy a thread state (what a bare
// gil_scoped_acquire does on a thread Python does not know), which costs more than a no-op job.
struct PersistentThreadState {
  PyThreadState* saved = nullptr;
  PyGILState_STATE gil_state{};
  void ensure() {
    if (saved != nullptr) return;
    gil_state = PyGILState_Ensure();  // creates and registers this thread's state
    saved = PyEval_SaveThread();      // ...and drops the GIL again, keeping the state
  }
  ~PersistentThreadState() {
    if (saved == nullptr || !Py_IsInitialized()) return;
    PyEval_RestoreThread(saved);
    PyGILState_Release(gil_state);  // deletes the thread state, with the GIL held
  }
};

// ensure_python_thread_state gives the calling C++ thread its persistent Python thread state.
void ensure_python_thread_state() {
  thread_local PersistentThreadState thread_state;
  thread_state.ensure();
}

// handler_error records a Python exception raised by a runner or key function as the job's
// error, clearing it.
HandlerError handler_error(py::error_already_set& e) {
  std::string type = py::str(e.type().attr("__name__"));
  std::string message = py::str(e.value());
  e.restore();
  PyErr_Clear();
  return HandlerError(std::move(type), std::move(message));
}

// python_rate_limit_key calls key(args_json, kwargs_json) -> str on a handler thread, holding
// the GIL only for the call.
std::function<std::string(const Job&)> python_rate_limit_key(py::object key) {
  auto holder = std::make_shared<PyRunner>(std::move(key));
  return [holder](const Job& job) -> std::string {
    ensure_python_thread_state();
    py::gil_scoped_acquire gil;
    try {
      return holder->fn(job.args, job.kwargs).cast<std::string>();
    } catch (py::error_already_set& e) {
      throw handler_error(e);
    } catch (const py::cast_error& e) {
      throw HandlerError("TypeError",
                         std::string("the rate limit key function returned no str: ") + e.what());
    }
  };
}

FailureAction failure_action(const std::string& name) {
  if (name == "retry") return FailureAction::kRetry;
  if (name == "fail") return FailureAction::kFail;
  if (name == "retried") return FailureAction::kRetried;
  if (name == "snooze") return FailureAction::kSnooze;
  if (name == "cancel") return FailureAction::kCancel;
  throw HandlerError("ValueError", "the task runner asked for failure action '" + name +
                                       "': use retry, fail, retried, snooze or cancel");
}

// Calls the Python runner on a handler thread, holding the GIL only for the call and the
// conversion of its result. The runner returns the result as JSON text, or a tuple
// (type, message, traceback[, retry_at epoch ms | None[, action]]) for a failure it caught.
Handler python_handler(py::object runner) {
  auto holder = std::make_shared<PyRunner>(std::move(runner));
  return [holder](JobContext& ctx) -> std::string {
    ensure_python_thread_state();
    py::gil_scoped_acquire gil;
    try {
      py::object out = holder->fn(ctx.shared_from_this());
      if (py::isinstance<py::str>(out)) return out.cast<std::string>();
      auto failure = out.cast<py::tuple>();
      std::optional<std::int64_t> retry_at;
      if (failure.size() > 3 && !failure[3].is_none()) retry_at = failure[3].cast<std::int64_t>();
      const FailureAction action = failure.size() > 4
                                       ? failure_action(failure[4].cast<std::string>())
                                       : FailureAction::kRetry;
      throw HandlerError(py::str(failure[0]), py::str(failure[1]), py::str(failure[2]), retry_at,
                         action);
    } catch (py::error_already_set& e) {
      // The runner itself failed (it should catch the handler's errors): record what it raised.
      throw handler_error(e);
    } catch (const py::cast_error& e) {
      throw HandlerError("TypeError", std::string("the task runner returned neither a JSON "
                                                  "string nor an error tuple: ") +
                                          e.what());
    }
  };
}

std::string_view reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::kNone:
      return "none";
    case StopReason::kCancelled:
      return "cancelled";
    case StopReason::kTimeout:
      return "timeout";
    case StopReason::kShutdown:
      return "shutdown";
    case StopReason::kLeaseLost:
      return "lease_lost";
  }
  return "none";
}

double to_seconds(std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; }

// make_worker_options starts from the core's defaults and sets only what the caller gave, so
// every default lives in worker.hpp alone.
WorkerOptions make_worker_options(
    std::optional<std::vector<std::string>> queues, std::optional<int> concurrency,
    std::optional<std::map<std::string, int>> queue_concurrency,
    std::optional<std::size_t> max_batch, std::optional<double> lease,
    std::optional<double> heartbeat, std::optional<double> poll_interval,
    std::optional<double> grace, std::optional<double> maintenance_interval,
    std::optional<std::string> worker_id, std::optional<int> processes,
    std::optional<std::vector<std::string>> child_command, std::optional<double> hard_timeout,
    std::optional<double> kill_grace, std::optional<std::uint64_t> max_jobs_per_child,
    std::optional<std::uint64_t> max_memory_per_child) {
  WorkerOptions o;
  auto seconds = [](const char* name, double value) {
    if (!(value >= 0.0) || value > 1e9) {
      throw ConfigError(std::string(name) + " must be a number of seconds >= 0, got " +
                        std::to_string(value));
    }
    return to_ms(value);
  };
  if (queues) o.queues = std::move(*queues);
  if (concurrency) o.concurrency = *concurrency;
  if (queue_concurrency) o.queue_concurrency = std::move(*queue_concurrency);
  if (max_batch) o.max_batch = *max_batch;
  if (lease) o.lease = seconds("lease", *lease);
  if (heartbeat) o.heartbeat = seconds("heartbeat", *heartbeat);
  if (poll_interval) o.poll_interval = seconds("poll_interval", *poll_interval);
  if (grace) o.grace = seconds("grace", *grace);
  if (maintenance_interval) {
    o.maintenance_interval = seconds("maintenance_interval", *maintenance_interval);
  }
  if (worker_id) o.worker_id = std::move(*worker_id);
  if (processes) o.processes = *processes;
  if (child_command) o.child_command = std::move(*child_command);
  if (hard_timeout) o.hard_timeout = seconds("hard_timeout", *hard_timeout);
  if (kill_grace) o.kill_grace = seconds("kill_grace", *kill_grace);
  if (max_jobs_per_child) o.max_jobs_per_child = *max_jobs_per_child;
  if (max_memory_per_child) o.max_memory_per_child_mb = *max_memory_per_child;
  return o;
}

HandlerOptions make_handler_options(double retry_backoff, double retry_backoff_max,
                                    std::shared_ptr<RateLimiter> rate_limiter,
                                    py::object rate_limit_key, double hard_timeout) {
  HandlerOptions options;
  options.retry_backoff = to_ms(retry_backoff);
  options.retry_backoff_max = to_ms(retry_backoff_max);
  options.rate_limiter = std::move(rate_limiter);
  if (!rate_limit_key.is_none()) {
    options.rate_limit_key = python_rate_limit_key(std::move(rate_limit_key));
  }
  if (!(hard_timeout >= 0.0)) throw ConfigError("hard_timeout must be >= 0 seconds");
  options.hard_timeout = to_ms(hard_timeout);
  return options;
}

JobEventKind job_event_kind(const std::string& name) {
  for (JobEventKind kind : {JobEventKind::kStarted, JobEventKind::kSucceeded, JobEventKind::kFailed,
                            JobEventKind::kRetried, JobEventKind::kCancelled,
                            JobEventKind::kSnoozed, JobEventKind::kReleased}) {
    if (to_string(kind) == name) return kind;
  }
  throw ConfigError("no job event kind '" + name +
                    "': use started, succeeded, failed, retried, cancelled, snoozed or released");
}

py::dict event_dict(const JobEvent& e) {
  py::dict d;
  d["kind"] = std::string(to_string(e.kind));
  d["id"] = e.id;
  d["task"] = e.task;
  d["queue"] = e.queue;
  d["attempt"] = e.attempt;
  d["max_attempts"] = e.max_attempts;
  d["at"] = e.at;
  d["duration"] = static_cast<double>(e.duration.count()) / 1e6;
  if (e.error) {
    py::dict error;
    error["type"] = e.error->type;
    error["message"] = e.error->message;
    error["traceback"] = e.error->traceback;
    d["error"] = error;
  } else {
    d["error"] = py::none();
  }
  d["retry_at"] = e.retry_at;
  return d;
}

}  // namespace

void register_worker(py::module_& m) {
  // The core's own messages, for the cinejobs logger (cinejobs.joblog drains them).
  py::class_<LogQueue, std::shared_ptr<LogQueue>>(m, "LogQueue")
      .def(py::init<std::size_t>(), py::arg("capacity") = 10000)
      .def(
          "take",
          [](LogQueue& q, std::size_t max, double timeout) {
            std::vector<LogRecord> records;
            {
              py::gil_scoped_release release;  // a wait
              records = q.take(max, to_ms(timeout));
            }
            py::list out;
            for (const LogRecord& r : records) {
              out.append(py::make_tuple(static_cast<int>(r.level), r.component, r.message, r.at));
            }
            return out;
          },
          py::arg("max") = 1000, py::arg("timeout") = 0.2)
      .def("close", &LogQueue::close)
      .def_property_readonly("dropped", &LogQueue::dropped);
  m.def(
      "install_log_queue",
      [](std::shared_ptr<LogQueue> queue) { install_log_queue(std::move(queue)); },
      py::arg("queue"));

  // The base of what Worker.add_observer takes (JobEventQueue, WorkerMetrics); not made from
  // Python.
  py::class_<JobObserver, std::shared_ptr<JobObserver>>(m, "JobObserver");

  py::class_<JobEventQueue, JobObserver, std::shared_ptr<JobEventQueue>>(m, "JobEventQueue")
      .def(py::init([](std::size_t capacity, std::optional<std::vector<std::string>> names) {
             std::vector<JobEventKind> kinds;
             for (const std::string& name : names.value_or(std::vector<std::string>{})) {
               kinds.push_back(job_event_kind(name));
             }
             return std::make_shared<JobEventQueue>(capacity, kinds);
           }),
           py::arg("capacity") = 100000, py::arg("kinds") = py::none())
      .def(
          "take",
          [](JobEventQueue& q, std::size_t max, double timeout) {
            std::vector<JobEvent> events;
            {
              py::gil_scoped_release release;  // a wait
              events = q.take(max, to_ms(timeout));
            }
            py::list out;
            for (const JobEvent& e : events) out.append(event_dict(e));
            return out;
          },
          py::arg("max") = 1000, py::arg("timeout") = 0.2)
      .def("close", &JobEventQueue::close)
      .def_property_readonly("dropped", &JobEventQueue::dropped);

  py::class_<JobContext, std::shared_ptr<JobContext>>(m, "JobContext")
      .def_property_readonly("id", [](const JobContext& c) { return c.job().id; })
      .def_property_readonly("task", [](const JobContext& c) { return c.job().task; })
      .def_property_readonly("queue", [](const JobContext& c) { return c.job().queue; })
      .def_property_readonly("attempt", [](const JobContext& c) { return c.job().attempt; })
      .def_property_readonly("max_attempts",
                             [](const JobContext& c) { return c.job().max_attempts; })
      .def_property_readonly("args", [](const JobContext& c) { return c.job().args; })
      .def_property_readonly("kwargs", [](const JobContext& c) { return c.job().kwargs; })
      .def_property_readonly("cancel_requested", &JobContext::cancel_requested)
      .def_property_readonly(
          "stop_reason",
          [](const JobContext& c) { return std::string(reason_name(c.stop_reason())); })
      .def("raise_if_stopped", &JobContext::throw_if_stopped)
      .def(
          "progress",
          [](JobContext& c, double fraction, std::string step, std::string message) {
            py::gil_scoped_release release;  // a broker write
            c.progress(fraction, std::move(step), std::move(message));
          },
          py::arg("fraction"), py::arg("step") = "", py::arg("message") = "");

  py::class_<WorkerOptions>(m, "WorkerOptions")
      .def(py::init(&make_worker_options), py::kw_only(), py::arg("queues") = py::none(),
           py::arg("concurrency") = py::none(), py::arg("queue_concurrency") = py::none(),
           py::arg("max_batch") = py::none(), py::arg("lease") = py::none(),
           py::arg("heartbeat") = py::none(), py::arg("poll_interval") = py::none(),
           py::arg("grace") = py::none(), py::arg("maintenance_interval") = py::none(),
           py::arg("worker_id") = py::none(), py::arg("processes") = py::none(),
           py::arg("child_command") = py::none(), py::arg("hard_timeout") = py::none(),
           py::arg("kill_grace") = py::none(), py::arg("max_jobs_per_child") = py::none(),
           py::arg("max_memory_per_child") = py::none())
      .def_readonly("queues", &WorkerOptions::queues)
      .def_readonly("concurrency", &WorkerOptions::concurrency)
      .def_readonly("queue_concurrency", &WorkerOptions::queue_concurrency)
      .def_readonly("max_batch", &WorkerOptions::max_batch)
      .def_property_readonly("lease", [](const WorkerOptions& o) { return to_seconds(o.lease); })
      .def_property_readonly("heartbeat",
                             [](const WorkerOptions& o) { return to_seconds(o.heartbeat); })
      .def_property_readonly("poll_interval",
                             [](const WorkerOptions& o) { return to_seconds(o.poll_interval); })
      .def_property_readonly("grace", [](const WorkerOptions& o) { return to_seconds(o.grace); })
      .def_property_readonly(
          "maintenance_interval",
          [](const WorkerOptions& o) { return to_seconds(o.maintenance_interval); })
      .def_readonly("worker_id", &WorkerOptions::worker_id)
      .def_readonly("processes", &WorkerOptions::processes)
      .def_readonly("child_command", &WorkerOptions::child_command)
      .def_property_readonly("hard_timeout",
                             [](const WorkerOptions& o) { return to_seconds(o.hard_timeout); })
      .def_property_readonly("kill_grace",
                             [](const WorkerOptions& o) { return to_seconds(o.kill_grace); })
      .def_readonly("max_jobs_per_child", &WorkerOptions::max_jobs_per_child)
      .def_readonly("max_memory_per_child", &WorkerOptions::max_memory_per_child_mb);

  py::class_<PyWorker>(m, "Worker")
      .def(py::init([](std::shared_ptr<Broker> broker, WorkerOptions options) {
             auto w = std::make_unique<PyWorker>();
             w->worker = std::make_unique<Worker>(std::move(broker), std::move(options));
             return w;
           }),
           py::arg("broker"), py::arg("options"))
      .def_property_readonly("options", [](const PyWorker& w) { return w.worker->options(); })
      .def(
          "register",
          [](PyWorker& w, std::string task, py::object runner, double retry_backoff,
             double retry_backoff_max, std::shared_ptr<RateLimiter> rate_limiter,
             py::object rate_limit_key, double hard_timeout) {
            if (!PyCallable_Check(runner.ptr())) {
              throw ConfigError("the runner of task '" + task + "' is not callable");
            }
            w.worker->register_handler(
                std::move(task), python_handler(std::move(runner)),
                make_handler_options(retry_backoff, retry_backoff_max, std::move(rate_limiter),
                                     std::move(rate_limit_key), hard_timeout));
          },
          py::arg("task"), py::arg("runner"), py::kw_only(), py::arg("retry_backoff") = 1.0,
          py::arg("retry_backoff_max") = 600.0, py::arg("rate_limiter") = nullptr,
          py::arg("rate_limit_key") = py::none(), py::arg("hard_timeout") = 0.0)
      .def(
          "register_child_task",
          [](PyWorker& w, std::string task, double retry_backoff, double retry_backoff_max,
             std::shared_ptr<RateLimiter> rate_limiter, py::object rate_limit_key,
             double hard_timeout) {
            w.worker->register_child_task(
                std::move(task),
                make_handler_options(retry_backoff, retry_backoff_max, std::move(rate_limiter),
                                     std::move(rate_limit_key), hard_timeout));
          },
          py::arg("task"), py::kw_only(), py::arg("retry_backoff") = 1.0,
          py::arg("retry_backoff_max") = 600.0, py::arg("rate_limiter") = nullptr,
          py::arg("rate_limit_key") = py::none(), py::arg("hard_timeout") = 0.0)
      .def(
          "add_observer",
          [](PyWorker& w, std::shared_ptr<JobObserver> observer) {
            w.worker->add_observer(std::move(observer));
          },
          py::arg("observer"))
      .def("register_builtins", [](PyWorker& w) { register_builtin_handlers(*w.worker); })
      .def(
          "register_tmdb",
          [](PyWorker& w, std::optional<std::string> rate, std::optional<std::string> film_store,
             std::optional<std::string> cache, std::optional<std::string> rate_limit_store,
             std::optional<std::string> sync_url) {
            // The environment's settings (TMDB_*, CINEJOBS_FILM_STORE, CINEJOBS_SYNC_URL), then
            // what the caller gave.
            TmdbPipelineOptions options = TmdbPipelineOptions::from_environment();
            if (rate) options.rate = *rate;
            if (film_store) options.film_store_url = *film_store;
            if (cache) options.cache_url = *cache;
            if (rate_limit_store) options.rate_limit_store = *rate_limit_store;
            if (sync_url) options.sync_url = *sync_url;
            register_tmdb_handlers(*w.worker, std::move(options));
          },
          py::kw_only(), py::arg("rate") = py::none(), py::arg("film_store") = py::none(),
          py::arg("cache") = py::none(), py::arg("rate_limit_store") = py::none(),
          py::arg("sync_url") = py::none())
      .def(
          "has_handler",
          [](const PyWorker& w, const std::string& task) { return w.worker->has_handler(task); },
          py::arg("task"))
      .def("start",
           [](PyWorker& w) {
             py::gil_scoped_release release;
             w.worker->start();
           })
      .def(
          "stop",
          [](PyWorker& w, double grace) {
            StopReport report;
            {
              // Handler threads need the GIL to finish Python jobs while stop waits for them.
              py::gil_scoped_release release;
              report = w.worker->stop(grace < 0 ? std::chrono::milliseconds(-1) : to_ms(grace));
            }
            py::dict d;
            d["finished"] = report.finished;
            d["returned"] = report.returned;
            d["clean"] = report.clean;
            return d;
          },
          py::arg("grace") = -1.0)
      .def_property_readonly("running", [](const PyWorker& w) { return w.worker->running(); })
      .def("stats", [](const PyWorker& w) {
        WorkerStats s = w.worker->stats();
        py::dict d;
        d["reserved"] = s.reserved;
        d["succeeded"] = s.succeeded;
        d["failed"] = s.failed;
        d["retried"] = s.retried;
        d["cancelled"] = s.cancelled;
        d["released"] = s.released;
        d["lost"] = s.lost;
        d["snoozed"] = s.snoozed;
        d["running"] = s.running;
        d["slots"] = s.slots;
        d["children"] = s.children;
        d["child_restarts"] = s.child_restarts;
        return d;
      });

  // run_child serves the supervisor from a child process (cinejobs._child): the runners, by
  // task name, are called like a worker's, on the child's own handler threads.
  m.def(
      "run_child",
      [](const std::map<std::string, py::object>& runners) {
        std::unordered_map<std::string, Handler> handlers;
        for (const auto& [task, runner] : runners) {
          if (!PyCallable_Check(runner.ptr())) {
            throw ConfigError("the runner of task '" + task + "' is not callable");
          }
          handlers.emplace(task, python_handler(runner));
        }
        const ChildOptions options = ChildOptions::from_environment();
        {
          py::gil_scoped_release release;  // the child's threads take it per job
          run_child(handlers, options);
        }
        handlers.clear();  // drops the runners with the GIL held
      },
      py::arg("runners"));
}

}  // namespace cinejobs::bindings
