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

namespace od = simdjson::ondemand;

[[noreturn]] void bad_field(std::string_view field, std::string_view expected) {
  throw InvalidPayload("job document field '" + std::string(field) + "' is missing or not " +
                       std::string(expected));
}

std::string read_string(od::value& v, std::string_view field) {
  std::string_view text;
  if (v.get_string().get(text)) bad_field(field, "a string");
  return std::string(text);
}

std::int64_t read_int(od::value& v, std::string_view field) {
  std::int64_t value = 0;
  if (v.get_int64().get(value)) bad_field(field, "an integer");
  return value;
}

int read_small_int(od::value& v, std::string_view field) {
  const std::int64_t value = read_int(v, field);
  if (value < INT32_MIN || value > INT32_MAX) bad_field(field, "a 32-bit integer");
  return static_cast<int>(value);
}

bool is_null(od::value& v) {
  bool null = false;
  return !v.is_null().get(null) && null;
}

// The JSON text of a value exactly as it appears in the document: arguments and results are
// handed on verbatim, never re-encoded (1.10 stays 1.10, 1E2 stays 1E2).
std::string read_raw(od::value& v, std::string_view field, std::optional<od::json_type> want) {
  od::json_type type;
  if (v.type().get(type) || (want && type != *want)) {
    bad_field(field, want == od::json_type::array ? "an array" : "an object");
  }
  std::string_view raw;
  bool failed = false;
  if (type == od::json_type::array) {
    od::array array;
    failed = v.get_array().get(array) || array.raw_json().get(raw);
  } else if (type == od::json_type::object) {
    od::object object;
    failed = v.get_object().get(object) || object.raw_json().get(raw);
  } else {
    raw = v.raw_json_token();  // a scalar; the token may carry trailing whitespace
    while (!raw.empty() &&
           (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t')) {
      raw.remove_suffix(1);
    }
  }
  if (failed) bad_field(field, "valid JSON");
  return std::string(raw);
}

// Calls fn(key, value) for every field of the object `v`; field names are those of `what`.
template <typename Fn>
void for_each_field(od::value& v, std::string_view what, Fn&& fn) {
  od::object object;
  if (v.get_object().get(object)) bad_field(what, "an object");
  for (auto field_result : object) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      bad_field(what, "a well-formed object");
    }
    fn(key, field.value());
  }
}

}  // namespace

Job job_from_json(std::string_view json) {
  od::parser parser;
  simdjson::padded_string padded(json);
  od::document doc;
  od::object root;
  if (auto error = parser.iterate(padded).get(doc); error || (error = doc.get_object().get(root))) {
    throw InvalidPayload(std::string("job document is not a JSON object (") +
                         simdjson::error_message(error) + ")");
  }
  Job job;
  // Required fields, marked off as they are read.
  enum : unsigned {
    kId = 1,
    kTask = 2,
    kQueue = 4,
    kArgs = 8,
    kKwargs = 16,
    kPriority = 32,
    kRunAt = 64,
    kAttempt = 128,
    kMaxAttempts = 256,
    kTimeout = 512,
    kState = 1024,
    kCreated = 2048,
    kStarted = 4096,
    kFinished = 8192,
    kCancel = 16384,
    kAll = 32767
  };
  unsigned seen = 0;
  try {
    for (auto field_result : root) {
      od::field field;
      std::string_view key;
      if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
        throw InvalidPayload("job document is not a well-formed JSON object");
      }
      od::value v = field.value();
      if (key == "id") {
        job.id = read_string(v, key), seen |= kId;
      } else if (key == "task") {
        job.task = read_string(v, key), seen |= kTask;
      } else if (key == "queue") {
        job.queue = read_string(v, key), seen |= kQueue;
      } else if (key == "args") {
        job.args = read_raw(v, key, od::json_type::array), seen |= kArgs;
      } else if (key == "kwargs") {
        job.kwargs = read_raw(v, key, od::json_type::object), seen |= kKwargs;
      } else if (key == "priority") {
        job.priority = read_small_int(v, key), seen |= kPriority;
      } else if (key == "run_at") {
        job.run_at = read_int(v, key), seen |= kRunAt;
      } else if (key == "attempt") {
        job.attempt = read_small_int(v, key), seen |= kAttempt;
      } else if (key == "max_attempts") {
        job.max_attempts = read_small_int(v, key), seen |= kMaxAttempts;
      } else if (key == "unique_key") {
        if (!is_null(v)) job.unique_key = read_string(v, key);
      } else if (key == "timeout_ms") {
        job.timeout_ms = read_int(v, key), seen |= kTimeout;
      } else if (key == "state") {
        job.state = parse_job_state(read_string(v, key)), seen |= kState;
      } else if (key == "progress") {
        if (is_null(v)) continue;
        Progress p;
        unsigned parts = 0;
        for_each_field(v, "progress", [&](std::string_view k, od::value pv) {
          if (k == "fraction") {
            if (pv.get_double().get(p.fraction)) bad_field("progress.fraction", "a number");
            parts |= 1;
          } else if (k == "step") {
            p.step = read_string(pv, "progress.step"), parts |= 2;
          } else if (k == "message") {
            p.message = read_string(pv, "progress.message"), parts |= 4;
          }
        });
        if (parts != 7) bad_field("progress", "an object with fraction, step and message");
        job.progress = std::move(p);
      } else if (key == "result") {
        job.result = read_raw(v, key, std::nullopt);
      } else if (key == "error") {
        if (is_null(v)) continue;
        JobFailure e;
        unsigned parts = 0;
        for_each_field(v, "error", [&](std::string_view k, od::value ev) {
          if (k == "type") {
            e.type = read_string(ev, "error.type"), parts |= 1;
          } else if (k == "message") {
            e.message = read_string(ev, "error.message"), parts |= 2;
          } else if (k == "traceback") {
            e.traceback = read_string(ev, "error.traceback"), parts |= 4;
          }
        });
        if (parts != 7) bad_field("error", "an object with type, message and traceback");
        job.error = std::move(e);
      } else if (key == "created_at") {
        job.created_at = read_int(v, key), seen |= kCreated;
      } else if (key == "started_at") {
        job.started_at = read_int(v, key), seen |= kStarted;
      } else if (key == "finished_at") {
        job.finished_at = read_int(v, key), seen |= kFinished;
      } else if (key == "cancel_requested") {
        bool flag = false;
        if (v.get_bool().get(flag)) bad_field(key, "a boolean");
        job.cancel_requested = flag, seen |= kCancel;
      }
    }
  } catch (const simdjson::simdjson_error& e) {
    throw InvalidPayload(std::string("job document is not valid JSON (") + e.what() + ")");
  }
  if (seen != kAll) {
    static constexpr std::array<std::string_view, 15> kNames = {
        "id",       "task",       "queue",      "args",         "kwargs",
        "priority", "run_at",     "attempt",    "max_attempts", "timeout_ms",
        "state",    "created_at", "started_at", "finished_at",  "cancel_requested"};
    for (std::size_t i = 0; i < kNames.size(); ++i) {
      if ((seen & (1U << i)) == 0) bad_field(kNames[i], "present");
    }
  }
  return job;
}

}  // namespace cinejobs
