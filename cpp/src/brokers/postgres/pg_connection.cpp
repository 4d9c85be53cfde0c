#include "brokers/postgres/pg_connection.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include "cinejobs/errors.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs::detail {
namespace {

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// libpq ends its messages with a newline and sometimes splits them over lines with a tab.
std::string one_line(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool sqlstate_means_unavailable(const std::string& state) {
  // 08: connection exception; 53: insufficient resources; 57P0x: server shutting down or
  // starting; 40001/40P01: serialization failure and deadlock, which a retry resolves.
  return state.rfind("08", 0) == 0 || state.rfind("53", 0) == 0 || state.rfind("57P", 0) == 0 ||
         state == "40001" || state == "40P01";
}

}  // namespace

std::string PgTarget::where() const {
  std::string out = host.empty() ? std::string("localhost") : host;
  if (!port.empty()) out += ":" + port;
  out += "/" + (dbname.empty() ? (user.empty() ? std::string("postgres") : user) : dbname);
  return out;
}

PgTarget make_pg_target(std::string conninfo, std::string redacted_url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    const std::string reason = error != nullptr ? redact_url(one_line(error)) : "out of memory";
    if (error != nullptr) PQfreemem(error);
    throw ConfigError("malformed PostgreSQL broker URL '" + redacted_url + "': " + reason);
  }
  PgTarget target;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view key = o->keyword;
    if (key == "host" || (key == "hostaddr" && target.host.empty())) target.host = o->val;
    if (key == "port") target.port = o->val;
    if (key == "dbname") target.dbname = o->val;
    if (key == "user") target.user = o->val;
  }
  PQconninfoFree(options);
  target.conninfo = std::move(conninfo);
  target.redacted_url = std::move(redacted_url);
  return target;
}

std::unique_ptr<pqxx::connection> connect_pg(const PgTarget& target) {
  try {
    return std::make_unique<pqxx::connection>(target.conninfo);
  } catch (const std::exception& e) {
    const std::string reason = redact_url(one_line(e.what()));
    const std::string user = target.user.empty() ? std::string("(default user)") : target.user;
    if (contains(reason, "password authentication failed") ||
        contains(reason, "no password supplied") || contains(reason, "authentication failed")) {
      throw BrokerUnavailable("PostgreSQL at " + target.where() + " refused the login of user " +
                              user + " (" + reason +
                              "): check the user name and password in the broker URL");
    }
    if (contains(reason, "database \"") && contains(reason, "does not exist")) {
      throw BrokerUnavailable("PostgreSQL at " + target.where() + " has no database '" +
                              target.dbname + "' (" + reason +
                              "): create it (createdb) or fix the database name in the broker URL");
    }
    if (contains(reason, "role \"") && contains(reason, "does not exist")) {
      throw BrokerUnavailable("PostgreSQL at " + target.where() + " has no user " + user + " (" +
                              reason + "): create the role or fix the user in the broker URL");
    }
    if (contains(reason, "no pg_hba.conf entry")) {
      throw BrokerUnavailable("PostgreSQL at " + target.where() + " does not accept user " + user +
                              " from this host (" + reason +
                              "): add a pg_hba.conf entry or connect as another user");
    }
    throw BrokerUnavailable("cannot reach PostgreSQL at " + target.where() + " (" + reason +
                            "): is the server running and accepting connections there?");
  }
}

void rethrow_from_pqxx(const PgTarget& target, std::string_view context) {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const pqxx::broken_connection& e) {
    throw BrokerUnavailable("lost the connection to PostgreSQL at " + target.where() + " while " +
                            std::string(context) + " (" + one_line(e.what()) +
                            "): is the server running? The next call reconnects");
  } catch (const pqxx::in_doubt_error& e) {
    throw BrokerUnavailable("lost the connection to PostgreSQL at " + target.where() + " while " +
                            std::string(context) + ", so whether it committed is unknown (" +
                            one_line(e.what()) + ")");
  } catch (const pqxx::sql_error& e) {
    const std::string message = std::string(context) + " failed on PostgreSQL at " +
                                target.where() + " (" + one_line(e.what()) + ")";
    if (sqlstate_means_unavailable(e.sqlstate())) throw BrokerUnavailable(message);
    if (e.sqlstate() == "42P01" || e.sqlstate() == "3F000") {
      throw ConfigError(message +
                        ": the cinejobs schema is missing; run `cinejobs migrate --broker " +
                        target.redacted_url + "`");
    }
    throw Error(message);
  } catch (const std::exception& e) {
    throw Error(std::string(context) + " failed on PostgreSQL at " + target.where() + " (" +
                one_line(e.what()) + ")");
  }
}

bool connection_lost(const pqxx::connection& conn) noexcept { return !conn.is_open(); }

PgPool::PgPool(PgTarget target, std::function<void(pqxx::connection&)> on_connect,
               std::size_t max_idle)
    : target_(std::move(target)), on_connect_(std::move(on_connect)), max_idle_(max_idle) {}

PgPool::Lease::~Lease() {
  if (conn_) pool_->give_back(std::move(conn_));
}

PgPool::Lease PgPool::acquire() {
  for (;;) {
    std::unique_ptr<pqxx::connection> conn;
    {
      std::lock_guard lock(mutex_);
      if (idle_.empty()) break;
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
    // An idle connection has nothing to say: input waiting on it is the server's goodbye (it
    // restarted or ended the session) or EOF. Drop it rather than fail the caller's statement.
    pollfd fd{conn->sock(), POLLIN, 0};
    if (conn->is_open() && fd.fd >= 0 && ::poll(&fd, 1, 0) == 0)
      return Lease(*this, std::move(conn));
  }
  std::unique_ptr<pqxx::connection> conn = connect_pg(target_);
  try {
    if (on_connect_) on_connect_(*conn);
  } catch (...) {
    rethrow_from_pqxx(target_, "preparing a new connection");
  }
  return Lease(*this, std::move(conn));
}

void PgPool::give_back(std::unique_ptr<pqxx::connection> conn) noexcept {
  if (!conn->is_open()) return;
  {
    std::lock_guard lock(mutex_);
    if (idle_.size() < max_idle_) {
      idle_.push_back(std::move(conn));
      return;
    }
  }
  // A surplus connection closes here, outside the lock (closing talks to the server).
}

}  // namespace cinejobs::detail
