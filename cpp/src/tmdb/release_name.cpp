#include "cinejobs/release_name.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>

#include "release_vocabulary.hpp"

namespace cinejobs {

using detail::find_vocable;
using detail::lower_ascii;
using detail::Vocable;
using detail::vocable_key;
using detail::VocableField;

std::string_view to_string(ReleaseKind kind) noexcept {
  switch (kind) {
    case ReleaseKind::kMovie:
      return "movie";
    case ReleaseKind::kEpisode:
      return "episode";
    case ReleaseKind::kSeason:
      return "season";
    case ReleaseKind::kUnknown:
      break;
  }
  return "unknown";
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

int to_int(std::string_view digits) {
  int value = 0;
  for (char c : digits) value = value * 10 + (c - '0');
  return value;
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Next year counts as plausible: releases of films dated next year appear before New Year.
int latest_plausible_year() {
  static const int year = [] {
    const std::chrono::year_month_day today{
        std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now())};
    return static_cast<int>(today.year()) + 1;
  }();
  return year;
}

std::optional<int> as_year(std::string_view token) {
  if (token.size() != 4 || !all_digits(token)) return std::nullopt;
  const int year = to_int(token);
  if (year < 1888 || year > latest_plausible_year()) return std::nullopt;
  return year;
}

// An episode marker: S01E02, S01E02E03, S01E02-E03, S01E02-03, S01 (season pack), S01-S03,
// 1x02. `text` is lower case. The whole token must be the marker.
struct EpisodeMarker {
  std::optional<int> season;
  std::optional<int> episode;
  std::optional<int> last_episode;
  std::string air_date;
  bool complete_series = false;
};

class DigitReader {
 public:
  DigitReader(std::string_view text, std::size_t& pos) : text_(text), pos_(pos) {}
  // Reads 1..max digits; nullopt when there are none or more than max.
  std::optional<int> read(std::size_t max) {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    const std::size_t n = pos_ - start;
    if (n == 0 || n > max) return std::nullopt;
    return to_int(text_.substr(start, n));
  }

 private:
  std::string_view text_;
  std::size_t& pos_;
};

std::optional<EpisodeMarker> parse_episode_marker(std::string_view text) {
  EpisodeMarker marker;
  std::size_t pos = 0;
  DigitReader digits(text, pos);
  if (text.size() >= 2 && text[0] == 's' && is_digit(text[1])) {
    pos = 1;
    marker.season = digits.read(2);
    if (!marker.season) return std::nullopt;
    while (pos < text.size()) {
      if (text[pos] == 'e') {
        ++pos;
        const auto episode = digits.read(3);
        if (!episode) return std::nullopt;
        (marker.episode ? marker.last_episode : marker.episode) = episode;
      } else if (text[pos] == '-' && pos + 1 < text.size()) {
        ++pos;
        if (text[pos] == 'e') continue;
        if (text[pos] == 's') ++pos;  // a season range: S01-S03 names the first
        const auto number = digits.read(3);
        if (!number) return std::nullopt;
        if (marker.episode) marker.last_episode = number;
      } else {
        return std::nullopt;
      }
    }
    return marker;
  }
  // 1x02: at most two digits before the x, so 1920x1080 is not an episode.
  marker.season = digits.read(2);
  if (!marker.season || pos >= text.size() || text[pos] != 'x') return std::nullopt;
  ++pos;
  const std::size_t start = pos;
  marker.episode = digits.read(3);
  if (!marker.episode || pos - start < 2 || pos != text.size()) return std::nullopt;
  return marker;
}

// An audio codec with its channels glued on: DD5.1 arrives as "DD5" + "1", DDP51 as one token.
struct GluedAudio {
  const Vocable* vocable;
  char main_channels;  // '5' of DD5; the ".1" comes from the next token or the glued digit
  char sub_channels;   // '1' of DDP51; 0 when it must come from the next token
};

std::optional<GluedAudio> glued_audio(const std::string& key) {
  const auto channel = [](char c) {
    return c == '1' || c == '2' || c == '5' || c == '6' || c == '7' || c == '8';
  };
  const auto audio = [](std::string_view k) {
    const Vocable* v = find_vocable(k, k);
    return v && v->field == VocableField::kAudio ? v : nullptr;
  };
  const std::size_t n = key.size();
  if (n >= 3 && (key[n - 1] == '0' || key[n - 1] == '1') && channel(key[n - 2])) {
    if (const Vocable* v = audio(std::string_view(key).substr(0, n - 2))) {
      return GluedAudio{v, key[n - 2], key[n - 1]};
    }
  }
  if (n >= 2 && channel(key[n - 1])) {
    if (const Vocable* v = audio(std::string_view(key).substr(0, n - 1))) {
      return GluedAudio{v, key[n - 1], 0};
    }
  }
  return std::nullopt;
}

bool is_resolution_pattern(std::string_view key) {
  // 2160p, 1080i, ... beyond the table: any 3-4 digit height with p or i.
  if (key.size() < 4 || key.size() > 5) return false;
  const char last = key.back();
  return (last == 'p' || last == 'i') && all_digits(key.substr(0, key.size() - 1));
}

// is_technical says whether a word, standing alone, is something a release name's technical
// part holds (and so cannot be the start of a group name): used to find where "x264-D-Z0N3"
// ends and its group begins.
bool is_technical_word(std::string_view word) {
  if (word.empty() || all_digits(word) || as_year(word)) return true;
  const std::string key = vocable_key(word);
  return find_vocable(key, word) || glued_audio(key) || is_resolution_pattern(key) ||
         parse_episode_marker(lower_ascii(word));
}

// Also a dashed run of technical words, as music and some TV names write them (-WEB-2021).
bool is_technical(std::string_view word) {
  if (is_technical_word(word)) return true;
  if (word.find('-') == std::string_view::npos) return false;
  for (std::size_t start = 0; start <= word.size();) {
    const auto dash = std::min(word.find('-', start), word.size());
    if (!is_technical_word(word.substr(start, dash - start))) return false;
    start = dash + 1;
  }
  return true;
}

// Subtitle files carry their language and flavour before the extension (Title-GRP.en.forced.srt,
// Title-GRP.English.srt), and archive volumes their number (Title-GRP.part1.rar).
std::string_view strip_file_suffixes(std::string_view s) {
  for (int round = 0; round < 2; ++round) {
    const auto dot = s.rfind('.');
    if (dot == std::string_view::npos) break;
    const std::string_view suffix = s.substr(dot + 1);
    const auto lower_letters = [](char c) { return c >= 'a' && c <= 'z'; };
    const bool code = (suffix.size() == 2 || suffix.size() == 3) &&
                      std::all_of(suffix.begin(), suffix.end(), lower_letters);
    const Vocable* word = find_vocable(vocable_key(suffix), suffix);
    const bool language = word && word->field == VocableField::kTag;
    const bool volume = suffix.size() > 4 && lower_ascii(suffix.substr(0, 4)) == "part" &&
                        all_digits(suffix.substr(4));
    if (!code && !language && !volume && suffix != "forced" && suffix != "sdh") break;
    s = s.substr(0, dot);
  }
  return s;
}

struct Token {
  std::string text;
  bool bracketed = false;
};

bool is_separator(char c) { return c == '.' || c == '_' || c == ' ' || c == '\t' || c == ','; }
bool is_open_bracket(char c) { return c == '[' || c == '(' || c == '{'; }
bool is_close_bracket(char c) { return c == ']' || c == ')' || c == '}'; }

std::vector<Token> tokenize(std::string_view s) {
  std::vector<Token> tokens;
  int depth = 0;
  Token current;
  const auto flush = [&] {
    if (!current.text.empty()) tokens.push_back(std::move(current));
    current = Token{};
  };
  for (char c : s) {
    if (is_open_bracket(c) || is_close_bracket(c) || is_separator(c)) {
      flush();
      if (is_open_bracket(c)) ++depth;
      if (is_close_bracket(c) && depth > 0) --depth;
      continue;
    }
    if (current.text.empty()) current.bracketed = depth > 0;
    current.text.push_back(c);
  }
  flush();
  return tokens;
}

bool is_crc(std::string_view s) {
  return s.size() == 8 && std::all_of(s.begin(), s.end(), [](char c) {
           return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

// What one or more tokens starting at a position are.
enum class ItemKind { kWord, kDash, kYear, kEpisode, kVocable, kChannels };

struct Item {
  ItemKind kind = ItemKind::kWord;
  std::size_t first = 0;  // token index
  std::size_t span = 1;   // tokens consumed
  const Vocable* vocable = nullptr;
  int year = 0;
  EpisodeMarker marker;
  std::string channels;

  bool strong() const {
    return kind == ItemKind::kEpisode || kind == ItemKind::kChannels ||
           (kind == ItemKind::kVocable && !vocable->weak);
  }
};

Item make_item(ItemKind kind, std::size_t first, std::size_t span = 1) {
  Item item;
  item.kind = kind;
  item.first = first;
  item.span = span;
  return item;
}

constexpr std::string_view kSeasonWords[] = {"season", "series", "saison", "staffel", "temporada"};
constexpr std::string_view kEpisodeWords[] = {"episode", "ep", "episodio", "folge"};

template <std::size_t N>
bool one_of(const std::string_view (&words)[N], std::string_view word) {
  return std::find(std::begin(words), std::end(words), word) != std::end(words);
}

class Parser {
 public:
  explicit Parser(std::string_view name) { run(name); }
  ReleaseName take() { return std::move(out_); }

 private:
  void run(std::string_view name);
  std::string_view strip_file_parts(std::string_view s);
  std::string_view strip_brackets(std::string_view s);
  void strip_leading_site();
  void strip_trailing_junk();
  void split_group();
  void split_technical_runs();
  void classify();
  Item classify_at(std::size_t i) const;
  std::optional<Item> episode_at(std::size_t i) const;
  std::optional<Item> vocable_at(std::size_t i) const;
  std::optional<std::string> channels_at(std::size_t i) const;
  void assemble();
  void apply(const Item& item);
  std::string title_of(std::size_t end_item) const;
  void note_reason(std::string_view reason) {
    if (out_.reason.empty()) out_.reason = reason;
  }
  void add_tag(std::string_view tag) {
    if (std::find(out_.tags.begin(), out_.tags.end(), tag) == out_.tags.end()) {
      out_.tags.emplace_back(tag);
    }
  }
  std::string lower(std::size_t i) const { return lower_ascii(tokens_[i].text); }

  ReleaseName out_;
  std::vector<Token> tokens_;
  std::vector<Item> items_;
  std::string leading_group_;
  std::string dash_group_;
  std::string trailing_group_;
  bool atmos_ = false;
  bool complete_series_ = false;
};

void Parser::run(std::string_view name) {
  std::string_view s = name;
  if (const auto slash = s.find_last_of("/\\"); slash != std::string_view::npos) {
    s.remove_prefix(slash + 1);
  }
  s = strip_brackets(strip_file_parts(trim(s)));
  tokens_ = tokenize(s);
  strip_leading_site();
  strip_trailing_junk();
  split_group();
  split_technical_runs();
  classify();
  assemble();
}

std::string_view Parser::strip_file_parts(std::string_view s) {
  // A file extension, whose kind may already say the file is not a video.
  if (const auto dot = s.rfind('.'); dot != std::string_view::npos && dot + 1 < s.size()) {
    const std::string_view extension = s.substr(dot + 1);
    const std::string key = vocable_key(extension);
    // A word that is also technical (TS, DivX, FLAC) is an extension only in lower case.
    const bool also_a_word = find_vocable(key, extension) != nullptr && key != extension;
    if (!also_a_word) {
      if (const auto reason = detail::extension_reason(extension)) {
        if (!reason->empty()) note_reason(*reason);
        s = trim(s.substr(0, dot));
        s = strip_file_suffixes(s);
      }
    }
  }
  // sample-grp-title.mkv and title-grp-sample.mkv, the sample files inside releases.
  const std::string lower = lower_ascii(s);
  if (lower.starts_with("sample-")) {
    note_reason("sample");
    s.remove_prefix(7);
  } else if (lower.ends_with("-sample")) {
    note_reason("sample");
    s.remove_suffix(7);
  }
  return s;
}

std::string_view Parser::strip_brackets(std::string_view s) {
  // [Group] Title - 01 [1080p]: a leading bracket names the group (or a site).
  if (s.starts_with('[')) {
    if (const auto close = s.find(']'); close != std::string_view::npos) {
      const std::string_view content = trim(s.substr(1, close - 1));
      const std::string lower = lower_ascii(content);
      if (lower.find("www.") == std::string::npos && !detail::is_site_tag(lower) &&
          !is_technical(content)) {
        leading_group_ = std::string(content);
      }
      s = trim(s.substr(close + 1));
      if (s.starts_with('-')) s = trim(s.substr(1));
    }
  }
  // Trailing brackets: a checksum, a site tag, or (in YTS-style names) the group. One that
  // holds a technical word ([1080p], [5.1]) is left to the tokenizer.
  while (s.ends_with(']')) {
    const auto open = s.rfind('[');
    if (open == std::string_view::npos) break;
    const std::string_view content = trim(s.substr(open + 1, s.size() - open - 2));
    const std::vector<Token> inner = tokenize(content);
    if (!inner.empty() && is_technical(inner.front().text) && !is_crc(content)) break;
    if (!is_crc(content) && !detail::is_site_tag(content) && !content.empty()) {
      if (!trailing_group_.empty()) break;
      trailing_group_ = std::string(content);
    }
    s = trim(s.substr(0, open));
  }
  return s;
}

void Parser::strip_leading_site() {
  // www.example.com - Title...: a tracker's advertisement, up to its top-level domain.
  if (tokens_.empty() || lower(0) != "www") return;
  constexpr std::string_view kDomains[] = {"com", "org", "net", "to", "se", "me", "cc",
                                           "tv",  "io",  "ws",  "mx", "ch", "la", "nu"};
  for (std::size_t i = 1; i < tokens_.size() && i < 5; ++i) {
    std::string word = lower(i);
    if (const auto dash = word.find('-'); dash != std::string::npos) word.resize(dash);
    if (!one_of(kDomains, word)) continue;
    std::string& text = tokens_[i].text;
    const auto dash = text.find('-');
    if (dash != std::string::npos && dash + 1 < text.size()) {
      text.erase(0, dash + 1);  // www.site.com-Title
      tokens_.erase(tokens_.begin(), tokens_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      tokens_.erase(tokens_.begin(), tokens_.begin() + static_cast<std::ptrdiff_t>(i + 1));
    }
    while (!tokens_.empty() && tokens_.front().text == "-") tokens_.erase(tokens_.begin());
    return;
  }
}

void Parser::strip_trailing_junk() {
  while (!tokens_.empty()) {
    std::string& last = tokens_.back().text;
    const std::string lower_last = lower_ascii(last);
    if (lower_last == "sample") {
      note_reason("sample");
      tokens_.pop_back();
      continue;
    }
    // -GROUP-Obfuscated, -GROUP-postbot: what re-posters append after the group.
    const auto dash = last.rfind('-');
    if (dash != std::string::npos && dash > 0 &&
        detail::is_repost_suffix(std::string_view(last).substr(dash + 1))) {
      last.resize(dash);
      continue;
    }
    return;
  }
}

void Parser::split_group() {
  if (tokens_.empty()) return;
  // Title 2010 1080p BluRay x264 - GROUP
  if (tokens_.size() >= 3 && tokens_[tokens_.size() - 2].text == "-" &&
      is_technical(tokens_[tokens_.size() - 3].text) && !is_technical(tokens_.back().text)) {
    dash_group_ = tokens_.back().text;
    tokens_.resize(tokens_.size() - 2);
    return;
  }
  Token& last = tokens_.back();
  if (last.bracketed || last.text.find('-') == std::string::npos || is_technical(last.text)) {
    return;
  }
  // The longest technical prefix ends at a dash: x264-D-Z0N3 is x264 by D-Z0N3, and
  // WEB-DL-GROUP is WEB-DL by GROUP.
  std::string_view text = last.text;
  for (auto dash = text.rfind('-'); dash != std::string_view::npos && dash > 0;
       dash = text.rfind('-', dash - 1)) {
    const std::string_view prefix = text.substr(0, dash);
    if (dash + 1 < text.size() && is_technical(prefix)) {
      dash_group_ = std::string(text.substr(dash + 1));
      last.text.resize(dash);
      return;
    }
  }
  // Title-CODEX: a group known on its own needs no technical part before it.
  if (const auto dash = text.rfind('-');
      dash != std::string_view::npos && dash > 0 && detail::is_game_group(text.substr(dash + 1))) {
    dash_group_ = std::string(text.substr(dash + 1));
    last.text.resize(dash);
    return;
  }
  if (text.starts_with('-') && text.size() > 1) {  // x264.-GROUP
    dash_group_ = std::string(text.substr(1));
    tokens_.pop_back();
    return;
  }
  // Title.2010.1080p.NEWWORD-GROUP: an unknown word before the dash, after a technical part.
  const bool after_technical = std::any_of(tokens_.begin(), tokens_.end() - 1, [](const Token& t) {
    const std::string key = vocable_key(t.text);
    const Vocable* v = find_vocable(key, t.text);
    return as_year(t.text) || (v && !v->weak) || is_resolution_pattern(key);
  });
  const auto dash = text.find('-');
  if (after_technical && dash > 0 && dash + 1 < text.size()) {
    dash_group_ = std::string(text.substr(dash + 1));
    last.text.resize(dash);
  }
}

void Parser::split_technical_runs() {
  // OST-WEB-2023 is three words; WEB-DL and DTS-HD stay one.
  std::vector<Token> split;
  for (Token& token : tokens_) {
    const std::string& text = token.text;
    const bool has_letter = std::any_of(text.begin(), text.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    });  // 9-1-1 is a title
    if (!has_letter || text.find('-') == std::string::npos || is_technical_word(text) ||
        !is_technical(text)) {
      split.push_back(std::move(token));
      continue;
    }
    for (std::size_t start = 0; start <= text.size();) {
      const auto dash = std::min(text.find('-', start), text.size());
      if (dash > start) split.push_back(Token{text.substr(start, dash - start), token.bracketed});
      start = dash + 1;
    }
  }
  tokens_ = std::move(split);
}

std::optional<Item> Parser::episode_at(std::size_t i) const {
  const std::string word = lower(i);
  const std::size_t n = tokens_.size();
  const auto number_at = [&](std::size_t j, std::size_t max_digits) -> std::optional<int> {
    if (j >= n) return std::nullopt;
    std::string_view t = tokens_[j].text;
    if (const auto dash = t.find('-'); dash != std::string_view::npos) t = t.substr(0, dash);
    if (!all_digits(t) || t.size() > max_digits) return std::nullopt;
    return to_int(t);
  };
  Item item = make_item(ItemKind::kEpisode, i);
  if (auto marker = parse_episode_marker(word)) {
    item.marker = *marker;
    // S01.E02: the episode in the next token.
    if (!marker->episode && i + 1 < n) {
      const std::string next = lower(i + 1);
      if (next.size() >= 2 && next[0] == 'e' && all_digits(std::string_view(next).substr(1))) {
        if (auto e = parse_episode_marker("s" + std::to_string(*marker->season) + next)) {
          item.marker = *e;
          item.span = 2;
        }
      }
    }
    return item;
  }
  // Season 1, Season.1.Episode.2, Staffel 2.
  if (one_of(kSeasonWords, word)) {
    const auto season = number_at(i + 1, 2);
    if (!season) return std::nullopt;
    item.marker.season = season;
    item.span = 2;
    if (i + 2 < n && one_of(kEpisodeWords, lower(i + 2))) {
      if (const auto episode = number_at(i + 3, 3)) {
        item.marker.episode = episode;
        item.span = 4;
      }
    }
    return item;
  }
  // Episode 5, Ep.05, Ep05: an episode with no season.
  if (one_of(kEpisodeWords, word)) {
    const auto episode = number_at(i + 1, 3);
    if (!episode) return std::nullopt;
    item.marker.episode = episode;
    item.span = 2;
    return item;
  }
  if (word.size() >= 4 && word.starts_with("ep") && all_digits(std::string_view(word).substr(2))) {
    item.marker.episode = to_int(std::string_view(word).substr(2));
    return item;
  }
  // Complete.Series: every season of a show.
  if (word == "complete" && i + 1 < n && lower(i + 1) == "series") {
    item.marker.complete_series = true;
    item.span = 2;
    return item;
  }
  // Daily shows: 2023.01.15 or 2023-01-15.
  std::string_view y = tokens_[i].text, m, d;
  std::size_t span = 3;
  if (tokens_[i].text.size() == 10 && tokens_[i].text[4] == '-' && tokens_[i].text[7] == '-') {
    const std::string_view t = tokens_[i].text;
    y = t.substr(0, 4);
    m = t.substr(5, 2);
    d = t.substr(8, 2);
    span = 1;
  } else if (i + 2 < n) {
    m = tokens_[i + 1].text;
    d = tokens_[i + 2].text;
  }
  if (as_year(y) && m.size() == 2 && d.size() == 2 && all_digits(m) && all_digits(d) &&
      to_int(m) >= 1 && to_int(m) <= 12 && to_int(d) >= 1 && to_int(d) <= 31) {
    item.marker.air_date = std::string(y) + "-" + std::string(m) + "-" + std::string(d);
    item.span = span;
    return item;
  }
  return std::nullopt;
}

std::optional<std::string> Parser::channels_at(std::size_t i) const {
  const auto single = [](std::string_view t, std::string_view allowed) {
    return t.size() == 1 && allowed.find(t[0]) != std::string_view::npos;
  };
  if (i + 1 < tokens_.size() && single(tokens_[i].text, "125678") &&
      single(tokens_[i + 1].text, "01")) {
    return tokens_[i].text + "." + tokens_[i + 1].text;
  }
  return std::nullopt;
}

std::optional<Item> Parser::vocable_at(std::size_t i) const {
  const std::size_t n = tokens_.size();
  Item item = make_item(ItemKind::kVocable, i);
  // The longest phrase first: DTS-HD.MA before DTS-HD, H.264 before H, Director's.Cut.
  for (std::size_t span = std::min<std::size_t>(3, n - i); span >= 1; --span) {
    std::string joined;
    bool has_dash_token = false;
    for (std::size_t j = i; j < i + span; ++j) {
      has_dash_token = has_dash_token || tokens_[j].text == "-";
      joined += tokens_[j].text;
    }
    if (has_dash_token) continue;
    if (const Vocable* v = find_vocable(vocable_key(joined), joined)) {
      item.vocable = v;
      item.span = span;
      break;
    }
  }
  if (!item.vocable) {
    const std::string key = vocable_key(tokens_[i].text);
    const auto glued = glued_audio(key);
    if (!glued) return std::nullopt;
    item.vocable = glued->vocable;
    if (glued->sub_channels != 0) {
      item.channels = {glued->main_channels, '.', glued->sub_channels};
    } else if (i + 1 < n && (tokens_[i + 1].text == "0" || tokens_[i + 1].text == "1")) {
      item.channels = std::string(1, glued->main_channels) + "." + tokens_[i + 1].text;
      item.span = 2;
    }
    return item;
  }
  if (item.vocable->field == VocableField::kAudio) {
    if (auto channels = channels_at(i + item.span)) {
      item.channels = std::move(*channels);
      item.span += 2;
    }
  }
  return item;
}

Item Parser::classify_at(std::size_t i) const {
  const std::string& text = tokens_[i].text;
  // [Group] Title - 01: fansub releases number episodes from the start of the show.
  if (text == "-" && !leading_group_.empty() && i + 1 < tokens_.size()) {
    std::string_view next = tokens_[i + 1].text;
    if (const auto v = next.find('v'); v != std::string_view::npos && v > 0) {
      next = next.substr(0, v);  // 01v2, a re-release
    }
    if (all_digits(next) && next.size() <= 4 && !as_year(next)) {
      Item item = make_item(ItemKind::kEpisode, i, 2);
      item.marker.episode = to_int(next);
      return item;
    }
  }
  if (text == "-") return make_item(ItemKind::kDash, i);
  if (auto episode = episode_at(i)) return *episode;
  if (auto vocable = vocable_at(i)) return *vocable;
  if (is_resolution_pattern(lower(i))) {
    // Unusual heights (1714p, 800p) are still resolutions, kept as written in lower case.
    static const Vocable kOther{VocableField::kResolution, {}, false};
    Item item = make_item(ItemKind::kVocable, i);
    item.vocable = &kOther;
    return item;
  }
  if (const auto year = as_year(text)) {
    Item item = make_item(ItemKind::kYear, i);
    item.year = *year;
    return item;
  }
  // Bare channels ([5.1] in YTS names) only right after something technical.
  if (!items_.empty() && items_.back().strong()) {
    if (auto channels = channels_at(i)) {
      Item item = make_item(ItemKind::kChannels, i, 2);
      item.channels = std::move(*channels);
      return item;
    }
  }
  return make_item(ItemKind::kWord, i);
}

void Parser::classify() {
  for (std::size_t i = 0; i < tokens_.size();) {
    Item item = classify_at(i);
    i += item.span;
    items_.push_back(std::move(item));
  }
}

std::string Parser::title_of(std::size_t end_item) const {
  std::size_t begin = 0;
  std::size_t end = end_item < items_.size() ? items_[end_item].first : tokens_.size();
  while (begin < end && tokens_[begin].text == "-") ++begin;
  while (end > begin && tokens_[end - 1].text == "-") --end;
  const auto single_letter = [&](std::size_t j) {
    const std::string& t = tokens_[j].text;
    return t.size() == 1 && ((t[0] >= 'A' && t[0] <= 'Z') || (t[0] >= 'a' && t[0] <= 'z'));
  };
  std::string title;
  for (std::size_t j = begin; j < end;) {
    if (!title.empty()) title.push_back(' ');
    // Runs of single letters are initials: S.W.A.T., L.A. Confidential.
    std::size_t run = j;
    while (run < end && single_letter(run)) ++run;
    if (run - j >= 2) {
      for (; j < run; ++j) title += tokens_[j].text + ".";
      continue;
    }
    title += tokens_[j].text;
    ++j;
  }
  return title;
}

void Parser::apply(const Item& item) {
  switch (item.kind) {
    case ItemKind::kEpisode: {
      const EpisodeMarker& m = item.marker;
      if (!out_.season && m.season) out_.season = m.season;
      if (!out_.episode && m.episode) {
        out_.episode = m.episode;
        out_.last_episode = m.last_episode;
      }
      if (out_.air_date.empty()) out_.air_date = m.air_date;
      complete_series_ = complete_series_ || m.complete_series;
      break;
    }
    case ItemKind::kVocable: {
      const Vocable& v = *item.vocable;
      if (out_.channels.empty()) out_.channels = item.channels;
      switch (v.field) {
        case VocableField::kResolution:
          if (out_.resolution.empty()) {
            out_.resolution = v.value.empty() ? lower(item.first) : std::string(v.value);
          }
          break;
        case VocableField::kSource:
          // A remux is the most specific thing a name says about its source (UHD.BluRay.REMUX).
          if (out_.source.empty() || v.value == "Remux") out_.source = v.value;
          break;
        case VocableField::kCodec:
          if (out_.codec.empty()) out_.codec = v.value;
          break;
        case VocableField::kAudio:
          if (v.value == "Atmos") {
            atmos_ = true;
          } else if (out_.audio.empty()) {
            out_.audio = v.value;
          }
          break;
        case VocableField::kTag:
          add_tag(v.value);
          break;
        case VocableField::kMarker:
          note_reason(v.value);
          break;
      }
      break;
    }
    case ItemKind::kChannels:
      if (out_.channels.empty()) out_.channels = item.channels;
      break;
    case ItemKind::kWord:
    case ItemKind::kDash:
    case ItemKind::kYear:
      break;
  }
}

void Parser::assemble() {
  // The technical part begins at the first strong item; the title is what precedes it, minus
  // the year: the last plausible year before it, never the first word (1917.2019 is the film
  // 1917 of 2019, Blade.Runner.2049.2017 the film Blade Runner 2049 of 2017). A year written
  // in brackets is taken over one that is not.
  const auto strong =
      std::find_if(items_.begin(), items_.end(), [](const Item& i) { return i.strong(); });
  const std::size_t technical = static_cast<std::size_t>(strong - items_.begin());
  std::optional<std::size_t> year_item;
  for (std::size_t k = 1; k < technical; ++k) {
    if (items_[k].kind != ItemKind::kYear) continue;
    if (!year_item || tokens_[items_[k].first].bracketed ||
        !tokens_[items_[*year_item].first].bracketed) {
      year_item = k;
    }
  }
  std::size_t title_end = year_item.value_or(technical);
  if (!year_item) {
    // Title.EXTENDED.1080p: flags just before the technical part are not title words, as long
    // as one title word stays.
    while (title_end > 1 && items_[title_end - 1].kind == ItemKind::kVocable &&
           items_[title_end - 1].vocable->field == VocableField::kTag) {
      --title_end;
    }
  }
  out_.title = title_of(title_end);
  if (year_item) {
    out_.year = items_[*year_item].year;
  } else {
    // Interstellar.OST.2014, Movie.1080p.2010: a year after the first tags still dates it.
    const auto later =
        std::find_if(items_.begin() + static_cast<std::ptrdiff_t>(title_end), items_.end(),
                     [](const Item& i) { return i.kind == ItemKind::kYear; });
    if (later != items_.end()) out_.year = later->year;
  }
  for (std::size_t k = title_end; k < items_.size(); ++k) apply(items_[k]);
  if (atmos_) out_.audio = out_.audio.empty() ? "Atmos" : out_.audio + " Atmos";

  out_.group = !leading_group_.empty() ? leading_group_
               : !dash_group_.empty()  ? dash_group_
                                       : trailing_group_;
  if (!out_.group.empty() && detail::is_game_group(out_.group)) note_reason("game");

  // Lossless or MP3 audio and nothing that shows a picture: a music release.
  const bool video = !out_.resolution.empty() || !out_.source.empty() || !out_.codec.empty();
  if (!video && (out_.audio == "FLAC" || out_.audio == "MP3")) note_reason("audio");

  const bool not_video =
      out_.reason == "software" || out_.reason == "game" || out_.reason == "audio";
  if (not_video) {
    out_.kind = ReleaseKind::kUnknown;
  } else if (out_.episode || !out_.air_date.empty()) {
    out_.kind = ReleaseKind::kEpisode;
  } else if (out_.season || complete_series_) {
    out_.kind = ReleaseKind::kSeason;
  } else if (!out_.title.empty()) {
    out_.kind = ReleaseKind::kMovie;
  } else {
    out_.kind = ReleaseKind::kUnknown;
  }
  if (out_.title.empty()) note_reason("no title");
  out_.enrichable = out_.reason.empty() && out_.kind != ReleaseKind::kUnknown;
}

}  // namespace

ReleaseName parse_release_name(std::string_view name) { return Parser(name).take(); }

}  // namespace cinejobs
