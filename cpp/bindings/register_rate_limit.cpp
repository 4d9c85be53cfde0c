// cinejobs._core.RateLimiter and parse_rate: conversions, the GIL, and the signal checks of a
// long acquire; every decision is RateLimiter's.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>

#include "bindings.hpp"
#include "cinejobs/rate_limiter.hpp"

namespace cinejobs::bindings {

namespace {

double seconds(Micros d) { return static_cast<double>(d.count()) / 1e6; }

std::shared_ptr<RateLimiter> make_limiter(const std::string& store_url, std::string name,
                                          const std::string& rate, int burst) {
  const Rate parsed = parse_rate(rate);
  std::shared_ptr<RateLimitStore> store;
  {
    py::gil_scoped_release release;  // connecting to a shared store is network I/O
    store = open_rate_limit_store(store_url);
  }
  return std::make_shared<RateLimiter>(std::move(store), std::move(name), parsed, burst);
}

}  // namespace

void register_rate_limit(py::module_& m) {
  m.def(
      "parse_rate", [](const std::string& text) { return to_string(parse_rate(text)); },
      py::arg("text"));

  py::class_<RateLimiter, std::shared_ptr<RateLimiter>>(m, "RateLimiter")
      .def(py::init(&make_limiter), py::arg("store"), py::arg("name"), py::arg("rate"),
           py::arg("burst") = 1)
      .def_property_readonly("name", &RateLimiter::name)
      .def_property_readonly("rate", [](const RateLimiter& l) { return to_string(l.rate()); })
      .def_property_readonly("burst", &RateLimiter::burst)
      .def_property_readonly("store_kind",
                             [](const RateLimiter& l) { return std::string(l.store().kind()); })
      .def(
          "try_acquire",
          [](RateLimiter& l, int n, const std::string& key) {
            RateDecision decision;
            {
              py::gil_scoped_release release;  // a store round trip
              decision = l.try_acquire(n, key);
            }
            return py::make_tuple(decision.allowed, seconds(decision.wait));
          },
          py::arg("n") = 1, py::arg("key") = "")
      .def(
          "acquire",
          [](RateLimiter& l, int n, std::optional<double> timeout, const std::string& key) {
            AcquireOptions options;
            if (timeout) options.timeout = to_ms(*timeout);
            // Waits run without the GIL; every wake_every the GIL is taken to let Python run
            // its signal handlers, so Ctrl-C ends a long wait (the exception ends acquire).
            options.on_wake = [] {
              py::gil_scoped_acquire gil;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            };
            py::gil_scoped_release release;
            return l.acquire(n, options, key);
          },
          py::arg("n") = 1, py::arg("timeout") = py::none(), py::arg("key") = "")
      .def(
          "pause_for",
          [](RateLimiter& l, double duration, const std::string& key) {
            py::gil_scoped_release release;  // a store round trip
            l.pause_for(to_ms(duration), key);
          },
          py::arg("seconds"), py::arg("key") = "")
      .def(
          "snooze_delay",
          [](const RateLimiter& l, double wait) {
            const auto micros = Micros(static_cast<std::int64_t>(std::max(0.0, wait) * 1e6));
            return static_cast<double>(l.snooze_delay(micros).count()) / 1e3;
          },
          py::arg("wait"));
}

}  // namespace cinejobs::bindings
