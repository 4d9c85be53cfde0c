#include "brokers/redis/redis_connection.hpp"

#include <poll.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "cinejobs/errors.hpp"

namespace cinejobs::detail {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

bool starts_with_word(std::string_view text, std::string_view word) {
  return text.size() >= word.size() && text.substr(0, word.size()) == word &&
         (text.size() == word.size() || text[word.size()] == ' ');
}

bool is_noscript(const RedisReply& reply) {
  return reply->type == REDIS_REPLY_ERROR && starts_with_word(reply_text(reply.get()), "NOSCRIPT");
}

constexpr std::string_view kInvalidCode = "CINEJOBS_INVALID";

}  // namespace

std::string RedisEndpoint::describe() const {
  if (!unix_path.empty()) return unix_path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

void throw_from_hiredis(const redisContext* ctx, std::string_view server,
                        std::string_view context) {
  const std::string where = std::string(server);
  const std::string what = std::string(context);
  if (ctx == nullptr) throw Error("hiredis could not allocate a context while " + what);
  const std::string reason = ctx->errstr;
  switch (ctx->err) {
    case REDIS_ERR_IO:
      // A read or write that hit the socket timeout fails with EAGAIN.
      if (reason == std::strerror(EAGAIN) || reason == std::strerror(ETIMEDOUT)) {
        throw BrokerUnavailable("Redis at " + where + " did not answer within the timeout while " +
                                what + ": is it overloaded or stopped? (timeout_ms in the URL)");
      }
      throw BrokerUnavailable("lost the connection to Redis at " + where + " while " + what + " (" +
                              reason + ")");
    case REDIS_ERR_EOF:
      throw BrokerUnavailable("Redis at " + where + " closed the connection while " + what + " (" +
                              reason + "): is it restarting?");
    default:
      throw Error("Redis client error while " + what + " at " + where + " (" + reason + ")");
  }
}

void throw_from_reply(const redisReply& reply, std::string_view server, std::string_view context) {
  const std::string_view text = reply_text(&reply);
  const std::string where(server);
  const std::string what(context);
  if (starts_with_word(text, kInvalidCode)) {
    throw InvalidPayload(std::string(text.substr(std::min(text.size(), kInvalidCode.size() + 1))));
  }
  for (const std::string_view code :
       {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN"}) {
    if (starts_with_word(text, code)) {
      throw BrokerUnavailable("Redis at " + where + " cannot serve " + what + " now (" +
                              std::string(text) + "): retry later");
    }
  }
  if (starts_with_word(text, "NOAUTH")) {
    throw ConfigError("Redis at " + where + " requires a password (" + std::string(text) +
                      "): give it in the broker URL, redis://:PASSWORD@host:port/db");
  }
  if (starts_with_word(text, "WRONGPASS") || starts_with_word(text, "NOPERM") ||
      text.find("invalid password") != std::string_view::npos ||
      text.find("without any password configured") != std::string_view::npos) {
    throw ConfigError("Redis at " + where + " refused the credentials of the broker URL (" +
                      std::string(text) + ")");
  }
  throw Error("Redis at " + where + " refused " + what + ": " + std::string(text));
}

std::string_view reply_text(const redisReply* reply) noexcept {
  if (reply == nullptr) return {};
  switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return {reply->str, reply->len};
    default:
      return {};
  }
}

std::int64_t reply_int(const redisReply* reply) noexcept {
  if (reply == nullptr) return 0;
  if (reply->type == REDIS_REPLY_INTEGER) return reply->integer;
  std::int64_t value = 0;
  const std::string_view text = reply_text(reply);
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// ---- RedisArgs ----

RedisArgs& RedisArgs::view(std::string_view text) {
  argv_.push_back(text.data() != nullptr ? text.data() : "");
  lengths_.push_back(text.size());
  return *this;
}

RedisArgs& RedisArgs::copy(std::string text) {
  owned_.push_back(std::move(text));
  return view(owned_.back());
}

RedisArgs& RedisArgs::number(std::int64_t value) {
  char buffer[24];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  return copy(std::string(buffer, end));
}

void RedisArgs::reserve(std::size_t n) {
  argv_.reserve(n);
  lengths_.reserve(n);
}

void RedisArgs::set(std::size_t index, std::string_view text) {
  argv_.at(index) = text.data() != nullptr ? text.data() : "";
  lengths_.at(index) = text.size();
}

RedisArgs script_args(const RedisScript& script) {
  RedisArgs args;
  args.view("EVALSHA").view(script.sha).view("0");
  return args;
}

// ---- RedisConnection ----

RedisConnection::RedisConnection(const RedisEndpoint& endpoint) : server_(endpoint.describe()) {
  const timeval tv = to_timeval(endpoint.timeout);
  redisContext* raw = endpoint.unix_path.empty()
                          ? redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv)
                          : redisConnectUnixWithTimeout(endpoint.unix_path.c_str(), tv);
  if (raw == nullptr) throw Error("hiredis could not allocate a context for " + server_);
  ctx_.reset(raw);
  if (raw->err != 0) {
    throw BrokerUnavailable("cannot reach Redis at " + server_ + " (" + raw->errstr +
                            "): is redis-server running?");
  }
  if (redisSetTimeout(raw, tv) != REDIS_OK) fail("setting the socket timeout");
  if (!endpoint.password.empty()) {
    RedisArgs auth;
    auth.view("AUTH");
    if (!endpoint.user.empty()) auth.view(endpoint.user);
    auth.view(endpoint.password);
    checked(auth, "logging in (AUTH)");
  }
  if (endpoint.db != 0) {
    RedisArgs select;
    select.view("SELECT").number(endpoint.db);
    const RedisReply reply = command(select, "selecting the database");
    if (reply->type == REDIS_REPLY_ERROR) {
      const std::string_view text = reply_text(reply.get());
      if (starts_with_word(text, "NOAUTH") || starts_with_word(text, "NOPERM")) {
        throw_from_reply(*reply, server_, "SELECT");
      }
      throw ConfigError("Redis at " + server_ + " has no database " + std::to_string(endpoint.db) +
                        " (" + std::string(text) + "): use a number below its 'databases' setting");
    }
  }
}

void RedisConnection::fail(std::string_view context) {
  broken_ = true;
  throw_from_hiredis(ctx_.get(), server_, context);
}

RedisReply RedisConnection::command(RedisArgs& args, std::string_view context) {
  void* raw = redisCommandArgv(ctx_.get(), args.argc(), args.argv(), args.lengths());
  if (raw == nullptr) fail(context);
  return RedisReply(static_cast<redisReply*>(raw));
}

RedisReply RedisConnection::checked(RedisArgs& args, std::string_view context) {
  RedisReply reply = command(args, context);
  if (reply->type == REDIS_REPLY_ERROR) throw_from_reply(*reply, server_, context);
  return reply;
}

void RedisConnection::append(RedisArgs& args, std::string_view context) {
  if (redisAppendCommandArgv(ctx_.get(), args.argc(), args.argv(), args.lengths()) != REDIS_OK) {
    fail(context);
  }
}

RedisReply RedisConnection::read(std::string_view context) {
  void* raw = nullptr;
  if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) fail(context);
  return RedisReply(static_cast<redisReply*>(raw));
}

void RedisConnection::flush(std::string_view context) {
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) fail(context);
  }
}

void RedisConnection::load(RedisScript& script) {
  RedisScript* one[] = {&script};
  load_pointers(one);
}

void RedisConnection::load_all(std::span<RedisScript> scripts) {
  std::vector<RedisScript*> pointers;
  for (RedisScript& script : scripts) pointers.push_back(&script);
  load_pointers(pointers);
}

void RedisConnection::load_pointers(std::span<RedisScript* const> scripts) {
  std::vector<RedisArgs> calls(scripts.size());
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    calls[i].view("SCRIPT").view("LOAD").view(scripts[i]->source);
    append(calls[i], "loading " + scripts[i]->name);
  }
  std::vector<RedisReply> replies;
  for (const RedisScript* script : scripts) replies.push_back(read("loading " + script->name));
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    record_sha(*scripts[i], *replies[i]);
  }
}

void RedisConnection::record_sha(RedisScript& script, const redisReply& reply) {
  if (reply.type == REDIS_REPLY_ERROR) throw_from_reply(reply, server_, "loading " + script.name);
  const std::string_view sha = reply_text(&reply);
  // The SHA1 of a text never changes: it is written once, before the broker is shared.
  if (script.sha.empty()) {
    script.sha = std::string(sha);
  } else if (script.sha != sha) {
    throw Error("Redis at " + server_ + " gave " + script.name + " the SHA1 " + std::string(sha) +
                ", expected " + script.sha);
  }
}

RedisReply RedisConnection::eval(RedisScript& script, RedisArgs& args) {
  RedisReply reply = command(args, script.name);
  if (is_noscript(reply)) {
    load(script);
    reply = command(args, script.name);
  }
  if (reply->type == REDIS_REPLY_ERROR) throw_from_reply(*reply, server_, script.name);
  return reply;
}

std::vector<RedisReply> RedisConnection::eval_many(RedisScript& script,
                                                   std::span<RedisArgs> calls) {
  for (RedisArgs& args : calls) append(args, script.name);
  std::vector<RedisReply> replies;
  replies.reserve(calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i) replies.push_back(read(script.name));
  bool loaded = false;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (!is_noscript(replies[i])) continue;
    if (!loaded) load(script);
    loaded = true;
    replies[i] = command(calls[i], script.name);
  }
  for (const RedisReply& reply : replies) {
    if (reply->type == REDIS_REPLY_ERROR) throw_from_reply(*reply, server_, script.name);
  }
  return replies;
}

bool RedisConnection::closed_by_server() const noexcept {
  pollfd p{};
  p.fd = ctx_->fd;
  p.events = POLLIN;
  return ::poll(&p, 1, 0) != 0;
}

// ---- RedisPool ----

RedisPool::RedisPool(RedisEndpoint endpoint, std::function<void(RedisConnection&)> on_connect,
                     std::size_t max_idle)
    : endpoint_(std::move(endpoint)), on_connect_(std::move(on_connect)), max_idle_(max_idle) {}

RedisPool::Lease::~Lease() {
  if (conn_) pool_->give_back(std::move(conn_));
}

RedisPool::Lease RedisPool::lease() {
  while (true) {
    std::unique_ptr<RedisConnection> conn;
    {
      std::lock_guard lock(mutex_);
      if (idle_.empty()) break;
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
    if (!conn->closed_by_server()) return Lease(*this, std::move(conn));
  }
  return Lease(*this, connect());
}

void RedisPool::give_back(std::unique_ptr<RedisConnection> conn) noexcept {
  if (conn->broken()) return;
  std::lock_guard lock(mutex_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
}

std::unique_ptr<RedisConnection> RedisPool::connect() {
  using std::chrono::milliseconds;
  {
    std::lock_guard lock(mutex_);
    if (std::chrono::steady_clock::now() < retry_after_) throw BrokerUnavailable(last_failure_);
  }
  try {
    auto conn = std::make_unique<RedisConnection>(endpoint_);
    if (on_connect_) on_connect_(*conn);
    std::lock_guard lock(mutex_);
    backoff_ = milliseconds(0);
    return conn;
  } catch (const BrokerUnavailable& e) {
    std::lock_guard lock(mutex_);
    backoff_ = std::clamp(backoff_ * 2, milliseconds(20), milliseconds(1000));
    retry_after_ = std::chrono::steady_clock::now() + backoff_;
    last_failure_ = e.what();
    throw;
  }
}

}  // namespace cinejobs::detail
