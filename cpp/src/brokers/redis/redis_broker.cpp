#include "brokers/redis/redis_broker.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>

#include "brokers/redis/redis_events.hpp"
#include "cinejobs/detail/embedded_sql.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/log.hpp"

namespace cinejobs::detail {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The job hash fields read back into a Job, in this order, by get() and by the scripts
// (common.lua's JOB_FIELDS and FIELD are filled in from this list). Rows the scripts return
// carry the job's id after them.
constexpr std::array<std::string_view, 16> kJobFields = {
    "d",        "queue",   "priority",   "run_at",      "max_attempts", "unique_key",
    "state",    "attempt", "started_at", "finished_at", "lease_token",  "cancel_requested",
    "progress", "result",  "error",      "watched"};
enum Field : std::size_t {
  kData,  // packed: task, args, kwargs, timeout_ms, created_at
  kQueue,
  kPriority,
  kRunAt,
  kMaxAttempts,
  kUniqueKey,
  kState,
  kAttempt,
  kStartedAt,
  kFinishedAt,
  kLeaseToken,
  kCancelRequested,
  kProgress,  // packed: fraction, step, message
  kResult,
  kError,  // packed: type, message, traceback
  kWatched,
  kFieldCount
};
static_assert(kFieldCount == kJobFields.size());

// Several values travel as one field or argument, each as <byte length>:<bytes> (common.lua's
// pack). pack_into appends one; Unpacker reads them back in order.
void pack_into(std::string& out, std::string_view text) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, text.size()).ptr;
  out.append(digits, end);
  out.push_back(':');
  out.append(text);
}

class Unpacker {
 public:
  explicit Unpacker(std::string_view packed) : rest_(packed) {}
  std::string_view next() {
    const auto colon = rest_.find(':');
    std::size_t size = 0;
    if (colon == std::string_view::npos ||
        std::from_chars(rest_.data(), rest_.data() + colon, size).ptr != rest_.data() + colon ||
        rest_.size() - colon - 1 < size) {
      throw Error("corrupt packed field in a Redis job hash");
    }
    const std::string_view text = rest_.substr(colon + 1, size);
    rest_.remove_prefix(colon + 1 + size);
    return text;
  }

 private:
  std::string_view rest_;
};

enum class Script : std::size_t {
  kEnqueue,
  kReserve,
  kAck,
  kFail,
  kRelease,
  kExtend,
  kProgress,
  kCancel,
  kRecover,
  kPrune,
  kPurge,
  kList,
  kCounts,
  kWatch,
  kEnqueueTick,
  kScheduleStates,
  kScheduleHistory,
  kPruneTicks,
  kCount
};

// Batches are split into script calls of this many jobs (pipelined), so no single call keeps
// Redis busy for long.
constexpr std::size_t kEnqueueChunk = 500;
constexpr std::size_t kSettleChunk = 1000;
constexpr std::size_t kReserveChunk = 1000;
// Jobs handled per call of the maintenance scripts (recover, prune, purge) and jobs scanned per
// call of list.lua.
constexpr std::int64_t kMaintenanceBudget = 1000;
constexpr std::int64_t kListBudget = 2000;
// Idle workers block in slices of this length, checking their stop token in between.
constexpr milliseconds kWaitSlice(100);
constexpr std::size_t kMaxIdleConnections = 8;

std::vector<RedisScript> make_scripts() {
  std::string fields;
  std::string indexes;
  for (std::size_t i = 0; i < kJobFields.size(); ++i) {
    // Appended piece by piece: GCC 12 reports a false -Wrestrict on "'" + std::string(...).
    if (i > 0) {
      fields += ", ";
      indexes += ", ";
    }
    fields += '\'';
    fields += kJobFields[i];
    fields += '\'';
    indexes += kJobFields[i];
    indexes += " = ";
    indexes += std::to_string(i + 1);
  }
  std::string common(embedded::kCommonLua);
  for (const auto& [placeholder, text] :
       {std::pair<std::string_view, std::string_view>{"--[[JOB_FIELDS]]", fields},
        {"--[[FIELD_INDEXES]]", indexes}}) {
    common.replace(common.find(placeholder), placeholder.size(), text);
  }
  // A tick's claim and its job's enqueue run as one script.
  const std::string tick_then_enqueue =
      std::string(embedded::kTickLua) + "\n" + std::string(embedded::kEnqueueLua);
  const std::pair<std::string_view, std::string_view> bodies[] = {
      {"enqueue.lua", embedded::kEnqueueLua},
      {"reserve.lua", embedded::kReserveLua},
      {"ack.lua", embedded::kAckLua},
      {"fail.lua", embedded::kFailLua},
      {"release.lua", embedded::kReleaseLua},
      {"extend.lua", embedded::kExtendLua},
      {"progress.lua", embedded::kProgressLua},
      {"cancel.lua", embedded::kCancelLua},
      {"recover.lua", embedded::kRecoverLua},
      {"prune.lua", embedded::kPruneLua},
      {"purge.lua", embedded::kPurgeLua},
      {"list.lua", embedded::kListLua},
      {"counts.lua", embedded::kCountsLua},
      {"watch.lua", embedded::kWatchLua},
      {"tick.lua", tick_then_enqueue},
      {"schedule_states.lua", embedded::kScheduleStatesLua},
      {"schedule_history.lua", embedded::kScheduleHistoryLua},
      {"prune_ticks.lua", embedded::kPruneTicksLua}};
  static_assert(std::size(bodies) == static_cast<std::size_t>(Script::kCount));
  std::vector<RedisScript> scripts;
  for (const auto& [name, body] : bodies) {
    scripts.push_back(RedisScript{std::string(name), common + "\n" + std::string(body), {}});
  }
  return scripts;
}

std::int64_t parse_int(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

std::string format_double(double value) {
  char buffer[32];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  return std::string(buffer, end);
}

void expect_array(const redisReply& reply, std::string_view what) {
  if (reply.type != REDIS_REPLY_ARRAY) {
    throw Error("unexpected reply from Redis to " + std::string(what) + " (type " +
                std::to_string(reply.type) + ")");
  }
}

// read_job decodes the JOB_FIELDS values in `row` (its first kFieldCount elements) of job `id`.
// A packed field that cannot be decoded is left empty and named in `problem` (the first one),
// so one damaged hash neither hides the job from get and list nor fails a whole reserve.
Job read_job(const redisReply& row, std::string_view id, EpochMs now, std::string& problem) {
  if (row.type != REDIS_REPLY_ARRAY || row.elements < kFieldCount) {
    throw Error("unexpected job row from Redis (type " + std::to_string(row.type) + ", " +
                std::to_string(row.elements) + " fields)");
  }
  const auto text = [&](Field f) { return reply_text(row.element[f]); };
  const auto present = [&](Field f) { return row.element[f]->type != REDIS_REPLY_NIL; };
  // An absent field is 0; one that is not a whole integer is 0 too, and named in `problem`.
  const auto integer = [&](Field f) {
    const std::string_view digits = text(f);
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (!digits.empty() && (error != std::errc() || end != digits.data() + digits.size()) &&
        problem.empty()) {
      problem = "field '" + std::string(kJobFields[f]) + "' of its hash is not an integer";
    }
    return value;
  };
  // unpacked runs `decode` over packed field f, which on a damaged field leaves the job's part
  // of it unset and records why.
  const auto unpacked = [&](Field f, auto decode) {
    try {
      decode(Unpacker(text(f)));
    } catch (const Error& e) {
      if (problem.empty()) {
        problem = "field '" + std::string(kJobFields[f]) + "' of its hash: " + e.what();
      }
    }
  };
  Job job;
  job.id = std::string(id);
  unpacked(kData, [&](Unpacker data) {
    std::string task(data.next());
    std::string args(data.next());
    std::string kwargs(data.next());
    const std::int64_t timeout_ms = parse_int(data.next());
    job.created_at = parse_int(data.next());
    job.task = std::move(task);
    job.args = std::move(args);
    job.kwargs = std::move(kwargs);
    job.timeout_ms = timeout_ms;
  });
  job.queue = std::string(text(kQueue));
  job.priority = static_cast<int>(integer(kPriority));
  job.run_at = integer(kRunAt);
  job.attempt = static_cast<int>(integer(kAttempt));
  job.max_attempts = static_cast<int>(integer(kMaxAttempts));
  if (present(kUniqueKey)) job.unique_key = std::string(text(kUniqueKey));
  job.state = parse_job_state(text(kState));
  // A scheduled job whose time has come is queued; it is stored as scheduled until reserved.
  if (job.state == JobState::kScheduled && job.run_at <= now) job.state = JobState::kQueued;
  if (present(kProgress)) {
    unpacked(kProgress, [&](Unpacker progress) {
      const std::string_view fraction = progress.next();
      double value = 0.0;
      std::from_chars(fraction.data(), fraction.data() + fraction.size(), value);
      job.progress = Progress{value, std::string(progress.next()), std::string(progress.next())};
    });
  }
  if (present(kResult)) job.result = std::string(text(kResult));
  if (present(kError)) {
    unpacked(kError, [&](Unpacker error) {
      job.error = JobFailure{std::string(error.next()), std::string(error.next()),
                             std::string(error.next())};
    });
  }
  job.started_at = integer(kStartedAt);
  job.finished_at = integer(kFinishedAt);
  job.cancel_requested = integer(kCancelRequested) != 0;
  const std::string_view token = text(kLeaseToken);
  std::from_chars(token.data(), token.data() + token.size(), job.lease_token);
  return job;
}

// read_row decodes a script's row: the JOB_FIELDS values, then the id.
Job read_row(const redisReply& row, EpochMs now, std::string& problem) {
  if (row.type != REDIS_REPLY_ARRAY || row.elements != kFieldCount + 1) {
    throw Error("unexpected job row from a cinejobs script (" + std::to_string(row.elements) +
                " values)");
  }
  return read_job(row, reply_text(row.element[kFieldCount]), now, problem);
}

std::string_view final_state_name(JobState state) {
  return state == JobState::kCancelled ? "cancelled" : "failed";
}

class RedisBroker final : public Broker {
 public:
  RedisBroker(std::string url, RedisConfig config, BrokerOptions options)
      : url_(std::move(url)),
        config_(std::move(config)),
        options_(options),
        scripts_(make_scripts()),
        pool_(
            config_.endpoint, [this](RedisConnection& conn) { conn.load_all(scripts_); },
            kMaxIdleConnections),
        blocking_(config_.endpoint, nullptr, kMaxIdleConnections),
        events_(config_.endpoint, config_.prefix,
                [this](const std::vector<std::string>& ids) { mark_watched(ids); }) {
    // Connect now, so an unreachable server or refused credentials fail the open, and the
    // scripts' SHA1s are known before the broker is shared between threads.
    auto conn = pool_.lease();
    std::random_device device;
    token_rng_.seed((static_cast<std::uint64_t>(device()) << 32) ^ device());
  }

  std::string_view kind() const noexcept override { return "redis"; }
  const std::string& url() const noexcept override { return url_; }

  EnqueueResult enqueue(const Job& job) override {
    auto results = enqueue_many(std::span<const Job>(&job, 1));
    return std::move(results.front());
  }

  std::vector<EnqueueResult> enqueue_many(std::span<const Job> jobs) override {
    for (const Job& job : jobs) validate_new_job(job, options_);
    std::vector<EnqueueResult> results;
    if (jobs.empty()) return results;
    const EpochMs now = now_ms();
    // Ids are chosen here (Lua has no good random source). The fields only C++ reads travel
    // packed as one value (d); both are kept alive here for the arguments.
    results.reserve(jobs.size());
    std::vector<std::string> packed(jobs.size());
    std::unordered_set<std::string_view> given;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      const Job& job = jobs[i];
      results.push_back(EnqueueResult{job.id.empty() ? new_job_id() : job.id, true});
      if (!job.id.empty() && !given.insert(job.id).second) {
        throw InvalidPayload("job id " + job.id + " appears twice in one enqueue_many");
      }
      packed[i] = pack_job(job, now);
    }
    RedisScript& script = scripts_[index(Script::kEnqueue)];
    std::vector<RedisArgs> calls;
    for (std::size_t start = 0; start < jobs.size(); start += kEnqueueChunk) {
      const std::size_t end = std::min(jobs.size(), start + kEnqueueChunk);
      RedisArgs args = script_args(script);
      // The first call checks every caller-chosen id of the batch, so a batch split into
      // several calls is refused before any of it is stored.
      const std::size_t checks = start == 0 ? given.size() : 0;
      args.reserve(8 + checks + (end - start) * 7);
      args.view(config_.prefix)
          .number(now)
          .number(static_cast<std::int64_t>(end - start))
          .number(static_cast<std::int64_t>(checks));
      if (start == 0) {
        for (const std::string_view id : given) args.view(id);
      }
      for (std::size_t i = start; i < end; ++i) {
        add_job_args(args, jobs[i], results[i].id, packed[i], now);
      }
      calls.push_back(std::move(args));
    }
    const std::vector<RedisReply> replies = pool_.lease()->eval_many(script, calls);
    for (std::size_t c = 0; c < replies.size(); ++c) {
      const redisReply& reply = *replies[c];
      expect_array(reply, script.name);
      for (std::size_t i = 0; i + 1 < reply.elements; i += 2) {
        const auto position = static_cast<std::size_t>(reply_int(reply.element[i]));
        EnqueueResult& refused = results.at(c * kEnqueueChunk + position - 1);
        refused.id = std::string(reply_text(reply.element[i + 1]));
        refused.created = false;
      }
    }
    return results;
  }

  TickResult enqueue_tick(const TickEnqueue& tick) override {
    validate_new_job(tick.job, options_);
    const EpochMs now = now_ms();
    const std::string id = tick.job.id.empty() ? new_job_id() : tick.job.id;
    const std::string packed = pack_job(tick.job, now);
    RedisScript& script = scripts_[index(Script::kEnqueueTick)];
    RedisArgs args = script_args(script);
    args.view(config_.prefix).number(now).number(1).number(1).view(id);
    add_job_args(args, tick.job, id, packed, now);
    args.view(tick.schedule).number(tick.tick).number(tick.next_tick);
    const RedisReply reply = pool_.lease()->eval(script, args);
    expect_array(*reply, script.name);
    if (reply->elements == 3 && reply_int(reply->element[0]) == 0) {
      return TickResult{false, reply_int(reply->element[1]),
                        std::string(reply_text(reply->element[2]))};
    }
    // A refused job: a live job (enqueued by hand) held the tick's unique key; it runs the tick.
    const std::string job_id =
        reply->elements >= 2 ? std::string(reply_text(reply->element[1])) : id;
    return TickResult{true, tick.tick, job_id};
  }

  std::optional<ScheduleState> schedule_state(const std::string& name) override {
    std::vector<ScheduleState> states = read_schedule_states(name);
    if (states.empty()) return std::nullopt;
    return std::move(states.front());
  }

  std::vector<ScheduleState> schedule_states() override {
    std::vector<ScheduleState> states = read_schedule_states("");
    std::sort(states.begin(), states.end(),
              [](const ScheduleState& a, const ScheduleState& b) { return a.name < b.name; });
    return states;
  }

  std::vector<TickRecord> schedule_history(const std::string& name, std::size_t limit) override {
    std::vector<TickRecord> out;
    if (limit == 0) return out;
    RedisScript& script = scripts_[index(Script::kScheduleHistory)];
    RedisArgs args = script_args(script);
    args.view(config_.prefix).view(name).number(static_cast<std::int64_t>(limit));
    const RedisReply reply = pool_.lease()->eval(script, args);
    expect_array(*reply, script.name);
    for (std::size_t i = 0; i < reply->elements; ++i) {
      // '<tick>:<enqueued_at>:<job id>'
      const std::string_view member = reply_text(reply->element[i]);
      const std::size_t a = member.find(':');
      const std::size_t b = member.find(':', a + 1);
      if (a == std::string_view::npos || b == std::string_view::npos) {
        throw Error("unexpected schedule history entry from Redis: " + std::string(member));
      }
      out.push_back(TickRecord{name, to_int(member.substr(0, a)), std::string(member.substr(b + 1)),
                               to_int(member.substr(a + 1, b - a - 1))});
    }
    return out;
  }

  std::size_t prune_schedule_history(EpochMs before) override {
    return run_in_slices(Script::kPruneTicks, [&](RedisArgs& args) { args.number(before); });
  }

  std::vector<Job> reserve(const ReserveParams& params) override {
    std::vector<Job> jobs;
    if (params.queues.empty() || params.max_jobs == 0) return jobs;
    RedisScript& script = scripts_[index(Script::kReserve)];
    auto conn = pool_.lease();
    std::vector<Fail> undecodable;
    std::size_t leased = 0;
    while (leased < params.max_jobs) {
      const std::size_t want = std::min(params.max_jobs - leased, kReserveChunk);
      const EpochMs now = now_ms();
      RedisArgs args = script_args(script);
      args.reserve(10 + params.queues.size() + want);
      args.view(config_.prefix)
          .number(now)
          .number(static_cast<std::int64_t>(want))
          .number(now + params.lease.count())
          .number(static_cast<std::int64_t>(params.queues.size()));
      for (const auto& queue : params.queues) args.view(queue);
      // Tokens are base + i: distinct within the call, unguessable across deliveries, below
      // 2^62 like the other brokers' tokens.
      const std::uint64_t base = next_token_base();
      for (std::size_t i = 0; i < want; ++i) {
        args.number(static_cast<std::int64_t>(base + i));
      }
      const RedisReply reply = conn->eval(script, args);
      expect_array(*reply, script.name);
      leased += reply->elements;
      for (std::size_t i = 0; i < reply->elements; ++i) {
        std::string problem;
        Job job = read_row(*reply->element[i], now, problem);
        if (problem.empty()) {
          jobs.push_back(std::move(job));
        } else {
          undecodable.push_back(undecodable_fail(job, problem));
        }
      }
      if (reply->elements < want) break;
    }
    // A job that cannot be decoded fails alone and the others run. fail.lua is a second script
    // (reserve.lua does not parse what only C++ reads); the lease keeps the job ours in between,
    // and should that call fail too, the job is leased and failed again after its lease.
    for (Fail& f : take_undecodable(jobs)) undecodable.push_back(std::move(f));
    if (!undecodable.empty()) {
      try {
        fail(undecodable);
      } catch (const Error& e) {
        log(LogLevel::kWarning, "broker",
            std::string("could not fail undecodable jobs: ") + e.what());
      }
    }
    return jobs;
  }

  std::size_t ack(std::span<const Ack> acks) override {
    return settle(Script::kAck, acks.size(), [&](RedisArgs& args, std::size_t i) {
      const Ack& a = acks[i];
      args.view(a.lease.id).number(token(a.lease)).view(a.result);
    });
  }

  std::size_t fail(std::span<const Fail> fails) override {
    return settle(Script::kFail, fails.size(), [&](RedisArgs& args, std::size_t i) {
      const Fail& f = fails[i];
      args.view(f.lease.id).number(token(f.lease));
      if (f.retry_at) {
        args.number(*f.retry_at);
      } else {
        args.view("");
      }
      std::string error;
      pack_into(error, f.error.type);
      pack_into(error, f.error.message);
      pack_into(error, f.error.traceback);
      args.view(final_state_name(f.final_state)).copy(std::move(error));
    });
  }

  std::size_t release(std::span<const LeaseRef> leases) override {
    return settle(Script::kRelease, leases.size(), [&](RedisArgs& args, std::size_t i) {
      args.view(leases[i].id).number(token(leases[i])).number(0);
    });
  }

  std::size_t snooze(std::span<const Snooze> snoozes) override {
    return settle(Script::kRelease, snoozes.size(), [&](RedisArgs& args, std::size_t i) {
      args.view(snoozes[i].lease.id).number(token(snoozes[i].lease)).number(snoozes[i].run_at);
    });
  }

  std::vector<ExtendResult> extend(std::span<const LeaseRef> leases,
                                   std::chrono::milliseconds lease) override {
    std::vector<ExtendResult> results;
    if (leases.empty()) return results;
    RedisScript& script = scripts_[index(Script::kExtend)];
    const EpochMs until = now_ms() + lease.count();
    std::vector<RedisArgs> calls;
    for (std::size_t start = 0; start < leases.size(); start += kSettleChunk) {
      const std::size_t end = std::min(leases.size(), start + kSettleChunk);
      RedisArgs args = script_args(script);
      args.view(config_.prefix).number(until).number(static_cast<std::int64_t>(end - start));
      for (std::size_t i = start; i < end; ++i) {
        args.view(leases[i].id).number(token(leases[i]));
      }
      calls.push_back(std::move(args));
    }
    const std::vector<RedisReply> replies = pool_.lease()->eval_many(script, calls);
    results.reserve(leases.size());
    for (const RedisReply& reply : replies) {
      expect_array(*reply, script.name);
      for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
        const LeaseRef& l = leases[results.size()];
        results.push_back(ExtendResult{l.id, reply_int(reply->element[i]) != 0,
                                       reply_int(reply->element[i + 1]) != 0});
      }
    }
    if (results.size() != leases.size()) throw Error("extend.lua answered for too few leases");
    return results;
  }

  bool set_progress(const LeaseRef& lease, const Progress& progress) override {
    RedisScript& script = scripts_[index(Script::kProgress)];
    RedisArgs args = script_args(script);
    std::string packed;
    pack_into(packed, format_double(progress.fraction));
    pack_into(packed, progress.step);
    pack_into(packed, progress.message);
    args.view(config_.prefix).view(lease.id).number(token(lease)).copy(std::move(packed));
    return reply_int(pool_.lease()->eval(script, args).get()) != 0;
  }

  JobState cancel(const std::string& id) override {
    RedisScript& script = scripts_[index(Script::kCancel)];
    RedisArgs args = script_args(script);
    args.view(config_.prefix).number(now_ms()).view(id);
    const RedisReply reply = pool_.lease()->eval(script, args);
    if (reply->type == REDIS_REPLY_NIL) throw JobNotFound("no job with id " + id);
    return parse_job_state(reply_text(reply.get()));
  }

  std::optional<Job> get(const std::string& id) override {
    RedisArgs args;
    args.reserve(2 + kJobFields.size());
    args.view("HMGET").copy(config_.prefix + "job:" + id);
    for (const auto name : kJobFields) args.view(name);
    const EpochMs now = now_ms();
    const RedisReply reply = pool_.lease()->checked(args, "reading a job");
    expect_array(*reply, "HMGET");
    if (reply->elements != kFieldCount || reply->element[kState]->type == REDIS_REPLY_NIL) {
      return std::nullopt;
    }
    std::string problem;  // a damaged field is left empty; the job is still shown
    return read_job(*reply, id, now, problem);
  }

  std::vector<Job> list(const ListParams& params) override {
    std::vector<Job> jobs;
    if (params.limit == 0) return jobs;
    RedisScript& script = scripts_[index(Script::kList)];
    const std::string_view state = params.state ? to_string(*params.state) : std::string_view();
    auto skip = static_cast<std::int64_t>(params.offset);
    auto want = static_cast<std::int64_t>(params.limit);
    std::string cursor = "+inf";
    auto conn = pool_.lease();
    while (want > 0) {
      const EpochMs now = now_ms();
      RedisArgs args = script_args(script);
      args.view(config_.prefix)
          .number(now)
          .view(cursor)
          .number(kListBudget)
          .number(skip)
          .number(want)
          .view(params.queue ? std::string_view(*params.queue) : std::string_view())
          .view(state)
          .view(params.task ? std::string_view(*params.task) : std::string_view());
      const RedisReply reply = conn->eval(script, args);
      expect_array(*reply, script.name);
      if (reply->elements < 2) throw Error("unexpected reply from list.lua");
      skip -= reply_int(reply->element[1]);
      for (std::size_t i = 2; i < reply->elements; ++i) {
        std::string problem;  // a damaged field is left empty; the job is still listed
        jobs.push_back(read_row(*reply->element[i], now, problem));
        --want;
      }
      cursor = std::string(reply_text(reply->element[0]));
      if (cursor.empty()) break;
    }
    return jobs;
  }

  std::vector<QueueCount> counts() override {
    RedisScript& script = scripts_[index(Script::kCounts)];
    RedisArgs args = script_args(script);
    args.view(config_.prefix).number(now_ms());
    const RedisReply reply = pool_.lease()->eval(script, args);
    expect_array(*reply, script.name);
    std::vector<QueueCount> out;
    for (std::size_t i = 0; i + 2 < reply->elements; i += 3) {
      out.push_back(QueueCount{std::string(reply_text(reply->element[i])),
                               parse_job_state(reply_text(reply->element[i + 1])),
                               reply_int(reply->element[i + 2])});
    }
    std::sort(out.begin(), out.end(), [](const QueueCount& a, const QueueCount& b) {
      return std::tie(a.queue, a.state) < std::tie(b.queue, b.state);
    });
    return out;
  }

  RecoverReport recover_expired() override {
    RecoverReport report;
    RedisScript& script = scripts_[index(Script::kRecover)];
    auto conn = pool_.lease();
    while (true) {
      RedisArgs args = script_args(script);
      args.view(config_.prefix).number(now_ms()).number(kMaintenanceBudget);
      const RedisReply reply = conn->eval(script, args);
      expect_array(*reply, script.name);
      if (reply->elements < 3) throw Error("unexpected reply from recover.lua");
      report.requeued += static_cast<std::size_t>(reply_int(reply->element[0]));
      report.failed += static_cast<std::size_t>(reply_int(reply->element[1]));
      if (reply_int(reply->element[2]) == 0) return report;
    }
  }

  std::size_t prune_finished() override {
    const EpochMs cutoff = now_ms() - options_.result_ttl.count();
    return run_in_slices(Script::kPrune, [&](RedisArgs& args) { args.number(cutoff); });
  }

  std::size_t purge(std::string_view queue) override {
    return run_in_slices(Script::kPurge, [&](RedisArgs& args) { args.view(queue); });
  }

  void wait_for_jobs(std::span<const std::string> queues, std::chrono::milliseconds max_wait,
                     std::stop_token stop) override {
    if (stop.stop_requested() || max_wait <= milliseconds(0)) return;
    auto deadline = Clock::now() + max_wait;
    if (queues.empty()) {
      sleep_until(deadline, stop);
      return;
    }
    try {
      auto conn = blocking_.lease();
      std::atomic<bool> interrupted{false};
      // A stop shuts the socket down, so a blocked BLPOP returns at once; the connection is
      // then dropped.
      const std::stop_callback on_stop(stop, [&] {
        interrupted = true;
        ::shutdown(conn->fd(), SHUT_RDWR);
      });
      deadline = std::min(deadline, next_due(*conn, queues));
      RedisArgs blpop;
      blpop.view("BLPOP");
      for (const auto& queue : queues) blpop.copy(config_.prefix + "wake:" + queue);
      blpop.view("0");
      const std::size_t timeout_index = static_cast<std::size_t>(blpop.argc()) - 1;
      const milliseconds slice =
          std::min(kWaitSlice, std::max(milliseconds(1), config_.endpoint.timeout / 2));
      std::string timeout_text;
      while (!stop.stop_requested()) {
        const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        // BLPOP's timeout 0 would mean forever: below a millisecond, the wait is over.
        if (remaining < milliseconds(1)) break;
        const milliseconds this_slice = std::min(remaining, slice);
        timeout_text = format_double(static_cast<double>(this_slice.count()) / 1000.0);
        blpop.set(timeout_index, timeout_text);
        const RedisReply reply = conn->checked(blpop, "waiting for jobs (BLPOP)");
        if (reply->type == REDIS_REPLY_ARRAY) break;  // a wake-up token: jobs may be ready
      }
      if (interrupted) conn->mark_broken();
    } catch (const Error&) {
      if (stop.stop_requested()) return;
      // Redis is unreachable: return after a short pause (a spurious return is allowed), so
      // the caller's next reserve reports the outage and backs off.
      sleep_until(std::min(deadline, Clock::now() + kWaitSlice), stop);
    }
  }

  void wait_for_update(const std::string& id, std::chrono::milliseconds max_wait) override {
    events_.wait(id, max_wait);
  }

 private:
  static constexpr std::size_t index(Script s) { return static_cast<std::size_t>(s); }

  // pack_job packs the fields only the C++ side reads into the job hash's one value `d`.
  static std::string pack_job(const Job& job, EpochMs now) {
    std::string d;
    d.reserve(job.task.size() + job.args.size() + job.kwargs.size() + 48);
    pack_into(d, job.task);
    pack_into(d, job.args);
    pack_into(d, job.kwargs);
    pack_into(d, std::to_string(job.timeout_ms));
    pack_into(d, std::to_string(job.created_at > 0 ? job.created_at : now));
    return d;
  }

  // add_job_args appends one job's 7 values as enqueue.lua reads them.
  static void add_job_args(RedisArgs& args, const Job& job, std::string_view id,
                           std::string_view packed, EpochMs now) {
    args.view(id)
        .view(job.queue)
        .number(job.priority)
        .number(job.run_at > 0 ? job.run_at : now)
        .number(job.max_attempts)
        .view(job.unique_key ? std::string_view(*job.unique_key) : std::string_view())
        .view(packed);
  }

  static std::int64_t to_int(std::string_view text) {
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
  }

  std::vector<ScheduleState> read_schedule_states(std::string_view name) {
    RedisScript& script = scripts_[index(Script::kScheduleStates)];
    RedisArgs args = script_args(script);
    args.view(config_.prefix).view(name);
    const RedisReply reply = pool_.lease()->eval(script, args);
    expect_array(*reply, script.name);
    std::vector<ScheduleState> out;
    for (std::size_t i = 0; i + 3 < reply->elements; i += 4) {
      out.push_back(ScheduleState{
          std::string(reply_text(reply->element[i])), reply_int(reply->element[i + 1]),
          reply_int(reply->element[i + 2]), std::string(reply_text(reply->element[i + 3]))});
    }
    return out;
  }

  // sleep_until waits until `deadline` or until `stop` is requested.
  static void sleep_until(Clock::time_point deadline, const std::stop_token& stop) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    cv.wait_until(lock, stop, deadline, [] { return false; });
  }
  static std::int64_t token(const LeaseRef& lease) {
    return static_cast<std::int64_t>(lease.lease_token);
  }

  std::uint64_t next_token_base() {
    std::lock_guard lock(token_mutex_);
    // 61 random bits plus one: never zero, and base + i stays below 2^62.
    return (token_rng_() >> 3) + 1;
  }

  // settle runs a batch script (ack, fail, release) over `n` deliveries in pipelined calls of
  // kSettleChunk; `add(args, i)` appends delivery i's arguments. Returns how many applied.
  template <class AddOne>
  std::size_t settle(Script which, std::size_t n, AddOne add) {
    if (n == 0) return 0;
    RedisScript& script = scripts_[index(which)];
    const EpochMs now = now_ms();
    std::vector<RedisArgs> calls;
    for (std::size_t start = 0; start < n; start += kSettleChunk) {
      const std::size_t end = std::min(n, start + kSettleChunk);
      RedisArgs args = script_args(script);
      args.reserve(6 + (end - start) * 7);
      args.view(config_.prefix).number(now).number(static_cast<std::int64_t>(end - start));
      for (std::size_t i = start; i < end; ++i) add(args, i);
      calls.push_back(std::move(args));
    }
    std::size_t applied = 0;
    for (const RedisReply& reply : pool_.lease()->eval_many(script, calls)) {
      applied += static_cast<std::size_t>(reply_int(reply.get()));
    }
    return applied;
  }

  // run_in_slices calls a maintenance script ({count, more}) until it reports no more.
  template <class AddArgs>
  std::size_t run_in_slices(Script which, AddArgs add) {
    RedisScript& script = scripts_[index(which)];
    auto conn = pool_.lease();
    std::size_t total = 0;
    while (true) {
      RedisArgs args = script_args(script);
      args.view(config_.prefix);
      add(args);
      args.number(kMaintenanceBudget);
      const RedisReply reply = conn->eval(script, args);
      expect_array(*reply, script.name);
      if (reply->elements < 2) throw Error("unexpected reply from " + script.name);
      total += static_cast<std::size_t>(reply_int(reply->element[0]));
      if (reply_int(reply->element[1]) == 0) return total;
    }
  }

  // next_due returns when the earliest scheduled job of the queues is due (so a waiter wakes
  // for it), or time_point::max() when none is scheduled.
  Clock::time_point next_due(RedisConnection& conn, std::span<const std::string> queues) {
    std::vector<RedisArgs> calls(queues.size());
    for (std::size_t i = 0; i < queues.size(); ++i) {
      calls[i].view("ZRANGE").copy(config_.prefix + "sched:" + queues[i]).view("0").view("0");
      calls[i].view("WITHSCORES");
      conn.append(calls[i], "reading scheduled jobs");
    }
    std::optional<std::int64_t> earliest;
    for (std::size_t i = 0; i < queues.size(); ++i) {
      const RedisReply reply = conn.read("reading scheduled jobs");
      if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        const std::int64_t run_at = reply_int(reply->element[1]);
        earliest = earliest ? std::min(*earliest, run_at) : run_at;
      }
    }
    if (!earliest) return Clock::time_point::max();
    return Clock::now() + milliseconds(std::max<std::int64_t>(0, *earliest - now_ms()));
  }

  void mark_watched(const std::vector<std::string>& ids) {
    RedisScript& script = scripts_[index(Script::kWatch)];
    RedisArgs args = script_args(script);
    args.view(config_.prefix);
    for (const auto& id : ids) args.view(id);
    pool_.lease()->eval(script, args);
  }

  std::string url_;
  RedisConfig config_;
  BrokerOptions options_;
  // Written once by the first connection (their SHA1s), read-only afterwards.
  std::vector<RedisScript> scripts_;
  RedisPool pool_;      // commands and scripts
  RedisPool blocking_;  // BLPOP waits, which hold their connection for a while
  std::mutex token_mutex_;
  std::mt19937_64 token_rng_;
  RedisEvents events_;  // last: its thread uses pool_ and stops first
};

}  // namespace

std::shared_ptr<Broker> open_redis_broker(std::string url, RedisConfig config,
                                          BrokerOptions options) {
  return std::make_shared<RedisBroker>(std::move(url), std::move(config), options);
}

}  // namespace cinejobs::detail
