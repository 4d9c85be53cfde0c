#include "cinejobs/errors.hpp"

#include <utility>

namespace cinejobs {

UniqueConflict::UniqueConflict(std::string unique_key, std::string existing_id)
    : Error("unique key '" + unique_key + "' is held by live job " + existing_id),
      unique_key_(std::move(unique_key)),
      existing_id_(std::move(existing_id)) {}

HandlerError::HandlerError(std::string type, std::string message, std::string traceback,
                           std::optional<std::int64_t> retry_at, FailureAction action)
    : Error(type + ": " + message),
      type_(std::move(type)),
      message_(std::move(message)),
      traceback_(std::move(traceback)),
      retry_at_(retry_at),
      action_(action) {}

}  // namespace cinejobs
