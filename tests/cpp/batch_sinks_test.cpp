// The library's batch sinks against real parts: the PostgreSQL table sink and dead letter on the
// process's test server (including a server that goes down mid-stream), and the HTTP client's
// refusals. The Elasticsearch sink is exercised from Python, against the _bulk stand-in.
#include "cinejobs/batch_sinks.hpp"

#include <fstream>

#include "cinejobs/batcher.hpp"
#include "cinejobs/http_client.hpp"
#include "postgres_server.hpp"
#include "test_support.hpp"

namespace cinejobs {
namespace {

using namespace std::chrono_literals;
using test::PostgresServer;

class PostgresSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PostgresServer::available() && !test::in_ci()) {
      GTEST_SKIP() << "PostgreSQL is not installed (and CI is not set)";
    }
    server_ = &PostgresServer::instance();
    server_->sql("CREATE SCHEMA " + schema_ + "; CREATE TABLE " + table() +
                 " (id integer PRIMARY KEY, title text NOT NULL, year integer)");
  }
  void TearDown() override {
    if (server_ != nullptr) server_->sql("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
  }
  std::string table() const { return schema_ + ".movies"; }
  std::string rows() const {
    return server_->query("SELECT id, title, coalesce(year, 0) FROM " + table() + " ORDER BY id");
  }

  PostgresServer* server_ = nullptr;
  std::string schema_ = test::random_schema();
};

BatcherOptions fast_retries() {
  BatcherOptions o;
  o.max_items = 100;
  o.max_age = 60s;
  o.retry_backoff = 1ms;
  o.retry_backoff_max = 2ms;
  return o;
}

TEST_F(PostgresSinkTest, CopiesRowsAndFailsOnlyTheBadOnes) {
  test::TempDir dir;
  const std::string dead = dir.path() + "/dead.jsonl";
  Batcher batcher(make_postgres_sink({server_->url(), table(), {}, PostgresWriteMode::kCopy}),
                  fast_retries(), make_jsonl_dead_letter(dead));
  batcher.add(R"({"id": 1, "title": "Alien", "year": 1979, "unknown": true})");
  batcher.add(R"({"id": 2, "title": "no year", "year": "soon"})");
  batcher.add(R"({"id": 3, "title": "tab\there"})");
  batcher.add("[1, 2]");
  batcher.close();
  EXPECT_EQ(rows(), "1|Alien|1979\n3|tab\there|0");
  const auto stats = batcher.stats();
  EXPECT_EQ(stats.delivered, 2u);
  EXPECT_EQ(stats.dead_lettered, 2u);
  std::ifstream in(dead);
  std::string first;
  std::getline(in, first);
  EXPECT_NE(first.find("integer"), std::string::npos) << first;
}

TEST_F(PostgresSinkTest, UpsertsByKeyWithTheLaterItemWinning) {
  Batcher batcher(make_postgres_sink({server_->url(), table(), {"id"}, PostgresWriteMode::kCopy}),
                  fast_retries());
  batcher.add(R"({"id": 1, "title": "first"})");
  batcher.add(R"({"id": 1, "title": "second", "year": 2})");
  ASSERT_TRUE(batcher.flush());
  batcher.add(R"({"id": 1, "title": "third", "year": 3})");
  batcher.close();
  EXPECT_EQ(rows(), "1|third|3");
  EXPECT_EQ(batcher.stats().delivered, 3u);
}

TEST_F(PostgresSinkTest, RefusesAMissingTableAndABadName) {
  EXPECT_THROW(make_postgres_sink({server_->url(), schema_ + ".nope", {}, {}}), ConfigError);
  EXPECT_THROW(make_postgres_sink({server_->url(), "movies;--", {}, {}}), ConfigError);
  EXPECT_THROW(make_postgres_sink({server_->url(), table(), {"imdb"}, {}}), ConfigError);
}

TEST_F(PostgresSinkTest, RetriesWhileTheServerIsDownAndDeliversAfterIt) {
  auto options = fast_retries();
  options.max_attempts = 1000;
  options.retry_backoff = 20ms;
  options.retry_backoff_max = 200ms;
  Batcher batcher(make_postgres_sink({server_->url(), table(), {}, PostgresWriteMode::kInsert}),
                  options);
  server_->stop();
  for (int i = 0; i < 5; ++i) {
    batcher.add(R"({"id": )" + std::to_string(i) + R"(, "title": "t"})");
  }
  EXPECT_FALSE(batcher.flush(0ms));
  ASSERT_TRUE(test::wait_until([&] { return batcher.stats().retried >= 10; }, 30s));
  server_->start();
  ASSERT_TRUE(batcher.flush(60s));
  EXPECT_EQ(server_->query("SELECT count(*) FROM " + table()), "5");
  EXPECT_EQ(batcher.stats().delivered, 5u);
  EXPECT_EQ(batcher.stats().dead_lettered + batcher.stats().undelivered, 0u);
}

TEST_F(PostgresSinkTest, DeadLettersIntoATableItCreates) {
  const std::string dead_table = schema_ + ".dead";
  Batcher batcher(make_postgres_sink({server_->url(), table(), {}, PostgresWriteMode::kCopy}),
                  fast_retries(), make_postgres_dead_letter(server_->url(), dead_table));
  batcher.add(R"({"id": 7})");  // title is NOT NULL
  batcher.close();
  EXPECT_EQ(server_->query("SELECT item->>'id', attempts FROM " + dead_table), "7|1");
  EXPECT_EQ(batcher.stats().dead_lettered, 1u);
}

// EsStandIn runs the Python _bulk stand-in with `args`, reads the base URL it prints, and ends
// it (by closing its stdin) on destruction.
class EsStandIn {
 public:
  explicit EsStandIn(std::vector<std::string> args) {
    int to_child[2];
    int from_child[2];
    if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> argv = {
        "python3", std::string(CINEJOBS_SOURCE_DIR) + "/tests/python/es_standin.py"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      ::close(to_child[1]);
      ::close(from_child[0]);
      std::vector<char*> raw;
      for (auto& a : argv) raw.push_back(a.data());
      raw.push_back(nullptr);
      ::execvp(raw[0], raw.data());
      _exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    stdin_ = to_child[1];
    char c = 0;
    while (::read(from_child[0], &c, 1) == 1 && c != '\n') url_ += c;
    ::close(from_child[0]);
    if (!url_.starts_with("http://")) throw std::runtime_error("the stand-in did not start");
  }
  ~EsStandIn() {
    ::close(stdin_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  EsStandIn(const EsStandIn&) = delete;
  EsStandIn& operator=(const EsStandIn&) = delete;
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  std::string url_;
};

TEST(ElasticsearchSink, RetriesRejectedItemsAndDeadLettersRefusedOnes) {
  test::TempDir dir;
  const std::string dead = dir.path() + "/dead.jsonl";
  EsStandIn es(
      {"--reject-requests", "1", "--reject-item", "3:2", "--mapping-error", "year=unknown"});
  ElasticsearchSinkOptions options;
  options.base_url = es.url();
  options.index = "movies";
  options.id_field = "id";
  BatcherOptions batching = fast_retries();
  batching.max_items = 10;
  Batcher batcher(make_elasticsearch_sink(options), batching, make_jsonl_dead_letter(dead));
  for (int i = 0; i < 10; ++i) {
    batcher.add(R"({"id": )" + std::to_string(i) + R"(, "year": ")" +
                (i == 8 ? std::string("unknown") : std::to_string(2000 + i)) + R"("})");
  }
  batcher.add("not json at all");
  batcher.close();
  const auto stats = batcher.stats();
  EXPECT_EQ(stats.delivered, 9u);
  EXPECT_EQ(stats.dead_lettered, 2u);
  // The whole first request (10 documents), then item 3 twice.
  EXPECT_EQ(stats.retried, 12u);
  std::ifstream in(dead);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("mapper_parsing_exception"), std::string::npos) << text;
  EXPECT_NE(text.find("not a JSON object"), std::string::npos) << text;
}

TEST(HttpClient, RefusesABaseUrlThatIsNotHttp) {
  HttpClientOptions options;
  options.base_url = "127.0.0.1:9200";
  EXPECT_THROW(HttpClient{options}, ConfigError);
}

TEST(HttpClient, NoResponseIsAnHttpErrorNamingTheUrl) {
  HttpClientOptions options;
  options.base_url = "http://127.0.0.1:9";  // the discard port: nothing listens there
  options.timeout = 2000ms;
  HttpClient client(options);
  try {
    client.request("GET", "/");
    FAIL() << "expected HttpError";
  } catch (const HttpError& e) {
    EXPECT_NE(std::string(e.what()).find("http://127.0.0.1:9/"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cinejobs
