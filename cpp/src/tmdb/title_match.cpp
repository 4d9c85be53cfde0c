#include "cinejobs/title_match.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "release_vocabulary.hpp"

namespace cinejobs {

namespace {

// Base letters of Latin-1 Supplement and Latin Extended-A, by code point range (lower case).
struct Fold {
  char32_t first;
  char32_t last;
  std::string_view base;
};

constexpr Fold kFolds[] = {
    {0xC0, 0xC5, "a"},   {0xC6, 0xC6, "ae"},   {0xC7, 0xC7, "c"},   {0xC8, 0xCB, "e"},
    {0xCC, 0xCF, "i"},   {0xD0, 0xD0, "d"},    {0xD1, 0xD1, "n"},   {0xD2, 0xD6, "o"},
    {0xD8, 0xD8, "o"},   {0xD9, 0xDC, "u"},    {0xDD, 0xDD, "y"},   {0xDE, 0xDE, "th"},
    {0xDF, 0xDF, "ss"},  {0xE0, 0xE5, "a"},    {0xE6, 0xE6, "ae"},  {0xE7, 0xE7, "c"},
    {0xE8, 0xEB, "e"},   {0xEC, 0xEF, "i"},    {0xF0, 0xF0, "d"},   {0xF1, 0xF1, "n"},
    {0xF2, 0xF6, "o"},   {0xF8, 0xF8, "o"},    {0xF9, 0xFC, "u"},   {0xFD, 0xFD, "y"},
    {0xFE, 0xFE, "th"},  {0xFF, 0xFF, "y"},    {0x100, 0x105, "a"}, {0x106, 0x10D, "c"},
    {0x10E, 0x111, "d"}, {0x112, 0x11B, "e"},  {0x11C, 0x123, "g"}, {0x124, 0x127, "h"},
    {0x128, 0x131, "i"}, {0x132, 0x133, "ij"}, {0x134, 0x135, "j"}, {0x136, 0x138, "k"},
    {0x139, 0x142, "l"}, {0x143, 0x14B, "n"},  {0x14C, 0x151, "o"}, {0x152, 0x153, "oe"},
    {0x154, 0x159, "r"}, {0x15A, 0x161, "s"},  {0x162, 0x167, "t"}, {0x168, 0x173, "u"},
    {0x174, 0x175, "w"}, {0x176, 0x178, "y"},  {0x179, 0x17E, "z"}, {0x17F, 0x17F, "s"},
};

constexpr std::string_view kArticles[] = {"the", "a",   "an", "le", "la", "les", "l",   "der",
                                          "die", "das", "el", "il", "lo", "los", "las", "gli"};

constexpr std::pair<std::string_view, std::string_view> kRomanNumerals[] = {
    {"ii", "2"}, {"iii", "3"}, {"iv", "4"}, {"vi", "6"}, {"vii", "7"}, {"viii", "8"}, {"ix", "9"},
};

constexpr char32_t kInvalid = 0xFFFFFFFF;

// Decodes one UTF-8 sequence at text[pos], advancing pos; kInvalid for a malformed one.
char32_t next_code_point(std::string_view text, std::size_t& pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos++);
  if (lead < 0x80) return lead;
  std::size_t extra = 0;
  char32_t cp = 0;
  if ((lead & 0xE0) == 0xC0) {
    extra = 1;
    cp = lead & 0x1Fu;
  } else if ((lead & 0xF0) == 0xE0) {
    extra = 2;
    cp = lead & 0x0Fu;
  } else if ((lead & 0xF8) == 0xF0) {
    extra = 3;
    cp = lead & 0x07u;
  } else {
    return kInvalid;
  }
  for (std::size_t i = 0; i < extra; ++i) {
    if (pos >= text.size() || (byte(pos) & 0xC0) != 0x80) return kInvalid;
    cp = (cp << 6) | (byte(pos++) & 0x3Fu);
  }
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_apostrophe(char32_t cp) { return cp == U'\'' || cp == 0x2019 || cp == 0x2018; }

bool is_ascii_alnum(char32_t cp) {
  return (cp >= U'a' && cp <= U'z') || (cp >= U'A' && cp <= U'Z') || (cp >= U'0' && cp <= U'9');
}

// Punctuation and symbols of ASCII, Latin-1 and General Punctuation become word breaks.
bool is_break(char32_t cp) {
  if (cp < 0x80) return !is_ascii_alnum(cp);
  return cp == kInvalid || (cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 ||
         (cp >= 0x2000 && cp <= 0x206F);
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto space = text.find(' ', pos);
    const auto end = space == std::string_view::npos ? text.size() : space;
    if (end > pos) words.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return words;
}

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out.push_back(' ');
    out += w;
  }
  return out;
}

bool is_article(std::string_view lower_word) {
  return std::find(std::begin(kArticles), std::end(kArticles), lower_word) != std::end(kArticles);
}

std::vector<char32_t> code_points(std::string_view text) {
  std::vector<char32_t> out;
  for (std::size_t pos = 0; pos < text.size();) out.push_back(next_code_point(text, pos));
  return out;
}

double levenshtein_ratio(std::string_view a, std::string_view b) {
  const std::vector<char32_t> x = code_points(a);
  const std::vector<char32_t> y = code_points(b);
  if (x.empty() || y.empty()) return 0.0;
  std::vector<std::size_t> row(y.size() + 1);
  for (std::size_t j = 0; j <= y.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= x.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= y.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (x[i - 1] == y[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  const double longest = static_cast<double>(std::max(x.size(), y.size()));
  return 1.0 - static_cast<double>(row[y.size()]) / longest;
}

std::string sorted_words(std::string_view normalized) {
  std::vector<std::string> words = split_words(normalized);
  std::sort(words.begin(), words.end());
  return join_words(words);
}

// strip_punctuation keeps a title readable (case and diacritics stay) but drops what a search
// engine may trip on: "Mission: Impossible - Fallout" -> "Mission Impossible Fallout".
std::string strip_punctuation(std::string_view title) {
  std::string out;
  bool pending_space = false;
  for (std::size_t pos = 0; pos < title.size();) {
    const char32_t cp = next_code_point(title, pos);
    if (is_apostrophe(cp)) continue;
    if (cp == U'&') {
      out += out.empty() ? "and" : " and";
      pending_space = true;
      continue;
    }
    if (is_break(cp)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    append_utf8(out, cp);
  }
  return out;
}

std::string without_article(std::string_view title) {
  std::vector<std::string> words = split_words(title);
  if (words.size() < 2) return std::string(title);
  if (!is_article(detail::lower_ascii(words.front()))) return std::string(title);
  words.erase(words.begin());
  return join_words(words);
}

// Release names tell remakes of shows apart by country (The.Office.US, Shameless.UK); TMDB
// titles do not carry it.
std::string without_country(std::string_view title) {
  constexpr std::string_view kCountries[] = {"US", "UK", "AU", "NZ", "CA", "IE"};
  std::vector<std::string> words = split_words(title);
  if (words.size() < 2 || std::find(std::begin(kCountries), std::end(kCountries), words.back()) ==
                              std::end(kCountries)) {
    return std::string(title);
  }
  words.pop_back();
  return join_words(words);
}

double year_score(std::optional<int> wanted, std::optional<int> found) {
  if (!wanted || !found) return 0.5;
  const int gap = std::abs(*wanted - *found);
  return gap == 0 ? 1.0 : gap == 1 ? 0.7 : 0.0;
}

}  // namespace

std::string normalize_title(std::string_view title) {
  std::string folded;
  folded.reserve(title.size());
  for (std::size_t pos = 0; pos < title.size();) {
    const char32_t cp = next_code_point(title, pos);
    if (is_apostrophe(cp)) {
      // French elision: l'auberge and d'amelie are two words; ocean's is one.
      const bool elision =
          (folded == "l" || folded == "d" || folded.ends_with(" l") || folded.ends_with(" d"));
      if (elision) folded.push_back(' ');
      continue;
    }
    if (cp == U'&') {
      folded += " and ";
    } else if (cp >= U'A' && cp <= U'Z') {
      folded.push_back(static_cast<char>(cp - U'A' + U'a'));
    } else if (is_break(cp)) {
      folded.push_back(' ');
    } else if (cp < 0x80) {
      folded.push_back(static_cast<char>(cp));
    } else {
      const auto fold = std::find_if(std::begin(kFolds), std::end(kFolds),
                                     [cp](const Fold& f) { return cp >= f.first && cp <= f.last; });
      if (fold != std::end(kFolds)) {
        folded += fold->base;
      } else {
        append_utf8(folded, cp);
      }
    }
  }
  std::vector<std::string> words = split_words(folded);
  for (auto& word : words) {
    for (const auto& [roman, digit] : kRomanNumerals) {
      if (word == roman) word = digit;
    }
  }
  if (words.size() >= 2 && is_article(words.front())) words.erase(words.begin());
  return join_words(words);
}

double title_similarity(std::string_view a, std::string_view b) {
  const std::string x = normalize_title(a);
  const std::string y = normalize_title(b);
  if (x.empty() || y.empty()) return 0.0;
  if (x == y) return 1.0;
  return std::max(levenshtein_ratio(x, y), levenshtein_ratio(sorted_words(x), sorted_words(y)));
}

std::vector<RankedCandidate> rank_candidates(const TitleQuery& query,
                                             std::vector<TitleCandidate> candidates) {
  double most_popular = 0.0;
  for (const auto& c : candidates) most_popular = std::max(most_popular, c.popularity);
  std::vector<RankedCandidate> ranked;
  ranked.reserve(candidates.size());
  for (auto& c : candidates) {
    RankedCandidate r;
    for (std::string_view wanted :
         {std::string_view(query.title), std::string_view(query.original_title)}) {
      if (wanted.empty()) continue;
      r.similarity = std::max(r.similarity, title_similarity(wanted, c.title));
      if (!c.original_title.empty()) {
        r.similarity = std::max(r.similarity, title_similarity(wanted, c.original_title));
      }
    }
    r.year_score = year_score(query.year, c.year);
    const double popularity = most_popular > 0.0 && c.popularity > 0.0
                                  ? std::log1p(c.popularity) / std::log1p(most_popular)
                                  : 0.0;
    r.confidence = kSimilarityWeight * r.similarity + kYearWeight * r.year_score +
                   kPopularityWeight * popularity;
    r.candidate = std::move(c);
    ranked.push_back(std::move(r));
  }
  std::sort(ranked.begin(), ranked.end(), [](const RankedCandidate& x, const RankedCandidate& y) {
    if (x.confidence != y.confidence) return x.confidence > y.confidence;
    if (x.candidate.popularity != y.candidate.popularity) {
      return x.candidate.popularity > y.candidate.popularity;
    }
    return x.candidate.id < y.candidate.id;
  });
  return ranked;
}

std::vector<TitleQuery> search_fallbacks(const TitleQuery& query) {
  std::vector<TitleQuery> out;
  const auto add = [&](std::string title, std::optional<int> year) {
    if (title.empty()) return;
    const auto same = [&](const TitleQuery& q) { return q.title == title && q.year == year; };
    if (same(query) || std::any_of(out.begin(), out.end(), same)) return;
    out.push_back(TitleQuery{std::move(title), year, {}});
  };
  // With the year first (narrower), then without it.
  const auto add_both = [&](const std::string& title) {
    if (query.year) add(title, query.year);
    add(title, std::nullopt);
  };
  add(query.title, std::nullopt);
  if (!query.original_title.empty()) add_both(query.original_title);
  const std::string stripped = strip_punctuation(query.title);
  add_both(stripped);
  add_both(without_article(stripped));
  add_both(without_country(stripped));
  return out;
}

}  // namespace cinejobs
