// migrate_broker: creates or upgrades a broker's store to the schema this cinejobs knows. Only
// PostgreSQL has versioned migrations (cpp/src/brokers/postgres/migrations/NNNN_*.sql), applied in
// order inside one transaction that holds an advisory lock, so two migrators never race and a
// failed migration leaves the schema as it was. Workers never migrate on their own: open_broker
// refuses a PostgreSQL schema that is not migrated unless the URL says migrate=true.
#pragma once

#include <string_view>
#include <vector>

namespace cinejobs {

// migrate_broker applies the migrations the store lacks and returns their versions in the order
// applied (empty when the store was up to date, and for SQLite and Redis, which need none: SQLite
// creates its schema when opened). Idempotent. Throws ConfigError for a malformed URL or a schema
// newer than this cinejobs knows, BrokerUnavailable when the store cannot be reached.
std::vector<int> migrate_broker(std::string_view url);

}  // namespace cinejobs
