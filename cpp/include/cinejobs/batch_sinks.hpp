// The sinks and dead letters cinejobs ships for the Batcher (batcher.hpp): a PostgreSQL table,
// Elasticsearch's _bulk API, and dead letters in a JSONL file or a PostgreSQL table. Items are
// JSON text; the table and Elasticsearch sinks need each item to be a JSON object, and report an
// item that is not as failed (dead letter), never the whole batch.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cinejobs/batcher.hpp"

namespace cinejobs {

enum class PostgresWriteMode : std::uint8_t {
  kCopy,    // COPY table (columns) FROM STDIN: fastest, plain inserts
  kInsert,  // one multi-row INSERT per batch; with `key`, an upsert (ON CONFLICT DO UPDATE)
};

struct PostgresSinkOptions {
  std::string url;    // postgresql://user:password@host:port/db (a libpq URI or key=value string)
  std::string table;  // "movies" or "schema.movies"; it must exist
  // Upsert by these columns (a unique index must cover them): a later item with the same key
  // replaces the earlier row. Implies kInsert.
  std::vector<std::string> key;
  PostgresWriteMode mode = PostgresWriteMode::kCopy;
};

// make_postgres_sink writes items as rows of an existing table, mapping each object's fields to
// the columns of the same name (fields without a column are ignored, columns without a field get
// NULL). When a batch fails on its data (a value that does not fit its column, a constraint), the
// items are written one by one so that only the bad ones fail. A lost connection or a server
// down makes the whole batch retry. Throws ConfigError for a bad table or key name, and
// BrokerUnavailable when the table cannot be looked up.
std::shared_ptr<BatchSink> make_postgres_sink(PostgresSinkOptions options);

struct ElasticsearchSinkOptions {
  std::string base_url;  // http://127.0.0.1:9200
  std::string index;
  // Take each document's _id from this field (so a retry overwrites instead of duplicating);
  // empty: Elasticsearch assigns ids.
  std::string id_field;
  std::chrono::milliseconds timeout{30000};
  std::vector<std::string> headers;  // extra request headers, "Authorization: ApiKey ..."
};

// make_elasticsearch_sink sends each batch as one POST /<index>/_bulk request: an NDJSON body of
// `index` action and source lines. It reads the per-item results: 2xx delivered; 429 and 5xx
// retried; any other error (mapper_parsing_exception, ...) failed for good with its type and
// reason. A whole-request 429 or 5xx, or a transport failure, retries the whole batch (waiting at
// least as long as a Retry-After header asks).
std::shared_ptr<BatchSink> make_elasticsearch_sink(ElasticsearchSinkOptions options);

// make_null_sink accepts every item and keeps none: a dry run, and the benchmark's measure of
// the batcher's own cost.
std::shared_ptr<BatchSink> make_null_sink();

// make_jsonl_dead_letter appends one line per entry to `path` (created if missing):
// {"item": <the item>, "error": "...", "at": <epoch ms>, "attempts": n}, flushed and fsynced
// before write() returns.
std::shared_ptr<DeadLetterSink> make_jsonl_dead_letter(std::string path);

// make_postgres_dead_letter inserts entries into `table` (created if missing) with columns
// item jsonb, error text, at timestamptz, attempts int.
std::shared_ptr<DeadLetterSink> make_postgres_dead_letter(std::string url, std::string table);

}  // namespace cinejobs
