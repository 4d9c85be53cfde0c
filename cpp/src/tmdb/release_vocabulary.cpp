#include "release_vocabulary.hpp"

#include <algorithm>
#include <array>
#include <span>
#include <unordered_map>

namespace cinejobs::detail {

namespace {

// A table row: the key (vocable_key form), the field's spelling, and whether the word is also
// an ordinary title word. `exact`, when set, is the only spelling in which the word counts.
struct Row {
  std::string_view key;
  std::string_view value;
  bool weak = false;
  std::string_view exact = {};
};

constexpr bool kWeak = true;

// 4K and UHD name the resolution only when no explicit one is given (the parser keeps the
// first resolution it meets, and 1080p encodes of UHD discs say both).
constexpr Row kResolutions[] = {
    {"2160p", "2160p"},   {"4k", "2160p"},  {"uhd", "2160p"},       {"1440p", "1440p"},
    {"1080p", "1080p"},   {"fhd", "1080p"}, {"1080i", "1080i"},     {"720p", "720p"},
    {"576p", "576p"},     {"576i", "576p"}, {"540p", "540p"},       {"480p", "480p"},
    {"480i", "480p"},     {"360p", "360p"}, {"1920x1080", "1080p"}, {"3840x2160", "2160p"},
    {"1280x720", "720p"},
};

// Words that also read as English (web, cam, screener, workprint) or are two letters (TS, TC,
// R5, BD) are weak.
constexpr Row kSources[] = {
    {"bluray", "BluRay"},     {"bdrip", "BDRip"},
    {"brrip", "BRRip"},       {"bd", "BluRay", kWeak},
    {"bd25", "BluRay"},       {"bd50", "BluRay"},
    {"bdmv", "BluRay"},       {"remux", "Remux"},
    {"bdremux", "Remux"},     {"webdl", "WEB-DL"},
    {"webdlrip", "WEB-DL"},   {"webrip", "WEBRip"},
    {"web", "WEB", kWeak},    {"hdtv", "HDTV"},
    {"hdtvrip", "HDTV"},      {"pdtv", "PDTV"},
    {"dsr", "DSR"},           {"dsrip", "DSR"},
    {"satrip", "SATRip"},     {"dvb", "SATRip"},
    {"dvdrip", "DVDRip"},     {"dvd", "DVD", kWeak},
    {"dvdr", "DVD"},          {"dvd5", "DVD"},
    {"dvd9", "DVD"},          {"ntsc", "DVD", kWeak},
    {"pal", "DVD", kWeak},    {"hddvd", "HD-DVD"},
    {"hdrip", "HDRip"},       {"vhsrip", "VHSRip"},
    {"vhs", "VHSRip", kWeak}, {"cam", "CAM", kWeak},
    {"camrip", "CAM"},        {"hdcam", "CAM"},
    {"ts", "TS", kWeak},      {"hdts", "TS"},
    {"telesync", "TS"},       {"tc", "TC", kWeak},
    {"telecine", "TC"},       {"scr", "SCR", kWeak},
    {"dvdscr", "SCR"},        {"screener", "SCR", kWeak},
    {"dvdscreener", "SCR"},   {"bdscr", "SCR"},
    {"r5", "R5", kWeak},      {"workprint", "Workprint", kWeak},
};

constexpr Row kCodecs[] = {
    {"x264", "H.264"},   {"h264", "H.264"}, {"avc", "H.264"}, {"x265", "H.265"},
    {"h265", "H.265"},   {"hevc", "H.265"}, {"av1", "AV1"},   {"xvid", "XviD"},
    {"divx", "DivX"},    {"vp9", "VP9"},    {"vc1", "VC-1"},  {"mpeg2", "MPEG-2"},
    {"mpeg4", "MPEG-4"},
};

// The parser appends " Atmos" to the codec when both are named.
constexpr Row kAudio[] = {
    {"dts", "DTS"},       {"dtsma", "DTS-HD MA"}, {"dtshdma", "DTS-HD MA"}, {"dtshd", "DTS-HD"},
    {"dtshra", "DTS-HD"}, {"dtsx", "DTS-X"},      {"dtses", "DTS"},         {"truehd", "TrueHD"},
    {"atmos", "Atmos"},   {"ac3", "DD"},          {"dd", "DD", kWeak},      {"dolbydigital", "DD"},
    {"eac3", "DDP"},      {"ddp", "DDP"},         {"dd+", "DDP"},           {"ddplus", "DDP"},
    {"aac", "AAC"},       {"aaclc", "AAC"},       {"heaac", "AAC"},         {"flac", "FLAC"},
    {"lpcm", "LPCM"},     {"pcm", "LPCM"},        {"opus", "Opus"},         {"mp3", "MP3"},
};

// Editions, picture and release flags, languages and streaming services. All weak: each is
// also a word some title uses ("Uncut Gems", "The Italian Job", "It", "Hybrid").
constexpr Row kTags[] = {
    {"repack", "REPACK", kWeak},
    {"repack2", "REPACK", kWeak},
    {"proper", "PROPER", kWeak},
    {"real", "REAL", kWeak},
    {"rerip", "RERIP", kWeak},
    {"internal", "INTERNAL", kWeak},
    {"limited", "LIMITED", kWeak},
    {"readnfo", "READNFO", kWeak},
    {"dirfix", "DIRFIX", kWeak},
    {"nfofix", "NFOFIX", kWeak},
    {"extended", "EXTENDED", kWeak},
    {"extendedcut", "EXTENDED", kWeak},
    {"extendededition", "EXTENDED", kWeak},
    {"unrated", "UNRATED", kWeak},
    {"uncut", "UNCUT", kWeak},
    {"uncensored", "UNCENSORED", kWeak},
    {"directorscut", "DIRECTORS CUT", kWeak},
    {"dircut", "DIRECTORS CUT", kWeak},
    {"dc", "DIRECTORS CUT", kWeak},
    {"theatrical", "THEATRICAL", kWeak},
    {"theatricalcut", "THEATRICAL", kWeak},
    {"finalcut", "FINAL CUT", kWeak},
    {"specialedition", "SPECIAL EDITION", kWeak},
    {"collectorsedition", "COLLECTORS EDITION", kWeak},
    {"anniversaryedition", "ANNIVERSARY EDITION", kWeak},
    {"remastered", "REMASTERED", kWeak},
    {"restored", "RESTORED", kWeak},
    {"criterion", "CRITERION", kWeak},
    {"imax", "IMAX", kWeak},
    {"openmatte", "OPEN MATTE", kWeak},
    {"hybrid", "HYBRID", kWeak},
    {"hdr", "HDR", kWeak},
    {"hdr10", "HDR", kWeak},
    {"hdr10+", "HDR10+", kWeak},
    {"hdr10plus", "HDR10+", kWeak},
    {"dv", "DV", kWeak},
    {"dovi", "DV", kWeak},
    {"dolbyvision", "DV", kWeak},
    {"sdr", "SDR", kWeak},
    {"10bit", "10bit", kWeak},
    {"8bit", "8bit", kWeak},
    {"3d", "3D", kWeak},
    {"hsbs", "HSBS", kWeak},
    {"hou", "HOU", kWeak},
    {"ws", "WS", kWeak},
    {"fs", "FS", kWeak},
    {"complete", "COMPLETE", kWeak},
    {"dubbed", "DUBBED", kWeak},
    {"subbed", "SUBBED", kWeak},
    {"hc", "HC", kWeak},
    {"hardsub", "HC", kWeak},
    {"hardsubs", "HC", kWeak},
    {"multisubs", "MULTISUBS", kWeak},
    {"multi", "MULTI", kWeak},
    {"dual", "DUAL", kWeak},
    {"dl", "DL", kWeak},
    {"english", "ENGLISH", kWeak},
    {"eng", "ENGLISH", kWeak},
    {"french", "FRENCH", kWeak},
    {"truefrench", "TRUEFRENCH", kWeak},
    {"vff", "VFF", kWeak},
    {"vfq", "VFQ", kWeak},
    {"vostfr", "VOSTFR", kWeak},
    {"german", "GERMAN", kWeak},
    {"italian", "ITALIAN", kWeak},
    {"ita", "ITALIAN", kWeak},
    {"spanish", "SPANISH", kWeak},
    {"castellano", "SPANISH", kWeak},
    {"latino", "LATINO", kWeak},
    {"nordic", "NORDIC", kWeak},
    {"swedish", "SWEDISH", kWeak},
    {"danish", "DANISH", kWeak},
    {"norwegian", "NORWEGIAN", kWeak},
    {"finnish", "FINNISH", kWeak},
    {"dutch", "DUTCH", kWeak},
    {"flemish", "FLEMISH", kWeak},
    {"polish", "POLISH", kWeak},
    {"pldub", "POLISH", kWeak},
    {"russian", "RUSSIAN", kWeak},
    {"rus", "RUSSIAN", kWeak},
    {"ukrainian", "UKRAINIAN", kWeak},
    {"czech", "CZECH", kWeak},
    {"hungarian", "HUNGARIAN", kWeak},
    {"portuguese", "PORTUGUESE", kWeak},
    {"turkish", "TURKISH", kWeak},
    {"japanese", "JAPANESE", kWeak},
    {"korean", "KOREAN", kWeak},
    {"chinese", "CHINESE", kWeak},
    {"hindi", "HINDI", kWeak},
    {"tamil", "TAMIL", kWeak},
    {"telugu", "TELUGU", kWeak},
    {"amzn", "AMZN", kWeak},
    {"nf", "NF", kWeak},
    {"dsnp", "DSNP", kWeak},
    {"hmax", "HMAX", kWeak},
    {"atvp", "ATVP", kWeak},
    {"hulu", "HULU", kWeak},
    {"pcok", "PCOK", kWeak},
    {"pmtp", "PMTP", kWeak},
    {"stan", "STAN", kWeak, "STAN"},
    {"crav", "CRAV", kWeak},
    {"it", "iT", kWeak, "iT"},
    {"ip", "iP", kWeak, "iP"},
};

// What makes a release not worth a lookup. Software and music words are strong: no film title
// is "Keygen" or "Soundtrack" in a release name's technical part.
constexpr Row kMarkers[] = {
    {"sample", "sample", kWeak},
    {"subs", "subtitles", kWeak},
    {"subpack", "subtitles"},
    {"subtitles", "subtitles", kWeak},
    {"subfix", "subtitles"},
    {"trailer", "trailer", kWeak},
    {"teaser", "trailer", kWeak},
    {"extras", "extras", kWeak},
    {"bonus", "extras", kWeak},
    {"featurette", "extras", kWeak},
    {"featurettes", "extras", kWeak},
    {"behindthescenes", "extras", kWeak},
    {"makingof", "extras", kWeak},
    {"deletedscenes", "extras", kWeak},
    {"keygen", "software"},
    {"crack", "software", kWeak},
    {"cracked", "software", kWeak},
    {"patch", "software", kWeak},
    {"activator", "software"},
    {"incl", "software", kWeak},
    {"portable", "software", kWeak},
    {"x64", "software"},
    {"x86", "software"},
    {"win64", "software"},
    {"win32", "software"},
    {"macos", "software"},
    {"macosx", "software"},
    {"linux", "software", kWeak},
    {"multilingual", "software", kWeak},
    {"ps4", "game"},
    {"ps5", "game"},
    {"nsw", "game"},
    {"xbox", "game"},
    {"xboxone", "game"},
    {"soundtrack", "audio"},
    {"ost", "audio"},
    {"discography", "audio"},
    {"album", "audio", kWeak},
    {"320kbps", "audio"},
    {"256kbps", "audio"},
    {"192kbps", "audio"},
    {"cdrip", "audio"},
    {"24bit", "audio"},
};

struct Extension {
  std::string_view extension;
  std::string_view reason;
};

constexpr Extension kExtensions[] = {
    {"mkv", ""},          {"mp4", ""},          {"avi", ""},          {"m4v", ""},
    {"wmv", ""},          {"mov", ""},          {"mpg", ""},          {"mpeg", ""},
    {"m2ts", ""},         {"ts", ""},           {"webm", ""},         {"flv", ""},
    {"vob", ""},          {"divx", ""},         {"srt", "subtitles"}, {"sub", "subtitles"},
    {"idx", "subtitles"}, {"ass", "subtitles"}, {"ssa", "subtitles"}, {"vtt", "subtitles"},
    {"sup", "subtitles"}, {"exe", "software"},  {"msi", "software"},  {"dmg", "software"},
    {"apk", "software"},  {"mp3", "audio"},     {"flac", "audio"},    {"m4a", "audio"},
    {"ogg", "audio"},     {"wav", "audio"},     {"nfo", ""},          {"nzb", ""},
    {"rar", ""},          {"zip", ""},          {"7z", ""},           {"torrent", ""},
};

constexpr std::string_view kGameGroups[] = {
    "codex", "skidrow",    "plaza", "reloaded", "flt",     "tenoke",    "empress",
    "rune",  "darksiders", "cpy",   "hoodlum",  "tinyiso", "razor1911", "prophet",
    "doge",  "fitgirl",    "dodi",  "elamigos", "gog",     "venom",     "suxxors",
};

// Bracketed tags of the sites that re-post a release ([rarbg], [eztv.re]); not its group.
constexpr std::string_view kSiteTags[] = {
    "rarbg", "eztv", "eztv.re", "ettv", "tgx", "1337x", "publichd", "www.torrenting.com",
};

// Suffixes re-posters append after the group (-GROUP-Obfuscated, -GROUP-postbot).
constexpr std::string_view kRepostSuffixes[] = {
    "obfuscated", "scrambled", "postbot", "xpost", "rp", "asrequested", "rakuv", "rakuvfinhel",
};

struct Entry {
  Vocable vocable;
  std::string_view exact;
};

using Dictionary = std::unordered_map<std::string_view, Entry>;

void add_table(Dictionary& dictionary, VocableField field, std::span<const Row> rows) {
  for (const Row& row : rows) {
    dictionary.emplace(row.key, Entry{{field, row.value, row.weak}, row.exact});
  }
}

const Dictionary& dictionary() {
  static const Dictionary instance = [] {
    Dictionary d;
    add_table(d, VocableField::kResolution, kResolutions);
    add_table(d, VocableField::kSource, kSources);
    add_table(d, VocableField::kCodec, kCodecs);
    add_table(d, VocableField::kAudio, kAudio);
    add_table(d, VocableField::kTag, kTags);
    add_table(d, VocableField::kMarker, kMarkers);
    return d;
  }();
  return instance;
}

template <std::size_t N>
bool contains(const std::string_view (&table)[N], std::string_view key) {
  return std::find(std::begin(table), std::end(table), key) != std::end(table);
}

}  // namespace

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string vocable_key(std::string_view text) {
  std::string key;
  key.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '-' || c == '\'') continue;
    // U+2019 RIGHT SINGLE QUOTATION MARK, the typographic apostrophe (E2 80 99).
    if (c == '\xE2' && text.substr(i, 3) == "\xE2\x80\x99") {
      i += 2;
      continue;
    }
    key.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return key;
}

const Vocable* find_vocable(std::string_view key, std::string_view as_written) {
  const Dictionary& d = dictionary();
  auto it = d.find(key);
  if (it == d.end()) return nullptr;
  if (!it->second.exact.empty() && it->second.exact != as_written) return nullptr;
  return &it->second.vocable;
}

std::optional<std::string_view> extension_reason(std::string_view extension) {
  const std::string lower = lower_ascii(extension);
  for (const Extension& e : kExtensions) {
    if (e.extension == lower) return e.reason;
  }
  return std::nullopt;
}

bool is_game_group(std::string_view group) { return contains(kGameGroups, lower_ascii(group)); }

bool is_site_tag(std::string_view tag) { return contains(kSiteTags, lower_ascii(tag)); }

bool is_repost_suffix(std::string_view suffix) {
  return contains(kRepostSuffixes, lower_ascii(suffix));
}

}  // namespace cinejobs::detail
