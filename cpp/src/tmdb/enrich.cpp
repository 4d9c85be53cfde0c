// Matching and enriching one film: search, rank, fall back, fetch details, build the record.
#include <simdjson.h>

#include <algorithm>
#include <cstdio>

#include "cinejobs/json_text.hpp"
#include "cinejobs/tmdb_pipeline.hpp"

namespace cinejobs {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

std::string_view string_field(object obj, std::string_view key) {
  std::string_view out;
  if (obj[key].get_string().get(out)) return {};
  return out;
}

std::optional<int> year_of(std::string_view date) {
  if (date.size() < 4) return std::nullopt;
  int year = 0;
  for (char c : date.substr(0, 4)) {
    if (c < '0' || c > '9') return std::nullopt;
    year = year * 10 + (c - '0');
  }
  return year;
}

// JsonObjectWriter appends "key": value pairs to a JSON object being written.
class JsonObjectWriter {
 public:
  explicit JsonObjectWriter(std::string& out) : out_(out) { out_ += '{'; }
  void close() { out_ += '}'; }

  void raw(std::string_view key, std::string_view json) {
    this->key(key);
    out_ += json;
  }
  void string(std::string_view key, std::string_view value) {
    this->key(key);
    append_json_string(out_, value);
  }
  void string_or_null(std::string_view key, std::string_view value) {
    value.empty() ? raw(key, "null") : string(key, value);
  }
  void integer(std::string_view key, std::optional<std::int64_t> value) {
    raw(key, value ? std::to_string(*value) : "null");
  }
  void number(std::string_view key, std::optional<double> value) {
    if (!value) return raw(key, "null");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", *value);
    raw(key, buf);
  }
  void strings(std::string_view key, const std::vector<std::string_view>& values) {
    this->key(key);
    out_ += '[';
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i) out_ += ", ";
      append_json_string(out_, values[i]);
    }
    out_ += ']';
  }

 private:
  void key(std::string_view key) {
    if (!first_) out_ += ", ";
    first_ = false;
    append_json_string(out_, key);
    out_ += ": ";
  }
  std::string& out_;
  bool first_ = true;
};

std::optional<std::int64_t> int_field(object obj, std::string_view key) {
  std::int64_t v = 0;
  if (obj[key].get_int64().get(v)) return std::nullopt;
  return v;
}

std::optional<double> double_field(object obj, std::string_view key) {
  double v = 0;
  if (obj[key].get_double().get(v)) return std::nullopt;
  return v;
}

// names collects the "name" of each object in obj[key] (genres, keywords, created_by), or of
// obj[key][inner] when inner is given (keywords.keywords, keywords.results for TV).
std::vector<std::string_view> names(object obj, std::string_view key, std::string_view inner = {}) {
  std::vector<std::string_view> out;
  array items;
  element holder;
  if (obj[key].get(holder)) return out;
  if (!inner.empty()) {
    if (holder[inner].get_array().get(items)) return out;
  } else if (holder.get_array().get(items)) {
    return out;
  }
  for (element item : items) {
    std::string_view name;
    if (!item["name"].get_string().get(name) && !name.empty()) out.push_back(name);
  }
  return out;
}

std::vector<std::string_view> directors(object details) {
  std::vector<std::string_view> out;
  array crew;
  if (details["credits"]["crew"].get_array().get(crew)) return out;
  for (element person : crew) {
    std::string_view job, name;
    if (!person["job"].get_string().get(job) && job == "Director" &&
        !person["name"].get_string().get(name) &&
        std::find(out.begin(), out.end(), name) == out.end()) {
      out.push_back(name);
    }
  }
  return out;
}

// cast lists the top-billed names, by TMDB's "order" (the list's own order when it has none).
std::vector<std::string_view> cast(object details, std::size_t limit) {
  std::vector<std::pair<std::int64_t, std::string_view>> billed;
  array people;
  if (details["credits"]["cast"].get_array().get(people)) return {};
  std::int64_t index = 0;
  for (element person : people) {
    std::string_view name;
    std::int64_t order = index++;
    if (person["name"].get_string().get(name) || name.empty()) continue;
    std::int64_t given = 0;
    if (!person["order"].get_int64().get(given)) order = given;
    billed.emplace_back(order, name);
  }
  std::stable_sort(billed.begin(), billed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string_view> out;
  for (std::size_t i = 0; i < billed.size() && i < limit; ++i) out.push_back(billed[i].second);
  return out;
}

std::string poster_url(object details, const TmdbImages& images) {
  const std::string_view path = string_field(details, "poster_path");
  if (path.empty() || images.secure_base_url.empty()) return {};
  // w500 is what TMDB's own site uses for posters; fall back to the largest size it lists.
  std::string size = "w500";
  if (!images.poster_sizes.empty() &&
      std::find(images.poster_sizes.begin(), images.poster_sizes.end(), size) ==
          images.poster_sizes.end()) {
    size = images.poster_sizes.back();
  }
  return images.secure_base_url + size + std::string(path);
}

std::string describe_query(const TitleQuery& q) {
  return q.year ? q.title + " (" + std::to_string(*q.year) + ")" : q.title;
}

std::vector<std::string> words_of(std::string_view title) {
  std::vector<std::string> words;
  const std::string normal = normalize_title(title);
  std::size_t at = 0;
  while (at < normal.size()) {
    const std::size_t end = std::min(normal.find(' ', at), normal.size());
    if (end > at) words.push_back(normal.substr(at, end - at));
    at = end + 1;
  }
  return words;
}

// contains_words: every word of the shorter title is a word of the longer one ("Star Wars" in
// "Star Wars: Episode IV - A New Hope", "Dr. Strangelove" in its full title).
bool contains_words(std::string_view a, std::string_view b) {
  std::vector<std::string> x = words_of(a), y = words_of(b);
  if (x.empty() || y.empty()) return false;
  if (x.size() > y.size()) std::swap(x, y);
  return std::all_of(x.begin(), x.end(), [&](const std::string& w) {
    return std::find(y.begin(), y.end(), w) != y.end();
  });
}

// year_confirmed accepts what title similarity alone cannot: a whole-title search whose first
// result in TMDB's own order was released in the year the user gave and whose title contains
// the user's words or is contained in them. TMDB matched it through an alternative or longer
// title ("Avengers Assemble" is The Avengers' UK title); the year confirms it.
std::optional<RankedCandidate> year_confirmed(const TitleQuery& wanted,
                                              const std::vector<TitleCandidate>& found,
                                              const std::vector<RankedCandidate>& ranked) {
  if (!wanted.year) return std::nullopt;
  for (const TitleCandidate& c : found) {
    if (c.year != wanted.year) continue;
    const bool related =
        contains_words(wanted.title, c.title) || contains_words(wanted.title, c.original_title) ||
        (!wanted.original_title.empty() && contains_words(wanted.original_title, c.original_title));
    if (!related) return std::nullopt;  // only TMDB's first same-year result is trusted
    for (const RankedCandidate& r : ranked) {
      if (r.candidate.id == c.id) return r;
    }
  }
  return std::nullopt;
}

// distinctive_words: the last searches, one word each, for titles TMDB's word search misses
// (a misspelt word: "The Dark Night"; a dropped apostrophe: "Pans Labyrinth"; a glued title:
// "FaceOff"). The two longest words of four letters or more, longest first, or a glued word's
// first four letters; candidates must then match on similarity.
std::vector<std::string> distinctive_words(std::string_view title) {
  std::vector<std::string> words = words_of(title);
  if (words.size() == 1) {
    // A title glued into one word by a release group ("WALLE", "FaceOff"): its first four
    // letters, which TMDB's search completes as a prefix ("wall" finds WALL·E).
    const std::string& word = words.front();
    const bool ascii = std::all_of(word.begin(), word.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii && word.size() >= 5) return {word.substr(0, 4)};
    return {};
  }
  std::stable_sort(words.begin(), words.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  std::vector<std::string> out;
  for (const std::string& w : words) {
    if (w.size() < 4 || std::find(out.begin(), out.end(), w) != out.end()) continue;
    out.push_back(w);
    if (out.size() == 2) break;
  }
  return out;
}

}  // namespace

std::vector<TitleCandidate> parse_search_results(std::string_view body) {
  simdjson::dom::parser parser;
  array results;
  if (parser.parse(body.data(), body.size())["results"].get_array().get(results)) {
    throw TmdbError("TMDB answered a search with no results list: " +
                    std::string(body.substr(0, 200)));
  }
  std::vector<TitleCandidate> out;
  for (element item : results) {
    object obj;
    if (item.get_object().get(obj)) continue;
    TitleCandidate c;
    const auto id = int_field(obj, "id");
    if (!id) continue;
    c.id = *id;
    // Movies have title/original_title/release_date, shows name/original_name/first_air_date.
    c.title = std::string(string_field(obj, "title"));
    if (c.title.empty()) c.title = std::string(string_field(obj, "name"));
    if (c.title.empty()) continue;
    c.original_title = std::string(string_field(obj, "original_title"));
    if (c.original_title.empty())
      c.original_title = std::string(string_field(obj, "original_name"));
    std::string_view date = string_field(obj, "release_date");
    if (date.empty()) date = string_field(obj, "first_air_date");
    c.year = year_of(date);
    c.popularity = double_field(obj, "popularity").value_or(0.0);
    out.push_back(std::move(c));
  }
  return out;
}

std::string build_record(std::string_view details, const FilmInput& film, const TmdbImages& images,
                         const EnrichOptions& options) {
  simdjson::dom::parser parser;
  object obj;
  if (parser.parse(details.data(), details.size()).get_object().get(obj)) {
    throw TmdbError("TMDB answered a details request with something that is not an object");
  }
  const bool tv = film.kind == "episode";
  std::string_view title = string_field(obj, tv ? "name" : "title");
  std::string_view original = string_field(obj, tv ? "original_name" : "original_title");
  std::string_view date = string_field(obj, tv ? "first_air_date" : "release_date");
  std::string_view imdb_id = string_field(obj, "imdb_id");
  if (imdb_id.empty()) {
    element ids;
    if (!obj["external_ids"].get(ids)) {
      std::string_view found;
      if (!ids["imdb_id"].get_string().get(found)) imdb_id = found;
    }
  }
  std::optional<std::int64_t> runtime = int_field(obj, "runtime");
  if (tv && !runtime) {
    std::int64_t first = 0;
    if (!obj["episode_run_time"].at(0).get_int64().get(first)) runtime = first;
  }
  std::string out;
  out.reserve(details.size() / 4 + 256);
  JsonObjectWriter w(out);
  w.integer("tmdb_id", int_field(obj, "id"));
  w.string("media_type", tv ? "tv" : "movie");
  w.string("title", title);
  w.string("original_title", original);
  const std::optional<int> year = year_of(date);
  w.integer("year", year ? std::optional<std::int64_t>(*year) : std::nullopt);
  w.string_or_null("release_date", date);
  if (tv) {
    w.integer("season", film.season ? std::optional<std::int64_t>(*film.season) : std::nullopt);
    w.integer("episode", film.episode ? std::optional<std::int64_t>(*film.episode) : std::nullopt);
  }
  w.string_or_null("overview", string_field(obj, "overview"));
  w.integer("runtime", runtime);
  w.strings("genres", names(obj, "genres"));
  w.strings("directors", tv ? names(obj, "created_by") : directors(obj));
  w.strings("cast", cast(obj, options.max_cast));
  w.strings("keywords", names(obj, "keywords", tv ? "results" : "keywords"));
  w.string_or_null("imdb_id", imdb_id);
  w.string_or_null("poster_url", poster_url(obj, images));
  w.number("popularity", double_field(obj, "popularity"));
  w.number("vote_average", double_field(obj, "vote_average"));
  w.integer("vote_count", int_field(obj, "vote_count"));
  w.close();
  return out;
}

FilmOutcome enrich_film(TmdbClient& client, const FilmInput& film, const EnrichOptions& options) {
  const bool tv = film.kind == "episode";
  const TitleQuery wanted{film.title, film.year, film.original_title};
  auto search = [&](const TitleQuery& q) {
    const std::string body =
        tv ? client.search_tv(TvSearch{q.title, q.year, {}, false, 1})
           : client.search_movie(MovieSearch{q.title, q.year, std::nullopt, {}, false, 1});
    return parse_search_results(body);
  };

  FilmOutcome outcome;
  outcome.status = FilmStatus::kNotFound;
  outcome.query = describe_query(wanted);
  std::optional<RankedCandidate> best;
  bool accepted = false;
  auto consider = [&](const TitleQuery& q, std::vector<TitleCandidate> found, bool whole_title) {
    if (found.empty()) return;
    // Rank against what the user gave (its year), and for a whole-title fallback also against
    // the title that search used ("The Office" for "The Office US"), keeping the better.
    std::vector<RankedCandidate> ranked = rank_candidates(wanted, found);
    if (whole_title && q.title != wanted.title) {
      std::vector<RankedCandidate> as_searched =
          rank_candidates(TitleQuery{q.title, wanted.year, wanted.original_title}, found);
      if (as_searched.front().confidence > ranked.front().confidence) ranked = as_searched;
    }
    if (!best || ranked.front().confidence > best->confidence) {
      best = ranked.front();
      outcome.query = describe_query(q);
    }
    if (best->confidence >= options.min_confidence) {
      accepted = true;
    } else if (whole_title) {
      if (auto confirmed = year_confirmed(wanted, found, ranked)) {
        best = *confirmed;
        outcome.query = describe_query(q);
        accepted = true;
      }
    }
  };

  consider(wanted, search(wanted), true);
  for (const TitleQuery& q : search_fallbacks(wanted)) {
    if (accepted) break;
    if (!q.title.empty()) consider(q, search(q), true);
  }
  for (const std::string& word : distinctive_words(wanted.title)) {
    if (accepted) break;
    const TitleQuery q{word, wanted.year, {}};
    consider(q, search(q), false);
  }
  if (best) outcome.confidence = best->confidence;
  if (!accepted) return outcome;  // nothing close enough

  const std::optional<std::string> details =
      tv ? client.tv(best->candidate.id) : client.movie(best->candidate.id);
  if (!details) return outcome;  // listed by search, gone since: not found
  outcome.status = FilmStatus::kEnriched;
  outcome.tmdb_id = best->candidate.id;
  outcome.record = build_record(*details, film, client.images(), options);
  return outcome;
}

}  // namespace cinejobs
