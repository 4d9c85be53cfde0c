// Bindings of schedules: ScheduleTiming (cron, interval, once; validated at construction, so a
// bad expression fails where it is declared), Scheduler (its thread never touches Python), and
// the broker's schedule records as plain tuples.
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/scheduler.hpp"

namespace cinejobs::bindings {

namespace {

// A schedule as the Python layer passes it: (name, task, args_json, kwargs_json, queue,
// priority, max_attempts, timeout_ms, timing, grace seconds or None, catch_up).
using ScheduleTuple =
    std::tuple<std::string, std::string, std::string, std::string, std::string, int, int,
               std::int64_t, ScheduleTiming, std::optional<double>, std::size_t>;

Schedule schedule_from_tuple(ScheduleTuple t) {
  Schedule s;
  s.name = std::move(std::get<0>(t));
  s.task = std::move(std::get<1>(t));
  s.args = std::move(std::get<2>(t));
  s.kwargs = std::move(std::get<3>(t));
  s.queue = std::move(std::get<4>(t));
  s.priority = std::get<5>(t);
  s.max_attempts = std::get<6>(t);
  s.timeout_ms = std::get<7>(t);
  s.timing = std::move(std::get<8>(t));
  if (const auto grace = std::get<9>(t)) s.misfire.grace = to_ms(*grace);
  s.misfire.catch_up = std::get<10>(t);
  return s;
}

py::tuple state_tuple(const ScheduleState& s) {
  return py::make_tuple(s.name, s.last_tick, s.next_tick, s.last_job_id);
}

}  // namespace

void register_scheduler(py::module_& m) {
  py::class_<ScheduleTiming>(m, "ScheduleTiming")
      .def_static("cron", &ScheduleTiming::cron, py::arg("expression"), py::arg("tz") = "UTC")
      .def_static(
          "every",
          [](double seconds, std::int64_t anchor_ms) {
            return ScheduleTiming::every(to_ms(seconds), anchor_ms);
          },
          py::arg("seconds"), py::arg("anchor_ms") = 0)
      .def_static("once", &ScheduleTiming::once, py::arg("at_ms"))
      .def("next_after", &ScheduleTiming::next_after, py::arg("after_ms"))
      .def("describe", &ScheduleTiming::describe);

  py::class_<Scheduler>(m, "Scheduler")
      .def(py::init([](std::shared_ptr<Broker> broker, std::vector<ScheduleTuple> items,
                       double max_sleep, double history_retention, double prune_every,
                       std::string prune_queue) {
             std::vector<Schedule> schedules;
             schedules.reserve(items.size());
             for (auto& item : items) schedules.push_back(schedule_from_tuple(std::move(item)));
             SchedulerOptions options;
             options.max_sleep = to_ms(max_sleep);
             options.history_retention = to_ms(history_retention);
             options.prune_every = to_ms(prune_every);
             options.prune_queue = std::move(prune_queue);
             return std::make_unique<Scheduler>(std::move(broker), std::move(schedules),
                                                std::move(options));
           }),
           py::arg("broker"), py::arg("schedules"), py::kw_only(), py::arg("max_sleep") = 1.0,
           py::arg("history_retention") = 7 * 86400.0, py::arg("prune_every") = 3600.0,
           py::arg("prune_queue") = "default")
      .def("start", &Scheduler::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &Scheduler::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("running", &Scheduler::running)
      .def_property_readonly("last_error", &Scheduler::last_error)
      .def(
          "run_due",
          [](Scheduler& s, std::int64_t now_ms) {
            std::vector<TickResult> results;
            {
              py::gil_scoped_release release;  // broker calls
              results = s.run_due(now_ms);
            }
            py::list out;
            for (const TickResult& r : results) out.append(py::make_tuple(r.last_tick, r.job_id));
            return out;
          },
          py::arg("now_ms"))
      .def_property_readonly("names", [](const Scheduler& s) {
        std::vector<std::string> names;
        for (const Schedule& schedule : s.schedules()) names.push_back(schedule.name);
        return names;
      });

  m.def(
      "schedule_states",
      [](Broker& b) {
        std::vector<ScheduleState> states;
        {
          py::gil_scoped_release release;
          states = b.schedule_states();
        }
        py::list out;
        for (const ScheduleState& s : states) out.append(state_tuple(s));
        return out;
      },
      py::arg("broker"));
  m.def(
      "schedule_history",
      [](Broker& b, const std::string& name, std::size_t limit) {
        std::vector<TickRecord> records;
        {
          py::gil_scoped_release release;
          records = b.schedule_history(name, limit);
        }
        py::list out;
        for (const TickRecord& r : records)
          out.append(py::make_tuple(r.tick, r.job_id, r.enqueued_at));
        return out;
      },
      py::arg("broker"), py::arg("name"), py::arg("limit") = 100);
  m.def(
      "prune_schedule_history",
      [](Broker& b, std::int64_t before_ms) {
        py::gil_scoped_release release;
        return b.prune_schedule_history(before_ms);
      },
      py::arg("broker"), py::arg("before_ms"));
}

}  // namespace cinejobs::bindings
