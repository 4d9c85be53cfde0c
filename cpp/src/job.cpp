#include "cinejobs/job.hpp"

#include <simdjson.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <random>

#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"

namespace cinejobs {

EpochMs now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {
constexpr std::array<std::string_view, 6> kStateNames = {"scheduled", "queued", "running",
                                                         "succeeded", "failed", "cancelled"};
}  // namespace

std::string_view to_string(JobState state) noexcept {
  return kStateNames[static_cast<std::size_t>(state)];
}

JobState parse_job_state(std::string_view text) {
  for (std::size_t i = 0; i < kStateNames.size(); ++i) {
    if (kStateNames[i] == text) return static_cast<JobState>(i);
  }
  throw InvalidPayload("unknown job state '" + std::string(text) +
                       "' (expected scheduled, queued, running, succeeded, failed or cancelled)");
}

std::string new_job_id() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device device;
    std::seed_seq seq{device(), device(), device(), device(), device(), device()};
    return std::mt19937_64(seq);
  }()};
  std::uint64_t hi = rng();
  std::uint64_t lo = rng();
  hi = (hi & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  std::array<char, 37> out{};
  std::snprintf(out.data(), out.size(), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32), static_cast<unsigned>((hi >> 16) & 0xFFFF),
                static_cast<unsigned>(hi & 0xFFFF), static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
  return std::string(out.data(), 36);
}

namespace {

void append_key(std::string& out, std::string_view key) {
  if (out.size() > 1) out.push_back(',');
  append_json_string(out, key);
  out.push_back(':');
}

void append_int(std::string& out, std::string_view key, std::int64_t value) {
  append_key(out, key);
  out += std::to_string(value);
}

void append_str(std::string& out, std::string_view key, std::string_view value) {
  append_key(out, key);
  append_json_string(out, value);
}

void append_double(std::string& out, double value) {
  std::array<char, 32> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  out.append(buf.data(), end);
}

}  // namespace

std::string to_json(const Job& job) {
  std::string out = "{";
  out.reserve(256 + job.args.size() + job.kwargs.size() + (job.result ? job.result->size() : 0));
  append_str(out, "id", job.id);
  append_str(out, "task", job.task);
  append_str(out, "queue", job.queue);
  append_key(out, "args");
  out += job.args;
  append_key(out, "kwargs");
  out += job.kwargs;
  append_int(out, "priority", job.priority);
  append_int(out, "run_at", job.run_at);
  append_int(out, "attempt", job.attempt);
  append_int(out, "max_attempts", job.max_attempts);
  if (job.unique_key) append_str(out, "unique_key", *job.unique_key);
  append_int(out, "timeout_ms", job.timeout_ms);
  append_str(out, "state", to_string(job.state));
  if (job.progress) {
    append_key(out, "progress");
    out += "{\"fraction\":";
    append_double(out, job.progress->fraction);
    out += ",\"step\":";
    append_json_string(out, job.progress->step);
    out += ",\"message\":";
    append_json_string(out, job.progress->message);
    out += '}';
  }
  if (job.result) {
    append_key(out, "result");
    out += *job.result;
  }
  if (job.error) {
    append_key(out, "error");
    out += "{\"type\":";
    append_json_string(out, job.error->type);
    out += ",\"message\":";
    append_json_string(out, job.error->message);
    out += ",\"traceback\":";
    append_json_string(out, job.error->traceback);
    out += '}';
  }
  append_int(out, "created_at", job.created_at);
  append_int(out, "started_at", job.started_at);
  append_int(out, "finished_at", job.finished_at);
  append_key(out, "cancel_requested");
  out += job.cancel_requested ? "true" : "false";
  out += '}';
  return out;
}

namespace {

using simdjson::dom::element;
using simdjson::dom::object;

[[noreturn]] void bad_field(std::string_view field, std::string_view expected) {
  throw InvalidPayload("job document field '" + std::string(field) + "' is missing or not " +
                       std::string(expected));
}

std::string get_string(const object& obj, std::string_view field) {
  std::string_view value;
  if (obj[field].get_string().get(value)) bad_field(field, "a string");
  return std::string(value);
}

std::int64_t get_int(const object& obj, std::string_view field) {
  std::int64_t value = 0;
  if (obj[field].get_int64().get(value)) bad_field(field, "an integer");
  return value;
}

int get_small_int(const object& obj, std::string_view field) {
  const std::int64_t value = get_int(obj, field);
  if (value < INT32_MIN || value > INT32_MAX) bad_field(field, "a 32-bit integer");
  return static_cast<int>(value);
}

}  // namespace

Job job_from_json(std::string_view json) {
  simdjson::dom::parser parser;
  object obj;
  if (auto error = parser.parse(json.data(), json.size()).get_object().get(obj)) {
    throw InvalidPayload(std::string("job document is not a JSON object (") +
                         simdjson::error_message(error) + ")");
  }
  Job job;
  job.id = get_string(obj, "id");
  job.task = get_string(obj, "task");
  job.queue = get_string(obj, "queue");
  element value;
  if (obj["args"].get(value) || !value.is_array()) bad_field("args", "an array");
  job.args = simdjson::minify(value);
  if (obj["kwargs"].get(value) || !value.is_object()) bad_field("kwargs", "an object");
  job.kwargs = simdjson::minify(value);
  job.priority = get_small_int(obj, "priority");
  job.run_at = get_int(obj, "run_at");
  job.attempt = get_small_int(obj, "attempt");
  job.max_attempts = get_small_int(obj, "max_attempts");
  if (!obj["unique_key"].get(value) && !value.is_null()) {
    job.unique_key = get_string(obj, "unique_key");
  }
  job.timeout_ms = get_int(obj, "timeout_ms");
  job.state = parse_job_state(get_string(obj, "state"));
  if (!obj["progress"].get(value) && !value.is_null()) {
    object progress;
    if (value.get_object().get(progress)) bad_field("progress", "an object");
    Progress p;
    if (progress["fraction"].get_double().get(p.fraction)) {
      bad_field("progress.fraction", "a number");
    }
    p.step = get_string(progress, "step");
    p.message = get_string(progress, "message");
    job.progress = std::move(p);
  }
  if (!obj["result"].get(value)) job.result = simdjson::minify(value);
  if (!obj["error"].get(value) && !value.is_null()) {
    object error;
    if (value.get_object().get(error)) bad_field("error", "an object");
    job.error = JobFailure{get_string(error, "type"), get_string(error, "message"),
                           get_string(error, "traceback")};
  }
  job.created_at = get_int(obj, "created_at");
  job.started_at = get_int(obj, "started_at");
  job.finished_at = get_int(obj, "finished_at");
  bool cancel_requested = false;
  if (obj["cancel_requested"].get_bool().get(cancel_requested)) {
    bad_field("cancel_requested", "a boolean");
  }
  job.cancel_requested = cancel_requested;
  return job;
}

}  // namespace cinejobs
