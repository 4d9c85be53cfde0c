// Unit tests of redact_url (redact.hpp), and of the ConfigError messages that quote a URL: the
// password never appears, the host, port, database and user do.
#include "cinejobs/redact.hpp"

#include <gtest/gtest.h>

#include <string>

#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/rate_limiter.hpp"
#include "cinejobs/response_cache.hpp"

namespace cinejobs {
namespace {

TEST(RedactUrl, MasksThePasswordOfUserInformation) {
  EXPECT_EQ(redact_url("redis://default:s3cr3t@127.0.0.1:6379/0"),
            "redis://default:***@127.0.0.1:6379/0");
  EXPECT_EQ(redact_url("redis://:s3cr3t@localhost/2?prefix=x:"),
            "redis://:***@localhost/2?prefix=x:");
  EXPECT_EQ(redact_url("postgresql://app:s3cr3t@db.internal:5433/jobs?schema=cj"),
            "postgresql://app:***@db.internal:5433/jobs?schema=cj");
  EXPECT_EQ(redact_url("http://elastic:s3cr3t@127.0.0.1:9200"),
            "http://elastic:***@127.0.0.1:9200");
  EXPECT_EQ(redact_url("unix://:s3cr3t@/run/redis/redis.sock?db=1"),
            "unix://:***@/run/redis/redis.sock?db=1");
}

TEST(RedactUrl, TheLastAtSignEndsAPasswordThatHoldsUnescapedAtSigns) {
  EXPECT_EQ(redact_url("redis://user:p@ss@word@127.0.0.1:6379/0"),
            "redis://user:***@127.0.0.1:6379/0");
  EXPECT_EQ(redact_url("postgresql://u:a:b@c@h/db"), "postgresql://u:***@h/db");
  // The Redis parser takes everything before the last '@' as credentials, '/' included.
  EXPECT_EQ(redact_url("redis://:ab/cd@h:1/0"), "redis://:***@h:1/0");
}

TEST(RedactUrl, MasksSecretQueryParametersWhateverTheirCase) {
  EXPECT_EQ(redact_url("postgresql://h/db?user=app&password=s3cr3t&schema=cj"),
            "postgresql://h/db?user=app&password=***&schema=cj");
  EXPECT_EQ(redact_url("unix:///run/redis.sock?db=0&PASSWORD=s3cr3t"),
            "unix:///run/redis.sock?db=0&PASSWORD=***");
  for (const char* key : {"pass", "passwd", "token", "Secret", "api_key", "APIKEY", "key",
                          "sslpassword", "access_token"}) {
    const std::string k = key;
    EXPECT_EQ(redact_url("https://h/p?a=1&" + k + "=s3cr3t&b=2"),
              "https://h/p?a=1&" + k + "=***&b=2");
  }
}

TEST(RedactUrl, MasksLibpqKeyValueConnectionStrings) {
  EXPECT_EQ(redact_url("host=db port=5432 dbname=jobs user=app password=s3cr3t"),
            "host=db port=5432 dbname=jobs user=app password=***");
  EXPECT_EQ(redact_url("host=db password = 's3 cr\\'3t' dbname=jobs"),
            "host=db password = *** dbname=jobs");
  EXPECT_EQ(redact_url("sslpassword=s3cr3t host=db"), "sslpassword=*** host=db");
}

TEST(RedactUrl, MasksEveryUrlQuotedInAMessage) {
  EXPECT_EQ(redact_url("malformed broker URL 'redis://:a@b@h/0?x=1': unknown parameter 'x'; "
                       "also `postgresql://u:pw@h/db?password=pw2`"),
            "malformed broker URL 'redis://:***@h/0?x=1': unknown parameter 'x'; "
            "also `postgresql://u:***@h/db?password=***`");
}

TEST(RedactUrl, LeavesTextWithoutSecretsAlone) {
  for (const char* text :
       {"sqlite:///jobs.db", "sqlite:////var/lib/a@b.db?busy_timeout_ms=5",
        "redis://127.0.0.1:6379/0", "redis://user@h/0", "postgresql://app@h/db",
        "postgresql://h/db?schema=cj&passing=1", "cannot reach Redis at 127.0.0.1:6380", "",
        "local", "memory", "monkey=1 keyword=2"}) {
    EXPECT_EQ(redact_url(text), text);
  }
}

std::string config_error_of(void (*open)(const std::string&), const std::string& url) {
  try {
    open(url);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for " << url;
  return {};
}

TEST(RedactUrl, BrokerUrlErrorsNeverQuoteThePassword) {
  const auto open = [](const std::string& url) { (void)open_broker(url); };
  for (const std::string url : {
           "redis://:p@ss@word@127.0.0.1:6379/0?bogus=1",
           "redis://user:p@ss@word@127.0.0.1:99999/0",
           "redis://:p@ss@word@127.0.0.1/0?timeout_ms=zero",
           "unix:///tmp/r.sock?password=p@ss@word&bogus=1",
           "unix:///tmp/r.sock?password=p@ss@word&db=x",
           "postgresql://app:p@ss@word@127.0.0.1/db?result_ttl_s=-1",
           "postgresql://app:p@ss@word@127.0.0.1/db?schema=bad-name&%zz=1",
           "postgresql://127.0.0.1/db?password=p@ss@word&migrate=maybe",
           "postgresql://app:p@ss@word@127.0.0.1/db?not_a_libpq_option=1",
           "mysql://app:p@ss@word@127.0.0.1/db",
       }) {
    const std::string message = config_error_of(open, url);
    EXPECT_EQ(message.find("ss@word"), std::string::npos) << message;
    if (message.find("://") != std::string::npos) {
      EXPECT_NE(message.find("***"), std::string::npos) << message;
    }
  }
}

TEST(RedactUrl, APostgresPasswordWithAnUnescapedAtSignDoesNotBecomeTheHost) {
  // Port 1 on loopback: nothing listens, so the connection is refused and the message names
  // where it tried. libpq alone would have taken "ss@word@127.0.0.1" for the host.
  std::string message;
  try {
    const auto broker = open_broker("postgresql://app:p@ss@word@127.0.0.1:1/db?connect_timeout=2");
    (void)broker->counts();
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_EQ(message.find("ss@word"), std::string::npos) << message;
  EXPECT_NE(message.find("127.0.0.1:1/db"), std::string::npos) << message;
}

TEST(RedactUrl, StoreUrlErrorsNeverQuoteThePassword) {
  const std::string url = "ftp://app:p@ss@word@127.0.0.1/x";
  for (auto open : {+[](const std::string& u) { (void)open_rate_limit_store(u); },
                    +[](const std::string& u) { (void)open_response_cache(u); }}) {
    const std::string message = config_error_of(open, url);
    EXPECT_EQ(message.find("ss@word"), std::string::npos) << message;
    EXPECT_NE(message.find("ftp://app:***@127.0.0.1/x"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace cinejobs
