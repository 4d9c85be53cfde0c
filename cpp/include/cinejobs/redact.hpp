// redact_url: the one place secrets are masked before a URL, a connection string or a message
// that quotes one is shown to anyone (exception messages, log lines, the CLI, web pages).
// It replaces with *** the password of `scheme://user:password@host` (the last '@' before the
// path, query or end ends the user information, so a password may hold an unescaped '@'), the
// value of every secret key=value pair (password, pass, passwd, token, secret, api_key, apikey,
// key, sslpassword, access_token; case-insensitive) whether a URL's query parameter or a libpq
// `key=value` connection string item (quoted values too), and keeps the rest readable: scheme,
// user, host, port, database, other parameters. Text without secrets comes back unchanged.
// Cost: one pass over the text per URL in it; no allocation beyond the result.
#pragma once

#include <string>
#include <string_view>

namespace cinejobs {

// redact_url returns `text` (a URL, a connection string, or a message quoting either, any
// number of times) with every secret it carries replaced by ***. Never throws but bad_alloc.
std::string redact_url(std::string_view text);

}  // namespace cinejobs
