#include "cinejobs/json_text.hpp"

#include <simdjson.h>

#include <array>

#include "cinejobs/errors.hpp"

namespace cinejobs {

JsonKind json_kind(std::string_view text, std::string_view what) {
  // One parser per thread: simdjson parsers keep their buffers between documents.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(text.data(), text.size()).get(root)) {
    if (error == simdjson::NUMBER_OUT_OF_RANGE) {
      throw InvalidPayload(std::string(what) +
                           " holds an integer outside the 64-bit range, which JSON readers in "
                           "other languages cannot keep exactly: send it as a string");
    }
    throw InvalidPayload(std::string(what) + " is not valid JSON (" +
                         simdjson::error_message(error) + ")");
  }
  switch (root.type()) {
    case simdjson::dom::element_type::OBJECT:
      return JsonKind::kObject;
    case simdjson::dom::element_type::ARRAY:
      return JsonKind::kArray;
    case simdjson::dom::element_type::STRING:
      return JsonKind::kString;
    case simdjson::dom::element_type::BOOL:
      return JsonKind::kBool;
    case simdjson::dom::element_type::NULL_VALUE:
      return JsonKind::kNull;
    default:
      return JsonKind::kNumber;
  }
}

void append_json_string(std::string& out, std::string_view value) {
  static constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  out.reserve(out.size() + value.size() + 2);
  out.push_back('"');
  for (char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          const auto u = static_cast<unsigned char>(c);
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xF]);
        } else {
          out.push_back(c);  // UTF-8 passes through unchanged
        }
    }
  }
  out.push_back('"');
}

std::string json_quote(std::string_view value) {
  std::string out;
  append_json_string(out, value);
  return out;
}

}  // namespace cinejobs
