// Dead letters: where items go that a sink refused for good or that used up their attempts.
// Both keep the item as JSON (the item itself when it is valid JSON, else as a JSON string), the
// last error, the time and the number of attempts, so an operator can inspect and replay them.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <pqxx/pqxx>

#include "batch/pg_names.hpp"
#include "brokers/postgres/pg_connection.hpp"
#include "cinejobs/batch_sinks.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs {
namespace {

// item_as_json returns the item when it is one valid JSON document, else the item quoted.
std::string item_as_json(const std::string& item) {
  try {
    (void)json_kind(item, "item");
    return item;
  } catch (const InvalidPayload&) {
    return json_quote(item);
  }
}

// entry_json is one entry as a JSON object: {"item": ..., "error": ..., "at": ms, "attempts": n}.
std::string entry_json(const DeadLetterEntry& e) {
  return "{\"item\":" + item_as_json(e.item) + ",\"error\":" + json_quote(e.error) +
         ",\"at\":" + std::to_string(e.at) + ",\"attempts\":" + std::to_string(e.attempts) + "}";
}

class JsonlDeadLetter final : public DeadLetterSink {
 public:
  explicit JsonlDeadLetter(std::string path) : path_(std::move(path)) {
    if (path_.empty()) throw ConfigError("the dead-letter file path is empty");
  }

  std::string describe() const override { return "file " + path_; }

  void write(std::span<const DeadLetterEntry> entries) override {
    std::string text;
    for (const auto& e : entries) {
      text += entry_json(e);
      text += '\n';
    }
    std::lock_guard lock(mutex_);
    // Opened per write: a rotated or deleted file is recreated, and no descriptor is held open.
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot open");
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        fail("cannot write to");
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
      const int saved = errno;
      ::close(fd);
      errno = saved;
      fail("cannot sync");
    }
    ::close(fd);
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw Error(std::string(what) + " the dead-letter file " + path_ + ": " + std::strerror(errno));
  }

  std::string path_;
  std::mutex mutex_;
};

class PostgresDeadLetter final : public DeadLetterSink {
 public:
  PostgresDeadLetter(const std::string& url, std::string table)
      : table_name_(std::move(table)),
        table_(detail::quote_qualified_name(table_name_, "dead-letter table")),
        pool_(
            detail::make_pg_target(url, redact_url(url)),
            [](pqxx::connection& c) { c.set_client_encoding("UTF8"); }, 1) {}

  std::string describe() const override { return "PostgreSQL table " + table_name_; }

  void write(std::span<const DeadLetterEntry> entries) override {
    std::string array = "[";
    for (const auto& e : entries) {
      if (array.size() > 1) array += ',';
      array += entry_json(e);
    }
    array += ']';
    pool_.run("writing dead letters to " + table_name_, [&](pqxx::connection& c) {
      pqxx::work tx(c);
      // Created on first use, so configuring a dead letter is all an operator has to do.
      tx.exec0("CREATE TABLE IF NOT EXISTS " + table_ +
               " (id bigserial PRIMARY KEY, item jsonb NOT NULL, error text NOT NULL, "
               "at timestamptz NOT NULL, attempts integer NOT NULL)");
      tx.exec_params0("INSERT INTO " + table_ +
                          " (item, error, at, attempts) SELECT e->'item', e->>'error', "
                          "to_timestamp((e->>'at')::bigint / 1000.0), (e->>'attempts')::int "
                          "FROM jsonb_array_elements($1::jsonb) AS e",
                      array);
      tx.commit();
    });
  }

 private:
  std::string table_name_;
  std::string table_;
  detail::PgPool pool_;
};

}  // namespace

std::shared_ptr<DeadLetterSink> make_jsonl_dead_letter(std::string path) {
  return std::make_shared<JsonlDeadLetter>(std::move(path));
}

std::shared_ptr<DeadLetterSink> make_postgres_dead_letter(std::string url, std::string table) {
  return std::make_shared<PostgresDeadLetter>(url, std::move(table));
}

}  // namespace cinejobs
