// A real redis-server for the tests: the process-wide one (RedisServer::shared()) is started on
// first use on a free loopback port in a fresh temporary directory, with no persistence, and
// stopped when the process that started it exits (never by fork children). Each RedisStore
// (broker_factories.hpp) is a fresh random key prefix on it, so nothing is ever flushed. Tests
// that stop, restart or configure a server (a password, a unix socket, AOF) start their own.
// redis_call() is a minimal RESP client for the tests' own commands (SCRIPT FLUSH, CLIENT LIST,
// EXISTS), so the tests need no Redis library.
//
// Outside CI a machine without redis-server leaves the Redis tests out; in CI (CI=true) they
// fail.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace cinejobs::test {

// find_redis_server returns $CINEJOBS_REDIS_SERVER, redis-server on PATH or /usr/bin/redis-server;
// empty when there is none.
inline std::string find_redis_server() {
  namespace fs = std::filesystem;
  if (const char* given = std::getenv("CINEJOBS_REDIS_SERVER"); given != nullptr && *given) {
    return given;
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      const fs::path candidate = fs::path(dir.empty() ? "." : dir) / "redis-server";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  if (::access("/usr/bin/redis-server", X_OK) == 0) return "/usr/bin/redis-server";
  return {};
}

// RespValue: one parsed reply. type is the RESP type byte: '+', '-', ':', '$' ('$' with
// nil = true for a nil bulk), '*' (items).
struct RespValue {
  char type = 0;
  bool nil = false;
  std::string text;
  std::vector<RespValue> items;
};

namespace resp {

// Socket: a connected socket, closed on destruction.
class Socket {
 public:
  explicit Socket(int fd) noexcept : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

class RespReader {
 public:
  explicit RespReader(int fd) : fd_(fd) {}
  RespValue read() {
    RespValue v;
    const std::string line = read_line();
    if (line.empty()) throw std::runtime_error("empty RESP line");
    v.type = line[0];
    const std::string rest = line.substr(1);
    switch (v.type) {
      case '+':
      case '-':
      case ':':
        v.text = rest;
        break;
      case '$': {
        const long n = std::stol(rest);
        if (n < 0) {
          v.nil = true;
        } else {
          v.text = read_exact(static_cast<std::size_t>(n));
          read_exact(2);
        }
        break;
      }
      case '*': {
        const long n = std::stol(rest);
        if (n < 0) v.nil = true;
        for (long i = 0; i < n; ++i) v.items.push_back(read());
        break;
      }
      default:
        throw std::runtime_error("unexpected RESP type byte: " + line);
    }
    return v;
  }

 private:
  char next() {
    if (pos_ == buffer_.size()) {
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) throw std::runtime_error("connection to redis-server closed");
      buffer_.assign(chunk, static_cast<std::size_t>(n));
      pos_ = 0;
    }
    return buffer_[pos_++];
  }
  std::string read_line() {
    std::string line;
    while (true) {
      const char c = next();
      if (c == '\r') {
        next();  // '\n'
        return line;
      }
      line.push_back(c);
    }
  }
  std::string read_exact(std::size_t n) {
    std::string out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.push_back(next());
    return out;
  }

  int fd_;
  std::string buffer_;
  std::size_t pos_ = 0;
};

inline std::string resp_command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

}  // namespace resp

// redis_call connects to 127.0.0.1:port (or the unix socket `unix_path`), logs in with
// `password` when given, and runs the commands in order; returns the reply of the last one.
// Throws std::runtime_error when it cannot connect or the connection breaks.
inline RespValue redis_call(int port, const std::vector<std::vector<std::string>>& commands,
                            const std::string& password = {}, const std::string& unix_path = {}) {
  const bool local = !unix_path.empty();
  resp::Socket sock(::socket(local ? AF_UNIX : AF_INET, SOCK_STREAM, 0));
  if (sock.get() < 0) throw std::runtime_error("socket() failed");
  timeval tv{5, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int rc = -1;
  if (local) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    unix_path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    rc = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (rc != 0)
    throw std::runtime_error("cannot connect to redis-server on port " + std::to_string(port));
  std::string out;
  std::size_t expected = commands.size();
  if (!password.empty()) {
    out += resp::resp_command({"AUTH", password});
    ++expected;
  }
  for (const auto& c : commands) out += resp::resp_command(c);
  std::size_t sent = 0;
  while (sent < out.size()) {
    const ssize_t n = ::send(sock.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("send to redis-server failed");
    sent += static_cast<std::size_t>(n);
  }
  resp::RespReader reader(sock.get());
  RespValue last;
  for (std::size_t i = 0; i < expected; ++i) last = reader.read();
  return last;
}

// random_prefix returns a fresh key prefix, "test-" and 16 hex digits and ':'.
inline std::string random_prefix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string out = "test-";
  std::uint64_t bits = rng();
  for (int i = 0; i < 16; ++i, bits >>= 4) out.push_back(hex[bits & 0xF]);
  return out + ":";
}

struct RedisServerOptions {
  bool appendonly = false;   // AOF with appendfsync always (restart tests)
  std::string password;      // requirepass
  bool unix_socket = false;  // also listen on <dir>/redis.sock
};

class RedisServer {
 public:
  // available tells whether a server can be started here (without starting one).
  static bool available() { return !find_redis_server().empty(); }

  // shared returns the process's server, starting it on first use. Throws std::runtime_error
  // saying why when it cannot be started.
  static RedisServer& shared() {
    static std::mutex mutex;
    static std::unique_ptr<RedisServer> server;
    std::lock_guard lock(mutex);
    if (!server) server = std::make_unique<RedisServer>();
    return *server;
  }

  // Starts a server on a free loopback port in a fresh temporary directory.
  explicit RedisServer(RedisServerOptions options = {})
      : options_(std::move(options)), binary_(find_redis_server()), owner_(getpid()) {
    if (binary_.empty()) {
      throw std::runtime_error(
          "redis-server is not installed (apt-get install redis-server, or set "
          "CINEJOBS_REDIS_SERVER)");
    }
    // A free port may be taken between probing and binding: try a few.
    for (int attempt = 0;; ++attempt) {
      port_ = free_port();
      try {
        start();
        return;
      } catch (const std::exception&) {
        if (attempt == 3) throw;
      }
    }
  }

  ~RedisServer() {
    // Only the process that started the server stops it (fork children inherit this object).
    if (getpid() == owner_) stop();
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const noexcept { return port_; }
  const std::string& dir() const noexcept { return dir_.path(); }
  std::string socket_path() const { return dir_.path() + "/redis.sock"; }

  // url names database `db` of this server with the key prefix `prefix` (and the password).
  std::string url(const std::string& prefix, int db = 0) const {
    std::string auth = options_.password.empty() ? "" : ":" + options_.password + "@";
    return "redis://" + auth + "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db) +
           "?prefix=" + prefix;
  }

  // call runs one command (after AUTH when the server has a password) and returns its reply;
  // pipeline runs several in order (SELECT, then a command) and returns the last reply.
  RespValue call(const std::vector<std::string>& command) const { return pipeline({command}); }
  RespValue pipeline(const std::vector<std::vector<std::string>>& commands) const {
    return redis_call(port_, commands, options_.password);
  }

  // start runs redis-server (again, on the same port and directory) and waits until it answers
  // PING, for at most 10 s.
  void start() {
    std::vector<std::string> argv = {binary_,
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir_.path(),
                                     "--save",
                                     "",
                                     "--daemonize",
                                     "no",
                                     "--logfile",
                                     dir_.path() + "/redis.log"};
    if (options_.appendonly) {
      argv.insert(argv.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    } else {
      argv.insert(argv.end(), {"--appendonly", "no"});
    }
    if (!options_.password.empty()) argv.insert(argv.end(), {"--requirepass", options_.password});
    if (options_.unix_socket) {
      argv.insert(argv.end(), {"--unixsocket", socket_path(), "--unixsocketperm", "700"});
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      const int devnull = ::open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
      }
      ::execv(args[0], args.data());
      _exit(127);
    }
    if (pid < 0) throw std::runtime_error("fork failed");
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start on port " + std::to_string(port_) +
                                 ": " + log_tail());
      }
      try {
        if (call({"PING"}).text == "PONG") return;
      } catch (const std::exception&) {
        // not listening yet
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill();
        throw std::runtime_error("redis-server did not answer PING within 10 s: " + log_tail());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // stop ends the server with SIGTERM (it writes its AOF and closes its clients) and reaps it.
  void stop() { end(SIGTERM); }
  // kill ends the server with SIGKILL.
  void kill() { end(SIGKILL); }

 private:
  void end(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    int status = 0;
    const bool done = wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; },
                                 std::chrono::seconds(10), std::chrono::milliseconds(2));
    if (!done) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }

  static int free_port() {
    resp::Socket sock(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (sock.get() < 0 ||
        ::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot find a free loopback port");
    }
    return ntohs(addr.sin_port);
  }

  std::string log_tail() const {
    std::ifstream in(dir_.path() + "/redis.log");
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string text = buffer.str();
    if (text.size() > 2000) text = text.substr(text.size() - 2000);
    return text;
  }

  TempDir dir_;
  RedisServerOptions options_;
  std::string binary_;
  pid_t owner_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace cinejobs::test
