#include "batch/pg_names.hpp"

#include "cinejobs/errors.hpp"

namespace cinejobs::detail {

std::string quote_identifier(std::string_view name, std::string_view what) {
  bool ok = !name.empty() && name.size() <= 63 && !(name[0] >= '0' && name[0] <= '9');
  for (const char c : name) {
    ok = ok &&
         ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    throw ConfigError(std::string(what) + " name '" + std::string(name) +
                      "' is not a plain identifier: use letters, digits and underscores, not "
                      "starting with a digit, at most 63 characters");
  }
  std::string quoted;
  quoted.reserve(name.size() + 2);
  quoted.append(1, '"').append(name).append(1, '"');
  return quoted;
}

std::string quote_qualified_name(std::string_view name, std::string_view what) {
  const auto dot = name.find('.');
  if (dot == std::string_view::npos) return quote_identifier(name, what);
  return quote_identifier(name.substr(0, dot), what) + "." +
         quote_identifier(name.substr(dot + 1), what);
}

}  // namespace cinejobs::detail
