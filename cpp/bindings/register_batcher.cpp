// cinejobs._core.Batcher and its sinks. A Python callable sink is a BatchSink that takes the GIL
// only for the call; every wait (room in the buffer, a flush, close) runs with the GIL released
// and wakes every 100 ms to run Python's signal handlers, so Ctrl-C and SIGTERM handlers work
// while a producer is held back.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "cinejobs/batch_sinks.hpp"
#include "cinejobs/batcher.hpp"

namespace cinejobs::bindings {
namespace {

using namespace std::chrono_literals;
constexpr auto kSignalCheck = 100ms;

// SinkHandle and DeadLetterHandle carry the library's sinks through Python untouched.
struct SinkHandle {
  std::shared_ptr<BatchSink> sink;
};
struct DeadLetterHandle {
  std::shared_ptr<DeadLetterSink> dead_letter;
};

// PythonSink calls `fn(list[str])`. It returns None (every item delivered) or a list with one
// (outcome, error) pair per item, outcome 0 delivered, 1 retry, 2 failed; cinejobs.batch turns
// the user's callable into this form. An exception retries the whole batch.
class PythonSink final : public BatchSink {
 public:
  PythonSink(py::object fn, std::string name) : fn_(std::move(fn)), name_(std::move(name)) {}
  ~PythonSink() override {
    py::gil_scoped_acquire gil;  // Python objects are released with the GIL held
    fn_ = py::object();
  }
  PythonSink(const PythonSink&) = delete;
  PythonSink& operator=(const PythonSink&) = delete;

  std::string describe() const override { return name_; }

  std::vector<ItemResult> write(std::span<const std::string> items) override {
    py::gil_scoped_acquire gil;
    try {
      py::list batch(items.size());
      for (std::size_t i = 0; i < items.size(); ++i) {
        batch[i] = py::str(items[i].data(), items[i].size());
      }
      const py::object returned = fn_(batch);
      std::vector<ItemResult> results;
      if (returned.is_none()) return results;
      for (const auto& entry : returned) {
        const auto pair = entry.cast<std::pair<int, std::string>>();
        if (pair.first < 0 || pair.first > 2) throw Error("bad outcome code from the Python sink");
        results.push_back({static_cast<ItemOutcome>(pair.first), pair.second});
      }
      return results;
    } catch (py::error_already_set& e) {
      // The exception is the items' error; it is dropped here, with the GIL held.
      throw Error(e.what());
    } catch (const py::cast_error& e) {
      throw Error(std::string("the Python sink returned something other than None or a list of "
                              "(outcome, error) pairs: ") +
                  e.what());
    }
  }

 private:
  py::object fn_;
  std::string name_;
};

// PyBatcher owns the Batcher; it is destroyed with the GIL released, because closing waits for
// the flush thread, which may be waiting for the GIL to call a Python sink.
struct PyBatcher {
  std::unique_ptr<Batcher> batcher;
  ~PyBatcher() {
    py::gil_scoped_release release;
    batcher.reset();
  }
};

// wait_in_slices calls `attempt(slice)` with the GIL released until it returns true or the
// deadline passes, running Python's signal handlers between slices.
template <class Attempt>
bool wait_in_slices(std::optional<double> timeout, Attempt&& attempt) {
  const auto deadline =
      timeout ? std::optional(std::chrono::steady_clock::now() + to_ms(*timeout)) : std::nullopt;
  while (true) {
    auto slice = std::chrono::milliseconds(kSignalCheck);
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      slice = std::clamp(left, 0ms, slice);
    }
    bool done = false;
    {
      py::gil_scoped_release release;
      done = attempt(slice);
    }
    if (done) return true;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return false;
  }
}

py::dict stats_dict(const BatcherStats& s) {
  py::dict d;
  d["added"] = s.added;
  d["delivered"] = s.delivered;
  d["retried"] = s.retried;
  d["dead_lettered"] = s.dead_lettered;
  d["undelivered"] = s.undelivered;
  d["pending"] = s.pending;
  d["batches"] = s.batches;
  return d;
}

}  // namespace

void register_batcher(py::module_& m) {
  py::class_<SinkHandle>(m, "BatchSink");
  py::class_<DeadLetterHandle>(m, "DeadLetter");

  m.def(
      "postgres_sink",
      [](std::string url, std::string table, std::vector<std::string> key, bool copy) {
        PostgresSinkOptions options{std::move(url), std::move(table), std::move(key),
                                    copy ? PostgresWriteMode::kCopy : PostgresWriteMode::kInsert};
        py::gil_scoped_release release;  // looks the table up on the server
        return SinkHandle{make_postgres_sink(std::move(options))};
      },
      py::arg("url"), py::arg("table"), py::arg("key"), py::arg("copy"));
  m.def(
      "elasticsearch_sink",
      [](std::string base_url, std::string index, std::string id_field, double timeout,
         std::vector<std::string> headers) {
        return SinkHandle{
            make_elasticsearch_sink({std::move(base_url), std::move(index), std::move(id_field),
                                     to_ms(timeout), std::move(headers)})};
      },
      py::arg("base_url"), py::arg("index"), py::arg("id_field"), py::arg("timeout"),
      py::arg("headers"));
  m.def("null_sink", [] { return SinkHandle{make_null_sink()}; });
  m.def(
      "jsonl_dead_letter",
      [](std::string path) { return DeadLetterHandle{make_jsonl_dead_letter(std::move(path))}; },
      py::arg("path"));
  m.def(
      "postgres_dead_letter",
      [](std::string url, std::string table) {
        return DeadLetterHandle{make_postgres_dead_letter(std::move(url), std::move(table))};
      },
      py::arg("url"), py::arg("table"));

  py::class_<PyBatcher>(m, "Batcher")
      .def(py::init([](py::object sink, std::size_t max_items, std::size_t max_bytes,
                       double max_age, std::size_t capacity, int max_attempts, double retry_backoff,
                       double retry_backoff_max, std::string name,
                       std::optional<DeadLetterHandle> dead_letter) {
             std::shared_ptr<BatchSink> target;
             if (py::isinstance<SinkHandle>(sink)) {
               target = sink.cast<SinkHandle&>().sink;
             } else if (PyCallable_Check(sink.ptr()) != 0) {
               target = std::make_shared<PythonSink>(
                   sink, "Python sink " + py::repr(sink).cast<std::string>());
             } else {
               throw py::type_error("sink must be a callable or a cinejobs.batch sink, not " +
                                    py::repr(sink.get_type()).cast<std::string>());
             }
             if (max_age < 0 || retry_backoff < 0 || retry_backoff_max < 0) {
               throw ConfigError(
                   "max_age, retry_backoff and retry_backoff_max must not be "
                   "negative");
             }
             BatcherOptions options{max_items,
                                    max_bytes,
                                    to_ms(max_age),
                                    capacity,
                                    max_attempts,
                                    to_ms(retry_backoff),
                                    to_ms(retry_backoff_max),
                                    std::move(name)};
             auto owner = std::make_unique<PyBatcher>();
             owner->batcher =
                 std::make_unique<Batcher>(std::move(target), std::move(options),
                                           dead_letter ? dead_letter->dead_letter : nullptr);
             return owner;
           }),
           py::arg("sink"), py::kw_only(), py::arg("max_items"), py::arg("max_bytes"),
           py::arg("max_age"), py::arg("capacity"), py::arg("max_attempts"),
           py::arg("retry_backoff"), py::arg("retry_backoff_max"), py::arg("name"),
           py::arg("dead_letter"))
      .def(
          "add",
          [](PyBatcher& self, std::string item, bool block, std::optional<double> timeout) {
            Batcher& b = *self.batcher;
            // Room is usually there: try without releasing the GIL (the flush thread never
            // waits for the GIL while it holds the batcher's mutex).
            if (b.offer(item, 0ms)) return;
            const bool added =
                block && wait_in_slices(timeout, [&](std::chrono::milliseconds slice) {
                  return b.offer(item, slice);
                });
            if (!added) {
              throw BatcherFull(b.options().name + " is full (" +
                                std::to_string(b.options().capacity) +
                                " items held): the sink is slower than the producers; wait, "
                                "or raise capacity");
            }
          },
          py::arg("item"), py::arg("block") = true, py::arg("timeout") = std::nullopt)
      .def(
          "flush",
          [](PyBatcher& self, std::optional<double> timeout) {
            Batcher& b = *self.batcher;
            return wait_in_slices(timeout,
                                  [&](std::chrono::milliseconds slice) { return b.flush(slice); });
          },
          py::arg("timeout") = std::nullopt)
      .def("close",
           [](PyBatcher& self) {
             Batcher& b = *self.batcher;
             // Flush in slices first so signals are seen, then close what came meanwhile.
             if (!b.closed()) {
               wait_in_slices(std::nullopt,
                              [&](std::chrono::milliseconds slice) { return b.flush(slice); });
             }
             py::gil_scoped_release release;
             b.close();
           })
      .def_property_readonly("closed", [](const PyBatcher& self) { return self.batcher->closed(); })
      .def("stats", [](const PyBatcher& self) { return stats_dict(self.batcher->stats()); })
      .def("undelivered", [](const PyBatcher& self) {
        py::list out;
        for (const auto& e : self.batcher->undelivered()) {
          py::dict d;
          d["item"] = py::str(e.item);
          d["error"] = py::str(e.error);
          d["at"] = e.at;
          d["attempts"] = e.attempts;
          out.append(d);
        }
        return out;
      });
}

}  // namespace cinejobs::bindings
