// Conversions between a Job and the dict form Python sees (field names as in the wire format;
// args, kwargs and result stay JSON text for the Python layer to parse when it needs them).
#pragma once

#include <pybind11/pybind11.h>

#include "cinejobs/job.hpp"

namespace cinejobs::bindings {

pybind11::dict job_to_dict(const Job& job);
// job_from_dict reads the same keys; missing ones keep Job's defaults.
Job job_from_dict(const pybind11::dict& d);

}  // namespace cinejobs::bindings
