// JSON text helpers: the core keeps arguments and results as JSON text and only needs to check
// them and to write strings into documents. Parsing is simdjson's, behind this header.
#pragma once

#include <string>
#include <string_view>

namespace cinejobs {

enum class JsonKind { kObject, kArray, kString, kNumber, kBool, kNull };

// json_kind validates `text` as one JSON document and returns the kind of its root. It throws
// InvalidPayload with simdjson's reason (naming `what`) when the text is not valid JSON.
JsonKind json_kind(std::string_view text, std::string_view what);

// append_json_string appends `value` as a quoted, escaped JSON string to `out`.
void append_json_string(std::string& out, std::string_view value);
std::string json_quote(std::string_view value);

}  // namespace cinejobs
