// RAII over hiredis: replies, binary-safe argument lists, connections (AUTH and SELECT on every
// connect), Lua scripts called by EVALSHA (reloaded on NOSCRIPT), and a small pool of connections
// that drops broken ones and reconnects with backoff. One throw_from_hiredis() turns hiredis
// errors into cinejobs errors: BrokerUnavailable for what a retry may cure (I/O, EOF, timeout,
// a server still loading), Error or ConfigError otherwise. No hiredis type leaves cpp/src.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs::detail {

// RedisEndpoint: where a Redis server listens and how to log in.
struct RedisEndpoint {
  std::string host = "127.0.0.1";  // TCP host name or address (unused with unix_path)
  int port = 6379;
  std::string unix_path;  // non-empty: connect to this unix socket instead of host:port
  std::string user;       // ACL user (Redis 6+); empty: AUTH with the password alone
  std::string password;   // empty: no AUTH
  int db = 0;             // SELECTed on every connection
  // Limit of a connect and of every command's wait for its reply; never zero (a server that
  // stopped answering would block the caller forever).
  std::chrono::milliseconds timeout = std::chrono::seconds(5);

  // describe names the server for messages, without credentials: "127.0.0.1:6379" or the
  // socket path.
  std::string describe() const;
};

struct ReplyDeleter {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
// RedisReply owns one reply tree.
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

// throw_from_hiredis throws for the failed context `ctx`: BrokerUnavailable for I/O errors, EOF
// and timeouts (the server went away or stopped answering), Error otherwise. The message names
// `context` (what was being done), the server and hiredis' reason.
[[noreturn]] void throw_from_hiredis(const redisContext* ctx, std::string_view server,
                                     std::string_view context);

// throw_from_reply throws for an error reply: BrokerUnavailable for LOADING, BUSY, MASTERDOWN,
// READONLY and TRYAGAIN, ConfigError for refused credentials or database, InvalidPayload for a
// script's CINEJOBS_INVALID, Error otherwise.
[[noreturn]] void throw_from_reply(const redisReply& reply, std::string_view server,
                                   std::string_view context);

// reply_text views a string, status or error reply ("" for anything else).
std::string_view reply_text(const redisReply* reply) noexcept;
// reply_int reads an integer reply, or a string reply holding a decimal integer; 0 otherwise.
std::int64_t reply_int(const redisReply* reply) noexcept;

// RedisArgs: one command as a binary-safe argument list. view() borrows its text (it must stay
// alive until the command is sent); copy() and number() keep their own.
class RedisArgs {
 public:
  RedisArgs() = default;
  RedisArgs(const RedisArgs&) = delete;
  RedisArgs& operator=(const RedisArgs&) = delete;
  RedisArgs(RedisArgs&&) noexcept = default;
  RedisArgs& operator=(RedisArgs&&) noexcept = default;

  RedisArgs& view(std::string_view text);
  RedisArgs& copy(std::string text);
  RedisArgs& number(std::int64_t value);
  void reserve(std::size_t n);
  // set replaces argument `index` with borrowed text.
  void set(std::size_t index, std::string_view text);

  int argc() const noexcept { return static_cast<int>(argv_.size()); }
  const char** argv() noexcept { return argv_.data(); }
  const std::size_t* lengths() const noexcept { return lengths_.data(); }

 private:
  std::vector<const char*> argv_;
  std::vector<std::size_t> lengths_;
  std::deque<std::string> owned_;  // a deque: growing it never moves the texts argv_ points at
};

// RedisScript: a Lua script and its SHA1, as SCRIPT LOAD reported it.
struct RedisScript {
  std::string name;  // for messages, e.g. "reserve.lua"
  std::string source;
  std::string sha;  // empty until first loaded
};

class RedisConnection {
 public:
  // Connects, AUTHs and SELECTs. Throws BrokerUnavailable "cannot reach Redis at HOST:PORT
  // (reason): is redis-server running?" when the server cannot be reached within the timeout,
  // ConfigError when it refuses the credentials or the database number.
  explicit RedisConnection(const RedisEndpoint& endpoint);
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // command sends one command and returns its reply, which may be an error reply (checked
  // by the caller). Throws (and marks the connection broken) on I/O errors.
  RedisReply command(RedisArgs& args, std::string_view context);
  // checked is command() that also throws for an error reply.
  RedisReply checked(RedisArgs& args, std::string_view context);

  // Pipelining: append() queues commands, read() returns their replies in order.
  void append(RedisArgs& args, std::string_view context);
  RedisReply read(std::string_view context);
  // flush writes the appended commands without waiting for replies (subscriptions).
  void flush(std::string_view context);

  // load runs SCRIPT LOAD and records the script's SHA1; load_all loads several in one round
  // trip.
  void load(RedisScript& script);
  void load_all(std::span<RedisScript> scripts);
  // eval runs `args` (EVALSHA sha 0 ..., see script_args) and, when the server answers NOSCRIPT
  // (restarted, or SCRIPT FLUSH), loads the script and runs it again. Throws for error replies.
  RedisReply eval(RedisScript& script, RedisArgs& args);
  // eval_many pipelines several calls of one script and returns their replies in order.
  std::vector<RedisReply> eval_many(RedisScript& script, std::span<RedisArgs> calls);

  // broken: an I/O error happened; the connection must not be used again.
  bool broken() const noexcept { return broken_; }
  void mark_broken() noexcept { broken_ = true; }
  // closed_by_server: the server closed the connection while it was idle (restart, timeout):
  // with no command outstanding, the socket has something to read only on EOF or error.
  bool closed_by_server() const noexcept;

  int fd() const noexcept { return ctx_->fd; }
  redisContext* context() noexcept { return ctx_.get(); }
  const std::string& server() const noexcept { return server_; }

 private:
  struct ContextDeleter {
    void operator()(redisContext* ctx) const noexcept { redisFree(ctx); }
  };
  [[noreturn]] void fail(std::string_view context);
  void load_pointers(std::span<RedisScript* const> scripts);
  void record_sha(RedisScript& script, const redisReply& reply);

  std::string server_;
  std::unique_ptr<redisContext, ContextDeleter> ctx_;
  bool broken_ = false;
};

// script_args starts the argument list of an EVALSHA call of `script` with no KEYS.
RedisArgs script_args(const RedisScript& script);

// RedisPool: connections to one server, shared by threads. lease() hands out an idle connection
// (dropping those the server closed meanwhile) or opens a new one; a connection that broke is
// dropped when its lease ends, so the next use reconnects. After a failed connect, further
// connects wait out a backoff (20 ms doubling to 1 s) and fail fast in the meantime with the last
// reason, so callers that retry do not hammer an absent server.
class RedisPool {
 public:
  class Lease {
   public:
    Lease(RedisPool& pool, std::unique_ptr<RedisConnection> conn) noexcept
        : pool_(&pool), conn_(std::move(conn)) {}
    ~Lease();
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    RedisConnection& operator*() const noexcept { return *conn_; }
    RedisConnection* operator->() const noexcept { return conn_.get(); }

   private:
    RedisPool* pool_;
    std::unique_ptr<RedisConnection> conn_;
  };

  // on_connect runs on every new connection before its first use (loading scripts).
  RedisPool(RedisEndpoint endpoint, std::function<void(RedisConnection&)> on_connect,
            std::size_t max_idle);
  Lease lease();
  const RedisEndpoint& endpoint() const noexcept { return endpoint_; }

 private:
  void give_back(std::unique_ptr<RedisConnection> conn) noexcept;
  std::unique_ptr<RedisConnection> connect();

  RedisEndpoint endpoint_;
  std::function<void(RedisConnection&)> on_connect_;
  std::size_t max_idle_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;
  std::chrono::steady_clock::time_point retry_after_{};
  std::chrono::milliseconds backoff_{0};
  std::string last_failure_;
};

}  // namespace cinejobs::detail
