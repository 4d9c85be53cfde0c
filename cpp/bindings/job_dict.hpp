// Conversions between a Job and the dict form Python sees (field names as in the wire format;
// args, kwargs and result stay JSON text for the Python layer to parse when it needs them).
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <tuple>

#include "cinejobs/job.hpp"

namespace cinejobs::bindings {

pybind11::dict job_to_dict(const Job& job);
// job_from_dict reads the same keys; missing ones keep Job's defaults.
Job job_from_dict(const pybind11::dict& d);

// The fields of a new job in the order Python passes them to enqueue, enqueue_many and
// postgres_enqueue_statement: task, queue, args JSON, kwargs JSON, priority, run_at (epoch ms),
// max_attempts, unique_key, timeout_ms.
using EnqueueTuple = std::tuple<std::string, std::string, std::string, std::string, int,
                                std::int64_t, int, std::optional<std::string>, std::int64_t>;
Job job_from_fields(EnqueueTuple fields);

}  // namespace cinejobs::bindings
