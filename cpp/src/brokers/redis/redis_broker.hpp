// RedisBroker: jobs in Redis under one key prefix, shared by any number of workers and producers
// on any number of machines. Every state change is one Lua script (EVALSHA; the key layout and
// invariants are in common.lua), batched: reserve takes up to N jobs from several queues in one
// call, ack, fail, release and extend take whole batches, enqueue_many sends 500 jobs per call,
// pipelined. Idle workers block on BLPOP of per-queue wake-up lists that enqueues and requeues
// push onto, so they wake within a round trip of an enqueue from any process. Handles wait for
// their job's changes on a subscription (wait_for_update). Durability is the server's: run it
// with appendonly yes (appendfsync always) for "an enqueue that returned is never lost".
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "brokers/redis/redis_connection.hpp"
#include "cinejobs/broker.hpp"

namespace cinejobs::detail {

struct RedisConfig {
  RedisEndpoint endpoint;
  // Every key the broker uses begins with it, so several apps can share one database.
  std::string prefix = "cinejobs:";
};

// parse_redis_url reads redis://[[user]:password@]host[:port][/db] and
// unix://[[user]:password@]/path/redis.sock[?db=N] URLs with the query parameters prefix,
// timeout_ms (connect and command timeout) and the common result_ttl_s and max_payload_bytes
// (which update `options`). Throws ConfigError naming what is wrong. (Defined in
// broker_url.cpp, the one place URLs are parsed.)
RedisConfig parse_redis_url(std::string_view url, BrokerOptions& options);

// open_redis_broker connects at once (throwing BrokerUnavailable naming host and port when the
// server cannot be reached, ConfigError when it refuses the credentials) and loads the scripts.
std::shared_ptr<Broker> open_redis_broker(std::string url, RedisConfig config,
                                          BrokerOptions options);

}  // namespace cinejobs::detail
