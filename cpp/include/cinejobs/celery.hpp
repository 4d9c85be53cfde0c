// Celery broker: a Broker over a Celery app's own Redis broker, laid out as kombu's Redis
// transport lays it out, so that `cinejobs worker --celery` consumes the messages producers
// send with .delay() / .apply_async() and runs beside Celery workers on the same queues.
//
// - reserve takes up to N messages from the queue lists into the `unacked` hash and
//   `unacked_index` set in one Lua script (where kombu's consumer would leave them, so a Celery
//   worker's restore_visible treats them as its own); messages that are not JSON (pickle, yaml)
//   or not protocol 2 are put back for a Celery worker, never decoded here.
// - A reserved Job carries: id = the delivery tag (unique per delivery, whereas a retry
//   republishes its task id while the first delivery is still held), task = the Celery task
//   name, queue, attempt = headers.retries + 1, and in `args` the kombu message envelope verbatim
//   (JSON text: headers with the task id, properties, base64 body); the Python glue decodes it.
//   kwargs is "{}".
// - ack ends the delivery (HDEL + ZREM) and, when its result text is not "null", stores that
//   text as the task's result document under celery-task-meta-<task id> in the backend (SET
//   with result_expires, then PUBLISH on the key's channel, as Celery's Redis backend does).
// - snooze (an ETA not yet reached, a global rate limit's refusal), like fail with retry_at,
//   keeps the message in unacked and moves its index score so that a restore puts it back in
//   its queue at that time; fail without retry_at drops the message (Celery's FAILURE or
//   REVOKED state is stored by the Python glue). release puts messages back at once; extend
//   renews leases.
// - A lease is the index score: the delivery is restored when score + visibility_timeout
//   passes. cinejobs scores a delivery now + lease - visibility_timeout and renews it, so a
//   dead cinejobs worker's messages return after its lease, and Celery workers (which restore
//   after visibility_timeout) see the same deadline.
// Not supported, and refused with an Error saying so: enqueue (producers publish through the
// Celery app), get, list, counts, cancel and purge (Celery's own tools read those).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cinejobs/broker.hpp"

namespace cinejobs {

struct CeleryBrokerOptions {
  // The app's broker_url: redis://[[user]:password@]host[:port][/db] or unix:///path?db=N.
  std::string broker_url;
  // The app's result_backend in the same form; empty: results are not stored.
  std::string backend_url;
  // kombu's visibility_timeout (broker_transport_options); Celery's default is one hour.
  std::chrono::milliseconds visibility_timeout = std::chrono::hours(1);
  // Celery's result_expires: results expire this long after they are stored; zero: never.
  std::chrono::milliseconds result_expires = std::chrono::hours(24);
};

// open_celery_broker connects to the broker (and backend) at once: BrokerUnavailable when a
// server cannot be reached, ConfigError for a malformed URL or one that is not Redis.
std::shared_ptr<Broker> open_celery_broker(const CeleryBrokerOptions& options);

}  // namespace cinejobs
