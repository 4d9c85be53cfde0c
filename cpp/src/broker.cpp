#include "cinejobs/broker.hpp"

#include <algorithm>
#include <thread>

#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/log.hpp"

namespace cinejobs {

void Broker::wait_for_update(const std::string& /*id*/, std::chrono::milliseconds max_wait) {
  std::this_thread::sleep_for(std::min(max_wait, std::chrono::milliseconds(20)));
}

void validate_new_job(const Job& job, const BrokerOptions& options) {
  if (job.task.empty()) throw InvalidPayload("job has an empty task name");
  if (job.queue.empty()) throw InvalidPayload("job for task '" + job.task + "' has an empty queue");
  if (job.max_attempts < 1) {
    throw InvalidPayload("job for task '" + job.task + "' has max_attempts " +
                         std::to_string(job.max_attempts) + "; it must be at least 1");
  }
  if (job.timeout_ms < 0) {
    throw InvalidPayload("job for task '" + job.task + "' has a negative timeout");
  }
  if (job.unique_key && job.unique_key->empty()) {
    throw InvalidPayload("job for task '" + job.task + "' has an empty unique key");
  }
  const std::size_t payload = job.args.size() + job.kwargs.size();
  if (payload > options.max_payload_bytes) {
    throw InvalidPayload("arguments of task '" + job.task + "' are " + std::to_string(payload) +
                         " bytes of JSON, over the broker's limit of " +
                         std::to_string(options.max_payload_bytes) +
                         " bytes: pass a reference (an id, a path) instead of the data");
  }
  // Most jobs carry no arguments or no kwargs: skip parsing the two literal empty documents.
  if (job.args != "[]" &&
      json_kind(job.args, "args of task '" + job.task + "'") != JsonKind::kArray) {
    throw InvalidPayload("args of task '" + job.task + "' must be a JSON array");
  }
  if (job.kwargs != "{}" &&
      json_kind(job.kwargs, "kwargs of task '" + job.task + "'") != JsonKind::kObject) {
    throw InvalidPayload("kwargs of task '" + job.task + "' must be a JSON object");
  }
}

std::optional<std::string> stored_job_problem(const Job& job) {
  if (job.task.empty()) return "its task name is empty";
  // The checks validate_new_job made at enqueue, answered as a value: a job stored through a
  // broker passes them, so only a document damaged in the store fails. The literal empty
  // documents need no parser.
  try {
    if (job.args != "[]" && json_kind(job.args, "field 'args'") != JsonKind::kArray) {
      return "field 'args' is not a JSON array";
    }
    if (job.kwargs != "{}" && json_kind(job.kwargs, "field 'kwargs'") != JsonKind::kObject) {
      return "field 'kwargs' is not a JSON object";
    }
  } catch (const InvalidPayload& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

JobFailure undecodable_failure(std::string_view id, std::string_view problem) {
  return JobFailure{"InvalidPayload",
                    "job " + std::string(id) + " cannot be decoded from the store (" +
                        std::string(problem) + "); it failed without running",
                    ""};
}

Fail undecodable_fail(const Job& job, std::string_view problem) {
  Fail fail{{job.id, job.lease_token}, undecodable_failure(job.id, problem), std::nullopt};
  log(LogLevel::kWarning, "broker", fail.error.message);
  return fail;
}

std::vector<Fail> take_undecodable(std::vector<Job>& jobs) {
  std::vector<Fail> fails;
  std::erase_if(jobs, [&](const Job& job) {
    const auto problem = stored_job_problem(job);
    if (problem) fails.push_back(undecodable_fail(job, *problem));
    return problem.has_value();
  });
  return fails;
}

}  // namespace cinejobs
