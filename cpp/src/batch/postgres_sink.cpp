// The PostgreSQL table sink: rows by COPY or by one multi-row INSERT (an upsert with a key).
// Items are parsed once (simdjson) into per-column text; PostgreSQL converts that text to each
// column's type, exactly as it would a COPY file or a string literal.
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <pqxx/tablewriter>

#include "batch/pg_names.hpp"
#include "brokers/postgres/pg_connection.hpp"
#include "cinejobs/batch_sinks.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs {
namespace {

using detail::PgPool;

// A parsed item: a text value (nullopt for JSON null) per column index it names.
struct Row {
  std::map<std::size_t, std::optional<std::string>> values;
  std::string key;  // the key columns' values, joined, when upserting
};

bool is_data_error(const pqxx::sql_error& e) {
  // Class 22 (data exception) and 23 (integrity constraint violation): this data, not the
  // server, is at fault, so another attempt of the same rows would fail the same way.
  const std::string& state = e.sqlstate();
  return state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0;
}

// copy_escape writes `text` in COPY's text format (backslash escapes for the delimiters).
void copy_escape(std::string& out, std::string_view text) {
  for (const char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
}

class PostgresSink final : public BatchSink {
 public:
  explicit PostgresSink(PostgresSinkOptions options)
      : options_(std::move(options)),
        table_(detail::quote_qualified_name(options_.table, "table")),
        pool_(
            detail::make_pg_target(options_.url, redact_url(options_.url)),
            [](pqxx::connection& c) { c.set_client_encoding("UTF8"); }, 1) {
    if (!options_.key.empty()) options_.mode = PostgresWriteMode::kInsert;
    load_columns();
  }

  std::string describe() const override { return "PostgreSQL table " + options_.table; }

  std::vector<ItemResult> write(std::span<const std::string> items) override {
    std::vector<ItemResult> results(items.size());
    std::vector<std::size_t> good;  // indexes of the items that parsed
    std::vector<Row> rows;
    for (std::size_t i = 0; i < items.size(); ++i) {
      std::string error;
      if (auto row = parse(items[i], error)) {
        good.push_back(i);
        rows.push_back(std::move(*row));
      } else {
        results[i] = {ItemOutcome::kFailed, std::move(error)};
      }
    }
    if (!options_.key.empty()) supersede_duplicate_keys(good, rows);
    if (rows.empty()) return results;
    try {
      write_rows(rows, items, good);
      return results;
    } catch (const pqxx::sql_error& e) {
      if (!is_data_error(e)) rethrow();
    } catch (...) {
      rethrow();
    }
    // Some row is bad: write them one by one so only the bad ones fail.
    for (std::size_t n = 0; n < good.size(); ++n) {
      const std::span<const Row> one(&rows[n], 1);
      const std::vector<std::size_t> index{good[n]};
      try {
        write_rows(one, items, index, PostgresWriteMode::kInsert);
      } catch (const pqxx::sql_error& e) {
        if (is_data_error(e)) {
          results[good[n]] = {ItemOutcome::kFailed, describe() + " refused the row: " + e.what()};
          continue;
        }
        mark_retry(results, good, n, e.what());
        break;
      } catch (const std::exception& e) {
        mark_retry(results, good, n, e.what());
        break;
      }
    }
    return results;
  }

 private:
  [[noreturn]] void rethrow() const {
    detail::rethrow_from_pqxx(pool_.target(), "writing to " + options_.table);
  }

  static void mark_retry(std::vector<ItemResult>& results, const std::vector<std::size_t>& good,
                         std::size_t from, const std::string& error) {
    for (std::size_t m = from; m < good.size(); ++m)
      results[good[m]] = {ItemOutcome::kRetry, error};
  }

  void load_columns() {
    auto lease = pool_.acquire();
    try {
      pqxx::work tx(*lease);
      const pqxx::result r = tx.exec_params(
          "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 "
          "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
          table_);
      for (const auto& row : r) columns_.push_back(row[0].as<std::string>());
      tx.commit();
    } catch (...) {
      if (detail::connection_lost(*lease)) lease.discard();
      detail::rethrow_from_pqxx(pool_.target(), "looking up the columns of " + options_.table);
    }
    if (columns_.empty()) {
      throw ConfigError("PostgreSQL at " + pool_.target().where() + " has no table " +
                        options_.table + " (or it has no columns): create it before writing to it");
    }
    for (std::size_t i = 0; i < columns_.size(); ++i) column_index_[columns_[i]] = i;
    for (const auto& k : options_.key) {
      if (!column_index_.contains(k)) {
        throw ConfigError("the upsert key column '" + k + "' is not a column of " + options_.table);
      }
      quoted_keys_.push_back(detail::quote_identifier(k, "key column"));
    }
  }

  std::optional<Row> parse(const std::string& item, std::string& error) const {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object object;
    if (auto e = parser.parse(item).get_object().get(object); e) {
      error = std::string("item is not a JSON object (") + simdjson::error_message(e) + ")";
      return std::nullopt;
    }
    Row row;
    for (auto field : object) {
      auto it = column_index_.find(std::string(field.key));
      if (it == column_index_.end()) continue;
      std::optional<std::string> text;
      std::string_view s;
      if (field.value.is_null()) {
      } else if (field.value.get_string().get(s) == simdjson::SUCCESS) {
        text = std::string(s);
      } else {
        text = simdjson::to_string(field.value);
      }
      row.values[it->second] = std::move(text);
    }
    for (const auto& k : options_.key) {
      auto v = row.values.find(column_index_.at(k));
      if (v == row.values.end() || !v->second) {
        error = "item has no value for the upsert key column '" + k + "'";
        return std::nullopt;
      }
      row.key += *v->second;
      row.key += '\x1f';
    }
    return row;
  }

  // An upsert cannot touch one row twice in a statement; the later item wins, as it would have
  // had the two been written one after the other, so the earlier one counts as delivered.
  static void supersede_duplicate_keys(std::vector<std::size_t>& good, std::vector<Row>& rows) {
    std::map<std::string, std::size_t> last;
    for (std::size_t n = 0; n < rows.size(); ++n) last[rows[n].key] = n;
    if (last.size() == rows.size()) return;
    std::vector<std::size_t> kept_good;
    std::vector<Row> kept_rows;
    for (std::size_t n = 0; n < rows.size(); ++n) {
      if (last[rows[n].key] != n) continue;
      kept_good.push_back(good[n]);
      kept_rows.push_back(std::move(rows[n]));
    }
    good = std::move(kept_good);
    rows = std::move(kept_rows);
  }

  // The columns any row names, in table order: columns no item mentions keep their defaults.
  std::vector<std::size_t> used_columns(std::span<const Row> rows) const {
    std::vector<bool> used(columns_.size(), false);
    for (const auto& row : rows) {
      for (const auto& [index, value] : row.values) used[index] = true;
    }
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < used.size(); ++i) {
      if (used[i]) out.push_back(i);
    }
    return out;
  }

  void write_rows(std::span<const Row> rows, std::span<const std::string> items,
                  const std::vector<std::size_t>& indexes,
                  std::optional<PostgresWriteMode> mode = std::nullopt) {
    const std::vector<std::size_t> used = used_columns(rows);
    std::vector<std::string> quoted;
    for (const auto i : used) quoted.push_back(detail::quote_identifier(columns_[i], "column"));
    auto lease = pool_.acquire();
    try {
      pqxx::work tx(*lease);
      if (mode.value_or(options_.mode) == PostgresWriteMode::kCopy && !used.empty()) {
        copy_rows(tx, rows, used, quoted);
      } else {
        insert_rows(tx, items, indexes, quoted);
      }
      tx.commit();
    } catch (...) {
      if (detail::connection_lost(*lease)) lease.discard();
      throw;
    }
  }

  void copy_rows(pqxx::work& tx, std::span<const Row> rows, const std::vector<std::size_t>& used,
                 const std::vector<std::string>& quoted) {
// libpqxx 6 gives no public way to send a prepared COPY line except tablewriter (deprecated in
// favour of stream_to, whose raw-line writer is private there and whose typed rows need
// compile-time columns). Our lines are escaped above for COPY's text format in UTF-8.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    pqxx::tablewriter writer(tx, table_, quoted.begin(), quoted.end());
#pragma GCC diagnostic pop
    std::string line;
    for (const auto& row : rows) {
      line.clear();
      for (std::size_t u = 0; u < used.size(); ++u) {
        if (u > 0) line += '\t';
        auto v = row.values.find(used[u]);
        if (v == row.values.end() || !v->second) {
          line += "\\N";
        } else {
          copy_escape(line, *v->second);
        }
      }
      writer.write_raw_line(line);
    }
    writer.complete();
  }

  void insert_rows(pqxx::work& tx, std::span<const std::string> items,
                   const std::vector<std::size_t>& indexes,
                   const std::vector<std::string>& quoted) {
    std::string array = "[";
    for (std::size_t n = 0; n < indexes.size(); ++n) {
      if (n > 0) array += ',';
      array += items[indexes[n]];
    }
    array += ']';
    std::string list;
    for (const auto& q : quoted) list += (list.empty() ? "" : ", ") + q;
    std::string sql;
    if (quoted.empty()) {
      // Items that name no column: one row of defaults each.
      sql = "INSERT INTO " + table_ + " SELECT FROM json_array_elements($1::json)";
      tx.exec_params(sql, array);
      return;
    }
    sql = "INSERT INTO " + table_ + " (" + list + ") SELECT " + list +
          " FROM json_populate_recordset(NULL::" + table_ + ", $1::json)";
    if (!options_.key.empty()) {
      std::string keys;
      std::string updates;
      for (const auto& k : quoted_keys_) keys += (keys.empty() ? "" : ", ") + k;
      for (const auto& q : quoted) {
        if (std::find(quoted_keys_.begin(), quoted_keys_.end(), q) != quoted_keys_.end()) continue;
        updates += (updates.empty() ? "" : ", ") + q + " = EXCLUDED." + q;
      }
      sql += " ON CONFLICT (" + keys + ") DO " +
             (updates.empty() ? std::string("NOTHING") : "UPDATE SET " + updates);
    }
    tx.exec_params(sql, array);
  }

  PostgresSinkOptions options_;
  std::string table_;  // quoted
  PgPool pool_;
  std::vector<std::string> columns_;
  std::map<std::string, std::size_t> column_index_;
  std::vector<std::string> quoted_keys_;
};

}  // namespace

std::shared_ptr<BatchSink> make_postgres_sink(PostgresSinkOptions options) {
  return std::make_shared<PostgresSink>(std::move(options));
}

}  // namespace cinejobs
