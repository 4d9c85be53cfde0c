// Rate limits in the Redis broker's database: one key per limiter key under the broker's prefix
// (<prefix>rl:<RateLimiter::store_key>), each step one call of rate_limit.lua on the server's
// clock.
#include "brokers/redis/redis_broker.hpp"
#include "brokers/redis/redis_connection.hpp"
#include "cinejobs/detail/embedded_sql.hpp"
#include "cinejobs/errors.hpp"
#include "rate_limit/stores.hpp"

namespace cinejobs::detail {
namespace {

constexpr std::size_t kMaxIdleConnections = 8;

class RedisRateLimitStore final : public RateLimitStore {
 public:
  explicit RedisRateLimitStore(RedisConfig config)
      : prefix_(config.prefix + "rl:"),
        script_{"rate_limit.lua", std::string(embedded::kRateLimitLua), {}},
        pool_(
            config.endpoint, [this](RedisConnection& conn) { conn.load(script_); },
            kMaxIdleConnections) {
    pool_.lease();  // connect now, so a server that is not there is reported at open
  }

  std::string_view kind() const noexcept override { return "redis"; }

  RateDecision step(const std::string& key, const GcraLimit& limit, int n) override {
    const RedisReply reply = call(key, "step", limit, n);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      throw Error("unexpected reply from rate_limit.lua");
    }
    return RateDecision{reply_int(reply->element[0]) == 1, Micros(reply_int(reply->element[1]))};
  }

  void pause(const std::string& key, const GcraLimit& limit, Micros duration) override {
    call(key, "pause", limit, gcra_pause_tat(0, 0, limit, duration));
  }

 private:
  RedisReply call(const std::string& key, std::string_view op, const GcraLimit& limit,
                  std::int64_t last) {
    RedisArgs args = script_args(script_);
    args.copy(prefix_ + key)
        .view(op)
        .number(limit.interval.count())
        .number(limit.capacity.count())
        .number(last);
    return pool_.lease()->eval(script_, args);
  }

  std::string prefix_;
  RedisScript script_;  // its SHA1 is written by the first connection, read-only afterwards
  RedisPool pool_;
};

}  // namespace

std::shared_ptr<RateLimitStore> open_redis_rate_limit_store(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to a rate limit
  return std::make_shared<RedisRateLimitStore>(parse_redis_url(url, unused));
}

}  // namespace cinejobs::detail
