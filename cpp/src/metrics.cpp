#include "cinejobs/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <memory>
#include <set>
#include <system_error>
#include <vector>

#include "cinejobs/worker.hpp"

namespace cinejobs {
namespace {

// ---- the text format ----

// append_label_value writes a label value escaped as the format requires: backslash, double
// quote and line feed.
void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// append_number writes a sample value: integers as they are, doubles in their shortest form that
// reads back exactly.
void append_number(std::string& out, std::uint64_t value) { out += std::to_string(value); }
void append_number(std::string& out, std::int64_t value) { out += std::to_string(value); }
void append_number(std::string& out, double value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc{}) {
    out += "NaN";
    return;
  }
  out.append(buf, end);
}

void append_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

using Label = std::pair<std::string_view, std::string_view>;

template <class Value>
void append_sample(std::string& out, std::string_view name, std::initializer_list<Label> labels,
                   Value value) {
  out += name;
  if (labels.size() > 0) {
    out += '{';
    bool first = true;
    for (const auto& [key, label_value] : labels) {
      if (!first) out += ',';
      first = false;
      out.append(key).append("=\"");
      append_label_value(out, label_value);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  append_number(out, value);
  out += '\n';
}

// ---- process-wide counters ----

// LabelledCounters: one counter family with one label, by label value.
struct LabelledCounters {
  std::mutex mutex;
  std::map<std::string, std::uint64_t, std::less<>> values;

  void add(std::string_view label, std::uint64_t n) noexcept {
    try {
      std::lock_guard lock(mutex);
      auto it = values.find(label);
      if (it == values.end()) it = values.emplace(std::string(label), 0).first;
      it->second += n;
    } catch (...) {
      // Out of memory for a new label: the count is lost, the caller's work is not.
    }
  }

  std::vector<std::pair<std::string, std::uint64_t>> snapshot() {
    std::lock_guard lock(mutex);
    return {values.begin(), values.end()};
  }
};

struct ProcessCounters {
  LabelledCounters child_restarts;
  LabelledCounters rate_limit_waits;
  LabelledCounters tmdb_429_pauses;  // one unlabelled counter, kept under ""
  LabelledCounters batcher_items;
  LabelledCounters batcher_batches;
  LabelledCounters batcher_dead_lettered;

  ProcessCounters() {
    // Every known cause is rendered from the start, so a rate() over it has a series to read
    // before the first restart.
    for (const char* cause : {"crashed", "hard_timeout", "max_jobs", "max_memory"}) {
      child_restarts.values.emplace(cause, 0);
    }
    tmdb_429_pauses.values.emplace("", 0);
  }
};

ProcessCounters& process_counters() {
  // Never destroyed: threads that outlive static destruction (a batcher flushing at exit) may
  // still count.
  static ProcessCounters* const counters = std::make_unique<ProcessCounters>().release();
  return *counters;
}

void render_labelled(std::string& out, LabelledCounters& counters, std::string_view name,
                     std::string_view label, std::string_view help) {
  append_family(out, name, "counter", help);
  for (const auto& [value, n] : counters.snapshot()) {
    append_sample(out, name, {{label, value}}, n);
  }
}

void render_process_counters(std::string& out) {
  ProcessCounters& c = process_counters();
  render_labelled(out, c.child_restarts, "cinejobs_child_restarts_total", "cause",
                  "Child processes replaced by a fresh one, by cause (crashed, hard_timeout, "
                  "max_jobs, max_memory).");
  render_labelled(out, c.rate_limit_waits, "cinejobs_rate_limit_waits_total", "limiter",
                  "Callers made to wait and jobs snoozed by a rate limiter, by limiter name.");
  append_family(out, "cinejobs_tmdb_429_pauses_total", "counter",
                "TMDB 429 answers that paused the client and the rate limiter it shares.");
  std::uint64_t pauses = 0;
  for (const auto& [label, n] : c.tmdb_429_pauses.snapshot()) pauses += n;
  append_sample(out, "cinejobs_tmdb_429_pauses_total", {}, pauses);
  render_labelled(out, c.batcher_items, "cinejobs_batcher_items_total", "batcher",
                  "Items added to a batcher.");
  render_labelled(out, c.batcher_batches, "cinejobs_batcher_batches_total", "batcher",
                  "Batches a batcher wrote to its sink, retries included.");
  render_labelled(out, c.batcher_dead_lettered, "cinejobs_batcher_dead_lettered_total", "batcher",
                  "Items a batcher stored in its dead letter.");
}

// ---- queue depth ----

void render_queue_depth(std::string& out, Broker& broker) {
  std::vector<QueueCount> counts;
  bool up = true;
  try {
    counts = broker.counts();
  } catch (const std::exception&) {
    up = false;
  }
  append_family(out, "cinejobs_queue_depth_up", "gauge",
                "1 when the broker answered the queue depth read of this scrape, 0 when it "
                "failed.");
  append_sample(out, "cinejobs_queue_depth_up", {}, std::uint64_t{up ? 1U : 0U});
  if (!up) return;
  // The broker leaves out states with no job; every state of a queue it named is written, so a
  // series drops to 0 instead of vanishing.
  std::map<std::string, std::map<JobState, std::int64_t>> by_queue;
  for (const QueueCount& c : counts) by_queue[c.queue][c.state] += c.count;
  append_family(out, "cinejobs_queue_jobs", "gauge",
                "Jobs in the broker by queue and state, read at scrape time.");
  static constexpr JobState kStates[] = {JobState::kScheduled, JobState::kQueued,
                                         JobState::kRunning,   JobState::kSucceeded,
                                         JobState::kFailed,    JobState::kCancelled};
  for (const auto& [queue, states] : by_queue) {
    for (const JobState state : kStates) {
      const auto it = states.find(state);
      append_sample(out, "cinejobs_queue_jobs", {{"queue", queue}, {"state", to_string(state)}},
                    it == states.end() ? std::int64_t{0} : it->second);
    }
  }
}

}  // namespace

// ---- WorkerMetrics ----

void WorkerMetrics::on_job_event(const JobEvent& event) noexcept {
  try {
    std::lock_guard lock(mutex_);
    const std::pair<std::string_view, std::string_view> key(event.task, event.queue);
    auto it = counts_.find(key);
    if (it == counts_.end()) it = counts_.try_emplace(TaskQueue(event.task, event.queue)).first;
    Counts& c = it->second;
    switch (event.kind) {
      case JobEventKind::kStarted:
        ++c.started;
        return;  // a start has no outcome and no duration yet
      case JobEventKind::kSucceeded:
        ++c.succeeded;
        break;
      case JobEventKind::kFailed:
        ++c.failed;
        break;
      case JobEventKind::kRetried:
        ++c.retried;
        break;
      case JobEventKind::kCancelled:
        ++c.cancelled;
        break;
      case JobEventKind::kSnoozed:
        ++c.snoozed;
        break;
      case JobEventKind::kReleased:
        ++c.released;
        break;
    }
    if (event.error) {
      if (event.error->type == "JobTimeout") ++c.timed_out;
      if (event.error->type == "WorkerCrashed") ++c.crashed;
    }
    // A zero duration is an end that never ran a handler (snoozed, unknown task, released
    // before it started): it says nothing about how long the task takes.
    if (event.duration.count() <= 0) return;
    auto h = durations_.find(std::string_view(event.task));
    if (h == durations_.end()) h = durations_.try_emplace(event.task).first;
    const double seconds = static_cast<double>(event.duration.count()) / 1e6;
    const auto bucket = std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds);
    if (bucket != kDurationBuckets.end()) {
      ++h->second.buckets[static_cast<std::size_t>(bucket - kDurationBuckets.begin())];
    }
    ++h->second.count;
    h->second.sum += seconds;
  } catch (...) {
    // Out of memory for a new task: the count is lost, the job is not.
  }
}

void WorkerMetrics::render(std::string& out) const {
  struct Family {
    std::string_view name;
    std::uint64_t Counts::*field;
    std::string_view help;
  };
  static constexpr Family kFamilies[] = {
      {"cinejobs_jobs_started_total", &Counts::started, "Jobs whose handler started."},
      {"cinejobs_jobs_succeeded_total", &Counts::succeeded, "Jobs that succeeded."},
      {"cinejobs_jobs_failed_total", &Counts::failed,
       "Jobs that failed for good (no attempt left, or an unknown task)."},
      {"cinejobs_jobs_retried_total", &Counts::retried, "Failed attempts scheduled to run again."},
      {"cinejobs_jobs_cancelled_total", &Counts::cancelled, "Jobs cancelled while they ran."},
      {"cinejobs_jobs_snoozed_total", &Counts::snoozed,
       "Deliveries held back by their task's rate limit (the attempt is not counted)."},
      {"cinejobs_jobs_released_total", &Counts::released,
       "Jobs returned to the queue by a stop past its grace period."},
      {"cinejobs_jobs_timed_out_total", &Counts::timed_out,
       "Attempts that ended with JobTimeout, retried or failed."},
      {"cinejobs_jobs_crashed_total", &Counts::crashed,
       "Attempts that ended with WorkerCrashed (the child process running them died)."},
  };
  std::lock_guard lock(mutex_);
  for (const Family& f : kFamilies) {
    append_family(out, f.name, "counter", f.help);
    for (const auto& [key, counts] : counts_) {
      append_sample(out, f.name, {{"task", key.first}, {"queue", key.second}}, counts.*f.field);
    }
  }
  constexpr std::string_view kHistogram = "cinejobs_job_duration_seconds";
  append_family(out, kHistogram, "histogram",
                "Run time of job attempts whose handler ran, from its start to its stored "
                "outcome, by task.");
  for (const auto& [task, h] : durations_) {
    std::uint64_t cumulative = 0;
    char le[32];
    for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
      cumulative += h.buckets[i];
      const auto [end, ec] = std::to_chars(le, le + sizeof le, kDurationBuckets[i]);
      const std::string_view bound =
          ec == std::errc{} ? std::string_view(le, static_cast<std::size_t>(end - le)) : "NaN";
      append_sample(out, "cinejobs_job_duration_seconds_bucket", {{"task", task}, {"le", bound}},
                    cumulative);
    }
    append_sample(out, "cinejobs_job_duration_seconds_bucket", {{"task", task}, {"le", "+Inf"}},
                  h.count);
    append_sample(out, "cinejobs_job_duration_seconds_sum", {{"task", task}}, h.sum);
    append_sample(out, "cinejobs_job_duration_seconds_count", {{"task", task}}, h.count);
  }
}

// ---- gauges and the scrape ----

WorkerGauges worker_gauges(const Worker& worker) {
  WorkerGauges g;
  // slots: concurrency in thread mode, processes * concurrency in process mode.
  const WorkerStats s = worker.stats();
  g.running = s.running;
  g.free_slots = s.slots > s.running ? s.slots - s.running : 0;
  return g;
}

std::string render_metrics(const WorkerMetrics* worker_metrics,
                           const std::optional<WorkerGauges>& gauges, Broker* broker) {
  std::string out;
  out.reserve(8192);
  if (worker_metrics != nullptr) worker_metrics->render(out);
  if (gauges) {
    append_family(out, "cinejobs_jobs_running", "gauge",
                  "Jobs the worker holds right now (reserved or running).");
    append_sample(out, "cinejobs_jobs_running", {}, gauges->running);
    append_family(out, "cinejobs_worker_free_slots", "gauge",
                  "Slots free for another job: the most jobs the worker holds at once, minus those "
                  "held.");
    append_sample(out, "cinejobs_worker_free_slots", {}, gauges->free_slots);
  }
  render_process_counters(out);
  if (broker != nullptr) render_queue_depth(out, *broker);
  return out;
}

// ---- process-wide counters ----

void count_child_restart(std::string_view cause) noexcept {
  process_counters().child_restarts.add(cause, 1);
}

void count_rate_limit_wait(std::string_view limiter_name) noexcept {
  process_counters().rate_limit_waits.add(limiter_name, 1);
}

void count_tmdb_429_pause() noexcept { process_counters().tmdb_429_pauses.add("", 1); }

void count_batcher_items(std::string_view batcher, std::uint64_t n) noexcept {
  process_counters().batcher_items.add(batcher, n);
}

void count_batcher_batch(std::string_view batcher) noexcept {
  process_counters().batcher_batches.add(batcher, 1);
}

void count_batcher_dead_lettered(std::string_view batcher, std::uint64_t n) noexcept {
  process_counters().batcher_dead_lettered.add(batcher, n);
}

}  // namespace cinejobs
