// The words of release names: one table per field (resolution, source, codec, audio, tags,
// content markers), file extensions, and the groups and site tags that say something on their
// own. The parser (release_name.cpp) decides where a word counts; this file only knows words.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cinejobs::detail {

enum class VocableField { kResolution, kSource, kCodec, kAudio, kTag, kMarker };

// Vocable: one known word. `value` is the field's one spelling (for kMarker: the reason the
// release is not enrichable). A weak word is also an ordinary title word ("Web", "Uncut",
// "Extras", "It"), so it counts only once the technical part of the name has begun.
struct Vocable {
  VocableField field;
  std::string_view value;
  bool weak;
};

// lower_ascii lower-cases ASCII letters and leaves every other byte (UTF-8 included) alone.
std::string lower_ascii(std::string_view text);

// vocable_key turns a token, or several tokens joined, into the form the tables use: ASCII
// lower case with '-', '\'' and '’' dropped, so WEB-DL, WEBDL and WEB.DL (two tokens) meet.
std::string vocable_key(std::string_view text);

// find_vocable looks up a key made by vocable_key; `as_written` is the token as it appeared,
// for the few words that are only technical in one spelling ("iT" is iTunes, "It" a title).
const Vocable* find_vocable(std::string_view key, std::string_view as_written);

// The reason a file with this extension (no dot, as written) is not enrichable ("" for a
// video), or nullopt when it is not an extension release files have. Case does not matter
// here; the parser takes words that are also technical (TS, DivX) as extensions only in
// lower case.
std::optional<std::string_view> extension_reason(std::string_view extension);

// Groups whose releases are games; bracketed tags that name a site rather than a group; what
// re-posters append after the group. Case does not matter.
bool is_game_group(std::string_view group);
bool is_site_tag(std::string_view tag);
bool is_repost_suffix(std::string_view suffix);

}  // namespace cinejobs::detail
