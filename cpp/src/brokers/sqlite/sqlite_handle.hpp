// RAII over the SQLite C API: a connection, prepared statements, and IMMEDIATE transactions,
// with one throw_from_sqlite() that turns result codes into cinejobs errors.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cinejobs::detail {

// throw_from_sqlite throws the cinejobs error for `rc`: BrokerUnavailable for I/O, locking,
// permission and open failures, Error otherwise; the message names `context` and SQLite's text.
[[noreturn]] void throw_from_sqlite(sqlite3* db, int rc, std::string_view context);

class SqliteDatabase {
 public:
  // Opens (creating if needed) the database at `path` in WAL mode. Throws BrokerUnavailable
  // naming the path when it cannot be opened or written.
  SqliteDatabase(const std::string& path, std::chrono::milliseconds busy_timeout,
                 bool synchronous_full);
  ~SqliteDatabase();
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  sqlite3* get() const noexcept { return db_; }
  const std::string& path() const noexcept { return path_; }
  // exec runs one or more statements that return no rows.
  void exec(std::string_view sql, std::string_view context);
  std::int64_t changes() const noexcept { return sqlite3_changes64(db_); }

 private:
  static int on_busy(void* self, int count);

  std::string path_;
  sqlite3* db_ = nullptr;
  std::chrono::milliseconds busy_timeout_{0};
  std::chrono::steady_clock::time_point busy_since_;  // start of the current wait for the lock
};

// SqliteStatement is a prepared statement, reset (and its bindings cleared) by reset() or by a
// StatementScope, so it never keeps a read transaction open between uses.
class SqliteStatement {
 public:
  SqliteStatement(SqliteDatabase& db, std::string_view sql);
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Parameters are 1-based, as in SQLite. Bound text is not copied: it must stay alive until
  // the statement is reset.
  SqliteStatement& bind(int index, std::int64_t value);
  SqliteStatement& bind(int index, double value);
  SqliteStatement& bind(int index, std::string_view value);
  SqliteStatement& bind(int index, const std::optional<std::string>& value);
  SqliteStatement& bind_null(int index);

  // step returns true when a row is ready and false when the statement is done.
  bool step();
  void reset() noexcept;

  // Columns are 0-based, as in SQLite.
  std::int64_t column_int(int column) const noexcept;
  double column_double(int column) const noexcept;
  std::string column_text(int column) const;
  bool column_is_null(int column) const noexcept;

 private:
  SqliteDatabase& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// StatementScope resets a statement when it leaves scope, whatever happened in between.
class StatementScope {
 public:
  explicit StatementScope(SqliteStatement& stmt) noexcept : stmt_(stmt) {}
  ~StatementScope() { stmt_.reset(); }
  StatementScope(const StatementScope&) = delete;
  StatementScope& operator=(const StatementScope&) = delete;

 private:
  SqliteStatement& stmt_;
};

// ImmediateTransaction takes the database's write lock at once (BEGIN IMMEDIATE), so a
// read-then-write inside it can never fail halfway on a lock; rolled back unless committed.
class ImmediateTransaction {
 public:
  explicit ImmediateTransaction(SqliteDatabase& db);
  ~ImmediateTransaction();
  ImmediateTransaction(const ImmediateTransaction&) = delete;
  ImmediateTransaction& operator=(const ImmediateTransaction&) = delete;
  void commit();

 private:
  SqliteDatabase& db_;
  bool open_ = true;
};

}  // namespace cinejobs::detail
