// A real PostgreSQL server for the tests: one per test process, started on first use in a fresh
// temporary directory on a free loopback port (initdb + pg_ctl from Debian's packages), and
// stopped when the process that started it exits (never by fork children). Each PostgresStore
// (broker_factories.hpp) is a fresh schema in it, dropped when the store is destroyed. PostgreSQL
// refuses to run as root, so when the tests run as root the server runs as the `postgres` system
// user.
//
// Outside CI a machine without PostgreSQL skips the PostgreSQL tests; in CI (CI=true) they fail.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cinejobs/broker.hpp"
#include "cinejobs/migrate.hpp"
#include "test_support.hpp"

namespace cinejobs::test {

// postgres_bin_dir finds initdb and pg_ctl: $CINEJOBS_PG_BINDIR, else the newest
// /usr/lib/postgresql/<version>/bin. Empty when there is none.
inline std::string postgres_bin_dir() {
  namespace fs = std::filesystem;
  if (const char* dir = std::getenv("CINEJOBS_PG_BINDIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const fs::path bin = entry.path() / "bin";
    if (!fs::exists(bin / "initdb") || !fs::exists(bin / "pg_ctl")) continue;
    found.emplace_back(std::atoi(entry.path().filename().c_str()), bin.string());
  }
  if (found.empty()) return {};
  return std::max_element(found.begin(), found.end())->second;
}

class PostgresServer {
 public:
  // available tells whether a server can be started here (without starting one).
  static bool available() { return !postgres_bin_dir().empty(); }

  // instance returns the process's server, starting it on first use. Throws std::runtime_error
  // saying why when it cannot be started.
  static PostgresServer& instance() {
    static std::mutex mutex;
    static std::unique_ptr<PostgresServer> server;
    std::lock_guard lock(mutex);
    if (!server) server.reset(new PostgresServer());
    return *server;
  }

  ~PostgresServer() {
    // Only the process that started the server stops it (fork children inherit this object).
    if (getpid() == owner_) run({bin("pg_ctl"), "-D", data(), "-m", "immediate", "-w", "stop"});
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const noexcept { return port_; }

  // url names a database on the server as a user (the superuser `postgres`, no password, by
  // default).
  std::string url(const std::string& user = "postgres", const std::string& password = "",
                  const std::string& db = "postgres") const {
    return "postgresql://" + user + (password.empty() ? "" : ":" + password) +
           "@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }

  // sql runs statements as the superuser through psql; throws with psql's output on failure.
  void sql(const std::string& statements) const {
    const int rc =
        run({bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url(), "-c", statements},
            /*as_postgres=*/false);
    if (rc != 0) throw std::runtime_error("psql failed (" + statements + "): " + log_tail());
  }

  // query runs one query as the superuser and returns its rows, unaligned ('|' between columns,
  // one line per row, no trailing newline).
  std::string query(const std::string& statement) const {
    static std::atomic<int> counter{0};
    const std::string out = dir_.path() + "/query-" + std::to_string(getpid()) + "-" +
                            std::to_string(++counter) + ".txt";
    const int rc = run({bin("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url(),
                        "-o", out, "-c", statement},
                       /*as_postgres=*/false);
    std::ifstream in(out);
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::filesystem::remove(out);
    if (rc != 0) throw std::runtime_error("psql failed (" + statement + "): " + log_tail());
    std::string text = buffer.str();
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  // stop and start the server on the same port and data directory (fault tests).
  void stop() const {
    if (run({bin("pg_ctl"), "-D", data(), "-m", "fast", "-w", "stop"}) != 0) {
      throw std::runtime_error("pg_ctl stop failed: " + log_tail());
    }
  }
  void start() const {
    if (run({bin("pg_ctl"), "-D", data(), "-o", server_options(), "-w", "-t", "60", "-l",
             dir_.path() + "/server.log", "start"}) != 0) {
      throw std::runtime_error("pg_ctl start failed: " + log_tail());
    }
  }

 private:
  PostgresServer() : bin_dir_(postgres_bin_dir()), owner_(getpid()) {
    if (bin_dir_.empty()) {
      throw std::runtime_error(
          "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install "
          "postgresql, or set CINEJOBS_PG_BINDIR");
    }
    if (geteuid() == 0) {
      const passwd* pw = getpwnam("postgres");
      if (pw == nullptr) {
        throw std::runtime_error(
            "running as root and there is no `postgres` user to run "
            "PostgreSQL as (it refuses to run as root)");
      }
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      if (chown(dir_.path().c_str(), uid_, gid_) != 0) {
        throw std::runtime_error("cannot chown " + dir_.path() + " to postgres");
      }
    }
    if (run({bin("initdb"), "-N", "-D", data(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--locale=C"}) != 0) {
      throw std::runtime_error("initdb failed: " + log_tail());
    }
    // The superuser logs in without a password; every other role needs its password, so tests
    // can prove that a wrong one is refused.
    {
      std::ofstream hba(data() + "/pg_hba.conf", std::ios::trunc);
      hba << "local all all trust\n"
          << "host all postgres 127.0.0.1/32 trust\n"
          << "host all all 127.0.0.1/32 scram-sha-256\n";
    }
    // A free port may be taken between probing and binding: try a few.
    for (int attempt = 0;; ++attempt) {
      port_ = free_port();
      if (run({bin("pg_ctl"), "-D", data(), "-o", server_options(), "-w", "-t", "60", "-l",
               dir_.path() + "/server.log", "start"}) == 0) {
        break;
      }
      if (attempt == 3) throw std::runtime_error("pg_ctl start failed: " + log_tail());
    }
  }

  std::string bin(const char* name) const { return bin_dir_ + "/" + name; }
  std::string data() const { return dir_.path() + "/data"; }
  std::string server_options() const {
    return "-p " + std::to_string(port_) + " -k " + dir_.path() +
           " -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
           "-c max_connections=400 -c shared_buffers=64MB";
  }

  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) ::close(fd);
      throw std::runtime_error("cannot find a free loopback port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  // run executes argv (as the postgres user when the tests run as root and as_postgres is set),
  // appending its output to the command log; returns its exit code.
  int run(const std::vector<std::string>& argv, bool as_postgres = true) const {
    std::vector<std::string> full;
    if (as_postgres && geteuid() == 0) full = {"runuser", "-u", "postgres", "--"};
    full.insert(full.end(), argv.begin(), argv.end());
    std::vector<char*> args;
    for (auto& a : full) args.push_back(a.data());
    args.push_back(nullptr);
    const std::string log = dir_.path() + "/commands.log";
    const pid_t pid = fork();
    if (pid == 0) {
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      ::execvp(args[0], args.data());
      _exit(127);
    }
    if (pid < 0) return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string log_tail() const {
    std::string text;
    for (const char* name : {"/commands.log", "/server.log"}) {
      std::ifstream in(dir_.path() + name);
      std::stringstream buffer;
      buffer << in.rdbuf();
      std::string part = buffer.str();
      if (part.size() > 2000) part = part.substr(part.size() - 2000);
      text += part;
    }
    return text;
  }

  TempDir dir_;
  std::string bin_dir_;
  pid_t owner_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  int port_ = 0;
};

// random_schema returns a fresh schema name, t_ and 16 hex digits.
inline std::string random_schema(std::string_view prefix = "t_") {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string out(prefix);
  std::uint64_t bits = rng();
  for (int i = 0; i < 16; ++i, bits >>= 4) out.push_back(hex[bits & 0xF]);
  return out;
}

}  // namespace cinejobs::test
