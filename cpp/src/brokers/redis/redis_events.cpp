#include "brokers/redis/redis_events.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cinejobs/errors.hpp"

namespace cinejobs::detail {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A job nobody waited on for this long is unsubscribed.
constexpr auto kIdleWatch = std::chrono::seconds(60);
constexpr auto kSweepEvery = std::chrono::seconds(10);
constexpr std::size_t kChannelsPerCommand = 1000;

}  // namespace

RedisEvents::Pipe::Pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(std::string("cannot create a pipe for Redis job events: ") + std::strerror(errno));
  }
  read = fds[0];
  write = fds[1];
}

RedisEvents::Pipe::~Pipe() {
  ::close(read);
  ::close(write);
}

RedisEvents::RedisEvents(RedisEndpoint endpoint, std::string prefix, MarkWatched mark_watched)
    : endpoint_(std::move(endpoint)),
      channel_prefix_(std::move(prefix) + "ev:"),
      mark_watched_(std::move(mark_watched)) {}

RedisEvents::~RedisEvents() {
  if (thread_.joinable()) {
    thread_.request_stop();
    poke();
    thread_.join();
  }
}

void RedisEvents::poke() noexcept {
  const char byte = 1;
  // A full pipe already holds a wake-up; nothing is lost when this write fails.
  [[maybe_unused]] const auto written = ::write(pipe_.write, &byte, 1);
}

void RedisEvents::wait(const std::string& id, std::chrono::milliseconds max_wait) {
  const auto deadline = Clock::now() + max_wait;
  std::unique_lock lock(mutex_);
  if (!thread_.joinable()) thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
  auto [it, fresh] = entries_.try_emplace(id);
  // References into an unordered_map survive rehashing, and sweep() never erases an entry
  // with waiters.
  Entry& entry = it->second;
  entry.last_used = Clock::now();
  ++entry.waiters;
  if (fresh) {
    to_subscribe_.push_back(id);
    poke();
  }
  if (entry.ready) {
    const std::uint64_t seen = entry.generation;
    cv_.wait_until(lock, deadline, [&] { return entry.pending || entry.generation != seen; });
  } else {
    // The first wait on a job returns once it is watched: the caller then reads the job, and
    // every change after that read is seen by its next wait.
    cv_.wait_until(lock, deadline, [&] { return entry.ready; });
  }
  entry.pending = false;
  --entry.waiters;
  entry.last_used = Clock::now();
}

void RedisEvents::run(std::stop_token stop) {
  std::unique_ptr<RedisConnection> conn;
  milliseconds backoff(0);
  auto last_sweep = Clock::now();
  while (!stop.stop_requested()) {
    try {
      if (!conn) {
        conn = std::make_unique<RedisConnection>(endpoint_);
        backoff = milliseconds(0);
        std::vector<std::string> ids;
        {
          std::lock_guard lock(mutex_);
          for (const auto& [id, entry] : entries_) ids.push_back(id);
          to_subscribe_.clear();
        }
        subscribe(*conn, ids);
      }
      std::vector<std::string> fresh;
      {
        std::lock_guard lock(mutex_);
        fresh.swap(to_subscribe_);
      }
      subscribe(*conn, fresh);

      pollfd fds[2] = {{conn->fd(), POLLIN, 0}, {pipe_.read, POLLIN, 0}};
      if (::poll(fds, 2, 1000) < 0 && errno != EINTR) {
        throw BrokerUnavailable(std::string("poll failed: ") + std::strerror(errno));
      }
      if (fds[1].revents != 0) {
        char drain[64];
        while (::read(pipe_.read, drain, sizeof drain) > 0) {
        }
      }
      if (fds[0].revents != 0) handle(*conn);
      if (Clock::now() - last_sweep > kSweepEvery) {
        sweep(*conn);
        last_sweep = Clock::now();
      }
    } catch (const std::exception&) {
      conn.reset();
      // Events may be lost while disconnected: every waiter returns and reads its job (which
      // reports the outage), and later waits return at once until the subscription is back.
      std::unique_lock lock(mutex_);
      for (auto& [id, entry] : entries_) {
        entry.ready = true;
        entry.pending = true;
        ++entry.generation;
      }
      to_subscribe_.clear();
      cv_.notify_all();
      backoff = std::clamp(backoff * 2, milliseconds(50), milliseconds(1000));
      cv_.wait_for(lock, stop, backoff, [] { return false; });
    }
  }
}

void RedisEvents::subscribe(RedisConnection& conn, const std::vector<std::string>& ids) {
  for (std::size_t start = 0; start < ids.size(); start += kChannelsPerCommand) {
    RedisArgs args;
    args.view("SUBSCRIBE");
    for (std::size_t i = start; i < std::min(ids.size(), start + kChannelsPerCommand); ++i) {
      args.copy(channel_prefix_ + ids[i]);
    }
    conn.append(args, "subscribing to job events");
  }
  if (!ids.empty()) conn.flush("subscribing to job events");
}

void RedisEvents::handle(RedisConnection& conn) {
  redisContext* ctx = conn.context();
  if (redisBufferRead(ctx) != REDIS_OK) {
    conn.mark_broken();
    throw_from_hiredis(ctx, conn.server(), "reading job events");
  }
  std::vector<std::string> confirmed;
  bool changed = false;
  while (true) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(ctx, &raw) != REDIS_OK) {
      conn.mark_broken();
      throw_from_hiredis(ctx, conn.server(), "reading job events");
    }
    if (raw == nullptr) break;
    const RedisReply reply(static_cast<redisReply*>(raw));
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) continue;
    const std::string_view kind = reply_text(reply->element[0]);
    const std::string_view channel = reply_text(reply->element[1]);
    if (!channel.starts_with(channel_prefix_)) continue;
    std::string id(channel.substr(channel_prefix_.size()));
    if (kind == "subscribe") {
      confirmed.push_back(std::move(id));
    } else if (kind == "message") {
      std::lock_guard lock(mutex_);
      const auto it = entries_.find(id);
      if (it != entries_.end()) {
        it->second.pending = true;
        ++it->second.generation;
        changed = true;
      }
    }
  }
  if (changed) cv_.notify_all();
  if (!confirmed.empty()) make_ready(confirmed);
}

void RedisEvents::make_ready(const std::vector<std::string>& ids) {
  try {
    mark_watched_(ids);
  } catch (const std::exception&) {
    // Redis went away meanwhile: the subscription fails next and the waiters poll.
  }
  {
    std::lock_guard lock(mutex_);
    for (const auto& id : ids) {
      const auto it = entries_.find(id);
      if (it == entries_.end()) continue;
      it->second.ready = true;
      it->second.pending = true;
      ++it->second.generation;
    }
  }
  cv_.notify_all();
}

void RedisEvents::sweep(RedisConnection& conn) {
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mutex_);
    const auto cutoff = Clock::now() - kIdleWatch;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.waiters == 0 && it->second.last_used < cutoff) {
        gone.push_back(it->first);
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (std::size_t start = 0; start < gone.size(); start += kChannelsPerCommand) {
    RedisArgs args;
    args.view("UNSUBSCRIBE");
    for (std::size_t i = start; i < std::min(gone.size(), start + kChannelsPerCommand); ++i) {
      args.copy(channel_prefix_ + gone[i]);
    }
    conn.append(args, "unsubscribing from job events");
  }
  if (!gone.empty()) conn.flush("unsubscribing from job events");
}

}  // namespace cinejobs::detail
