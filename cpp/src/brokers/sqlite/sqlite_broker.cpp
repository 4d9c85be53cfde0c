#include "brokers/sqlite/sqlite_broker.hpp"

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <tuple>
#include <unordered_map>

#include "brokers/sqlite/sqlite_handle.hpp"
#include "cinejobs/detail/embedded_sql.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"

namespace cinejobs::detail {
namespace {

constexpr int kSchemaVersion = 4;

constexpr std::int64_t code(JobState s) { return static_cast<std::int64_t>(s); }

// Columns read back into a Job, in this order, by every query that returns jobs.
constexpr std::string_view kJobColumns =
    "id, task, queue, args, kwargs, priority, run_at, attempt, max_attempts, unique_key, "
    "timeout_ms, state, progress_fraction, progress_step, progress_message, result, error_type, "
    "error_message, error_traceback, created_at, started_at, finished_at, cancel_requested, "
    "lease_token, seq";
constexpr int kSeqColumn = 24;
// Reserve names up to this many queues in one compound SELECT (SQLite allows 500 terms); more
// go through json_each (reserve_statement_locked).
constexpr std::size_t kMaxUnionQueues = 256;

Job read_job(const SqliteStatement& s, EpochMs now) {
  Job job;
  job.id = s.column_text(0);
  job.task = s.column_text(1);
  job.queue = s.column_text(2);
  job.args = s.column_text(3);
  job.kwargs = s.column_text(4);
  job.priority = static_cast<int>(s.column_int(5));
  job.run_at = s.column_int(6);
  job.attempt = static_cast<int>(s.column_int(7));
  job.max_attempts = static_cast<int>(s.column_int(8));
  if (!s.column_is_null(9)) job.unique_key = s.column_text(9);
  job.timeout_ms = s.column_int(10);
  job.state = static_cast<JobState>(s.column_int(11));
  // A scheduled job whose time has come is queued; it is stored as scheduled until reserved.
  if (job.state == JobState::kScheduled && job.run_at <= now) job.state = JobState::kQueued;
  if (!s.column_is_null(12)) {
    job.progress = Progress{s.column_double(12), s.column_text(13), s.column_text(14)};
  }
  if (!s.column_is_null(15)) job.result = s.column_text(15);
  if (!s.column_is_null(16)) {
    job.error = JobFailure{s.column_text(16), s.column_text(17), s.column_text(18)};
  }
  job.created_at = s.column_int(19);
  job.started_at = s.column_int(20);
  job.finished_at = s.column_int(21);
  job.cancel_requested = s.column_int(22) != 0;
  job.lease_token = static_cast<std::uint64_t>(s.column_int(23));
  return job;
}

// Wakes waiters of one database file in this process: workers when a job is enqueued or
// requeued (notify), handles when a job changed (notify_update). Other processes cannot be
// signalled through SQLite; their workers and handles poll.
struct Notifier {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::condition_variable_any update_cv;
  std::uint64_t generation = 0;
  std::uint64_t updates = 0;

  void notify() {
    {
      std::lock_guard lock(mutex);
      ++generation;
    }
    cv.notify_all();
  }
  void notify_update() {
    {
      std::lock_guard lock(mutex);
      ++updates;
    }
    update_cv.notify_all();
  }
};

std::shared_ptr<Notifier> notifier_for(const std::string& path) {
  static std::mutex registry_mutex;
  static std::map<std::string, std::weak_ptr<Notifier>> registry;
  std::lock_guard lock(registry_mutex);
  auto& slot = registry[path];
  auto notifier = slot.lock();
  if (!notifier) {
    notifier = std::make_shared<Notifier>();
    slot = notifier;
  }
  return notifier;
}

std::string canonical_path(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return path;
  std::string out(resolved);
  std::free(resolved);
  return out;
}

class SqliteBroker final : public Broker {
 public:
  SqliteBroker(std::string url, SqliteConfig config, BrokerOptions options)
      : url_(std::move(url)),
        options_(options),
        db_(config.path, config.busy_timeout, config.synchronous_full) {
    migrate();
    notifier_ = notifier_for(canonical_path(config.path));
    std::random_device device;
    token_rng_.seed((static_cast<std::uint64_t>(device()) << 32) ^ device());
    insert_ = std::make_unique<SqliteStatement>(
        db_,
        "INSERT OR IGNORE INTO jobs (id, task, queue, args, kwargs, priority, run_at, attempt, "
        "max_attempts, unique_key, timeout_ms, state, created_at, started_at, finished_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?11, ?12, 0, 0)");
    live_by_key_ = std::make_unique<SqliteStatement>(
        db_, "SELECT id FROM jobs WHERE unique_key = ?1 AND state IN (0, 1, 2)");
    ack_ = std::make_unique<SqliteStatement>(
        db_,
        "UPDATE jobs SET state = 3, result = ?3, finished_at = ?4, lease_until = NULL "
        "WHERE id = ?1 AND state = 2 AND lease_token = ?2");
    // A failed attempt of a job whose cancel was requested ends cancelled, never retried.
    fail_ = std::make_unique<SqliteStatement>(
        db_,
        "UPDATE jobs SET state = CASE WHEN cancel_requested THEN 5 ELSE ?3 END, "
        "run_at = CASE WHEN ?3 = 0 AND NOT cancel_requested THEN ?4 ELSE run_at END, "
        "finished_at = CASE WHEN ?3 = 0 AND NOT cancel_requested THEN 0 ELSE ?5 END, "
        "error_type = ?6, error_message = ?7, error_traceback = ?8, lease_until = NULL "
        "WHERE id = ?1 AND state = 2 AND lease_token = ?2");
    // Release and snooze: back to waiting without counting the attempt, queued or scheduled by
    // the new run_at, which never moves earlier than the job's own (a release passes 0 and keeps
    // the job's place in its queue).
    put_back_ = std::make_unique<SqliteStatement>(
        db_,
        "UPDATE jobs SET state = CASE WHEN cancel_requested THEN 5 WHEN ?3 > ?4 THEN 0 ELSE 1 END, "
        "run_at = CASE WHEN cancel_requested OR ?3 <= run_at THEN run_at ELSE ?3 END, "
        "finished_at = CASE WHEN cancel_requested THEN ?4 ELSE 0 END, "
        "attempt = attempt - 1, lease_until = NULL, lease_token = 0 "
        "WHERE id = ?1 AND state = 2 AND lease_token = ?2");
    extend_ = std::make_unique<SqliteStatement>(
        db_,
        "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND state = 2 AND lease_token = ?2 "
        "RETURNING cancel_requested");
    progress_ = std::make_unique<SqliteStatement>(
        db_,
        "UPDATE jobs SET progress_fraction = ?3, progress_step = ?4, progress_message = ?5 "
        "WHERE id = ?1 AND state = 2 AND lease_token = ?2");
    get_ = std::make_unique<SqliteStatement>(
        db_, "SELECT " + std::string(kJobColumns) + " FROM jobs WHERE id = ?1");
    state_of_ = std::make_unique<SqliteStatement>(db_, "SELECT state FROM jobs WHERE id = ?1");
    cancel_now_ = std::make_unique<SqliteStatement>(
        db_, "UPDATE jobs SET state = 5, finished_at = ?2 WHERE id = ?1 AND state IN (0, 1)");
    cancel_running_ = std::make_unique<SqliteStatement>(
        db_, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND state = 2");
  }

  std::string_view kind() const noexcept override { return "sqlite"; }
  const std::string& url() const noexcept override { return url_; }

  EnqueueResult enqueue(const Job& job) override {
    validate_new_job(job, options_);
    EnqueueResult result;
    {
      std::lock_guard lock(mutex_);
      ImmediateTransaction tx(db_);
      result = insert_locked(job, now_ms());
      tx.commit();
    }
    if (result.created) notifier_->notify();
    return result;
  }

  std::vector<EnqueueResult> enqueue_many(std::span<const Job> jobs) override {
    for (const Job& job : jobs) validate_new_job(job, options_);
    std::vector<EnqueueResult> results;
    results.reserve(jobs.size());
    {
      std::lock_guard lock(mutex_);
      ImmediateTransaction tx(db_);
      const EpochMs now = now_ms();
      for (const Job& job : jobs) results.push_back(insert_locked(job, now));
      tx.commit();
    }
    if (!jobs.empty()) notifier_->notify();
    return results;
  }

  std::vector<Job> reserve(const ReserveParams& params) override {
    std::vector<Job> jobs;
    if (params.queues.empty() || params.max_jobs == 0) return jobs;
    std::string queue_list;  // bound without a copy: declared before the statement's scope
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    SqliteStatement& stmt = reserve_statement_locked(params.queues.size());
    StatementScope scope(stmt);
    const EpochMs now = now_ms();
    // Tokens are base + seq: distinct within the batch, unguessable across deliveries. Kept
    // below 2^62 so base + seq stays a positive SQLite integer.
    const auto base = static_cast<std::int64_t>(token_rng_() >> 2);
    stmt.bind(1, base)
        .bind(2, now + params.lease.count())
        .bind(3, std::string_view(params.worker_id))
        .bind(4, now)
        .bind(5, static_cast<std::int64_t>(params.max_jobs));
    if (params.queues.size() > kMaxUnionQueues) {
      queue_list = "[";
      for (const auto& queue : params.queues) {
        if (queue_list.size() > 1) queue_list.push_back(',');
        append_json_string(queue_list, queue);
      }
      queue_list.push_back(']');
      stmt.bind(6, std::string_view(queue_list));
    } else {
      int index = 6;
      for (const auto& queue : params.queues) stmt.bind(index++, std::string_view(queue));
    }
    std::vector<std::pair<std::int64_t, Job>> rows;
    while (stmt.step()) rows.emplace_back(stmt.column_int(kSeqColumn), read_job(stmt, now));
    stmt.reset();
    // RETURNING gives no order; hand jobs out in the order they were chosen.
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      if (a.second.priority != b.second.priority) return a.second.priority > b.second.priority;
      if (a.second.run_at != b.second.run_at) return a.second.run_at < b.second.run_at;
      return a.first < b.first;
    });
    jobs.reserve(rows.size());
    for (auto& row : rows) jobs.push_back(std::move(row.second));
    // A job that cannot be decoded fails alone, in this same transaction; the others run.
    fail_locked(take_undecodable(jobs), now);
    tx.commit();
    if (!rows.empty()) notifier_->notify_update();
    return jobs;
  }

  std::size_t ack(std::span<const Ack> acks) override {
    if (acks.empty()) return 0;
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    const EpochMs now = now_ms();
    std::size_t applied = 0;
    for (const Ack& a : acks) {
      StatementScope scope(*ack_);
      ack_->bind(1, std::string_view(a.lease.id))
          .bind(2, static_cast<std::int64_t>(a.lease.lease_token))
          .bind(3, std::string_view(a.result))
          .bind(4, now);
      ack_->step();
      applied += static_cast<std::size_t>(db_.changes());
    }
    tx.commit();
    if (applied > 0) notifier_->notify_update();
    return applied;
  }

  std::size_t fail(std::span<const Fail> fails) override {
    if (fails.empty()) return 0;
    bool requeued = false;
    std::size_t applied = 0;
    {
      std::lock_guard lock(mutex_);
      ImmediateTransaction tx(db_);
      std::tie(applied, requeued) = fail_locked(fails, now_ms());
      tx.commit();
    }
    if (requeued) notifier_->notify();
    if (applied > 0) notifier_->notify_update();
    return applied;
  }

  std::size_t release(std::span<const LeaseRef> leases) override {
    std::vector<Snooze> now_due;
    now_due.reserve(leases.size());
    for (const LeaseRef& l : leases) now_due.push_back(Snooze{l, 0});
    return snooze(now_due);
  }

  std::size_t snooze(std::span<const Snooze> snoozes) override {
    if (snoozes.empty()) return 0;
    std::size_t applied = 0;
    {
      std::lock_guard lock(mutex_);
      ImmediateTransaction tx(db_);
      const EpochMs now = now_ms();
      for (const Snooze& z : snoozes) {
        StatementScope scope(*put_back_);
        put_back_->bind(1, std::string_view(z.lease.id))
            .bind(2, static_cast<std::int64_t>(z.lease.lease_token))
            .bind(3, z.run_at)
            .bind(4, now);
        put_back_->step();
        applied += static_cast<std::size_t>(db_.changes());
      }
      tx.commit();
    }
    if (applied > 0) {
      notifier_->notify();
      notifier_->notify_update();
    }
    return applied;
  }

  std::vector<ExtendResult> extend(std::span<const LeaseRef> leases,
                                   std::chrono::milliseconds lease) override {
    std::vector<ExtendResult> results;
    if (leases.empty()) return results;
    results.reserve(leases.size());
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    const EpochMs until = now_ms() + lease.count();
    for (const LeaseRef& l : leases) {
      StatementScope scope(*extend_);
      extend_->bind(1, std::string_view(l.id))
          .bind(2, static_cast<std::int64_t>(l.lease_token))
          .bind(3, until);
      ExtendResult r{l.id, false, false};
      if (extend_->step()) {
        r.owned = true;
        r.cancel_requested = extend_->column_int(0) != 0;
      }
      results.push_back(std::move(r));
    }
    tx.commit();
    return results;
  }

  bool set_progress(const LeaseRef& lease, const Progress& progress) override {
    bool stored = false;
    {
      std::lock_guard lock(mutex_);
      StatementScope scope(*progress_);
      progress_->bind(1, std::string_view(lease.id))
          .bind(2, static_cast<std::int64_t>(lease.lease_token))
          .bind(3, progress.fraction)
          .bind(4, std::string_view(progress.step))
          .bind(5, std::string_view(progress.message));
      progress_->step();
      stored = db_.changes() > 0;
    }
    if (stored) notifier_->notify_update();
    return stored;
  }

  JobState cancel(const std::string& id) override {
    const JobState state = apply_cancel(id);
    notifier_->notify_update();
    return state;
  }

  // apply_cancel is cancel() without its notification.
  JobState apply_cancel(const std::string& id) {
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    JobState state;
    {
      StatementScope scope(*state_of_);
      state_of_->bind(1, std::string_view(id));
      if (!state_of_->step()) throw JobNotFound("no job with id " + id);
      state = static_cast<JobState>(state_of_->column_int(0));
    }
    if (state == JobState::kScheduled || state == JobState::kQueued) {
      StatementScope scope(*cancel_now_);
      cancel_now_->bind(1, std::string_view(id)).bind(2, now_ms());
      cancel_now_->step();
      state = JobState::kCancelled;
    } else if (state == JobState::kRunning) {
      StatementScope scope(*cancel_running_);
      cancel_running_->bind(1, std::string_view(id));
      cancel_running_->step();
    }
    tx.commit();
    return state;
  }

  std::optional<Job> get(const std::string& id) override {
    std::lock_guard lock(mutex_);
    StatementScope scope(*get_);
    get_->bind(1, std::string_view(id));
    if (!get_->step()) return std::nullopt;
    return read_job(*get_, now_ms());
  }

  std::vector<Job> list(const ListParams& params) override {
    std::string sql = "SELECT " + std::string(kJobColumns) + " FROM jobs WHERE 1";
    // The stored state of a due scheduled job is 0 but it reads as queued (1).
    if (params.state) {
      switch (*params.state) {
        case JobState::kScheduled:
          sql += " AND state = 0 AND run_at > ?1";
          break;
        case JobState::kQueued:
          sql += " AND (state = 1 OR (state = 0 AND run_at <= ?1))";
          break;
        default:
          sql += " AND state = ?2";
      }
    }
    if (params.queue) sql += " AND queue = ?3";
    if (params.task) sql += " AND task = ?4";
    sql += " ORDER BY seq DESC LIMIT ?5 OFFSET ?6";
    std::lock_guard lock(mutex_);
    SqliteStatement stmt(db_, sql);
    const EpochMs now = now_ms();
    stmt.bind(1, now).bind(2, params.state ? code(*params.state) : std::int64_t{0});
    if (params.queue) stmt.bind(3, std::string_view(*params.queue));
    if (params.task) stmt.bind(4, std::string_view(*params.task));
    stmt.bind(5, static_cast<std::int64_t>(params.limit))
        .bind(6, static_cast<std::int64_t>(params.offset));
    std::vector<Job> jobs;
    while (stmt.step()) jobs.push_back(read_job(stmt, now));
    return jobs;
  }

  std::vector<QueueCount> counts() override {
    std::lock_guard lock(mutex_);
    SqliteStatement stmt(
        db_,
        "SELECT queue, CASE WHEN state = 0 AND run_at <= ?1 THEN 1 ELSE state END AS s, count(*) "
        "FROM jobs GROUP BY queue, s ORDER BY queue, s");
    stmt.bind(1, now_ms());
    std::vector<QueueCount> out;
    while (stmt.step()) {
      out.push_back(QueueCount{stmt.column_text(0), static_cast<JobState>(stmt.column_int(1)),
                               stmt.column_int(2)});
    }
    return out;
  }

  RecoverReport recover_expired() override {
    RecoverReport report;
    {
      std::lock_guard lock(mutex_);
      ImmediateTransaction tx(db_);
      SqliteStatement stmt(
          db_,
          "UPDATE jobs SET "
          "state = CASE WHEN cancel_requested THEN 5 WHEN attempt >= max_attempts THEN 4 ELSE 1 "
          "END, "
          "finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN ?1 ELSE 0 "
          "END, "
          "error_type = CASE WHEN cancel_requested OR attempt < max_attempts THEN error_type "
          "ELSE 'LeaseExpired' END, "
          "error_message = CASE WHEN cancel_requested OR attempt < max_attempts THEN "
          "error_message ELSE 'the worker running attempt ' || attempt || ' of ' || "
          "max_attempts || ' stopped renewing its lease (it died or lost the broker)' END, "
          "error_traceback = CASE WHEN cancel_requested OR attempt < max_attempts THEN "
          "error_traceback ELSE '' END, "
          "lease_until = NULL, lease_token = 0 "
          "WHERE state = 2 AND lease_until < ?1 RETURNING state");
      stmt.bind(1, now_ms());
      while (stmt.step()) {
        if (stmt.column_int(0) == code(JobState::kQueued)) {
          ++report.requeued;
        } else {
          ++report.failed;
        }
      }
      stmt.reset();
      tx.commit();
    }
    if (report.requeued > 0) notifier_->notify();
    if (report.requeued + report.failed > 0) notifier_->notify_update();
    return report;
  }

  std::size_t prune_finished() override {
    return delete_before("DELETE FROM jobs WHERE state IN (3, 4, 5) AND finished_at < ?1",
                         now_ms() - options_.result_ttl.count());
  }

  std::size_t purge(std::string_view queue) override {
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    SqliteStatement stmt(db_, "DELETE FROM jobs WHERE state != 2 AND (?1 = '' OR queue = ?1)");
    stmt.bind(1, queue);
    stmt.step();
    const auto removed = static_cast<std::size_t>(db_.changes());
    stmt.reset();
    tx.commit();
    return removed;
  }

  TickResult enqueue_tick(const TickEnqueue& tick) override {
    validate_new_job(tick.job, options_);
    TickResult out;
    {
      std::lock_guard lock(mutex_);
      ImmediateTransaction tx(db_);
      if (auto state = schedule_state_locked(tick.schedule);
          state && state->last_tick >= tick.tick) {
        return TickResult{false, state->last_tick, state->last_job_id};
      }
      const EpochMs now = now_ms();
      out = TickResult{true, tick.tick, insert_locked(tick.job, now).id};
      SqliteStatement record(
          db_,
          "INSERT INTO schedules (name, last_tick, next_tick, last_job_id) VALUES (?1, ?2, ?3, ?4) "
          "ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick, "
          "next_tick = excluded.next_tick, last_job_id = excluded.last_job_id");
      record.bind(1, std::string_view(tick.schedule))
          .bind(2, tick.tick)
          .bind(3, tick.next_tick)
          .bind(4, std::string_view(out.job_id));
      record.step();
      record.reset();
      SqliteStatement history(db_,
                              "INSERT OR REPLACE INTO schedule_ticks (schedule, tick, job_id, "
                              "enqueued_at) VALUES (?1, ?2, ?3, ?4)");
      history.bind(1, std::string_view(tick.schedule))
          .bind(2, tick.tick)
          .bind(3, std::string_view(out.job_id))
          .bind(4, now);
      history.step();
      history.reset();
      tx.commit();
    }
    notifier_->notify();
    return out;
  }

  std::optional<ScheduleState> schedule_state(const std::string& name) override {
    std::lock_guard lock(mutex_);
    return schedule_state_locked(name);
  }

  std::vector<ScheduleState> schedule_states() override {
    std::lock_guard lock(mutex_);
    SqliteStatement stmt(
        db_, "SELECT name, last_tick, next_tick, last_job_id FROM schedules ORDER BY name");
    std::vector<ScheduleState> out;
    while (stmt.step()) out.push_back(read_schedule_state(stmt));
    return out;
  }

  std::vector<TickRecord> schedule_history(const std::string& name, std::size_t limit) override {
    std::lock_guard lock(mutex_);
    SqliteStatement stmt(db_,
                         "SELECT schedule, tick, job_id, enqueued_at FROM schedule_ticks "
                         "WHERE schedule = ?1 ORDER BY tick DESC LIMIT ?2");
    stmt.bind(1, std::string_view(name)).bind(2, static_cast<std::int64_t>(limit));
    std::vector<TickRecord> out;
    while (stmt.step()) {
      out.push_back(TickRecord{stmt.column_text(0), stmt.column_int(1), stmt.column_text(2),
                               stmt.column_int(3)});
    }
    return out;
  }

  std::size_t prune_schedule_history(EpochMs before) override {
    return delete_before("DELETE FROM schedule_ticks WHERE tick < ?1", before);
  }

  void wait_for_jobs(std::span<const std::string> /*queues*/, std::chrono::milliseconds max_wait,
                     std::stop_token stop) override {
    std::unique_lock lock(notifier_->mutex);
    const std::uint64_t seen = notifier_->generation;
    notifier_->cv.wait_for(lock, stop, max_wait, [&] { return notifier_->generation != seen; });
  }

  void wait_for_update(const std::string& /*id*/, std::chrono::milliseconds max_wait) override {
    // Changes made in this process wake the waiter at once; those of other processes cannot be
    // signalled through SQLite, so the wait is capped and the caller reads the job again.
    std::unique_lock lock(notifier_->mutex);
    const std::uint64_t seen = notifier_->updates;
    notifier_->update_cv.wait_for(lock, std::min(max_wait, std::chrono::milliseconds(20)),
                                  [&] { return notifier_->updates != seen; });
  }

 private:
  void migrate() { migrate_sqlite(db_); }

  // delete_before runs a DELETE whose ?1 is a cutoff time and returns how many rows went.
  std::size_t delete_before(std::string_view sql, EpochMs cutoff) {
    std::lock_guard lock(mutex_);
    ImmediateTransaction tx(db_);
    SqliteStatement stmt(db_, sql);
    stmt.bind(1, cutoff);
    stmt.step();
    const auto removed = static_cast<std::size_t>(db_.changes());
    stmt.reset();
    tx.commit();
    return removed;
  }

  static ScheduleState read_schedule_state(const SqliteStatement& s) {
    return ScheduleState{s.column_text(0), s.column_int(1), s.column_int(2), s.column_text(3)};
  }

  std::optional<ScheduleState> schedule_state_locked(const std::string& name) {
    SqliteStatement stmt(
        db_, "SELECT name, last_tick, next_tick, last_job_id FROM schedules WHERE name = ?1");
    stmt.bind(1, std::string_view(name));
    if (!stmt.step()) return std::nullopt;
    return read_schedule_state(stmt);
  }

  EnqueueResult insert_locked(const Job& job, EpochMs now) {
    EnqueueResult result;
    result.id = job.id.empty() ? new_job_id() : job.id;
    const EpochMs run_at = job.run_at > 0 ? job.run_at : now;
    {
      StatementScope scope(*insert_);
      insert_->bind(1, std::string_view(result.id))
          .bind(2, std::string_view(job.task))
          .bind(3, std::string_view(job.queue))
          .bind(4, std::string_view(job.args))
          .bind(5, std::string_view(job.kwargs))
          .bind(6, static_cast<std::int64_t>(job.priority))
          .bind(7, run_at)
          .bind(8, static_cast<std::int64_t>(job.max_attempts))
          .bind(9, job.unique_key)
          .bind(10, job.timeout_ms)
          .bind(11, run_at > now ? code(JobState::kScheduled) : code(JobState::kQueued))
          .bind(12, job.created_at > 0 ? job.created_at : now);
      insert_->step();
    }
    if (db_.changes() > 0) return result;
    // Ignored: the only constraint left to hit is a live job's unique key (or a reused id).
    if (job.unique_key) {
      StatementScope scope(*live_by_key_);
      live_by_key_->bind(1, std::string_view(*job.unique_key));
      if (live_by_key_->step()) return EnqueueResult{live_by_key_->column_text(0), false};
    }
    throw InvalidPayload("job id " + result.id + " already exists");
  }

  // fail_locked records failed deliveries inside the caller's transaction; returns how many
  // applied and whether any was queued again.
  std::pair<std::size_t, bool> fail_locked(std::span<const Fail> fails, EpochMs now) {
    std::size_t applied = 0;
    bool requeued = false;
    for (const Fail& f : fails) {
      StatementScope scope(*fail_);
      const bool retry = f.retry_at.has_value();
      const JobState final_state =
          f.final_state == JobState::kCancelled ? JobState::kCancelled : JobState::kFailed;
      fail_->bind(1, std::string_view(f.lease.id))
          .bind(2, static_cast<std::int64_t>(f.lease.lease_token))
          .bind(3, retry ? code(JobState::kScheduled) : code(final_state))
          .bind(4, retry ? *f.retry_at : std::int64_t{0})
          .bind(5, now)
          .bind(6, std::string_view(f.error.type))
          .bind(7, std::string_view(f.error.message))
          .bind(8, std::string_view(f.error.traceback));
      fail_->step();
      const auto changed = static_cast<std::size_t>(db_.changes());
      applied += changed;
      requeued = requeued || (retry && changed > 0);
    }
    return {applied, requeued};
  }

  // The reserve statement for `queue_count` queues. Each queue's due jobs are read in index
  // order with their own LIMIT and only the union is sorted, so the cost follows the batch
  // size, not the backlog (a plain `queue IN (...)` sorts every due job of those queues).
  // Past kMaxUnionQueues the union would near SQLite's limit of 500 terms in one compound
  // SELECT, so the queues travel as one JSON array (?6) and a correlated subquery reads each
  // queue's due jobs through the same index: one statement for any number of queues.
  SqliteStatement& reserve_statement_locked(std::size_t queue_count) {
    if (queue_count > kMaxUnionQueues) queue_count = 0;
    auto& slot = reserve_by_queue_count_[queue_count];
    if (!slot && queue_count == 0) {
      slot = std::make_unique<SqliteStatement>(
          db_,
          "UPDATE jobs SET state = 2, attempt = attempt + 1, lease_token = ?1 + seq, "
          "lease_until = ?2, worker = ?3, started_at = CASE WHEN started_at = 0 THEN ?4 ELSE "
          "started_at END WHERE seq IN (SELECT j.seq FROM json_each(?6) AS q JOIN jobs j ON "
          "j.seq IN (SELECT seq FROM jobs WHERE queue = q.value AND state IN (0, 1) AND run_at "
          "<= ?4 ORDER BY priority DESC, run_at, seq LIMIT ?5) ORDER BY j.priority DESC, "
          "j.run_at, j.seq LIMIT ?5) RETURNING " +
              std::string(kJobColumns));
    }
    if (!slot) {
      std::string candidates;
      for (std::size_t i = 0; i < queue_count; ++i) {
        if (i > 0) candidates += " UNION ALL ";
        candidates +=
            "SELECT * FROM (SELECT seq, priority, run_at FROM jobs WHERE queue = ?" +
            std::to_string(6 + i) +
            " AND state IN (0, 1) AND run_at <= ?4 ORDER BY priority DESC, run_at, seq LIMIT ?5)";
      }
      slot = std::make_unique<SqliteStatement>(
          db_,
          "UPDATE jobs SET state = 2, attempt = attempt + 1, lease_token = ?1 + seq, "
          "lease_until = ?2, worker = ?3, started_at = CASE WHEN started_at = 0 THEN ?4 ELSE "
          "started_at END WHERE seq IN (SELECT seq FROM (" +
              candidates + ") ORDER BY priority DESC, run_at, seq LIMIT ?5) RETURNING " +
              std::string(kJobColumns));
    }
    return *slot;
  }

  std::string url_;
  BrokerOptions options_;
  SqliteDatabase db_;  // declared before the statements so it outlives them
  std::mutex mutex_;   // one connection: every use is serialised
  std::shared_ptr<Notifier> notifier_;
  std::mt19937_64 token_rng_;
  std::unique_ptr<SqliteStatement> insert_, live_by_key_, ack_, fail_, put_back_, extend_,
      progress_, get_, state_of_, cancel_now_, cancel_running_;
  std::unordered_map<std::size_t, std::unique_ptr<SqliteStatement>> reserve_by_queue_count_;
};

}  // namespace

void migrate_sqlite(SqliteDatabase& db) {
  ImmediateTransaction tx(db);
  SqliteStatement version(db, "PRAGMA user_version");
  version.step();
  const std::int64_t found = version.column_int(0);
  version.reset();
  if (found > kSchemaVersion) {
    throw ConfigError("SQLite database '" + db.path() + "' has schema version " +
                      std::to_string(found) + ", newer than this cinejobs knows (" +
                      std::to_string(kSchemaVersion) + "): upgrade cinejobs");
  }
  // Every statement of the schema is IF NOT EXISTS, so running it over an older version adds
  // what that version lacks.
  if (found < kSchemaVersion) db.exec(embedded::kSchemaSql, "creating the cinejobs schema");
  tx.commit();
}

std::shared_ptr<Broker> open_sqlite_broker(std::string url, SqliteConfig config,
                                           BrokerOptions options) {
  return std::make_shared<SqliteBroker>(std::move(url), std::move(config), options);
}

}  // namespace cinejobs::detail
