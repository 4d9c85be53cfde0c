// Unit tests of the job document (job.hpp), the JSON text helpers (json_text.hpp), the door check
// every broker shares (validate_new_job) and the error types (errors.hpp).
#include "cinejobs/job.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"
#include "test_support.hpp"

using namespace cinejobs;
using namespace cinejobs::test;

namespace {

constexpr JobState kAllStates[] = {JobState::kScheduled, JobState::kQueued, JobState::kRunning,
                                   JobState::kSucceeded, JobState::kFailed, JobState::kCancelled};

Job full_job() {
  Job job;
  job.id = new_job_id();
  job.task = "tmdb.enrich";
  job.queue = "enrich";
  job.args = R"([1,"two",[3,[4,{"five":[null,true,false,1.5,-2]}]]])";
  job.kwargs = R"({"lang":"fr-FR","nested":{"a":[1,2,{"b":"c"}]},"empty":{}})";
  job.priority = -3;
  job.run_at = 1700000000123;
  job.attempt = 2;
  job.max_attempts = 7;
  job.unique_key = "movie:603";
  job.timeout_ms = 30000;
  job.state = JobState::kRunning;
  job.progress = Progress{0.375, "search", "found 3 candidates"};
  job.result = R"({"id":603,"title":"The Matrix","genres":["Action","Science Fiction"]})";
  job.error = JobFailure{"TmdbError", "rate limited", "line 1\nline 2"};
  job.created_at = 1700000000000;
  job.started_at = 1700000000200;
  job.finished_at = 1700000000300;
  job.cancel_requested = true;
  return job;
}

// A minimal valid wire document, as a list of fields so tests can drop or replace one.
using Fields = std::vector<std::pair<std::string, std::string>>;

Fields minimal_fields() {
  return {{"id", "\"0b7f2c1e-8a5d-4f3b-9c2e-1d4a5b6c7d8e\""},
          {"task", "\"t\""},
          {"queue", "\"default\""},
          {"args", "[]"},
          {"kwargs", "{}"},
          {"priority", "0"},
          {"run_at", "0"},
          {"attempt", "0"},
          {"max_attempts", "3"},
          {"timeout_ms", "0"},
          {"state", "\"queued\""},
          {"created_at", "0"},
          {"started_at", "0"},
          {"finished_at", "0"},
          {"cancel_requested", "false"}};
}

std::string document(const Fields& fields) {
  std::string out = "{";
  for (const auto& [key, value] : fields) {
    if (out.size() > 1) out += ',';
    out += json_quote(key) + ":" + value;
  }
  return out + "}";
}

Fields with(Fields fields, const std::string& key, const std::string& value) {
  for (auto& field : fields) {
    if (field.first == key) {
      field.second = value;
      return fields;
    }
  }
  fields.emplace_back(key, value);
  return fields;
}

Fields without(Fields fields, const std::string& key) {
  std::erase_if(fields, [&](const auto& field) { return field.first == key; });
  return fields;
}

// expect_invalid_naming checks that decoding `json` throws InvalidPayload whose message names
// one of `names`.
void expect_invalid_naming(const std::string& json, std::initializer_list<std::string> names) {
  SCOPED_TRACE(json);
  try {
    job_from_json(json);
    ADD_FAILURE() << "job_from_json accepted an invalid document";
  } catch (const InvalidPayload& e) {
    const std::string message = e.what();
    bool named = false;
    for (const auto& name : names) named = named || message.find(name) != std::string::npos;
    EXPECT_TRUE(named) << "message does not name the field: " << message;
  }
}

std::string strange_text() {
  std::string text = "ünïcødé 日本語 🎬 \"quoted\" back\\slash /slash";
  for (int c = 0; c < 0x20; ++c) text.push_back(static_cast<char>(c));  // includes NUL
  text += "\x7f end";
  return text;
}

// ---------------------------------------------------------------------------------------------
// JobState

TEST(JobState, ToStringAndParseRoundTripEveryState) {
  const std::vector<std::string> names = {"scheduled", "queued", "running",
                                          "succeeded", "failed", "cancelled"};
  std::size_t i = 0;
  for (const JobState state : kAllStates) {
    EXPECT_EQ(to_string(state), names[i]);
    EXPECT_EQ(parse_job_state(names[i]), state);
    ++i;
  }
}

TEST(JobState, ParseRefusesUnknownTextNamingIt) {
  for (const char* text : {"nope", "", "queued ", "done"}) {
    SCOPED_TRACE(text);
    try {
      parse_job_state(text);
      ADD_FAILURE() << "parse_job_state accepted '" << text << "'";
    } catch (const InvalidPayload& e) {
      EXPECT_NE(std::string(e.what()).find("'" + std::string(text) + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(JobState, OnlySucceededFailedAndCancelledAreFinal) {
  static_assert(is_final(JobState::kSucceeded) && is_final(JobState::kFailed) &&
                is_final(JobState::kCancelled));
  static_assert(!is_final(JobState::kScheduled) && !is_final(JobState::kQueued) &&
                !is_final(JobState::kRunning));
  int finals = 0;
  for (const JobState state : kAllStates) finals += is_final(state) ? 1 : 0;
  EXPECT_EQ(finals, 3);
}

// ---------------------------------------------------------------------------------------------
// Job defaults, ids, clock

TEST(Job, DefaultsMatchTheDocumentedWireDefaults) {
  const Job job;
  EXPECT_TRUE(job.id.empty());
  EXPECT_EQ(job.queue, "default");
  EXPECT_EQ(job.args, "[]");
  EXPECT_EQ(job.kwargs, "{}");
  EXPECT_EQ(job.priority, 0);
  EXPECT_EQ(job.run_at, 0);
  EXPECT_EQ(job.attempt, 0);
  EXPECT_EQ(job.max_attempts, 3);
  EXPECT_EQ(job.state, JobState::kQueued);
  EXPECT_FALSE(job.unique_key || job.progress || job.result || job.error);
  EXPECT_EQ(job.lease_token, 0u);
}

// is_uuid_v4 checks the text form xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx in lowercase hex, V one of
// 8, 9, a, b (the RFC 4122 variant). (Not std::regex: GCC 12 warns inside it under ASan.)
bool is_uuid_v4(const std::string& id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return id[14] == '4' && std::string_view("89ab").find(id[19]) != std::string_view::npos;
}

TEST(NewJobId, IsAVersion4UuidInLowercaseText) {
  EXPECT_TRUE(is_uuid_v4("0b7f2c1e-8a5d-4f3b-9c2e-1d4a5b6c7d8e"));  // the checker itself
  EXPECT_FALSE(is_uuid_v4("0b7f2c1e-8a5d-1f3b-9c2e-1d4a5b6c7d8e"));
  EXPECT_FALSE(is_uuid_v4("0B7F2C1E-8A5D-4F3B-9C2E-1D4A5B6C7D8E"));
  for (int i = 0; i < 200; ++i) {
    const std::string id = new_job_id();
    ASSERT_EQ(id.size(), 36u) << id;
    EXPECT_TRUE(is_uuid_v4(id)) << id;
  }
}

TEST(NewJobId, IsUniqueOverTenThousandIds) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(new_job_id());
  EXPECT_EQ(ids.size(), 10000u);
}

TEST(NewJobId, IsUniqueAcrossThreads) {
  std::mutex mutex;
  std::set<std::string> ids;
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        std::vector<std::string> mine;
        for (int i = 0; i < 2500; ++i) mine.push_back(new_job_id());
        std::lock_guard lock(mutex);
        ids.insert(mine.begin(), mine.end());
      });
    }
  }
  EXPECT_EQ(ids.size(), 10000u) << "threads produced the same ids (same random seed?)";
}

TEST(NowMs, IsEpochMillisecondsOfTheSystemClock) {
  using namespace std::chrono;
  const auto before = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  const EpochMs now = now_ms();
  const auto after = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  EXPECT_GE(now, before);
  EXPECT_LE(now, after);
}

// ---------------------------------------------------------------------------------------------
// Wire document

TEST(JobJson, RoundTripsEveryField) {
  const Job job = full_job();
  const std::string json = to_json(job);
  EXPECT_EQ(json_kind(json, "job"), JsonKind::kObject);
  EXPECT_EQ(job_from_json(json), job);
}

TEST(JobJson, KeepsArgumentKwargsAndResultTextVerbatim) {
  // job.hpp: "arguments, kwargs and results are JSON text kept verbatim, so the core never
  // re-encodes what a handler produced". Numbers are where re-encoding loses information.
  Job job = full_job();
  job.args = R"([-2e-3,1.10,1E2,0.1,-0.0,9007199254740993])";
  job.kwargs = R"({"price":19.990,"ratio":1e-7})";
  job.result = R"({"score":7.50,"exp":2.5E+3})";
  ASSERT_EQ(json_kind(job.args, "args"), JsonKind::kArray);
  ASSERT_EQ(json_kind(job.kwargs, "kwargs"), JsonKind::kObject);
  const Job decoded = job_from_json(to_json(job));
  EXPECT_EQ(decoded.args, job.args);
  EXPECT_EQ(decoded.kwargs, job.kwargs);
  EXPECT_EQ(decoded.result, job.result);
}

TEST(JobJson, RoundTripsEveryState) {
  for (const JobState state : kAllStates) {
    Job job = full_job();
    job.state = state;
    EXPECT_EQ(job_from_json(to_json(job)).state, state);
  }
}

TEST(JobJson, RoundTripsAJobWithoutOptionalFields) {
  Job job;
  job.id = new_job_id();
  job.task = "plain";
  const Job decoded = job_from_json(to_json(job));
  EXPECT_EQ(decoded, job);
  EXPECT_FALSE(decoded.unique_key.has_value());
  EXPECT_FALSE(decoded.progress.has_value());
  EXPECT_FALSE(decoded.result.has_value());
  EXPECT_FALSE(decoded.error.has_value());
}

TEST(JobJson, KeepsANullResultApartFromNoResult) {
  Job job = full_job();
  job.result = "null";
  EXPECT_EQ(job_from_json(to_json(job)).result, std::optional<std::string>("null"));
  job.result.reset();
  EXPECT_FALSE(job_from_json(to_json(job)).result.has_value());
}

TEST(JobJson, LeaseTokenIsNotPartOfTheWireDocument) {
  Job job = full_job();
  job.lease_token = 0xDEADBEEFull;
  const std::string json = to_json(job);
  EXPECT_EQ(json.find("lease"), std::string::npos) << json;
  const Job decoded = job_from_json(json);
  EXPECT_EQ(decoded.lease_token, 0u);
  job.lease_token = 0;
  EXPECT_EQ(decoded, job);
}

TEST(JobJson, RoundTripsUnicodeAndControlCharactersInEveryString) {
  const std::string text = strange_text();
  Job job = full_job();
  job.id = text;
  job.task = text;
  job.queue = text;
  job.unique_key = text;
  job.progress = Progress{1.0, text, text};
  job.error = JobFailure{text, text, text};
  job.args = cat({"[", json_quote(text), "]"});
  job.kwargs = cat({"{", json_quote(text), ":", json_quote(text), "}"});
  const std::string json = to_json(job);
  for (const char c : json) {
    EXPECT_GE(static_cast<unsigned char>(c), 0x20u) << "raw control character in " << json;
  }
  EXPECT_EQ(json_kind(json, "job"), JsonKind::kObject);
  EXPECT_EQ(job_from_json(json), job);
}

TEST(JobJson, RoundTripsDeeplyNestedArgumentsAndExtremeNumbers) {
  Job job = full_job();
  std::string nested = "1";
  for (int depth = 0; depth < 64; ++depth) {
    nested = depth % 2 == 0 ? cat({"[", nested, R"(,{"k":[]}])"})
                            : cat({R"({"d)", std::to_string(depth), R"(":)", nested, "}"});
  }
  job.args = cat({"[", nested, "]"});
  job.kwargs = R"({"big":9007199254740993,"neg":-1.25e-300,"u":"\u00e9\ud83c\udfac"})";
  job.priority = std::numeric_limits<int>::min();
  job.max_attempts = std::numeric_limits<int>::max();
  job.run_at = std::numeric_limits<std::int64_t>::max();
  job.timeout_ms = std::numeric_limits<std::int64_t>::max();
  job.created_at = -1;
  job.progress = Progress{1.0 / 3.0, "", ""};
  const Job decoded = job_from_json(to_json(job));
  EXPECT_EQ(decoded.args, job.args);
  EXPECT_EQ(json_kind(decoded.kwargs, "kwargs"), JsonKind::kObject);
  EXPECT_EQ(decoded.priority, job.priority);
  EXPECT_EQ(decoded.max_attempts, job.max_attempts);
  EXPECT_EQ(decoded.run_at, job.run_at);
  EXPECT_EQ(decoded.timeout_ms, job.timeout_ms);
  EXPECT_EQ(decoded.created_at, job.created_at);
  ASSERT_TRUE(decoded.progress.has_value());
  EXPECT_EQ(decoded.progress->fraction, 1.0 / 3.0) << "fraction lost precision";
}

TEST(JobJson, DecodesAMinimalDocument) {
  const Job job = job_from_json(document(minimal_fields()));
  EXPECT_EQ(job.id, "0b7f2c1e-8a5d-4f3b-9c2e-1d4a5b6c7d8e");
  EXPECT_EQ(job.task, "t");
  EXPECT_EQ(job.state, JobState::kQueued);
  EXPECT_EQ(job.max_attempts, 3);
  EXPECT_FALSE(job.unique_key || job.progress || job.result || job.error);
  // null optional fields read as absent.
  const Job with_nulls = job_from_json(document(with(
      with(with(minimal_fields(), "unique_key", "null"), "progress", "null"), "error", "null")));
  EXPECT_FALSE(with_nulls.unique_key || with_nulls.progress || with_nulls.error);
}

TEST(JobJson, DecodingRefusesAMissingFieldNamingIt) {
  for (const char* field : {"id", "task", "state", "args"}) {
    expect_invalid_naming(document(without(minimal_fields(), field)), {field});
  }
}

TEST(JobJson, DecodingRefusesAFieldOfTheWrongTypeNamingIt) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"task", "5"},
      {"queue", "null"},
      {"id", "[]"},
      {"priority", "\"high\""},
      {"priority", "1.5"},
      {"run_at", "\"soon\""},
      {"attempt", "true"},
      {"max_attempts", "{}"},
      {"timeout_ms", "\"30s\""},
      {"args", "{}"},
      {"args", "\"[]\""},
      {"kwargs", "[]"},
      {"kwargs", "\"{}\""},
      {"unique_key", "42"},
      {"progress", "\"half\""},
      {"error", "\"boom\""},
      {"cancel_requested", "\"yes\""},
      {"created_at", "\"yesterday\""},
  };
  for (const auto& [field, value] : cases) {
    expect_invalid_naming(document(with(minimal_fields(), field, value)), {field});
  }
  expect_invalid_naming(document(with(minimal_fields(), "state", "\"bogus\"")), {"state", "bogus"});
  expect_invalid_naming(document(with(minimal_fields(), "state", "3")), {"state"});
  expect_invalid_naming(
      document(with(minimal_fields(), "progress", R"({"fraction":"x","step":"","message":""})")),
      {"fraction"});
  expect_invalid_naming(document(with(minimal_fields(), "error", R"({"type":1})")), {"type"});
}

TEST(JobJson, DecodingRefusesTextThatIsNotAJsonObject) {
  for (const char* text : {"", "not json", "[]", "null", "\"job\"", "{\"id\":", "{} {}"}) {
    SCOPED_TRACE(text);
    EXPECT_THROW(job_from_json(text), InvalidPayload);
  }
}

// ---------------------------------------------------------------------------------------------
// JSON text helpers

TEST(JsonKind, ReportsTheKindOfTheRoot) {
  EXPECT_EQ(json_kind("{}", "x"), JsonKind::kObject);
  EXPECT_EQ(json_kind(R"({"a":[1,{"b":null}]})", "x"), JsonKind::kObject);
  EXPECT_EQ(json_kind("[]", "x"), JsonKind::kArray);
  EXPECT_EQ(json_kind(" \n\t[1, 2, 3] \n", "x"), JsonKind::kArray);
  EXPECT_EQ(json_kind(R"("text")", "x"), JsonKind::kString);
  EXPECT_EQ(json_kind("-1.5e3", "x"), JsonKind::kNumber);
  EXPECT_EQ(json_kind("0", "x"), JsonKind::kNumber);
  EXPECT_EQ(json_kind("18446744073709551615", "x"), JsonKind::kNumber);
  EXPECT_EQ(json_kind("true", "x"), JsonKind::kBool);
  EXPECT_EQ(json_kind("false", "x"), JsonKind::kBool);
  EXPECT_EQ(json_kind("null", "x"), JsonKind::kNull);
}

TEST(JsonKind, RefusesInvalidJsonNamingWhatWasChecked) {
  for (const char* text :
       {"", "   ", "not json", "[1,", "{\"a\":}", "{'a':1}", "[1] [2]", "NaN", "\"\xff\""}) {
    SCOPED_TRACE(text);
    try {
      json_kind(text, "args of task 'demo'");
      ADD_FAILURE() << "json_kind accepted invalid JSON";
    } catch (const InvalidPayload& e) {
      EXPECT_NE(std::string(e.what()).find("args of task 'demo'"), std::string::npos) << e.what();
    }
  }
}

TEST(JsonQuote, QuotesAndEscapesLikeJson) {
  EXPECT_EQ(json_quote(""), R"("")");
  EXPECT_EQ(json_quote("plain"), R"("plain")");
  EXPECT_EQ(json_quote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_quote(std::string("\x01", 1)), R"("\u0001")");
  EXPECT_EQ(json_quote(std::string(1, '\0')), R"("\u0000")");
}

TEST(JsonQuote, ProducesValidJsonForAnyTextAndDecodesBackToIt) {
  const std::string text = strange_text();
  const std::string quoted = json_quote(text);
  EXPECT_EQ(json_kind(quoted, "quoted"), JsonKind::kString);
  for (const char c : quoted) EXPECT_GE(static_cast<unsigned char>(c), 0x20u);
  Job job;
  job.id = new_job_id();
  job.task = text;
  EXPECT_EQ(job_from_json(to_json(job)).task, text);
}

TEST(AppendJsonString, AppendsToWhatIsThere) {
  std::string out = R"({"k":)";
  append_json_string(out, "v\n");
  out += "}";
  EXPECT_EQ(out, R"({"k":"v\n"})");
  EXPECT_EQ(json_kind(out, "out"), JsonKind::kObject);
}

// ---------------------------------------------------------------------------------------------
// validate_new_job: what every broker refuses at the door

TEST(ValidateNewJob, AcceptsAValidJob) {
  Job job = make_job("ok.task", "q");
  job.args = R"([1,{"a":2}])";
  job.kwargs = R"({"x":[1]})";
  job.max_attempts = 1;
  EXPECT_NO_THROW(validate_new_job(job, BrokerOptions{}));
}

TEST(ValidateNewJob, RefusesBadJobsNamingTheField) {
  const std::vector<std::tuple<std::string, std::function<void(Job&)>, std::string>> cases = {
      {"empty task", [](Job& j) { j.task.clear(); }, "task"},
      {"empty queue", [](Job& j) { j.queue.clear(); }, "queue"},
      {"args object", [](Job& j) { j.args = "{}"; }, "args"},
      {"args not json", [](Job& j) { j.args = "not json"; }, "args"},
      {"kwargs array", [](Job& j) { j.kwargs = "[]"; }, "kwargs"},
      {"kwargs not json", [](Job& j) { j.kwargs = R"({"a":)"; }, "kwargs"},
      {"max_attempts 0", [](Job& j) { j.max_attempts = 0; }, "max_attempts"},
  };
  for (const auto& [what, spoil, field] : cases) {
    SCOPED_TRACE(what);
    Job job = make_job();
    spoil(job);
    try {
      validate_new_job(job, BrokerOptions{});
      ADD_FAILURE() << "validate_new_job accepted a job with " << what;
    } catch (const InvalidPayload& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
}

TEST(ValidateNewJob, RefusesArgumentsOverMaxPayloadBytes) {
  Job job = make_job();
  job.args = cat({"[", json_quote(std::string(500, 'x')), "]"});
  BrokerOptions options;
  options.max_payload_bytes = job.args.size() + job.kwargs.size();
  EXPECT_NO_THROW(validate_new_job(job, options)) << "a payload at the limit is allowed";
  options.max_payload_bytes = job.args.size() - 1;
  EXPECT_THROW(validate_new_job(job, options), InvalidPayload);
  EXPECT_EQ(BrokerOptions{}.max_payload_bytes, 1u << 20);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(Errors, FormOneHierarchyUnderError) {
  EXPECT_THROW(throw ConfigError("c"), Error);
  EXPECT_THROW(throw BrokerUnavailable("b"), Error);
  EXPECT_THROW(throw InvalidPayload("i"), Error);
  EXPECT_THROW(throw UnknownTask("u"), InvalidPayload);
  EXPECT_THROW(throw JobNotFound("n"), Error);
  EXPECT_THROW(throw JobCancelled("x"), Error);
  EXPECT_THROW(throw JobTimeout("t"), Error);
  EXPECT_THROW(throw UniqueConflict("k", "id"), Error);
  EXPECT_THROW(throw HandlerError("T", "m"), Error);
  EXPECT_THROW(throw Error("e"), std::runtime_error);
  EXPECT_STREQ(ConfigError("bad url").what(), "bad url");
}

TEST(Errors, UniqueConflictNamesTheKeyAndTheExistingJob) {
  const UniqueConflict e("movie:603", "0b7f2c1e-8a5d-4f3b-9c2e-1d4a5b6c7d8e");
  EXPECT_EQ(e.unique_key(), "movie:603");
  EXPECT_EQ(e.existing_id(), "0b7f2c1e-8a5d-4f3b-9c2e-1d4a5b6c7d8e");
  const std::string what = e.what();
  EXPECT_NE(what.find("movie:603"), std::string::npos) << what;
  EXPECT_NE(what.find("0b7f2c1e-8a5d-4f3b-9c2e-1d4a5b6c7d8e"), std::string::npos) << what;
}

TEST(Errors, HandlerErrorCarriesTypeMessageAndTraceback) {
  const HandlerError e("ValueError", "bad value", "Traceback ...");
  EXPECT_EQ(e.type(), "ValueError");
  EXPECT_EQ(e.message(), "bad value");
  EXPECT_EQ(e.traceback(), "Traceback ...");
  EXPECT_NE(std::string(e.what()).find("bad value"), std::string::npos) << e.what();
  EXPECT_TRUE(HandlerError("T", "m").traceback().empty());
}

}  // namespace
