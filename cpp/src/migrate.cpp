#include "cinejobs/migrate.hpp"

#include "brokers/postgres/postgres_broker.hpp"
#include "cinejobs/broker.hpp"
#include "cinejobs/errors.hpp"

namespace cinejobs {

std::vector<int> migrate_broker(std::string_view url) {
  const auto colon = url.find("://");
  const std::string_view scheme = colon == std::string_view::npos ? url : url.substr(0, colon);
  if (scheme == "postgres" || scheme == "postgresql") {
    BrokerOptions options;
    return detail::migrate_postgres(detail::parse_postgres_url(url, options));
  }
  // Other kinds need no migration step; opening checks the URL and creates what is missing.
  (void)open_broker(url);
  return {};
}

}  // namespace cinejobs
