#include "cinejobs/child_process.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "cinejobs/errors.hpp"
#include "process/frames.hpp"

namespace cinejobs {
namespace {

using detail::FrameType;

int env_int(const char* name) {
  const char* text = std::getenv(name);
  int value = 0;
  if (text == nullptr || std::from_chars(text, text + std::strlen(text), value).ec != std::errc{}) {
    throw ConfigError(std::string("this process was not started as a cinejobs child process (") +
                      name + " is not set): run `cinejobs worker --processes N` instead");
  }
  return value;
}

std::string format_double(double value) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, r.ptr);
}

struct Child {
  Child(const std::unordered_map<std::string, Handler>& h, ChildOptions o)
      : handlers(h), options(o) {}

  const std::unordered_map<std::string, Handler>& handlers;
  ChildOptions options;
  std::mutex write_mutex;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::shared_ptr<JobContext>> queue;
  std::unordered_map<std::string, std::shared_ptr<JobContext>> running;
  bool closed = false;

  void send(const std::string& frame) {
    std::lock_guard lock(write_mutex);
    if (!detail::send_all(options.fd, frame)) {
      // The supervisor is gone: nobody can use this child's work any more.
      std::_Exit(0);
    }
  }

  void work() {
    for (;;) {
      std::shared_ptr<JobContext> ctx;
      {
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return !queue.empty() || closed; });
        if (queue.empty()) return;
        ctx = std::move(queue.front());
        queue.pop_front();
      }
      HandlerOutcome outcome;
      auto handler = handlers.find(ctx->job().task);
      if (handler == handlers.end()) {
        outcome.failure =
            JobFailure{"UnknownTask",
                       "the child process has no handler for task '" + ctx->job().task + "'", ""};
      } else {
        outcome = run_handler(handler->second, *ctx);
      }
      if (outcome.failure) {
        const JobFailure& f = *outcome.failure;
        send(detail::encode_frame(
            FrameType::kDone, {ctx->id(), "error", f.type, f.message, f.traceback,
                               outcome.retry_at ? std::to_string(*outcome.retry_at) : std::string(),
                               std::to_string(static_cast<int>(outcome.action))}));
      } else {
        send(detail::encode_frame(FrameType::kDone, {ctx->id(), "ok", outcome.result}));
      }
      std::lock_guard lock(mutex);
      running.erase(ctx->id());
    }
  }

  void handle(detail::Frame& frame) {
    auto& f = frame.fields;
    if (frame.type == FrameType::kRun && f.size() == 1) {
      Job job = job_from_json(f[0]);
      auto ctx = std::make_shared<JobContext>(
          std::move(job), [this](const std::string& id, const Progress& p) {
            send(detail::encode_frame(FrameType::kProgress,
                                      {id, format_double(p.fraction), p.step, p.message}));
            return true;
          });
      {
        std::lock_guard lock(mutex);
        running[ctx->id()] = ctx;
        queue.push_back(std::move(ctx));
      }
      cv.notify_one();
    } else if (frame.type == FrameType::kStop && f.size() == 2) {
      const int reason = std::atoi(f[1].c_str());
      std::lock_guard lock(mutex);
      auto it = running.find(f[0]);
      if (it != running.end() && reason > 0 && reason <= static_cast<int>(StopReason::kLeaseLost)) {
        it->second->request_stop(static_cast<StopReason>(reason));
      }
    } else {
      throw InvalidPayload("an unexpected message from the supervisor (type " +
                           std::to_string(static_cast<int>(frame.type)) + ")");
    }
  }

  void serve() {
    send(detail::encode_frame(FrameType::kReady, {std::to_string(::getpid())}));
    std::vector<std::jthread> threads;
    for (int i = 0; i < options.concurrency; ++i) threads.emplace_back([this] { work(); });
    detail::FrameReader reader;
    std::vector<char> buffer(64 * 1024);
    for (;;) {
      const ssize_t n = ::recv(options.fd, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      reader.feed(buffer.data(), static_cast<std::size_t>(n));
      while (auto frame = reader.next()) handle(*frame);
    }
    {
      std::lock_guard lock(mutex);
      closed = true;
    }
    cv.notify_all();
    // The jthreads join here: jobs already received finish and report before the child exits.
  }
};

}  // namespace

ChildOptions ChildOptions::from_environment() {
  ChildOptions o;
  o.fd = env_int("CINEJOBS_CHILD_FD");
  o.concurrency = env_int("CINEJOBS_CHILD_CONCURRENCY");
  o.supervisor = static_cast<pid_t>(env_int("CINEJOBS_CHILD_SUPERVISOR"));
  if (o.concurrency < 1) throw ConfigError("CINEJOBS_CHILD_CONCURRENCY must be at least 1");
  return o;
}

void run_child(const std::unordered_map<std::string, Handler>& handlers,
               const ChildOptions& options) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (options.supervisor != 0 && ::getppid() != options.supervisor) {
    throw ConfigError("the supervisor of this child process is already gone");
  }
  Child child(handlers, options);
  child.serve();
}

}  // namespace cinejobs
