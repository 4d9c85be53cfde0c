// The Celery broker (cinejobs/celery.hpp): kombu's Redis layout, driven by the scripts in this
// folder, and Celery's Redis result backend keys.
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "brokers/redis/redis_broker.hpp"
#include "brokers/redis/redis_connection.hpp"
#include "cinejobs/celery.hpp"
#include "cinejobs/detail/embedded_sql.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/log.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs::detail {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kUnacked = "unacked";
constexpr std::string_view kUnackedIndex = "unacked_index";
constexpr std::string_view kResultKeyPrefix = "celery-task-meta-";
// kombu's priority lists of a queue after the plain one: <queue>\x06\x16<step>.
constexpr std::string_view kPrioritySeparator = "\x06\x16";
constexpr int kPrioritySteps[] = {3, 6, 9};
// Deliveries settled per script call (pipelined), and restored per recovery call.
constexpr std::size_t kSettleChunk = 1000;
constexpr std::int64_t kRestoreBudget = 1000;
// An idle worker looks for messages this often: producers push to kombu's lists and signal
// nothing a waiter could block on without taking the message.
constexpr milliseconds kIdlePoll(10);
// After a reserve that found only messages to refuse (pickle, protocol 1), wait this long
// before looking again, so a queue holding nothing else is not spun through.
constexpr milliseconds kRefusedPause(500);
constexpr std::size_t kMaxIdleConnections = 8;
// Every Celery delivery may be deferred (an ETA) any number of times; Celery, not the attempt
// count, decides when a task stops retrying.
constexpr int kUnlimitedAttempts = 1 << 30;

enum Script : std::size_t { kReserve, kAck, kTouch, kRestore, kScriptCount };

std::vector<RedisScript> make_scripts() {
  const std::string common(embedded::kCeleryCommonLua);
  const std::pair<std::string_view, std::string_view> bodies[] = {
      {"celery_reserve.lua", embedded::kCeleryReserveLua},
      {"celery_ack.lua", embedded::kCeleryAckLua},
      {"celery_touch.lua", embedded::kCeleryTouchLua},
      {"celery_restore.lua", embedded::kCeleryRestoreLua}};
  static_assert(std::size(bodies) == kScriptCount);
  std::vector<RedisScript> scripts;
  for (const auto& [name, body] : bodies) {
    scripts.push_back(RedisScript{std::string(name), common + "\n" + std::string(body), {}});
  }
  return scripts;
}

std::string seconds_text(double seconds) {
  char buffer[40];
  const int n = std::snprintf(buffer, sizeof buffer, "%.6f", seconds);
  return std::string(buffer, static_cast<std::size_t>(n));
}

double epoch_seconds(EpochMs ms) { return static_cast<double>(ms) / 1000.0; }

RedisEndpoint redis_endpoint(const std::string& url, std::string_view what) {
  const auto scheme = std::string_view(url).substr(0, url.find("://"));
  if (url.find("://") == std::string::npos || (scheme != "redis" && scheme != "unix")) {
    throw ConfigError("the Celery app's " + std::string(what) + " '" + redact_url(url) +
                      "' is not a Redis URL: cinejobs worker --celery reads Celery's Redis "
                      "transport and Redis result backend (redis://host:port/db)");
  }
  BrokerOptions ignored;
  return parse_redis_url(url, ignored).endpoint;
}

// Delivery: what a lease token stands for. The job's id is the delivery tag: a task id is not
// unique among held messages (a retry republishes its task id while the first delivery is
// still held).
struct Delivery {
  std::string tag;
  std::string task_id;
};

class CeleryBroker final : public Broker {
 public:
  explicit CeleryBroker(const CeleryBrokerOptions& options)
      : url_(options.broker_url),
        options_(options),
        scripts_(make_scripts()),
        broker_(
            redis_endpoint(options.broker_url, "broker_url"),
            [this](RedisConnection& conn) { conn.load_all(scripts_); }, kMaxIdleConnections) {
    if (!options.backend_url.empty()) {
      backend_.emplace(redis_endpoint(options.backend_url, "result_backend"), nullptr,
                       kMaxIdleConnections);
      auto conn = backend_->lease();
    }
    // Connect now, so an unreachable server fails the open and the scripts' SHA1s are known
    // before the broker is shared between threads.
    auto conn = broker_.lease();
  }

  std::string_view kind() const noexcept override { return "celery"; }
  const std::string& url() const noexcept override { return url_; }

  EnqueueResult enqueue(const Job&) override { throw unsupported("enqueue"); }
  std::vector<EnqueueResult> enqueue_many(std::span<const Job>) override {
    throw unsupported("enqueue");
  }

  std::vector<Job> reserve(const ReserveParams& params) override {
    if (params.queues.empty() || params.max_jobs == 0) return {};
    const std::string score =
        seconds_text(epoch_seconds(now_ms() + params.lease.count()) - visibility_seconds());
    auto conn = broker_.lease();
    RedisArgs args = script_args(scripts_[kReserve]);
    args.view(kUnacked)
        .view(kUnackedIndex)
        .view(score)
        .number(static_cast<std::int64_t>(params.max_jobs));
    for (const auto& queue : params.queues) args.view(queue);
    const RedisReply reply = conn->eval(scripts_[kReserve], args);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      throw Error("unexpected reply from the Celery reserve script");
    }
    const std::int64_t refused = reply_int(reply->element[0]);
    const redisReply& rows = *reply->element[1];
    if (refused > 0) report_refused(refused);
    refused_only_ = refused > 0 && rows.elements == 0;
    std::vector<Job> jobs;
    jobs.reserve(rows.elements);
    const EpochMs now = now_ms();
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < rows.elements; ++i) {
      const redisReply& row = *rows.element[i];
      if (row.type != REDIS_REPLY_ARRAY || row.elements != 6) {
        throw Error("unexpected row from the Celery reserve script");
      }
      Job job;
      job.id = std::string(reply_text(row.element[0]));
      job.task = std::string(reply_text(row.element[3]));
      job.queue = std::string(reply_text(row.element[1]));
      job.attempt = static_cast<int>(reply_int(row.element[4])) + 1;
      job.max_attempts = kUnlimitedAttempts;
      job.args = std::string(reply_text(row.element[5]));
      job.state = JobState::kRunning;
      job.created_at = now;
      job.started_at = now;
      job.lease_token = ++last_token_;
      deliveries_.emplace(job.lease_token,
                          Delivery{job.id, std::string(reply_text(row.element[2]))});
      jobs.push_back(std::move(job));
    }
    return jobs;
  }

  std::size_t ack(std::span<const Ack> acks) override {
    std::vector<std::pair<const Ack*, Delivery>> held;
    for (const Ack& a : acks) {
      if (auto delivery = take_delivery(a.lease)) held.emplace_back(&a, std::move(*delivery));
    }
    std::vector<std::string_view> tags;
    for (const auto& [a, delivery] : held) tags.push_back(delivery.tag);
    const std::vector<bool> owned = run_per_tag(kAck, {}, tags);
    std::vector<std::pair<std::string_view, std::string_view>> results;  // task id, document
    std::size_t count = 0;
    for (std::size_t i = 0; i < held.size(); ++i) {
      if (!owned[i]) continue;
      ++count;
      if (held[i].first->result != "null") {
        results.emplace_back(held[i].second.task_id, held[i].first->result);
      }
    }
    store_results(results);
    return count;
  }

  std::size_t fail(std::span<const Fail> fails) override {
    std::vector<std::string> dropped;
    std::size_t count = 0;
    for (const Fail& f : fails) {
      auto delivery = take_delivery(f.lease);
      if (!delivery) continue;
      if (f.retry_at) {
        if (defer(delivery->tag, *f.retry_at)) ++count;
      } else {
        // Final: Celery's own state (FAILURE, REVOKED) is in the backend already, or the worker
        // refused the message (an unknown task) and its job log says why.
        dropped.push_back(std::move(delivery->tag));
      }
    }
    const std::vector<std::string_view> tags(dropped.begin(), dropped.end());
    for (bool owned : run_per_tag(kAck, {}, tags)) {
      if (owned) ++count;
    }
    return count;
  }

  std::size_t release(std::span<const LeaseRef> leases) override {
    std::vector<std::string> tags;
    for (const LeaseRef& lease : leases) {
      if (auto delivery = take_delivery(lease)) tags.push_back(std::move(delivery->tag));
    }
    if (tags.empty()) return 0;
    auto conn = broker_.lease();
    RedisArgs args = script_args(scripts_[kRestore]);
    args.view(kUnacked).view(kUnackedIndex).view("tags");
    for (const auto& tag : tags) args.view(tag);
    return static_cast<std::size_t>(reply_int(conn->eval(scripts_[kRestore], args).get()));
  }

  std::vector<ExtendResult> extend(std::span<const LeaseRef> leases,
                                   std::chrono::milliseconds lease) override {
    std::vector<ExtendResult> out;
    std::vector<std::string> tags;
    std::vector<std::size_t> positions;
    {
      std::lock_guard lock(mutex_);
      for (const LeaseRef& ref : leases) {
        out.push_back(ExtendResult{ref.id, false, false});
        auto it = deliveries_.find(ref.lease_token);
        if (it == deliveries_.end() || it->second.tag != ref.id) continue;
        tags.push_back(it->second.tag);
        positions.push_back(out.size() - 1);
      }
    }
    const std::string score =
        seconds_text(epoch_seconds(now_ms() + lease.count()) - visibility_seconds());
    const std::vector<std::string_view> views(tags.begin(), tags.end());
    const std::vector<bool> owned = run_per_tag(kTouch, score, views);
    for (std::size_t i = 0; i < positions.size(); ++i) out[positions[i]].owned = owned[i];
    return out;
  }

  // set_progress stores Celery's custom state PROGRESS with the progress as its meta
  // ({step, fraction, message}), which AsyncResult.info returns.
  bool set_progress(const LeaseRef& lease, const Progress& progress) override {
    std::string task_id;
    {
      std::lock_guard lock(mutex_);
      auto it = deliveries_.find(lease.lease_token);
      if (it == deliveries_.end() || it->second.tag != lease.id) return false;
      task_id = it->second.task_id;
    }
    if (!backend_) return true;
    std::string meta = R"({"status": "PROGRESS", "result": {"step": )";
    append_json_string(meta, progress.step);
    meta += R"(, "fraction": )";
    meta += seconds_text(progress.fraction);
    meta += R"(, "message": )";
    append_json_string(meta, progress.message);
    meta += R"(}, "traceback": null, "children": [], "date_done": null, "task_id": )";
    append_json_string(meta, task_id);
    meta += '}';
    const std::pair<std::string_view, std::string_view> one[] = {{task_id, meta}};
    store_results(one);
    return true;
  }

  JobState cancel(const std::string&) override { throw unsupported("cancel (use revoke)"); }
  std::optional<Job> get(const std::string&) override { throw unsupported("get"); }
  std::vector<Job> list(const ListParams&) override { throw unsupported("list"); }
  std::vector<QueueCount> counts() override { throw unsupported("counts"); }
  std::size_t purge(std::string_view) override { throw unsupported("purge"); }
  // A snooze (an ETA not yet reached, a global rate limit's refusal) defers the delivery in
  // place, as a fail with retry_at does: Celery's retries count is a header, untouched here.
  std::size_t snooze(std::span<const Snooze> snoozes) override {
    std::size_t count = 0;
    for (const Snooze& s : snoozes) {
      auto delivery = take_delivery(s.lease);
      if (delivery && defer(delivery->tag, s.run_at)) ++count;
    }
    return count;
  }
  // Schedules are cinejobs' own (Celery's are beat's): a Celery broker records none.
  TickResult enqueue_tick(const TickEnqueue&) override {
    throw unsupported("schedules (run them on a cinejobs broker, or with celery beat)");
  }
  std::optional<ScheduleState> schedule_state(const std::string&) override {
    throw unsupported("schedules");
  }
  std::vector<ScheduleState> schedule_states() override { throw unsupported("schedules"); }
  std::vector<TickRecord> schedule_history(const std::string&, std::size_t) override {
    throw unsupported("schedules");
  }
  std::size_t prune_schedule_history(EpochMs) override { return 0; }  // nothing recorded

  RecoverReport recover_expired() override {
    RecoverReport report;
    const std::string ceiling = seconds_text(epoch_seconds(now_ms()) - visibility_seconds());
    auto conn = broker_.lease();
    while (true) {
      RedisArgs args = script_args(scripts_[kRestore]);
      args.view(kUnacked).view(kUnackedIndex).view("expired").view(ceiling).number(kRestoreBudget);
      const auto restored = reply_int(conn->eval(scripts_[kRestore], args).get());
      report.requeued += static_cast<std::size_t>(restored);
      if (restored < kRestoreBudget) break;
    }
    return report;
  }

  // Results expire in Redis after result_expires; there is nothing to prune.
  std::size_t prune_finished() override { return 0; }

  void wait_for_jobs(std::span<const std::string> queues, std::chrono::milliseconds max_wait,
                     std::stop_token stop) override {
    const auto deadline = Clock::now() + max_wait;
    if (refused_only_.exchange(false)) {
      sleep_until(std::min(deadline, Clock::now() + kRefusedPause), stop);
      return;
    }
    RedisArgs exists;
    exists.view("EXISTS");
    for (const auto& queue : queues) {
      exists.view(queue);
      for (int step : kPrioritySteps) {
        std::string key = queue;
        key += kPrioritySeparator;
        key += std::to_string(step);
        exists.copy(std::move(key));
      }
    }
    try {
      auto conn = broker_.lease();
      while (!stop.stop_requested() && Clock::now() < deadline) {
        if (reply_int(conn->checked(exists, "looking for Celery messages (EXISTS)").get()) > 0) {
          return;
        }
        sleep_until(std::min(deadline, Clock::now() + kIdlePoll), stop);
      }
    } catch (const Error&) {
      // Unreachable: the caller's next reserve reports it and backs off.
      sleep_until(std::min(deadline, Clock::now() + kIdlePoll), stop);
    }
  }

 private:
  static Error unsupported(const std::string& what) {
    return Error("the Celery broker does not support " + what +
                 ": a Celery app's messages are published with the app (.delay(), "
                 ".apply_async()) and inspected with Celery's own tools");
  }

  static void sleep_until(Clock::time_point deadline, const std::stop_token& stop) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    cv.wait_until(lock, stop, deadline, [] { return false; });
  }

  double visibility_seconds() const {
    return static_cast<double>(options_.visibility_timeout.count()) / 1000.0;
  }

  // defer keeps a delivery in unacked and moves its index score so that a restore puts it back
  // in its queue at run_at (score + visibility_timeout = run_at). False: no longer held.
  bool defer(std::string_view tag, EpochMs run_at) {
    const std::string score = seconds_text(epoch_seconds(run_at) - visibility_seconds());
    const std::string_view one[] = {tag};
    return run_per_tag(kTouch, score, one)[0];
  }

  // take_delivery ends this process' record of a lease and returns its delivery.
  std::optional<Delivery> take_delivery(const LeaseRef& lease) {
    std::lock_guard lock(mutex_);
    auto it = deliveries_.find(lease.lease_token);
    if (it == deliveries_.end() || it->second.tag != lease.id) return std::nullopt;
    Delivery delivery = std::move(it->second);
    deliveries_.erase(it);
    return delivery;
  }

  // run_per_tag calls `script` (ack or touch, with `score` for touch) for `tags` in pipelined
  // chunks and returns, per tag, whether it was still held.
  std::vector<bool> run_per_tag(Script script, std::string_view score,
                                std::span<const std::string_view> tags) {
    std::vector<bool> held;
    if (tags.empty()) return held;
    std::vector<RedisArgs> calls;
    for (std::size_t start = 0; start < tags.size(); start += kSettleChunk) {
      RedisArgs args = script_args(scripts_[script]);
      args.view(kUnacked).view(kUnackedIndex);
      if (script == kTouch) args.view(score);
      const std::size_t end = std::min(tags.size(), start + kSettleChunk);
      for (std::size_t i = start; i < end; ++i) args.view(tags[i]);
      calls.push_back(std::move(args));
    }
    auto conn = broker_.lease();
    for (const RedisReply& reply : conn->eval_many(scripts_[script], calls)) {
      if (reply->type != REDIS_REPLY_ARRAY) throw Error("unexpected reply from a Celery script");
      for (std::size_t i = 0; i < reply->elements; ++i) {
        held.push_back(reply_int(reply->element[i]) == 1);
      }
    }
    return held;
  }

  // store_results writes result documents as Celery's Redis backend does: SET (with EX when
  // result_expires is set) and PUBLISH on the key's channel, for AsyncResult.get() waiters.
  void store_results(std::span<const std::pair<std::string_view, std::string_view>> results) {
    if (!backend_ || results.empty()) return;
    const auto expires =
        std::chrono::duration_cast<std::chrono::seconds>(options_.result_expires).count();
    auto conn = backend_->lease();
    std::vector<RedisArgs> commands;
    commands.reserve(results.size() * 2);
    for (const auto& [id, document] : results) {
      std::string key(kResultKeyPrefix);
      key += id;
      RedisArgs set;
      set.view("SET").copy(key).view(document);
      if (expires > 0) set.view("EX").number(expires);
      RedisArgs publish;
      publish.view("PUBLISH").copy(std::move(key)).view(document);
      commands.push_back(std::move(set));
      commands.push_back(std::move(publish));
    }
    for (RedisArgs& command : commands) conn->append(command, "storing Celery results");
    for (std::size_t i = 0; i < commands.size(); ++i) {
      const RedisReply reply = conn->read("storing Celery results");
      if (reply->type == REDIS_REPLY_ERROR) {
        throw_from_reply(*reply, conn->server(), "storing Celery results");
      }
    }
  }

  void report_refused(std::int64_t n) {
    // Once, then every 1000th: a queue of pickle messages must not flood the log.
    const auto before = refused_total_.fetch_add(static_cast<std::uint64_t>(n));
    if (before == 0 || before / 1000 != (before + static_cast<std::uint64_t>(n)) / 1000) {
      log(LogLevel::kWarning, "worker",
          "left " + std::to_string(before + static_cast<std::uint64_t>(n)) +
              " Celery message(s) in their queue for a Celery worker: only JSON-serialized "
              "protocol 2 messages run here (pickle is never decoded)");
    }
  }

  std::string url_;
  CeleryBrokerOptions options_;
  std::vector<RedisScript> scripts_;
  RedisPool broker_;
  std::optional<RedisPool> backend_;
  std::mutex mutex_;  // deliveries_ and last_token_
  std::unordered_map<std::uint64_t, Delivery> deliveries_;
  std::uint64_t last_token_ = 0;
  std::atomic<bool> refused_only_{false};
  std::atomic<std::uint64_t> refused_total_{0};
};

}  // namespace
}  // namespace cinejobs::detail

namespace cinejobs {

std::shared_ptr<Broker> open_celery_broker(const CeleryBrokerOptions& options) {
  if (options.visibility_timeout <= std::chrono::milliseconds(0)) {
    throw ConfigError("the Celery broker's visibility_timeout must be positive");
  }
  return std::make_shared<detail::CeleryBroker>(options);
}

}  // namespace cinejobs
