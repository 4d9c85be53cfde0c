#include "brokers/sqlite/sqlite_handle.hpp"

#include <algorithm>
#include <thread>

#include "cinejobs/errors.hpp"

namespace cinejobs::detail {

void throw_from_sqlite(sqlite3* db, int rc, std::string_view context) {
  const std::string reason = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = std::string(context) + " failed (" + reason + ")";
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw BrokerUnavailable(message +
                              ": another process held the database lock past the busy timeout");
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      throw BrokerUnavailable(message);
    default:
      throw Error(message);
  }
}

SqliteDatabase::SqliteDatabase(const std::string& path, std::chrono::milliseconds busy_timeout,
                               bool synchronous_full)
    : path_(path) {
  // NOMUTEX: the broker serialises all use of one connection with its own mutex.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string reason = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw BrokerUnavailable("cannot open SQLite database at '" + path + "' (" + reason +
                            "): check that its directory exists and is writable");
  }
  sqlite3_extended_result_codes(db_, 1);
  busy_timeout_ = busy_timeout;
  sqlite3_busy_handler(db_, &SqliteDatabase::on_busy, this);
  try {
    // WAL lets readers run beside the one writer, and several processes share the file.
    // synchronous=NORMAL in WAL mode keeps every commit across a process crash (kill -9);
    // FULL also across power loss, at an fsync per commit.
    exec("PRAGMA journal_mode=WAL", "enabling WAL on '" + path + "'");
    exec(synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
         "setting synchronous");
    // Checkpoint (and fsync) every ~40 MB of WAL instead of every 4 MB: a job's life is a few
    // small transactions, and the default made checkpoints a third of their cost.
    exec("PRAGMA wal_autocheckpoint=10000", "setting the WAL checkpoint size");
    exec("PRAGMA cache_size=-32768", "setting the page cache size");
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

int SqliteDatabase::on_busy(void* self, int count) {
  // SQLite's own busy handler sleeps 1, 2, 5 ... 100 ms between tries, so a process that holds
  // the write lock in a tight loop (a worker reserving and acking) starves the others. Retrying
  // after a yield, then after short sleeps, lets waiting processes take their turn.
  auto* db = static_cast<SqliteDatabase*>(self);
  const auto now = std::chrono::steady_clock::now();
  if (count == 0) db->busy_since_ = now;
  if (now - db->busy_since_ >= db->busy_timeout_) return 0;
  if (count < 8) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(std::min(count, 40) * 25));
  }
  return 1;
}

SqliteDatabase::~SqliteDatabase() {
  // close_v2 defers the close until every statement is finalized; statements are members of
  // the broker destroyed before the database, so this closes at once.
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

void SqliteDatabase::exec(std::string_view sql, std::string_view context) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &error);
  if (error != nullptr) sqlite3_free(error);
  if (rc != SQLITE_OK) throw_from_sqlite(db_, rc, context);
}

SqliteStatement::SqliteStatement(SqliteDatabase& db, std::string_view sql) : db_(db) {
  const int rc = sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) throw_from_sqlite(db.get(), rc, "preparing SQL");
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

namespace {
void check_bind(SqliteDatabase& db, int rc) {
  if (rc != SQLITE_OK) throw_from_sqlite(db.get(), rc, "binding an SQL parameter");
}
}  // namespace

SqliteStatement& SqliteStatement::bind(int index, std::int64_t value) {
  check_bind(db_, sqlite3_bind_int64(stmt_, index, value));
  return *this;
}

SqliteStatement& SqliteStatement::bind(int index, double value) {
  check_bind(db_, sqlite3_bind_double(stmt_, index, value));
  return *this;
}

SqliteStatement& SqliteStatement::bind(int index, std::string_view value) {
  // SQLITE_STATIC: no copy. Callers bind, step and reset within one scope (StatementScope), so
  // the text outlives every use; copying cost an allocation per parameter on the hot path.
  check_bind(db_, sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_STATIC,
                                      SQLITE_UTF8));
  return *this;
}

SqliteStatement& SqliteStatement::bind(int index, const std::optional<std::string>& value) {
  return value ? bind(index, std::string_view(*value)) : bind_null(index);
}

SqliteStatement& SqliteStatement::bind_null(int index) {
  check_bind(db_, sqlite3_bind_null(stmt_, index));
  return *this;
}

bool SqliteStatement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw_from_sqlite(db_.get(), rc, "SQLite statement");
}

void SqliteStatement::reset() noexcept {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t SqliteStatement::column_int(int column) const noexcept {
  return sqlite3_column_int64(stmt_, column);
}

double SqliteStatement::column_double(int column) const noexcept {
  return sqlite3_column_double(stmt_, column);
}

std::string SqliteStatement::column_text(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  if (text == nullptr) return {};
  return std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

bool SqliteStatement::column_is_null(int column) const noexcept {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

ImmediateTransaction::ImmediateTransaction(SqliteDatabase& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE", "starting a write transaction on '" + db_.path() + "'");
}

ImmediateTransaction::~ImmediateTransaction() {
  if (open_) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void ImmediateTransaction::commit() {
  db_.exec("COMMIT", "committing to '" + db_.path() + "'");
  open_ = false;
}

}  // namespace cinejobs::detail
