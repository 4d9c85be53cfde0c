// Title matching: which of TMDB's search results is the film a user meant, and how sure we
// are. Pure functions over strings, no HTTP: the TMDB client calls them with the titles it got.
//
// Titles are compared after normalize_title (case, Latin diacritics, punctuation, '&', leading
// articles, roman numerals folded away). title_similarity is a normalised Levenshtein ratio
// over code points, taken as the better of the titles as written and with their words sorted
// (so "Batman v Superman" meets "Superman v Batman" but "Dune" stays far from "Dune: Part
// Two"); a token-set ratio was rejected because it scores every title containing the query's
// words as a perfect match. Cost: O(length^2) per pair, and titles are short.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs {

// TitleQuery: what we search for. original_title is set when the input knows it (a CSV column).
struct TitleQuery {
  std::string title;
  std::optional<int> year;
  std::string original_title;
};

// TitleCandidate: one search result, as TMDB's movie or TV search returns it (`title`/`name`,
// `original_title`/`original_name`, the year of `release_date`/`first_air_date`, `popularity`).
struct TitleCandidate {
  std::int64_t id = 0;
  std::string title;
  std::string original_title;
  std::optional<int> year;
  double popularity = 0.0;
};

// RankedCandidate: a candidate with its scores, each in 0..1.
//   similarity  the best title_similarity between the query's titles and the candidate's
//   year_score  1 same year, 0.7 one year apart (festival vs release dates), 0 further apart,
//               0.5 when either year is unknown (nothing confirmed, nothing refuted)
//   confidence  kSimilarityWeight * similarity + kYearWeight * year_score
//               + kPopularityWeight * log(1 + popularity) / log(1 + highest popularity)
// Popularity only separates near-equals (two films called "Heat" without a year); a title and
// year that both match give at least 0.95, a perfect title with no year to confirm it 0.825 to
// 0.875, a perfect title in a different year at most 0.75.
struct RankedCandidate {
  TitleCandidate candidate;
  double confidence = 0.0;
  double similarity = 0.0;
  double year_score = 0.0;
};

inline constexpr double kSimilarityWeight = 0.70;
inline constexpr double kYearWeight = 0.25;
inline constexpr double kPopularityWeight = 0.05;

// normalize_title folds a title for comparison: lower case; Latin-1 and Latin Extended-A
// letters to their base letters (é -> e, ß -> ss, Œ -> oe, ł -> l); '&' to "and"; apostrophes
// dropped (Ocean's -> oceans) except French elisions (L'Auberge -> auberge); other punctuation
// to spaces; roman numerals II..IX to digits; one leading article (the a an le la les l der
// die das el il lo los las gli) dropped when words remain. Other scripts pass through as they
// are. Invalid UTF-8 bytes become spaces.
std::string normalize_title(std::string_view title);

// title_similarity compares two titles (normalised here) in 0..1; 0 when either is empty.
double title_similarity(std::string_view a, std::string_view b);

// rank_candidates scores every candidate and sorts them best first (ties: more popular first,
// then lower id, so the order is deterministic).
std::vector<RankedCandidate> rank_candidates(const TitleQuery& query,
                                             std::vector<TitleCandidate> candidates);

// search_fallbacks lists, in the order to try them, the searches to make when the query's own
// search found nothing: without the year; the original title (with, then without the year);
// the title with punctuation stripped (Mission: Impossible - Fallout -> Mission Impossible
// Fallout); without its leading article; without a trailing country code that release names
// add to shows (The Office US -> The Office). Each is new: none repeats the query or an
// earlier one.
std::vector<TitleQuery> search_fallbacks(const TitleQuery& query);

}  // namespace cinejobs
