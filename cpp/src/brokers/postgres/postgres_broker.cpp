#include "brokers/postgres/postgres_broker.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>
#include <pqxx/stream_to>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "broker_url.hpp"
#include "brokers/postgres/pg_connection.hpp"
#include "cinejobs/detail/embedded_sql.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/log.hpp"
#include "cinejobs/migrate.hpp"
#include "cinejobs/postgres.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t code(JobState s) { return static_cast<std::int64_t>(s); }

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// Every migration, in order. A new one is a new file in migrations/ and a new line here.
constexpr Migration kMigrations[] = {
    {1, "init", embedded::k0001InitSql},
    {2, "rate_limits", embedded::k0002RateLimitsSql},
    {3, "schedules", embedded::k0003SchedulesSql},
    {4, "films", embedded::k0004FilmsSql},
};

// with_schema substitutes the quoted schema for :"schema" and the notification channel literal
// ('<schema>_jobs') for :'channel', psql's variable syntax. The schema name was checked to be a
// plain identifier, so neither needs escaping.
std::string with_schema(std::string_view sql, std::string_view schema) {
  std::string out;
  out.reserve(sql.size() + 64);
  for (std::size_t i = 0; i < sql.size();) {
    if (sql.compare(i, 9, ":\"schema\"") == 0) {
      out.append("\"").append(schema).append("\"");
      i += 9;
    } else if (sql.compare(i, 10, ":'channel'") == 0) {
      out.append("'").append(schema).append("_jobs'");
      i += 10;
    } else {
      out.push_back(sql[i++]);
    }
  }
  return out;
}

// Columns read back into a Job, in this order, by every query that returns jobs.
constexpr std::string_view kJobColumns =
    "j.id::text, j.task, j.queue, j.args, j.kwargs, j.priority, j.run_at, j.attempt, "
    "j.max_attempts, j.unique_key, j.timeout_ms, j.state, j.progress_fraction, j.progress_step, "
    "j.progress_message, j.result, j.error_type, j.error_message, j.error_traceback, "
    "j.created_at, j.started_at, j.finished_at, j.cancel_requested, j.lease_token, j.seq";
constexpr int kSeqColumn = 24;

// The one INSERT of a single job, shared by enqueue() and postgres_enqueue_statement(). It
// returns (id, true) when stored, (holder id, false) when a live job holds the unique key; the
// pg_notify in RETURNING runs for the stored row and is delivered at commit.
constexpr std::string_view kEnqueueOneSql =
    "WITH ins AS (INSERT INTO :\"schema\".jobs (id, task, queue, args, kwargs, priority, run_at, "
    "attempt, max_attempts, unique_key, timeout_ms, state, created_at, started_at, finished_at) "
    "VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::integer, $7::bigint, 0, "
    "$8::integer, $9::text, $10::bigint, $11::smallint, $12::bigint, 0, 0) "
    "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN (0, 1, 2) DO NOTHING "
    "RETURNING id, pg_notify(:'channel', queue)) "
    "SELECT id::text, true FROM ins UNION ALL "
    "SELECT id::text, false FROM :\"schema\".jobs WHERE unique_key = $9::text "
    "AND state IN (0, 1, 2) AND NOT EXISTS (SELECT 1 FROM ins)";

// enqueue_many: one statement for the batch, the columns passed as arrays. Rows are inserted in
// batch order so the first of two jobs with one key wins; the result lists only the jobs not
// stored, with the holder of their key (a job of this batch, or a live one), plus one row (n = -1)
// that makes the notification CTE run: one pg_notify per queue, not per job.
constexpr std::string_view kEnqueueManySql =
    "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::integer[], $7::bigint[], $8::integer[], $9::text[], $10::bigint[], "
    "$11::smallint[], $12::bigint[]) WITH ORDINALITY AS r(id, task, queue, args, kwargs, "
    "priority, run_at, max_attempts, unique_key, timeout_ms, state, created_at, n)), "
    "ins AS (INSERT INTO :\"schema\".jobs (id, task, queue, args, kwargs, priority, run_at, "
    "attempt, max_attempts, unique_key, timeout_ms, state, created_at, started_at, finished_at) "
    "SELECT id, task, queue, args, kwargs, priority, run_at, 0, max_attempts, unique_key, "
    "timeout_ms, state, created_at, 0, 0 FROM input ORDER BY n "
    "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN (0, 1, 2) DO NOTHING "
    "RETURNING id, unique_key, queue), "
    "woke AS (SELECT pg_notify(:'channel', q.queue) FROM (SELECT DISTINCT queue FROM ins) q) "
    "SELECT i.n, coalesce(b.id, l.id)::text FROM input i "
    "LEFT JOIN ins b ON b.unique_key = i.unique_key "
    "LEFT JOIN :\"schema\".jobs l ON l.unique_key = i.unique_key AND l.state IN (0, 1, 2) "
    "WHERE i.unique_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins c WHERE c.id = i.id) "
    "UNION ALL SELECT -1, count(*)::text FROM woke";

// enqueue_many's COPY path: the columns it writes, and the wake-up it sends in the same
// transaction (delivered at commit, like the INSERTs' pg_notify).
const std::array<std::string, 14> kCopyColumns = {
    "id",      "task",         "queue",      "args",  "kwargs",     "priority",   "run_at",
    "attempt", "max_attempts", "timeout_ms", "state", "created_at", "started_at", "finished_at"};
constexpr std::string_view kNotifyQueuesSql =
    "SELECT pg_notify(:'channel', q) FROM unnest($1::text[]) AS q";
// Moves a schedule's last tick forward, or returns no row when a tick at or after this one was
// recorded already. The upsert locks the schedule's row until the transaction ends, so a
// concurrent scheduler offering the same tick waits, then sees the moved tick and gets no row.
constexpr std::string_view kClaimTickSql =
    "INSERT INTO :\"schema\".schedules AS s (name, last_tick, next_tick, last_job_id) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick, "
    "next_tick = excluded.next_tick, last_job_id = excluded.last_job_id "
    "WHERE s.last_tick < excluded.last_tick RETURNING name";
constexpr std::string_view kScheduleStateSql =
    "SELECT name, last_tick, next_tick, last_job_id FROM :\"schema\".schedules";
constexpr std::string_view kRecordTickSql =
    "INSERT INTO :\"schema\".schedule_ticks (schedule, tick, job_id, enqueued_at) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (schedule, tick) DO UPDATE SET job_id = excluded.job_id, "
    "enqueued_at = excluded.enqueued_at";

constexpr std::string_view kLiveByKeySql =
    "SELECT id::text FROM :\"schema\".jobs WHERE unique_key = $1 AND state IN (0, 1, 2)";

// Each named queue's due jobs are read in index order with their own LIMIT (and locked, skipping
// rows other reservers hold), and only that union is sorted: the cost follows the batch size, not
// the backlog. Tokens are base + seq: distinct within the batch, unguessable across deliveries.
std::string reserve_sql() {
  return "WITH picked AS (SELECT c.seq FROM unnest($1::text[]) AS q(name) CROSS JOIN LATERAL "
         "(SELECT seq, priority, run_at FROM :\"schema\".jobs WHERE queue = q.name AND state IN "
         "(0, 1) AND run_at <= $2::bigint ORDER BY priority DESC, run_at, seq LIMIT $3::bigint FOR "
         "UPDATE SKIP "
         "LOCKED) c ORDER BY c.priority DESC, c.run_at, c.seq LIMIT $3) "
         "UPDATE :\"schema\".jobs j SET state = 2, attempt = j.attempt + 1, lease_token = "
         "$4::bigint + "
         "j.seq, lease_until = $5::bigint, worker = $6::text, started_at = CASE WHEN j.started_at "
         "= 0 THEN $2 "
         "ELSE j.started_at END FROM picked WHERE j.seq = picked.seq RETURNING " +
         std::string(kJobColumns);
}

// Ack, fail, release and extend change many rows that other statements of the same worker may
// change at once (a heartbeat extends the very leases an ack is ending). Each first locks its
// rows in one order, seq's, in the `own` CTE, so two of them can wait for each other but never
// in a cycle: without it PostgreSQL detects deadlocks between a worker's heartbeat and its acks
// under load. `own` keeps only the deliveries that still own their job.
constexpr std::string_view kAckSql =
    "WITH own AS (SELECT j.seq, a.result FROM :\"schema\".jobs j JOIN unnest($1::uuid[], "
    "$2::bigint[], $3::text[]) AS a(id, token, result) ON j.id = a.id AND j.lease_token = a.token "
    "WHERE j.state = 2 ORDER BY j.seq FOR UPDATE OF j) "
    "UPDATE :\"schema\".jobs j SET state = 3, result = own.result, finished_at = $4::bigint, "
    "lease_until = NULL FROM own WHERE j.seq = own.seq";

// A failed attempt of a job whose cancel was requested ends cancelled, never retried.
constexpr std::string_view kFailSql =
    "WITH own AS (SELECT j.seq, f.state, f.retry_at, f.type, f.message, f.traceback FROM "
    ":\"schema\".jobs j JOIN unnest($1::uuid[], $2::bigint[], $3::smallint[], $4::bigint[], "
    "$5::text[], $6::text[], $7::text[]) AS f(id, token, state, retry_at, type, message, "
    "traceback) ON j.id = f.id AND j.lease_token = f.token WHERE j.state = 2 ORDER BY j.seq "
    "FOR UPDATE OF j) "
    "UPDATE :\"schema\".jobs j SET state = CASE WHEN j.cancel_requested THEN 5 ELSE f.state END, "
    "run_at = CASE WHEN f.state = 0 AND NOT j.cancel_requested THEN f.retry_at ELSE j.run_at END, "
    "finished_at = CASE WHEN f.state = 0 AND NOT j.cancel_requested THEN 0 ELSE $8::bigint END, "
    "error_type = f.type, error_message = f.message, error_traceback = f.traceback, "
    "lease_until = NULL FROM own f WHERE j.seq = f.seq "
    "RETURNING CASE WHEN j.state = 0 THEN pg_notify(:'channel', j.queue) END";

// Release and snooze: back to waiting without counting the attempt, queued or scheduled by the
// new run_at, which never moves earlier than the job's own (a release passes 0 and keeps the
// job's place in its queue).
constexpr std::string_view kPutBackSql =
    "WITH own AS (SELECT j.seq, z.run_at FROM :\"schema\".jobs j JOIN unnest($1::uuid[], "
    "$2::bigint[], $3::bigint[]) AS z(id, token, run_at) ON j.id = z.id AND j.lease_token = "
    "z.token WHERE j.state = 2 ORDER BY j.seq FOR UPDATE OF j) "
    "UPDATE :\"schema\".jobs j SET state = CASE WHEN j.cancel_requested THEN 5 "
    "WHEN z.run_at > $4::bigint THEN 0 ELSE 1 END, "
    "run_at = CASE WHEN j.cancel_requested THEN j.run_at ELSE GREATEST(j.run_at, z.run_at) END, "
    "finished_at = CASE WHEN j.cancel_requested THEN $4::bigint ELSE 0 END, "
    "attempt = j.attempt - 1, lease_until = NULL, lease_token = 0 "
    "FROM own z WHERE j.seq = z.seq "
    "RETURNING CASE WHEN j.state IN (0, 1) THEN pg_notify(:'channel', j.queue) END";

constexpr std::string_view kExtendSql =
    "WITH own AS (SELECT j.seq FROM :\"schema\".jobs j JOIN unnest($1::uuid[], $2::bigint[]) AS "
    "e(id, token) ON j.id = e.id AND j.lease_token = e.token WHERE j.state = 2 ORDER BY j.seq "
    "FOR UPDATE OF j) "
    "UPDATE :\"schema\".jobs j SET lease_until = $3::bigint FROM own WHERE j.seq = own.seq "
    "RETURNING j.id::text, j.lease_token, j.cancel_requested";

constexpr std::string_view kProgressSql =
    "UPDATE :\"schema\".jobs SET progress_fraction = $3::double precision, progress_step = "
    "$4::text, progress_message = $5::text WHERE id = $1::uuid AND state = 2 AND lease_token = "
    "$2::bigint";

// Cancel ends a scheduled or queued job, marks a running one; a final job is left as it is and
// read back by the second branch.
constexpr std::string_view kCancelSql =
    "WITH upd AS (UPDATE :\"schema\".jobs SET state = CASE WHEN state = 2 THEN 2 ELSE 5 END, "
    "finished_at = CASE WHEN state = 2 THEN finished_at ELSE $2::bigint END, "
    "cancel_requested = cancel_requested OR state = 2 "
    "WHERE id = $1::uuid AND state IN (0, 1, 2) RETURNING state) "
    "SELECT state FROM upd UNION ALL SELECT state FROM :\"schema\".jobs "
    "WHERE id = $1::uuid AND NOT EXISTS (SELECT 1 FROM upd)";

constexpr std::string_view kCountsSql =
    "SELECT queue, CASE WHEN state = 0 AND run_at <= $1::bigint THEN 1 ELSE state END AS s, "
    "count(*) "
    "FROM :\"schema\".jobs GROUP BY queue, s ORDER BY queue, s";

// Recovery skips expired rows another statement holds (an ack arriving late, say): whatever
// that statement leaves behind is still expired at the next pass, so nothing waits.
constexpr std::string_view kRecoverSql =
    "WITH expired AS (SELECT seq FROM :\"schema\".jobs WHERE state = 2 AND lease_until < "
    "$1::bigint FOR UPDATE SKIP LOCKED) "
    "UPDATE :\"schema\".jobs SET "
    "state = CASE WHEN cancel_requested THEN 5 WHEN attempt >= max_attempts THEN 4 ELSE 1 END, "
    "finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN $1::bigint ELSE 0 "
    "END, "
    "error_type = CASE WHEN cancel_requested OR attempt < max_attempts THEN error_type "
    "ELSE 'LeaseExpired' END, "
    "error_message = CASE WHEN cancel_requested OR attempt < max_attempts THEN error_message "
    "ELSE 'the worker running attempt ' || attempt || ' of ' || max_attempts || "
    "' stopped renewing its lease (it died or lost the broker)' END, "
    "error_traceback = CASE WHEN cancel_requested OR attempt < max_attempts THEN error_traceback "
    "ELSE '' END, lease_until = NULL, lease_token = 0 "
    "WHERE seq IN (SELECT seq FROM expired) "
    "RETURNING state, CASE WHEN state = 1 THEN pg_notify(:'channel', queue) END";

constexpr std::string_view kPruneSql =
    "DELETE FROM :\"schema\".jobs WHERE state IN (3, 4, 5) AND finished_at < $1::bigint";

constexpr std::string_view kPurgeSql =
    "DELETE FROM :\"schema\".jobs WHERE state <> 2 AND ($1::text = '' OR queue = $1::text)";

// ---- small helpers ----

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// is_uuid accepts the canonical 8-4-4-4-12 form new_job_id() produces (either case); the broker
// stores ids as uuid, and anything else can name no job.
bool is_uuid(std::string_view id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? id[i] != '-' : !is_hex(id[i])) return false;
  }
  return true;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// PgArray builds a PostgreSQL array literal ({"a","b",NULL}): libpqxx 6 cannot pass a vector.
class PgArray {
 public:
  PgArray() { out_.push_back('{'); }
  PgArray& add(std::string_view text) {
    separate();
    out_.push_back('"');
    for (const char c : text) {
      if (c == '"' || c == '\\') out_.push_back('\\');
      out_.push_back(c);
    }
    out_.push_back('"');
    return *this;
  }
  PgArray& add(std::int64_t value) {
    separate();
    char buffer[24];
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
    out_.append(buffer, end);
    return *this;
  }
  PgArray& add(const std::optional<std::string>& text) {
    if (text) return add(std::string_view(*text));
    separate();
    out_.append("NULL");
    return *this;
  }
  void reserve(std::size_t bytes) { out_.reserve(bytes); }
  std::string take() {
    out_.push_back('}');
    return std::move(out_);
  }

 private:
  void separate() {
    if (out_.size() > 1) out_.push_back(',');
  }
  std::string out_;
};

std::int64_t as_int(const pqxx::field& f) {
  std::int64_t value = 0;
  std::from_chars(f.c_str(), f.c_str() + f.size(), value);
  return value;
}
std::string as_text(const pqxx::field& f) { return std::string(f.c_str(), f.size()); }
bool as_bool(const pqxx::field& f) { return f.size() > 0 && f.c_str()[0] == 't'; }

Job read_job(const pqxx::row& r, EpochMs now) {
  Job job;
  job.id = as_text(r[0]);
  job.task = as_text(r[1]);
  job.queue = as_text(r[2]);
  job.args = as_text(r[3]);
  job.kwargs = as_text(r[4]);
  job.priority = static_cast<int>(as_int(r[5]));
  job.run_at = as_int(r[6]);
  job.attempt = static_cast<int>(as_int(r[7]));
  job.max_attempts = static_cast<int>(as_int(r[8]));
  if (!r[9].is_null()) job.unique_key = as_text(r[9]);
  job.timeout_ms = as_int(r[10]);
  job.state = static_cast<JobState>(as_int(r[11]));
  // A scheduled job whose time has come is queued; it is stored as scheduled until reserved.
  if (job.state == JobState::kScheduled && job.run_at <= now) job.state = JobState::kQueued;
  if (!r[12].is_null()) {
    job.progress = Progress{r[12].as<double>(), as_text(r[13]), as_text(r[14])};
  }
  if (!r[15].is_null()) job.result = as_text(r[15]);
  if (!r[16].is_null()) job.error = JobFailure{as_text(r[16]), as_text(r[17]), as_text(r[18])};
  job.created_at = as_int(r[19]);
  job.started_at = as_int(r[20]);
  job.finished_at = as_int(r[21]);
  job.cancel_requested = as_bool(r[22]);
  job.lease_token = static_cast<std::uint64_t>(as_int(r[23]));
  return job;
}

// Parameters of kEnqueueOneSql, $1..$12, for a validated job.
std::vector<SqlParam> enqueue_params(const Job& job, const std::string& id, EpochMs now) {
  const EpochMs run_at = job.run_at > 0 ? job.run_at : now;
  std::vector<SqlParam> p;
  p.reserve(12);
  p.emplace_back(id);
  p.emplace_back(job.task);
  p.emplace_back(job.queue);
  p.emplace_back(job.args);
  p.emplace_back(job.kwargs);
  p.emplace_back(std::int64_t{job.priority});
  p.emplace_back(run_at);
  p.emplace_back(std::int64_t{job.max_attempts});
  if (job.unique_key) {
    p.emplace_back(*job.unique_key);
  } else {
    p.emplace_back(std::monostate{});
  }
  p.emplace_back(job.timeout_ms);
  p.emplace_back(run_at > now ? code(JobState::kScheduled) : code(JobState::kQueued));
  p.emplace_back(job.created_at > 0 ? job.created_at : now);
  return p;
}

// new_id returns the job's id for storing: a fresh one when empty, else the given one, which
// must be a UUID (the column's type).
std::string id_for(const Job& job) {
  if (job.id.empty()) return new_job_id();
  if (!is_uuid(job.id)) {
    throw InvalidPayload("job id '" + job.id + "' of task '" + job.task +
                         "' is not a UUID: leave it empty and the broker makes one");
  }
  return lower(job.id);
}

const char* param_ptr(const SqlParam& p, std::string& scratch) {
  if (std::holds_alternative<std::monostate>(p)) return nullptr;
  if (const auto* i = std::get_if<std::int64_t>(&p)) {
    scratch = std::to_string(*i);
    return scratch.c_str();
  }
  return std::get<std::string>(p).c_str();
}

std::uint64_t random_base() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device device;
    std::seed_seq seq{device(), device(), device(), device()};
    return std::mt19937_64(seq);
  }()};
  // Kept below 2^62 so base + seq stays a positive bigint.
  return rng() >> 2;
}

// exec_insert runs an enqueue statement; the only unique constraint ON CONFLICT leaves to hit is
// the id's, so a violation means a given id was used before.
template <class... Args>
pqxx::result exec_insert(pqxx::transaction_base& tx, const std::string& name, Args&&... args) {
  try {
    return tx.exec_prepared(name, std::forward<Args>(args)...);
  } catch (const pqxx::unique_violation& e) {
    throw InvalidPayload(std::string("a job id given to enqueue already exists (") + e.what() +
                         ")");
  }
}

// ---- wake-ups ----

// Notifier: generations per queue, bumped by this broker's own enqueues and by NOTIFYs that the
// listener receives; waiters wait for a generation of one of their queues to move.
struct Notifier {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::uint64_t all = 0;  // bumped when anything may have been missed (listener reconnected)
  std::unordered_map<std::string, std::uint64_t> by_queue;

  std::uint64_t generation_locked(std::span<const std::string> queues) {
    std::uint64_t sum = all;
    for (const auto& q : queues) {
      const auto it = by_queue.find(q);
      if (it != by_queue.end()) sum += it->second;
    }
    return sum;
  }
  void bump(const std::string& queue) {
    {
      std::lock_guard lock(mutex);
      ++by_queue[queue];
    }
    cv.notify_all();
  }
  void bump_all() {
    {
      std::lock_guard lock(mutex);
      ++all;
    }
    cv.notify_all();
  }
};

class JobsReceiver final : public pqxx::notification_receiver {
 public:
  JobsReceiver(pqxx::connection& conn, const std::string& channel, Notifier& notifier)
      : pqxx::notification_receiver(conn, channel), notifier_(notifier) {}
  void operator()(const std::string& payload, int /*backend_pid*/) override {
    notifier_.bump(payload);
  }

 private:
  Notifier& notifier_;
};

// ---- the broker ----

class PostgresBroker final : public Broker {
  // run calls f(connection) on a pooled connection; see PgPool::run.
  template <class F>
  auto run(std::string_view context, F&& f) {
    return pool_.run(context, std::forward<F>(f));
  }

 public:
  PostgresBroker(std::string url, PostgresConfig config, BrokerOptions options)
      : url_(std::move(url)),
        config_(std::move(config)),
        options_(options),
        channel_(config_.schema + "_jobs"),
        pool_(make_pg_target(config_.conninfo, config_.redacted_url),
              [this](pqxx::connection& c) { prepare(c); }) {
    if (config_.migrate) migrate_postgres(config_);
    check_version();
  }

  ~PostgresBroker() override {
    if (listener_.joinable()) {
      listener_.request_stop();
      listener_.join();
    }
  }

  std::string_view kind() const noexcept override { return "postgres"; }
  const std::string& url() const noexcept override { return url_; }

  EnqueueResult enqueue(const Job& job) override {
    validate_new_job(job, options_);
    const std::string id = id_for(job);
    EnqueueResult result = enqueue_one(job, id);
    if (result.created) notifier_.bump(job.queue);
    return result;
  }

  std::vector<EnqueueResult> enqueue_many(std::span<const Job> jobs) override {
    std::vector<EnqueueResult> results;
    if (jobs.empty()) return results;
    for (const Job& job : jobs) validate_new_job(job, options_);
    results.reserve(jobs.size());
    for (const Job& job : jobs) results.push_back(EnqueueResult{id_for(job), true});

    const EpochMs now = now_ms();
    const bool any_key = std::any_of(jobs.begin(), jobs.end(),
                                     [](const Job& j) { return j.unique_key.has_value(); });
    if (!any_key) {
      copy_jobs(jobs, results, now);
      return results;
    }
    PgArray ids, tasks, queues, args, kwargs, priorities, run_ats, max_attempts, keys, timeouts,
        states, created;
    std::size_t payload = 0;
    for (const Job& job : jobs) payload += job.args.size() + job.kwargs.size() + 16;
    args.reserve(payload);
    ids.reserve(jobs.size() * 39);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      const Job& job = jobs[i];
      const EpochMs run_at = job.run_at > 0 ? job.run_at : now;
      ids.add(std::string_view(results[i].id));
      tasks.add(std::string_view(job.task));
      queues.add(std::string_view(job.queue));
      args.add(std::string_view(job.args));
      kwargs.add(std::string_view(job.kwargs));
      priorities.add(std::int64_t{job.priority});
      run_ats.add(run_at);
      max_attempts.add(std::int64_t{job.max_attempts});
      keys.add(job.unique_key);
      timeouts.add(job.timeout_ms);
      states.add(run_at > now ? code(JobState::kScheduled) : code(JobState::kQueued));
      created.add(job.created_at > 0 ? job.created_at : now);
    }
    std::vector<std::size_t> unresolved;
    pool_.run("enqueueing a batch of jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r =
          exec_insert(tx, "cj_enqueue_many", ids.take(), tasks.take(), queues.take(), args.take(),
                      kwargs.take(), priorities.take(), run_ats.take(), max_attempts.take(),
                      keys.take(), timeouts.take(), states.take(), created.take());
      for (const auto& row : r) {
        const std::int64_t n = as_int(row[0]);
        if (n < 1) continue;
        const auto index = static_cast<std::size_t>(n - 1);
        results[index].created = false;
        if (row[1].is_null()) {
          unresolved.push_back(index);
        } else {
          results[index].id = as_text(row[1]);
        }
      }
    });
    // A key whose holder committed after this statement's snapshot: ask again, one by one.
    for (const std::size_t index : unresolved) {
      results[index] = enqueue_one(jobs[index], results[index].id);
    }
    bump_queues_of(jobs);
    return results;
  }

  std::vector<Job> reserve(const ReserveParams& params) override {
    std::vector<Job> jobs;
    if (params.queues.empty() || params.max_jobs == 0) return jobs;
    PgArray queues;
    std::set<std::string_view> seen;
    for (const auto& q : params.queues) {
      if (seen.insert(q).second) queues.add(std::string_view(q));
    }
    const EpochMs now = now_ms();
    const auto base = static_cast<std::int64_t>(random_base());
    std::vector<std::pair<std::int64_t, Job>> rows;
    run("reserving jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_reserve", queues.take(), now,
                                              static_cast<std::int64_t>(params.max_jobs), base,
                                              now + params.lease.count(), params.worker_id);
      rows.reserve(r.size());
      for (const auto& row : r) rows.emplace_back(as_int(row[kSeqColumn]), read_job(row, now));
    });
    // RETURNING gives no order; hand jobs out in the order they were chosen.
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      if (a.second.priority != b.second.priority) return a.second.priority > b.second.priority;
      if (a.second.run_at != b.second.run_at) return a.second.run_at < b.second.run_at;
      return a.first < b.first;
    });
    jobs.reserve(rows.size());
    for (auto& row : rows) jobs.push_back(std::move(row.second));
    // A job that cannot be decoded fails alone and the others run. Failing it is a second
    // statement (reserve stays one round trip while every job is sound); its lease keeps it ours
    // in between, and should that fail too, it is leased and failed again after its lease.
    const std::vector<Fail> undecodable = take_undecodable(jobs);
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
    PgArray ids, tokens, results;
    std::size_t n = 0;
    for (const Ack& a : acks) {
      if (!is_uuid(a.lease.id)) continue;
      ids.add(std::string_view(a.lease.id));
      tokens.add(static_cast<std::int64_t>(a.lease.lease_token));
      results.add(std::string_view(a.result));
      ++n;
    }
    if (n == 0) return 0;
    return run("acknowledging jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_prepared("cj_ack", ids.take(), tokens.take(), results.take(), now_ms())
          .affected_rows();
    });
  }

  std::size_t fail(std::span<const Fail> fails) override {
    PgArray ids, tokens, states, retry_ats, types, messages, tracebacks;
    std::size_t n = 0;
    for (const Fail& f : fails) {
      if (!is_uuid(f.lease.id)) continue;
      const bool retry = f.retry_at.has_value();
      const JobState final_state =
          f.final_state == JobState::kCancelled ? JobState::kCancelled : JobState::kFailed;
      ids.add(std::string_view(f.lease.id));
      tokens.add(static_cast<std::int64_t>(f.lease.lease_token));
      states.add(retry ? code(JobState::kScheduled) : code(final_state));
      retry_ats.add(retry ? *f.retry_at : std::int64_t{0});
      types.add(std::string_view(f.error.type));
      messages.add(std::string_view(f.error.message));
      tracebacks.add(std::string_view(f.error.traceback));
      ++n;
    }
    if (n == 0) return 0;
    const std::size_t applied = run("recording failed jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx
          .exec_prepared("cj_fail", ids.take(), tokens.take(), states.take(), retry_ats.take(),
                         types.take(), messages.take(), tracebacks.take(), now_ms())
          .affected_rows();
    });
    const bool retried =
        std::any_of(fails.begin(), fails.end(), [](const Fail& f) { return f.retry_at; });
    if (applied > 0 && retried) notifier_.bump_all();
    return applied;
  }

  std::size_t release(std::span<const LeaseRef> leases) override {
    std::vector<Snooze> now_due;
    now_due.reserve(leases.size());
    for (const LeaseRef& l : leases) now_due.push_back(Snooze{l, 0});
    return snooze(now_due);
  }

  std::size_t snooze(std::span<const Snooze> snoozes) override {
    PgArray ids, tokens, run_ats;
    std::size_t n = 0;
    for (const Snooze& z : snoozes) {
      if (!is_uuid(z.lease.id)) continue;
      ids.add(std::string_view(z.lease.id));
      tokens.add(static_cast<std::int64_t>(z.lease.lease_token));
      run_ats.add(z.run_at);
      ++n;
    }
    if (n == 0) return 0;
    const std::size_t applied = run("returning jobs to their queue", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_prepared("cj_put_back", ids.take(), tokens.take(), run_ats.take(), now_ms())
          .affected_rows();
    });
    if (applied > 0) notifier_.bump_all();
    return applied;
  }

  std::vector<ExtendResult> extend(std::span<const LeaseRef> leases,
                                   std::chrono::milliseconds lease) override {
    std::vector<ExtendResult> results;
    if (leases.empty()) return results;
    results.reserve(leases.size());
    PgArray ids, tokens;
    std::size_t n = 0;
    for (const LeaseRef& l : leases) {
      results.push_back(ExtendResult{l.id, false, false});
      if (!is_uuid(l.id)) continue;
      ids.add(std::string_view(l.id));
      tokens.add(static_cast<std::int64_t>(l.lease_token));
      ++n;
    }
    if (n == 0) return results;
    std::map<std::pair<std::string, std::uint64_t>, bool> owned;  // (id, token) -> cancel
    run("extending leases", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r =
          tx.exec_prepared("cj_extend", ids.take(), tokens.take(), now_ms() + lease.count());
      for (const auto& row : r) {
        owned[{as_text(row[0]), static_cast<std::uint64_t>(as_int(row[1]))}] = as_bool(row[2]);
      }
    });
    for (std::size_t i = 0; i < leases.size(); ++i) {
      const auto it = owned.find({lower(leases[i].id), leases[i].lease_token});
      if (it != owned.end()) {
        results[i].owned = true;
        results[i].cancel_requested = it->second;
      }
    }
    return results;
  }

  bool set_progress(const LeaseRef& lease, const Progress& progress) override {
    if (!is_uuid(lease.id)) return false;
    return run("storing progress", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_prepared("cj_progress", lease.id, static_cast<std::int64_t>(lease.lease_token),
                              progress.fraction, progress.step, progress.message)
                 .affected_rows() > 0;
    });
  }

  JobState cancel(const std::string& id) override {
    if (!is_uuid(id)) throw JobNotFound("no job with id " + id);
    const std::optional<JobState> state = run("cancelling a job", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_cancel", id, now_ms());
      if (r.empty()) return std::optional<JobState>{};
      return std::optional<JobState>(static_cast<JobState>(as_int(r[0][0])));
    });
    if (!state) throw JobNotFound("no job with id " + id);
    return *state;
  }

  std::optional<Job> get(const std::string& id) override {
    if (!is_uuid(id)) return std::nullopt;
    return run("reading a job", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_get", id);
      if (r.empty()) return std::optional<Job>{};
      return std::optional<Job>(read_job(r[0], now_ms()));
    });
  }

  std::vector<Job> list(const ListParams& params) override {
    const EpochMs now = now_ms();
    std::vector<std::string> values;
    auto param = [&](std::string value, std::string_view type) {
      values.push_back(std::move(value));
      std::string placeholder = "$";
      placeholder.append(std::to_string(values.size())).append("::").append(type);
      return placeholder;
    };
    std::string sql = "SELECT " + std::string(kJobColumns) + " FROM :\"schema\".jobs j WHERE true";
    // The stored state of a due scheduled job is 0 but it reads as queued (1).
    if (params.state) {
      switch (*params.state) {
        case JobState::kScheduled:
          sql += " AND j.state = 0 AND j.run_at > " + param(std::to_string(now), "bigint");
          break;
        case JobState::kQueued:
          sql += " AND (j.state = 1 OR (j.state = 0 AND j.run_at <= " +
                 param(std::to_string(now), "bigint") + "))";
          break;
        default:
          sql += " AND j.state = " + param(std::to_string(code(*params.state)), "smallint");
      }
    }
    if (params.queue) sql += " AND j.queue = " + param(*params.queue, "text");
    if (params.task) sql += " AND j.task = " + param(*params.task, "text");
    sql += " ORDER BY j.seq DESC LIMIT " + param(std::to_string(params.limit), "bigint") +
           " OFFSET " + param(std::to_string(params.offset), "bigint");
    sql = with_schema(sql, config_.schema);
    return run("listing jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(values));
      std::vector<Job> jobs;
      jobs.reserve(r.size());
      for (const auto& row : r) jobs.push_back(read_job(row, now));
      return jobs;
    });
  }

  std::vector<QueueCount> counts() override {
    return run("counting jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_counts", now_ms());
      std::vector<QueueCount> out;
      out.reserve(r.size());
      for (const auto& row : r) {
        out.push_back(
            QueueCount{as_text(row[0]), static_cast<JobState>(as_int(row[1])), as_int(row[2])});
      }
      return out;
    });
  }

  RecoverReport recover_expired() override {
    RecoverReport report;
    run("recovering expired leases", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_recover", now_ms());
      for (const auto& row : r) {
        if (as_int(row[0]) == code(JobState::kQueued)) {
          ++report.requeued;
        } else {
          ++report.failed;
        }
      }
    });
    if (report.requeued > 0) notifier_.bump_all();
    return report;
  }

  std::size_t prune_finished() override {
    return run("pruning finished jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_prepared("cj_prune", now_ms() - options_.result_ttl.count()).affected_rows();
    });
  }

  std::size_t purge(std::string_view queue) override {
    return run("purging jobs", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec_prepared("cj_purge", std::string(queue)).affected_rows();
    });
  }

  TickResult enqueue_tick(const TickEnqueue& tick) override {
    validate_new_job(tick.job, options_);
    const std::string id = id_for(tick.job);
    const std::vector<SqlParam> params = enqueue_params(tick.job, id, now_ms());
    std::string scratch[12];
    const char* p[12];
    for (std::size_t i = 0; i < 12; ++i) p[i] = param_ptr(params[i], scratch[i]);
    TickResult out = run("enqueueing a schedule's tick", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      const pqxx::result claimed =
          tx.exec_prepared("cj_claim_tick", tick.schedule, tick.tick, tick.next_tick, id);
      if (claimed.empty()) {
        const pqxx::result r = tx.exec_prepared("cj_schedule_state", tick.schedule);
        tx.commit();
        return TickResult{false, as_int(r[0][1]), as_text(r[0][3])};
      }
      const pqxx::result r = exec_insert(tx, "cj_enqueue_one", p[0], p[1], p[2], p[3], p[4], p[5],
                                         p[6], p[7], p[8], p[9], p[10], p[11]);
      // A live job held the tick's unique key (one enqueued by hand): it runs the tick. No row
      // means that holder committed after the statement's snapshot; a new statement sees it.
      std::string job_id = id;
      if (!r.empty()) {
        job_id = as_text(r[0][0]);
      } else if (tick.job.unique_key) {
        const pqxx::result holder = tx.exec_prepared("cj_live_by_key", *tick.job.unique_key);
        if (!holder.empty()) job_id = as_text(holder[0][0]);
      }
      if (job_id != id) {
        tx.exec_params(with_schema("UPDATE :\"schema\".schedules SET last_job_id = $2 "
                                   "WHERE name = $1",
                                   config_.schema),
                       tick.schedule, job_id);
      }
      tx.exec_prepared("cj_record_tick", tick.schedule, tick.tick, job_id, now_ms());
      tx.commit();
      return TickResult{true, tick.tick, job_id};
    });
    notifier_.bump(tick.job.queue);
    return out;
  }

  std::optional<ScheduleState> schedule_state(const std::string& name) override {
    return run("reading a schedule's state", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result r = tx.exec_prepared("cj_schedule_state", name);
      if (r.empty()) return std::optional<ScheduleState>{};
      return std::optional<ScheduleState>(read_schedule_state(r[0]));
    });
  }

  std::vector<ScheduleState> schedule_states() override {
    return run("reading schedule states", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      std::vector<ScheduleState> out;
      for (const auto& row : tx.exec(
               with_schema(std::string(kScheduleStateSql) + " ORDER BY name", config_.schema))) {
        out.push_back(read_schedule_state(row));
      }
      return out;
    });
  }

  std::vector<TickRecord> schedule_history(const std::string& name, std::size_t limit) override {
    return run("reading a schedule's history", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      std::vector<TickRecord> out;
      const pqxx::result r = tx.exec_params(
          with_schema("SELECT schedule, tick, job_id, enqueued_at FROM :\"schema\".schedule_ticks "
                      "WHERE schedule = $1 ORDER BY tick DESC LIMIT $2",
                      config_.schema),
          name, static_cast<std::int64_t>(limit));
      for (const auto& row : r) {
        out.push_back(TickRecord{as_text(row[0]), as_int(row[1]), as_text(row[2]), as_int(row[3])});
      }
      return out;
    });
  }

  std::size_t prune_schedule_history(EpochMs before) override {
    return run("pruning schedule history", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx
          .exec_params(
              with_schema("DELETE FROM :\"schema\".schedule_ticks WHERE tick < $1", config_.schema),
              before)
          .affected_rows();
    });
  }

  void wait_for_jobs(std::span<const std::string> queues, std::chrono::milliseconds max_wait,
                     std::stop_token stop) override {
    start_listener();
    std::unique_lock lock(notifier_.mutex);
    const std::uint64_t seen = notifier_.generation_locked(queues);
    notifier_.cv.wait_for(lock, stop, max_wait,
                          [&] { return notifier_.generation_locked(queues) != seen; });
  }

 private:
  // copy_jobs stores a batch that holds no unique key, so nothing can conflict, through COPY:
  // PostgreSQL's bulk path, about twice the rows per second of the multi-row INSERT here. One
  // transaction holds the rows and the wake-up, so both or neither happen.
  void copy_jobs(std::span<const Job> jobs, const std::vector<EnqueueResult>& results,
                 EpochMs now) {
    std::set<std::string_view> queues_seen;
    for (const Job& job : jobs) queues_seen.insert(job.queue);
    PgArray queue_names;
    for (const auto& q : queues_seen) queue_names.add(q);
    const std::string notify_queues = queue_names.take();
    const std::string table = "\"" + config_.schema + "\".jobs";
    pool_.run("enqueueing a batch of jobs", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      try {
        pqxx::stream_to copy(tx, table, kCopyColumns);
        for (std::size_t i = 0; i < jobs.size(); ++i) {
          const Job& job = jobs[i];
          const EpochMs run_at = job.run_at > 0 ? job.run_at : now;
          const std::int64_t state =
              run_at > now ? code(JobState::kScheduled) : code(JobState::kQueued);
          copy << std::forward_as_tuple(results[i].id, job.task, job.queue, job.args, job.kwargs,
                                        job.priority, run_at, 0, job.max_attempts, job.timeout_ms,
                                        state, job.created_at > 0 ? job.created_at : now, 0, 0);
        }
        copy.complete();
      } catch (const pqxx::unique_violation& e) {
        throw InvalidPayload(std::string("a job id given to enqueue already exists (") + e.what() +
                             ")");
      }
      tx.exec_prepared("cj_notify_queues", notify_queues);
      tx.commit();
    });
    bump_queues_of(jobs);
  }

  void bump_queues_of(std::span<const Job> jobs) {
    std::set<std::string_view> queues_seen;
    for (const Job& job : jobs) queues_seen.insert(job.queue);
    for (const auto& q : queues_seen) notifier_.bump(std::string(q));
  }

  void prepare(pqxx::connection& c) {
    const std::string& s = config_.schema;
    c.prepare("cj_enqueue_one", with_schema(kEnqueueOneSql, s));
    c.prepare("cj_enqueue_many", with_schema(kEnqueueManySql, s));
    c.prepare("cj_live_by_key", with_schema(kLiveByKeySql, s));
    c.prepare("cj_notify_queues", with_schema(kNotifyQueuesSql, s));
    c.prepare("cj_reserve", with_schema(reserve_sql(), s));
    c.prepare("cj_ack", with_schema(kAckSql, s));
    c.prepare("cj_fail", with_schema(kFailSql, s));
    c.prepare("cj_put_back", with_schema(kPutBackSql, s));
    c.prepare("cj_extend", with_schema(kExtendSql, s));
    c.prepare("cj_progress", with_schema(kProgressSql, s));
    c.prepare("cj_cancel", with_schema(kCancelSql, s));
    c.prepare("cj_get", with_schema("SELECT " + std::string(kJobColumns) +
                                        " FROM :\"schema\".jobs j WHERE j.id = $1::uuid",
                                    s));
    c.prepare("cj_counts", with_schema(kCountsSql, s));
    c.prepare("cj_recover", with_schema(kRecoverSql, s));
    c.prepare("cj_prune", with_schema(kPruneSql, s));
    c.prepare("cj_purge", with_schema(kPurgeSql, s));
    c.prepare("cj_claim_tick", with_schema(kClaimTickSql, s));
    c.prepare("cj_schedule_state",
              with_schema(std::string(kScheduleStateSql) + " WHERE name = $1", s));
    c.prepare("cj_record_tick", with_schema(kRecordTickSql, s));
  }

  static ScheduleState read_schedule_state(const pqxx::row& r) {
    return ScheduleState{as_text(r[0]), as_int(r[1]), as_int(r[2]), as_text(r[3])};
  }

  void check_version() {
    const std::string table = "\"" + config_.schema + "\".schema_version";
    const int found = run("checking the schema version", [&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      const pqxx::result exists = tx.exec_params("SELECT to_regclass($1) IS NOT NULL", table);
      if (!as_bool(exists[0][0])) return 0;
      const pqxx::result r = tx.exec("SELECT coalesce(max(version), 0) FROM " + table);
      return static_cast<int>(as_int(r[0][0]));
    });
    const int need = postgres_schema_version();
    const std::string db = pool_.target().where();
    if (found > need) {
      throw ConfigError("the cinejobs schema '" + config_.schema + "' in " + db + " has version " +
                        std::to_string(found) + ", newer than this cinejobs knows (" +
                        std::to_string(need) + "): upgrade cinejobs; refusing to use it");
    }
    if (found < need) {
      throw ConfigError("the cinejobs schema '" + config_.schema + "' in " + db +
                        " is not migrated (found version " + std::to_string(found) + ", need " +
                        std::to_string(need) + "): run `cinejobs migrate --broker " +
                        config_.redacted_url + "`");
    }
  }

  EnqueueResult enqueue_one(const Job& job, const std::string& id) {
    const std::vector<SqlParam> params = enqueue_params(job, id, now_ms());
    std::string scratch[12];
    const char* p[12];
    for (std::size_t i = 0; i < 12; ++i) p[i] = param_ptr(params[i], scratch[i]);
    // No row: the key's holder committed after the statement's snapshot. Ask again; the holder
    // is then visible, or finished and the key free.
    for (int round = 0; round < 10; ++round) {
      std::optional<EnqueueResult> result = pool_.run("enqueueing a job", [&](pqxx::connection& c) {
        pqxx::nontransaction tx(c);
        const pqxx::result r = exec_insert(tx, "cj_enqueue_one", p[0], p[1], p[2], p[3], p[4], p[5],
                                           p[6], p[7], p[8], p[9], p[10], p[11]);
        if (r.empty()) return std::optional<EnqueueResult>{};
        return std::optional<EnqueueResult>(EnqueueResult{as_text(r[0][0]), as_bool(r[0][1])});
      });
      if (result) return *result;
    }
    throw BrokerUnavailable("enqueueing a job with unique key '" + job.unique_key.value_or("") +
                            "' kept racing with other enqueues of that key; try again");
  }

  void start_listener() {
    std::lock_guard lock(listener_mutex_);
    if (listener_.joinable()) return;
    listener_ = std::jthread([this](std::stop_token stop) { listen(stop); });
  }

  // listen keeps one connection LISTENing on the channel and turns notifications into wake-ups.
  // It never throws: without a connection, waiters simply wait out their max_wait (the safety
  // poll), and the connection is retried every second.
  void listen(std::stop_token stop) {
    std::unique_ptr<pqxx::connection> conn;
    std::unique_ptr<JobsReceiver> receiver;
    while (!stop.stop_requested()) {
      if (!conn) {
        try {
          conn = connect_pg(pool_.target());
          receiver = std::make_unique<JobsReceiver>(*conn, channel_, notifier_);
          notifier_.bump_all();  // jobs may have arrived while nobody listened
        } catch (...) {
          receiver.reset();
          conn.reset();
          std::mutex m;
          std::unique_lock lock(m);
          std::condition_variable_any().wait_for(lock, stop, 1s, [] { return false; });
          continue;
        }
      }
      try {
        // Slices of 100 ms so a stop request is honoured promptly.
        conn->await_notification(0, 100000);
        if (!conn->is_open()) throw pqxx::broken_connection("the LISTEN connection closed");
      } catch (...) {
        receiver.reset();
        conn.reset();
        notifier_.bump_all();
      }
    }
    receiver.reset();
    conn.reset();
  }

  std::string url_;
  PostgresConfig config_;
  BrokerOptions options_;
  std::string channel_;
  Notifier notifier_;
  PgPool pool_;
  std::mutex listener_mutex_;
  std::jthread listener_;  // last: stopped and joined before the rest is destroyed
};

}  // namespace

int postgres_schema_version() noexcept { return std::rbegin(kMigrations)->version; }

void check_schema_name(std::string_view schema) {
  bool ok = !schema.empty() && schema.size() <= 58 && !(schema[0] >= '0' && schema[0] <= '9');
  for (const char c : schema) {
    ok = ok &&
         ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    throw ConfigError("PostgreSQL schema name '" + std::string(schema) +
                      "' is not a plain identifier: use letters, digits and underscores, not "
                      "starting with a digit, at most 58 characters");
  }
}

namespace {

// escape_userinfo_at_signs percent-encodes every '@' of the user information but the last, the
// one before the host: libpq ends the user information at the first '@', so a password holding
// an unescaped '@' would otherwise give libpq its tail as the host (and a message naming it).
std::string escape_userinfo_at_signs(std::string_view base) {
  const auto scheme_end = base.find("://");
  if (scheme_end == std::string_view::npos) return std::string(base);
  const std::size_t start = scheme_end + 3;
  const std::string_view authority = base.substr(start, base.find('/', start) - start);
  const auto last_at = authority.rfind('@');
  if (last_at == std::string_view::npos) return std::string(base);
  std::string out(base.substr(0, start));
  for (const char c : authority.substr(0, last_at)) {
    if (c == '@') {
      out += "%40";
    } else {
      out.push_back(c);
    }
  }
  out.append(base.substr(start + last_at));
  return out;
}

}  // namespace

PostgresConfig parse_postgres_url(std::string_view url, BrokerOptions& options) {
  PostgresConfig config;
  const auto question = url.find('?');
  const std::string_view base = url.substr(0, question);
  std::string kept;
  bool has_encoding = false;
  if (question != std::string_view::npos) {
    std::string_view query = url.substr(question + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const std::string_view item = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
      if (item.empty()) continue;
      const auto eq = item.find('=');
      const std::string key = url_percent_decode(url, item.substr(0, eq));
      const std::string value = eq == std::string_view::npos
                                    ? std::string()
                                    : url_percent_decode(url, item.substr(eq + 1));
      if (key == "schema") {
        check_schema_name(value);
        config.schema = value;
      } else if (key == "migrate") {
        if (value != "true" && value != "false" && value != "1" && value != "0") {
          throw ConfigError("malformed broker URL: migrate must be true or false, got '" + value +
                            "'");
        }
        config.migrate = value == "true" || value == "1";
      } else if (!apply_common_url_parameter(url, key, value, options)) {
        // Everything else is libpq's, passed through byte for byte.
        if (key == "client_encoding") has_encoding = true;
        if (!kept.empty()) kept.push_back('&');
        kept.append(item);
      }
    }
  }
  // Jobs are UTF-8 text whatever the server's default encoding; name the application in
  // pg_stat_activity unless the URL does.
  if (!has_encoding) kept += std::string(kept.empty() ? "" : "&") + "client_encoding=UTF8";
  kept += "&fallback_application_name=cinejobs";
  config.conninfo = escape_userinfo_at_signs(base) + "?" + kept;
  config.redacted_url = redact_url(url);
  // Parse now so a malformed URL is a ConfigError before anything connects.
  (void)make_pg_target(config.conninfo, config.redacted_url);
  return config;
}

std::shared_ptr<Broker> open_postgres_broker(std::string url, PostgresConfig config,
                                             BrokerOptions options) {
  return std::make_shared<PostgresBroker>(std::move(url), std::move(config), options);
}

std::vector<int> migrate_postgres(const PostgresConfig& config) {
  check_schema_name(config.schema);
  const PgTarget target = make_pg_target(config.conninfo, config.redacted_url);
  const std::unique_ptr<pqxx::connection> conn = connect_pg(target);
  const std::string& s = config.schema;
  std::vector<int> applied;
  try {
    pqxx::work tx(*conn);
    // One migrator per schema at a time; the lock ends with the transaction.
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                   "cinejobs.migrate." + s);
    // Only create what is missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on
    // the database even when the schema exists.
    if (tx.exec_params("SELECT to_regnamespace($1) IS NULL", "\"" + s + "\"")[0][0].as<bool>()) {
      tx.exec("CREATE SCHEMA \"" + s + "\"");
    }
    tx.exec("CREATE TABLE IF NOT EXISTS \"" + s +
            "\".schema_version (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())");
    const int found = static_cast<int>(as_int(
        tx.exec("SELECT coalesce(max(version), 0) FROM \"" + s + "\".schema_version")[0][0]));
    const int known = postgres_schema_version();
    if (found > known) {
      throw ConfigError("the cinejobs schema '" + s + "' in " + target.where() + " has version " +
                        std::to_string(found) + ", newer than this cinejobs knows (" +
                        std::to_string(known) + "): upgrade cinejobs; refusing to migrate it");
    }
    for (const Migration& m : kMigrations) {
      if (m.version <= found) continue;
      tx.exec(with_schema(m.sql, s));
      tx.exec_params("INSERT INTO \"" + s + "\".schema_version (version, name) VALUES ($1, $2)",
                     m.version, std::string(m.name));
      applied.push_back(m.version);
    }
    tx.commit();
  } catch (...) {
    rethrow_from_pqxx(target, "migrating the cinejobs schema '" + s + "'");
  }
  return applied;
}

}  // namespace cinejobs::detail

namespace cinejobs {

SqlStatement postgres_enqueue_statement(std::string_view schema, const Job& job,
                                        const BrokerOptions& options) {
  detail::check_schema_name(schema);
  validate_new_job(job, options);
  const std::string id = detail::id_for(job);
  const std::vector<SqlParam> numbered = detail::enqueue_params(job, id, now_ms());
  // $N -> %s, repeating the parameter wherever the statement uses it again.
  const std::string sql = detail::with_schema(detail::kEnqueueOneSql, schema);
  SqlStatement out;
  out.sql.reserve(sql.size());
  for (std::size_t i = 0; i < sql.size();) {
    if (sql[i] == '$' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
      std::size_t n = 0;
      std::size_t j = i + 1;
      while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9')
        n = n * 10 + static_cast<std::size_t>(sql[j++] - '0');
      out.sql += "%s";
      out.params.push_back(numbered.at(n - 1));
      i = j;
    } else {
      out.sql.push_back(sql[i++]);
    }
  }
  return out;
}

}  // namespace cinejobs
