// Broker: the store of jobs and the only place a job's state changes. Every implementation keeps
// the guarantees of DESIGN.md, checked by one conformance suite:
// - at least once: a reserved job carries a lease; when the lease expires unrenewed the job is
//   queued again (or failed when its attempts are spent) by recover_expired;
// - nothing lost: an enqueue that returned is durable to the store's own promise;
// - atomic transitions: each method moves its jobs in one transaction or script, and ack, fail,
//   extend and release apply only to deliveries that still own their job (lease token), so a job
//   never ends in two final states;
// - bad input is refused at enqueue with InvalidPayload, naming what was wrong.
// Brokers are safe to share between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "cinejobs/job.hpp"

namespace cinejobs {

// BrokerOptions apply to every broker kind; URL query parameters override them.
struct BrokerOptions {
  // Jobs whose serialized arguments exceed this are refused with InvalidPayload.
  std::size_t max_payload_bytes = 1 << 20;
  // How long finished jobs (and their results) are kept before prune_finished removes them.
  std::chrono::milliseconds result_ttl = std::chrono::hours(24);
};

// EnqueueResult: `created` is false when a live job already held the unique key; `id` then
// names that job.
struct EnqueueResult {
  std::string id;
  bool created = true;
};

struct ReserveParams {
  std::vector<std::string> queues;
  std::size_t max_jobs = 1;
  std::chrono::milliseconds lease = std::chrono::seconds(30);
  std::string worker_id;
};

// LeaseRef names one delivery of a job.
struct LeaseRef {
  std::string id;
  std::uint64_t lease_token = 0;
};

struct Ack {
  LeaseRef lease;
  std::string result = "null";  // JSON text
};

// Fail records a failed attempt: queued again at retry_at when retry_at is set, otherwise final
// in `final_state` (kFailed, or kCancelled when the job was cancelled while it ran).
struct Fail {
  LeaseRef lease;
  JobFailure error;
  std::optional<EpochMs> retry_at;
  JobState final_state = JobState::kFailed;
  // Set when the handler has enqueued the next attempt itself (FailureAction::kRetried, a Celery
  // retry): the broker ends this delivery as final; the worker counts it as a retry.
  bool retried_by_handler = false;
};

// Snooze puts a delivery back to wait until run_at without counting its attempt (a job held back
// by its rate limit).
struct Snooze {
  LeaseRef lease;
  EpochMs run_at = 0;
};

struct ExtendResult {
  std::string id;
  bool owned = false;  // false: the lease was lost (expired and recovered); stop working on it
  bool cancel_requested = false;
};

struct ListParams {
  std::optional<std::string> queue;
  std::optional<JobState> state;
  std::optional<std::string> task;
  std::size_t limit = 100;
  std::size_t offset = 0;
};

struct QueueCount {
  std::string queue;
  JobState state;
  std::int64_t count = 0;
  bool operator==(const QueueCount&) const = default;
};

struct RecoverReport {
  std::size_t requeued = 0;  // leases expired with attempts left: queued again
  std::size_t failed = 0;    // leases expired on the last attempt: failed
};

// TickEnqueue: one tick of a schedule and the job it runs (its unique key set by the caller).
struct TickEnqueue {
  std::string schedule;
  EpochMs tick = 0;
  EpochMs next_tick = 0;  // the schedule's tick after this one, for its state (0: none)
  Job job;
};

// TickResult: `enqueued` is false when a tick at or after this one was recorded already (by
// this or another scheduler); `last_tick` is the schedule's last recorded tick after the call and
// `job_id` the job enqueued for it.
struct TickResult {
  bool enqueued = false;
  EpochMs last_tick = 0;
  std::string job_id;
};

// ScheduleState: what the broker records of a schedule.
struct ScheduleState {
  std::string name;
  EpochMs last_tick = 0;
  EpochMs next_tick = 0;
  std::string last_job_id;
  bool operator==(const ScheduleState&) const = default;
};

// TickRecord: one enqueued tick, kept as history until pruned.
struct TickRecord {
  std::string schedule;
  EpochMs tick = 0;
  std::string job_id;
  EpochMs enqueued_at = 0;
};

class Broker {
 public:
  virtual ~Broker() = default;

  // kind returns "sqlite", "redis" or "postgres"; url the URL it was opened with.
  virtual std::string_view kind() const noexcept = 0;
  virtual const std::string& url() const noexcept = 0;

  // enqueue stores a new job: id and created_at are filled in when empty, state becomes
  // scheduled or queued from run_at, attempt starts at 0. A live job holding the same unique
  // key makes it return created=false with that job's id (UniqueConflict is the caller's
  // choice to throw). Throws InvalidPayload for a job that validate_new_job refuses.
  virtual EnqueueResult enqueue(const Job& job) = 0;
  // enqueue_many stores all jobs in one transaction; unique keys are honoured between the new
  // jobs too (the second of two with one key gets created=false and the first's id). Either
  // every job is validated and stored, or none is.
  virtual std::vector<EnqueueResult> enqueue_many(std::span<const Job> jobs) = 0;

  // reserve moves up to max_jobs due jobs from the given queues to running, highest priority
  // first, then earliest run_at, then oldest; attempt is incremented and a fresh lease token
  // set. Jobs whose cancel was requested are never returned. A leased job whose stored document
  // cannot be decoded (a damaged field, args that are not a JSON array: stored_job_problem) is
  // not returned either: it ends failed with undecodable_failure, alone, and the rest of the
  // batch is returned as usual. Any number of queues may be named.
  virtual std::vector<Job> reserve(const ReserveParams& params) = 0;

  // ack, fail and release apply to the deliveries that still own their job and return how many
  // did. release returns a running job to queued without counting the attempt (graceful stop).
  virtual std::size_t ack(std::span<const Ack> acks) = 0;
  virtual std::size_t fail(std::span<const Fail> fails) = 0;
  virtual std::size_t release(std::span<const LeaseRef> leases) = 0;
  // snooze returns running jobs to scheduled at their run_at (queued when it has passed) without
  // counting the attempt, in one atomic step per batch; like release, a job whose cancel was
  // requested ends cancelled instead. Returns how many deliveries still owned their job.
  virtual std::size_t snooze(std::span<const Snooze> snoozes) = 0;

  // extend renews the leases by `lease` from now, and reports for each whether it is still owned
  // and whether a cancel was requested.
  virtual std::vector<ExtendResult> extend(std::span<const LeaseRef> leases,
                                           std::chrono::milliseconds lease) = 0;

  // set_progress stores the running delivery's progress; false when the lease is no longer owned.
  virtual bool set_progress(const LeaseRef& lease, const Progress& progress) = 0;

  // cancel ends a scheduled or queued job at once (state cancelled), marks a running job
  // cancel-requested (its worker sees it at the next heartbeat), and leaves a final job as it is.
  // Returns the state after the call; throws JobNotFound.
  virtual JobState cancel(const std::string& id) = 0;

  virtual std::optional<Job> get(const std::string& id) = 0;
  virtual std::vector<Job> list(const ListParams& params) = 0;
  // counts returns the number of jobs per queue and state (states with no job left out).
  virtual std::vector<QueueCount> counts() = 0;

  // recover_expired returns running jobs whose lease expired to queued, or fails them when
  // their attempts are spent.
  virtual RecoverReport recover_expired() = 0;
  // prune_finished deletes final jobs that finished more than result_ttl ago.
  virtual std::size_t prune_finished() = 0;
  // purge deletes every job of a queue (all queues when empty) that is not running.
  virtual std::size_t purge(std::string_view queue) = 0;

  // enqueue_tick enqueues a schedule's tick exactly once: in one atomic step it compares the
  // tick with the schedule's last recorded tick and, only when the tick is later, enqueues the
  // job, records the tick (last tick, next tick, job id) and appends it to the history. Any
  // number of schedulers may offer the same tick; one enqueues it. Throws InvalidPayload as
  // enqueue does.
  virtual TickResult enqueue_tick(const TickEnqueue& tick) = 0;
  // schedule_state returns the recorded state of one schedule; nullopt before its first tick.
  virtual std::optional<ScheduleState> schedule_state(const std::string& name) = 0;
  // schedule_states returns every recorded schedule, by name.
  virtual std::vector<ScheduleState> schedule_states() = 0;
  // schedule_history returns a schedule's recorded ticks, newest first, at most `limit`.
  virtual std::vector<TickRecord> schedule_history(const std::string& name, std::size_t limit) = 0;
  // prune_schedule_history deletes history of ticks before `before`; returns how many.
  virtual std::size_t prune_schedule_history(EpochMs before) = 0;

  // wait_for_jobs blocks until a job may have become available in one of the queues (an
  // enqueue this process made, or one the store signals), `max_wait` passes, or `stop` is
  // requested. A spurious return is allowed; callers reserve and wait again.
  virtual void wait_for_jobs(std::span<const std::string> queues,
                             std::chrono::milliseconds max_wait, std::stop_token stop) = 0;

  // wait_for_update blocks until job `id` may have changed (progress or state) or `max_wait`
  // passes; spurious returns are allowed, so callers read the job and wait again (JobHandle.wait,
  // progress watchers). Brokers that can signal changes (Redis publishes them) return within a
  // round trip of the change; the default polls: it returns after min(max_wait, 20 ms).
  virtual void wait_for_update(const std::string& id, std::chrono::milliseconds max_wait);
};

// validate_new_job checks what every broker refuses at the door: an empty task name or queue,
// args that are not a JSON array, kwargs not a JSON object, max_attempts below 1, a payload
// over the limit. Throws InvalidPayload naming the field.
void validate_new_job(const Job& job, const BrokerOptions& options);

// stored_job_problem says why a job read back from a store cannot be run: args that are not a
// JSON array or kwargs not a JSON object (a row or hash edited by hand, or damaged), or an empty
// task name. Returns nullopt for a job that can run. Never throws.
std::optional<std::string> stored_job_problem(const Job& job);

// undecodable_failure is the error a job that cannot be decoded ends failed with: type
// "InvalidPayload" and a message naming the job and what was wrong with it.
JobFailure undecodable_failure(std::string_view id, std::string_view problem);

// undecodable_fail is the final failure of leased job `job`, which cannot be decoded for
// `problem` (undecodable_failure); it logs a warning naming the job.
Fail undecodable_fail(const Job& job, std::string_view problem);

// take_undecodable removes from `jobs` (just leased by reserve) each job stored_job_problem
// finds unfit to run and returns their undecodable_fail, for the broker to record in reserve's
// transaction where it has one.
std::vector<Fail> take_undecodable(std::vector<Job>& jobs);

// open_broker parses a broker URL and opens it: sqlite:///relative.db, sqlite:////absolute.db
// (query parameters synchronous, busy_timeout_ms), redis://[[user]:password@]host[:port][/db] and
// unix:///path/redis.sock?db=N (prefix, timeout_ms), all with result_ttl_s and
// max_payload_bytes.
// Throws ConfigError for a malformed URL or unknown scheme, BrokerUnavailable when the store
// cannot be opened.
std::shared_ptr<Broker> open_broker(std::string_view url, BrokerOptions options = {});

}  // namespace cinejobs
