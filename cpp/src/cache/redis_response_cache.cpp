// The response cache in the Redis broker's database: one string key per entry under the broker's
// prefix (<prefix>cache:<key>), written with SET ... PX so that Redis expires it on its own
// clock; prune has nothing to do.
#include "brokers/redis/redis_broker.hpp"
#include "brokers/redis/redis_connection.hpp"
#include "cache/stores.hpp"
#include "cinejobs/errors.hpp"

namespace cinejobs::detail {
namespace {

constexpr std::size_t kMaxIdleConnections = 8;

class RedisResponseCache final : public ResponseCache {
 public:
  explicit RedisResponseCache(RedisConfig config)
      : prefix_(config.prefix + "cache:"),
        pool_(
            config.endpoint, [](RedisConnection&) {}, kMaxIdleConnections) {
    pool_.lease();  // connect now, so a server that is not there is reported at open
  }

  std::string_view kind() const noexcept override { return "redis"; }

  std::optional<std::string> get(const std::string& key) override {
    RedisArgs args;
    args.view("GET").copy(prefix_ + key);
    const RedisReply reply = pool_.lease()->checked(args, "reading the response cache");
    if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
    if (reply->type != REDIS_REPLY_STRING) {
      throw Error("unexpected reply from Redis to GET of a response cache key");
    }
    return std::string(reply->str, reply->len);
  }

  void put(const std::string& key, std::string_view body, std::chrono::seconds ttl) override {
    RedisArgs args;
    if (ttl <= std::chrono::seconds::zero()) {
      args.view("DEL").copy(prefix_ + key);  // expired at once: the same as no entry
    } else {
      args.view("SET")
          .copy(prefix_ + key)
          .view(body)
          .view("PX")
          .number(std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count());
    }
    pool_.lease()->checked(args, "writing the response cache");
  }

  std::size_t prune() override { return 0; }  // Redis expires keys itself

 private:
  std::string prefix_;
  RedisPool pool_;
};

}  // namespace

std::shared_ptr<ResponseCache> open_redis_response_cache(std::string_view url) {
  BrokerOptions unused;  // result_ttl_s and max_payload_bytes mean nothing to a cache
  return std::make_shared<RedisResponseCache>(parse_redis_url(url, unused));
}

}  // namespace cinejobs::detail
