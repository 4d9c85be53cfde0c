#include "cinejobs/process_pool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "cinejobs/errors.hpp"
#include "cinejobs/log.hpp"
#include "cinejobs/metrics.hpp"
#include "cinejobs/worker.hpp"
#include "process/frames.hpp"

extern char** environ;

namespace cinejobs {
namespace {

using Clock = std::chrono::steady_clock;
using detail::FrameType;
using detail::UniqueFd;
using std::chrono::milliseconds;

void log_warning(const std::string& message) { log(LogLevel::kWarning, "worker", message); }

// describe_exit says how a child ended, e.g. "signal 11 (SIGSEGV)" or "exit code 1".
std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) +
           (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : std::string());
  }
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  return "unknown status " + std::to_string(status);
}

std::string format_seconds(milliseconds d) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(d.count()) / 1000.0);
  return text;
}

// resident_mb reads a process's resident memory from /proc; 0 when it cannot be read.
std::uint64_t resident_mb(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0;
  std::uint64_t resident = 0;
  if (!(statm >> size >> resident)) return 0;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return resident * page / (1024 * 1024);
}

struct Child;

// A job given to the pool, from submit() until its outcome is handed to `done`.
struct Pending {
  std::shared_ptr<JobContext> ctx;
  ProcessPool::Completion done;
  milliseconds hard_timeout{0};                                // zero: none
  Clock::time_point hard_deadline = Clock::time_point::max();  // set when sent to a child
  bool stop_sent = false;  // the job's stop token was passed on to its child
};

struct Child {
  pid_t pid = -1;
  UniqueFd fd;
  std::mutex write_mutex;  // frames come from handler threads (submit) and the loop thread
  bool ready = false;
  bool exiting = false;  // told to exit (recycled, or the pool stops): takes no job
  int running = 0;
  std::uint64_t jobs_sent = 0;
  std::string recycle_cause;   // "max_jobs" or "max_memory" once it is to be replaced
  std::string killed_for_job;  // the job whose hard time limit killed it
  milliseconds hard_limit{0};  // ...and that limit
  Clock::time_point kill_at = Clock::time_point::max();  // SIGTERM sent: SIGKILL then
  std::unordered_map<std::string, std::shared_ptr<Pending>> pending;
  detail::FrameReader reader;
  Clock::time_point spawned_at;
};

HandlerOutcome failure(std::string type, std::string message) {
  HandlerOutcome out;
  out.failure = JobFailure{std::move(type), std::move(message), ""};
  return out;
}

}  // namespace

struct ProcessPool::State {
  explicit State(ProcessPoolOptions o) : options(std::move(o)) {
    if (options.processes < 1) {
      throw ConfigError("process mode needs at least 1 child process, got " +
                        std::to_string(options.processes));
    }
    if (options.concurrency < 1) {
      throw ConfigError("each child process needs a concurrency of at least 1");
    }
    if (options.command.empty()) {
      throw ConfigError("process mode needs the command that starts a child process");
    }
  }

  ProcessPoolOptions options;
  mutable std::mutex mutex;
  std::condition_variable changed;  // a child became ready or died (start() waits)
  std::vector<std::shared_ptr<Child>> children;
  // Jobs submitted while every child was busy, sent in order as children free up.
  std::deque<std::shared_ptr<Pending>> waiting;
  std::map<std::string, std::uint64_t> restarts;
  int missing = 0;                 // children to spawn (deaths not yet replaced)
  int failed_starts = 0;           // children in a row that died before they were ready
  Clock::time_point respawn_at{};  // backoff after failed starts
  std::string start_failure;       // why a child died before it was ready, during start()
  bool started = false;
  bool stopping = false;
  UniqueFd wake;  // eventfd: the loop's poll wakes on it
  std::jthread loop;

  // ---- spawning (on the loop thread only) ----

  std::shared_ptr<Child> spawn() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      throw Error(std::string("cannot create a socket pair for a child process: ") +
                  std::strerror(errno));
    }
    UniqueFd mine(sv[0]);
    UniqueFd theirs(sv[1]);
    if (theirs.get() == 3) {
      // dup2 onto itself would keep FD_CLOEXEC: move it away from 3 first.
      theirs = UniqueFd(::fcntl(theirs.get(), F_DUPFD_CLOEXEC, 10));
      if (theirs.get() < 0) throw Error("cannot duplicate a child process's socket");
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, theirs.get(), 3);
    // Nothing else of the supervisor's (broker sockets, database files) reaches the child.
    posix_spawn_file_actions_addclosefrom_np(&actions, 4);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t empty;
    sigemptyset(&empty);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr,
        static_cast<short>(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP));
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "CINEJOBS_CHILD_", 15) != 0) env_text.emplace_back(*e);
    }
    env_text.push_back("CINEJOBS_CHILD_FD=3");
    env_text.push_back("CINEJOBS_CHILD_CONCURRENCY=" + std::to_string(options.concurrency));
    env_text.push_back("CINEJOBS_CHILD_SUPERVISOR=" + std::to_string(::getpid()));
    std::vector<char*> envp;
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = options.command;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      throw ConfigError("cannot start a child process '" + options.command[0] +
                        "': " + std::strerror(rc));
    }
    auto child = std::make_shared<Child>();
    child->pid = pid;
    child->fd = std::move(mine);
    child->spawned_at = Clock::now();
    return child;
  }

  // ---- the loop: reads every child's frames, notices deaths, replaces children ----

  void run_loop(std::stop_token stop) {
    std::vector<char> buffer(64 * 1024);
    while (!stop.stop_requested()) {
      std::vector<std::shared_ptr<Child>> watched;
      milliseconds timeout(1000);
      {
        std::unique_lock lock(mutex);
        if (stopping) break;
        spawn_missing_locked(lock);
        watched = children;
        if (missing > 0) timeout = milliseconds(100);
        timeout = std::min(timeout, until_next_check_locked());
      }
      std::vector<pollfd> fds;
      fds.push_back(pollfd{wake.get(), POLLIN, 0});
      for (const auto& c : watched) fds.push_back(pollfd{c->fd.get(), POLLIN, 0});
      const int n = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
      if (n < 0 && errno != EINTR) {
        log_warning(std::string("poll on child processes failed: ") + std::strerror(errno));
      }
      if (n > 0) {
        if ((fds[0].revents & POLLIN) != 0) {
          std::uint64_t value = 0;
          (void)!::read(wake.get(), &value, sizeof(value));
        }
        for (std::size_t i = 1; i < fds.size(); ++i) {
          if (fds[i].revents == 0) continue;
          const auto& child = watched[i - 1];
          const ssize_t got = ::recv(child->fd.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
          if (got > 0) {
            child->reader.feed(buffer.data(), static_cast<std::size_t>(got));
            if (!handle_frames(*child)) on_exit(child, "sent a corrupt message");
          } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
            on_exit(child, "");
          }
        }
      }
      check_start_timeouts();
      check_running_jobs();
      send_waiting();
    }
    shut_down_children();
  }

  // until_next_check_locked: how long the loop may sleep. Jobs in children are looked at every
  // 50 ms (a cancel or a soft timeout to pass on), and at their hard deadline or kill time.
  milliseconds until_next_check_locked() const {
    auto next = Clock::time_point::max();
    bool any = !waiting.empty();
    for (const auto& c : children) {
      next = std::min(next, c->kill_at);
      for (const auto& [id, p] : c->pending) {
        any = true;
        next = std::min(next, p->hard_deadline);
      }
    }
    if (!any && next == Clock::time_point::max()) return milliseconds(1000);
    const auto now = Clock::now();
    const auto wait =
        next > now ? std::chrono::duration_cast<milliseconds>(next - now) : milliseconds::zero();
    return std::clamp(wait, milliseconds(1), milliseconds(50));
  }

  // check_running_jobs passes on stop tokens (cancel, soft timeout, shutdown) to the children
  // running those jobs, stops the child of a job past its hard time limit (SIGTERM, SIGKILL
  // after kill_grace), and ends waiting jobs whose token was set before they were sent.
  void check_running_jobs() {
    std::vector<std::pair<std::shared_ptr<Child>, std::string>> stops;
    std::vector<std::shared_ptr<Pending>> ended;
    {
      std::lock_guard lock(mutex);
      const auto now = Clock::now();
      for (const auto& c : children) {
        if (c->kill_at <= now) {
          ::kill(c->pid, SIGKILL);
          c->kill_at = Clock::time_point::max();
        }
        for (const auto& [id, p] : c->pending) {
          if (!p->stop_sent && p->ctx->stop_reason() != StopReason::kNone) {
            p->stop_sent = true;
            stops.emplace_back(c,
                               detail::encode_frame(
                                   FrameType::kStop,
                                   {id, std::to_string(static_cast<int>(p->ctx->stop_reason()))}));
          }
          if (now >= p->hard_deadline && c->killed_for_job.empty()) {
            c->killed_for_job = id;
            c->hard_limit = p->hard_timeout;
            c->exiting = true;
            ::kill(c->pid, SIGTERM);
            c->kill_at = now + options.kill_grace;
          }
        }
      }
      for (auto it = waiting.begin(); it != waiting.end();) {
        if ((*it)->ctx->cancel_requested()) {
          ended.push_back(std::move(*it));
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& [child, frame] : stops) {
      std::lock_guard write(child->write_mutex);
      detail::send_all(child->fd.get(), frame);
    }
    for (const auto& p : ended) p->done(stopped_before_start(*p->ctx));
  }

  static HandlerOutcome stopped_before_start(JobContext& ctx) {
    try {
      ctx.throw_if_stopped();
    } catch (const std::exception& e) {
      return failure(ctx.stop_reason() == StopReason::kTimeout ? "JobTimeout" : "JobCancelled",
                     e.what());
    }
    return failure("JobCancelled", "job " + ctx.id() + " was stopped before it started");
  }

  // idle_locked: no job is in a child or waiting for one.
  bool idle_locked() const {
    if (!waiting.empty()) return false;
    return std::all_of(children.begin(), children.end(),
                       [](const auto& c) { return c->pending.empty(); });
  }

  // send_waiting gives waiting jobs to children with a free slot, in the order they came.
  void send_waiting() {
    std::vector<std::pair<std::shared_ptr<Child>, std::shared_ptr<Pending>>> sends;
    {
      std::lock_guard lock(mutex);
      while (!waiting.empty()) {
        auto child = pick_locked();
        if (!child) break;
        assign_locked(child, waiting.front());
        sends.emplace_back(std::move(child), std::move(waiting.front()));
        waiting.pop_front();
      }
    }
    for (const auto& [child, p] : sends) send_job(*child, *p);
  }

  void spawn_missing_locked(std::unique_lock<std::mutex>& lock) {
    if (missing == 0 || Clock::now() < respawn_at) return;
    while (missing > 0) {
      lock.unlock();
      std::shared_ptr<Child> child;
      std::string error;
      try {
        child = spawn();
      } catch (const std::exception& e) {
        error = e.what();
      }
      lock.lock();
      if (!child) {
        start_failure = error;
        respawn_at = Clock::now() + backoff_locked();
        log_warning(error + "; trying again");
        changed.notify_all();
        return;
      }
      children.push_back(std::move(child));
      --missing;
    }
  }

  milliseconds backoff_locked() {
    ++failed_starts;
    const int shift = std::min(failed_starts, 7);
    return std::min<milliseconds>(milliseconds(100) * (1 << shift), std::chrono::seconds(10));
  }

  // handle_frames acts on every whole frame read from `child`; false when the stream is corrupt.
  bool handle_frames(Child& child) {
    try {
      while (auto frame = child.reader.next()) handle(child, *frame);
      return true;
    } catch (const std::exception& e) {
      log_warning("child process " + std::to_string(child.pid) + ": " + e.what());
      return false;
    }
  }

  void handle(Child& child, detail::Frame& frame) {
    auto& f = frame.fields;
    switch (frame.type) {
      case FrameType::kReady: {
        std::lock_guard lock(mutex);
        child.ready = true;
        failed_starts = 0;
        changed.notify_all();
        return;
      }
      case FrameType::kProgress: {
        if (f.size() < 4) throw InvalidPayload("a progress message with too few fields");
        std::shared_ptr<Pending> p;
        {
          std::lock_guard lock(mutex);
          auto it = child.pending.find(f[0]);
          if (it != child.pending.end()) p = it->second;
        }
        if (!p) return;  // a late report of a job already settled
        try {
          p->ctx->progress(std::stod(f[1]), std::move(f[2]), std::move(f[3]));
        } catch (const std::exception&) {
          // The token is set (cancelled, timed out): check_running_jobs passes that on.
        }
        return;
      }
      case FrameType::kDone: {
        if (f.size() < 3) throw InvalidPayload("a job outcome with too few fields");
        HandlerOutcome outcome;
        if (f[1] == "ok") {
          outcome.result = std::move(f[2]);
        } else {
          if (f.size() < 6) throw InvalidPayload("a job failure with too few fields");
          outcome.failure = JobFailure{std::move(f[2]), std::move(f[3]), std::move(f[4])};
          if (!f[5].empty()) outcome.retry_at = std::stoll(f[5]);
          if (f.size() > 6) {
            const int action = std::stoi(f[6]);
            if (action >= 0 && action <= static_cast<int>(FailureAction::kCancel)) {
              outcome.action = static_cast<FailureAction>(action);
            }
          }
        }
        std::shared_ptr<Pending> p;
        {
          std::lock_guard lock(mutex);
          auto it = child.pending.find(f[0]);
          if (it == child.pending.end()) return;
          p = std::move(it->second);
          child.pending.erase(it);
          --child.running;
          consider_recycling_locked(child);
        }
        // The worker settles the outcome here, on this thread: no thread waits for it.
        p->done(std::move(outcome));
        send_waiting();
        return;
      }
      default:
        throw InvalidPayload("a message of unknown type " +
                             std::to_string(static_cast<int>(frame.type)));
    }
  }

  // consider_recycling_locked retires a child past its job count or memory cap: it takes no new
  // job and, once idle, is told to exit (its socket's write side closes; it finishes and exits).
  void consider_recycling_locked(Child& child) {
    if (child.recycle_cause.empty() && !child.exiting) {
      if (options.max_memory_mb > 0) {
        const std::uint64_t mb = resident_mb(child.pid);
        if (mb > options.max_memory_mb) {
          child.recycle_cause = "max_memory";
          log_warning("child process " + std::to_string(child.pid) + " uses " + std::to_string(mb) +
                      " MB, over --max-memory-per-child " + std::to_string(options.max_memory_mb) +
                      " MB: replacing it");
        }
      }
      if (!child.recycle_cause.empty()) child.exiting = true;
    }
    if (child.exiting && child.running == 0) ::shutdown(child.fd.get(), SHUT_WR);
  }

  // on_exit reaps a child whose socket closed, settles the jobs it was running and schedules
  // its replacement.
  void on_exit(const std::shared_ptr<Child>& child, const std::string& why) {
    if (!why.empty()) ::kill(child->pid, SIGKILL);
    int status = 0;
    std::string how;
    // The socket closes as the process exits; give it a moment, then make sure.
    const auto until = Clock::now() + std::chrono::seconds(2);
    pid_t r = 0;
    while ((r = ::waitpid(child->pid, &status, WNOHANG)) == 0 && Clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    if (r == 0) {
      ::kill(child->pid, SIGKILL);
      r = ::waitpid(child->pid, &status, 0);
    }
    how = r == child->pid ? describe_exit(status) : std::string("exit (status unknown)");
    if (!why.empty()) how = why + ", then " + how;

    std::vector<std::pair<std::shared_ptr<Pending>, HandlerOutcome>> settled;
    std::unique_lock lock(mutex);
    std::erase(children, child);
    const bool was_ready = child->ready;
    std::string cause;
    if (stopping) {
      cause.clear();
    } else if (!child->recycle_cause.empty()) {
      cause = child->recycle_cause;
    } else if (!child->killed_for_job.empty()) {
      cause = "hard_timeout";
    } else {
      cause = "crashed";
    }
    for (auto& [id, p] : child->pending) {
      HandlerOutcome outcome;
      if (id == child->killed_for_job) {
        outcome = failure("JobTimeout", "job " + id + " ran past its hard time limit of " +
                                            format_seconds(child->hard_limit) +
                                            "; its child process was stopped (" + how + ")");
      } else if (!child->killed_for_job.empty()) {
        outcome = failure("WorkerCrashed",
                          "the child process running this job was killed because job " +
                              child->killed_for_job + " beside it ran past its hard time limit");
      } else {
        outcome = failure("WorkerCrashed", "the child process " + std::to_string(child->pid) +
                                               " running this job died, " + how);
      }
      settled.emplace_back(p, std::move(outcome));
    }
    child->pending.clear();
    if (!stopping) {
      if (!was_ready) {
        start_failure = "child process " + std::to_string(child->pid) + " ended (" + how +
                        ") before it was ready; its output above says why";
        respawn_at = Clock::now() + backoff_locked();
        log_warning(start_failure);
      } else if (cause == "crashed") {
        log_warning("child process " + std::to_string(child->pid) + " died, " + how +
                    "; starting a new one");
      }
      if (was_ready) {
        ++restarts[cause];
        count_child_restart(cause);
      }
      ++missing;
    }
    changed.notify_all();
    lock.unlock();
    for (auto& [p, outcome] : settled) p->done(std::move(outcome));
  }

  void check_start_timeouts() {
    std::vector<std::shared_ptr<Child>> late;
    {
      std::lock_guard lock(mutex);
      const auto now = Clock::now();
      for (const auto& c : children) {
        if (!c->ready && now - c->spawned_at > options.start_timeout) late.push_back(c);
      }
    }
    for (const auto& c : late) {
      on_exit(c, "did not say it was ready within " +
                     std::to_string(options.start_timeout.count() / 1000) + " s");
    }
  }

  void shut_down_children() {
    std::vector<std::shared_ptr<Child>> all;
    {
      std::lock_guard lock(mutex);
      all = children;
    }
    // Idle children exit by themselves once their socket's write side closes (so a child can
    // flush what it buffered); busy ones are past the worker's grace and are terminated.
    for (const auto& c : all) {
      ::shutdown(c->fd.get(), SHUT_WR);
      std::lock_guard lock(mutex);
      if (c->running > 0) ::kill(c->pid, SIGTERM);
    }
    const auto kill_at = Clock::now() + std::max(options.kill_grace, milliseconds(5000));
    for (const auto& c : all) {
      int status = 0;
      pid_t r = 0;
      while ((r = ::waitpid(c->pid, &status, WNOHANG)) == 0 && Clock::now() < kill_at) {
        std::this_thread::sleep_for(milliseconds(5));
      }
      if (r == 0) {
        ::kill(c->pid, SIGKILL);
        ::waitpid(c->pid, &status, 0);
      }
    }
    std::vector<std::shared_ptr<Pending>> left;
    {
      std::lock_guard lock(mutex);
      for (const auto& c : all) {
        for (auto& [id, p] : c->pending) left.push_back(p);
        c->pending.clear();
      }
      for (auto& p : waiting) left.push_back(std::move(p));
      waiting.clear();
      children.clear();
      changed.notify_all();
    }
    for (const auto& p : left) {
      p->done(failure("JobCancelled", "job " + p->ctx->id() + " was stopped: the worker stopped"));
    }
  }

  void wake_loop() const noexcept {
    const std::uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof(one));
  }

  // ---- run: one job in one child ----

  std::shared_ptr<Child> pick_locked() const {
    std::shared_ptr<Child> best;
    for (const auto& c : children) {
      if (!c->ready || c->exiting || c->running >= options.concurrency) continue;
      if (!best || c->running < best->running) best = c;
    }
    return best;
  }

  // assign_locked makes `p` the child's: counted in its slots and its job cap, its hard
  // deadline running from now.
  void assign_locked(const std::shared_ptr<Child>& child, const std::shared_ptr<Pending>& p) {
    ++child->running;
    child->pending[p->ctx->id()] = p;
    if (p->hard_timeout > milliseconds::zero()) p->hard_deadline = Clock::now() + p->hard_timeout;
    // Counted as jobs are sent, not as they end: a child running several at once must not
    // pass its cap with the ones already under way.
    if (options.max_jobs > 0 && ++child->jobs_sent >= options.max_jobs) {
      child->recycle_cause = "max_jobs";
      child->exiting = true;
    }
  }

  void send_job(Child& child, const Pending& p) {
    const std::string frame = detail::encode_frame(FrameType::kRun, {to_json(p.ctx->job())});
    std::lock_guard write(child.write_mutex);
    // A child gone meanwhile is noticed by the loop, which settles the job.
    detail::send_all(child.fd.get(), frame);
  }

  void submit(std::shared_ptr<JobContext> ctx, milliseconds hard_timeout, Completion done) {
    auto p = std::make_shared<Pending>();
    p->ctx = std::move(ctx);
    p->done = std::move(done);
    p->hard_timeout = hard_timeout;
    std::shared_ptr<Child> child;
    bool was_idle = false;
    bool refused = false;
    {
      // One step: a job taken while not stopping is in `waiting` or a child's `pending`, where
      // shut_down_children finds it.
      std::lock_guard lock(mutex);
      refused = stopping;
      if (!refused) {
        was_idle = idle_locked();
        child = pick_locked();
        if (child) {
          assign_locked(child, p);
        } else {
          waiting.push_back(p);  // the loop sends it when a child frees a slot
        }
      }
    }
    if (refused) {  // completed outside the lock: the completion takes the worker's
      p->done(failure("JobCancelled", "job " + p->ctx->id() + " was stopped: the worker stopped"));
      return;
    }
    if (child) send_job(*child, *p);
    // An idle loop sleeps up to a second; from now on it must look at this job's token (and
    // deadline) every 50 ms. A busy loop already does.
    if (was_idle) wake_loop();
  }

  void stop() noexcept {
    {
      std::lock_guard lock(mutex);
      if (!started || stopping) return;
      stopping = true;
      changed.notify_all();
    }
    loop.request_stop();
    wake_loop();
    if (loop.joinable()) loop.join();
  }
};

ProcessPool::ProcessPool(ProcessPoolOptions options)
    : state_(std::make_unique<State>(std::move(options))) {}

ProcessPool::~ProcessPool() { stop(); }

void ProcessPool::start() {
  State& s = *state_;
  {
    std::lock_guard lock(s.mutex);
    if (s.started) return;
    s.started = true;
    s.missing = s.options.processes;
  }
  s.wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (s.wake.get() < 0) throw Error("cannot create an eventfd for the process pool");
  s.loop = std::jthread([&s](std::stop_token st) { s.run_loop(st); });
  std::unique_lock lock(s.mutex);
  const auto deadline = Clock::now() + s.options.start_timeout + std::chrono::seconds(1);
  const bool ok = s.changed.wait_until(lock, deadline, [&] {
    if (!s.start_failure.empty()) return true;
    int ready = 0;
    for (const auto& c : s.children) ready += c->ready ? 1 : 0;
    return ready == s.options.processes;
  });
  if (ok && s.start_failure.empty()) return;
  std::string why =
      s.start_failure.empty() ? "the child processes did not start in time" : s.start_failure;
  lock.unlock();
  stop();
  throw ConfigError("process mode cannot start: " + why);
}

void ProcessPool::submit(std::shared_ptr<JobContext> ctx, std::chrono::milliseconds hard_timeout,
                         Completion done) {
  state_->submit(std::move(ctx), hard_timeout, std::move(done));
}

void ProcessPool::stop() noexcept { state_->stop(); }

ProcessPoolStats ProcessPool::stats() const {
  std::lock_guard lock(state_->mutex);
  ProcessPoolStats s;
  s.children = static_cast<int>(state_->children.size());
  s.restarts = state_->restarts;
  return s;
}

const ProcessPoolOptions& ProcessPool::options() const noexcept { return state_->options; }

}  // namespace cinejobs
