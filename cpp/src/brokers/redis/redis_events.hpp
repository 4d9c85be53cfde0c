// RedisEvents: change notifications of jobs for handles (Broker::wait_for_update), without
// polling. One background thread per broker, started by the first wait, holds a subscription
// connection. A job is watched from the first wait on it: the thread subscribes to P ev:<id>,
// then marks the job watched (watch.lua), and from then on every script that changes the job
// publishes there. The first wait on a job returns as soon as it is watched (a spurious return:
// the caller reads the job again); later waits return at once when an event arrived since the
// previous wait, so no change between a caller's read and its next wait is missed. Jobs nobody
// waited on for a minute are unsubscribed. While Redis is unreachable waits return early (the
// caller's reads report the outage); after a reconnect every watched job counts as changed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "brokers/redis/redis_connection.hpp"

namespace cinejobs::detail {

class RedisEvents {
 public:
  // mark_watched marks jobs watched in the store (runs watch.lua on a pooled connection).
  using MarkWatched = std::function<void(const std::vector<std::string>& ids)>;

  RedisEvents(RedisEndpoint endpoint, std::string prefix, MarkWatched mark_watched);
  ~RedisEvents();
  RedisEvents(const RedisEvents&) = delete;
  RedisEvents& operator=(const RedisEvents&) = delete;

  // wait blocks until job `id` may have changed since the previous wait on it, or max_wait
  // passes. Spurious returns are allowed.
  void wait(const std::string& id, std::chrono::milliseconds max_wait);

 private:
  struct Entry {
    bool ready = false;    // subscribed and marked watched (or Redis unreachable: callers poll)
    bool pending = false;  // an event arrived that no wait has returned for yet
    std::uint64_t generation = 0;
    int waiters = 0;
    std::chrono::steady_clock::time_point last_used;
  };

  void run(std::stop_token stop);
  void poke() noexcept;
  void subscribe(RedisConnection& conn, const std::vector<std::string>& ids);
  void handle(RedisConnection& conn);
  // make_ready marks subscribed jobs watched and lets their waiters return (a job subscribed
  // again after a reconnect may have changed meanwhile).
  void make_ready(const std::vector<std::string>& ids);
  void sweep(RedisConnection& conn);

  // Pipe: a self-pipe; wait() writes to it to wake the thread's poll when it adds a job.
  struct Pipe {
    Pipe();
    ~Pipe();
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    int read = -1;
    int write = -1;
  };

  RedisEndpoint endpoint_;
  std::string channel_prefix_;  // P ev:
  MarkWatched mark_watched_;
  Pipe pipe_;

  std::mutex mutex_;
  std::condition_variable_any cv_;
  std::unordered_map<std::string, Entry> entries_;
  std::vector<std::string> to_subscribe_;
  std::jthread thread_;  // last: stopped before the members it uses go
};

}  // namespace cinejobs::detail
