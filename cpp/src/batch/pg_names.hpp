// Table and column names the batch sinks put into SQL. Only plain identifiers are accepted and
// they are always double-quoted, so a name can neither inject SQL nor change case on the way.
#pragma once

#include <string>
#include <string_view>

namespace cinejobs::detail {

// quote_identifier returns "name" quoted; throws ConfigError naming `what` unless `name` is a
// plain identifier (letters, digits, underscores, not starting with a digit, at most 63 bytes).
std::string quote_identifier(std::string_view name, std::string_view what);

// quote_qualified_name quotes "table" or "schema.table" part by part.
std::string quote_qualified_name(std::string_view name, std::string_view what);

}  // namespace cinejobs::detail
