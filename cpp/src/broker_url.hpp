// Broker URL parts every broker kind shares: percent-decoding and the query parameters common to
// all kinds (result_ttl_s, max_payload_bytes). open_broker (broker_url.cpp) chooses the kind.
#pragma once

#include <string>
#include <string_view>

#include "cinejobs/broker.hpp"

namespace cinejobs::detail {

// url_percent_decode decodes %XX escapes; throws ConfigError naming `url` for a bad escape.
std::string url_percent_decode(std::string_view url, std::string_view text);

// apply_common_url_parameter applies result_ttl_s or max_payload_bytes to `options` and returns
// true, or returns false for any other key. Throws ConfigError for a malformed value.
bool apply_common_url_parameter(std::string_view url, const std::string& key,
                                const std::string& value, BrokerOptions& options);

}  // namespace cinejobs::detail
