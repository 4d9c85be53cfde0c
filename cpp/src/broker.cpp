#include "cinejobs/broker.hpp"

#include <algorithm>
#include <thread>

#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"

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

}  // namespace cinejobs
