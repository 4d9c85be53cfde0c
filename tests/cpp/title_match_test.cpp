// Unit tests of title matching (title_match.hpp): normalisation, similarity, ranking TMDB-shaped
// candidate lists, and the fallback searches.
#include "cinejobs/title_match.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace cinejobs;

namespace {

TEST(NormalizeTitleTest, FoldsCaseDiacriticsAndPunctuation) {
  EXPECT_EQ(normalize_title("Amélie"), "amelie");
  EXPECT_EQ(normalize_title("ŁÓDŹ Straße Œdipe Ærø"), "lodz strasse oedipe aero");
  EXPECT_EQ(normalize_title("Mission: Impossible - Fallout"), "mission impossible fallout");
  EXPECT_EQ(normalize_title("  Se7en!!  "), "se7en");
  EXPECT_EQ(normalize_title("Fast & Furious"), "fast and furious");
  EXPECT_EQ(normalize_title("Ocean's Eleven"), "oceans eleven");
  EXPECT_EQ(normalize_title("Ocean’s Eleven"), "oceans eleven");  // typographic apostrophe
}

TEST(NormalizeTitleTest, DropsOneLeadingArticleInSeveralLanguages) {
  EXPECT_EQ(normalize_title("The Thing"), "thing");
  EXPECT_EQ(normalize_title("A Quiet Place"), "quiet place");
  EXPECT_EQ(normalize_title("Le Samouraï"), "samourai");
  EXPECT_EQ(normalize_title("Das Boot"), "boot");
  EXPECT_EQ(normalize_title("L'Auberge espagnole"), "auberge espagnole");
  EXPECT_EQ(normalize_title("Le Fabuleux Destin d'Amélie Poulain"),
            "fabuleux destin d amelie poulain");
  // Only the first word, and never the whole title.
  EXPECT_EQ(normalize_title("The The"), "the");
  EXPECT_EQ(normalize_title("A"), "a");
  EXPECT_EQ(normalize_title("Into the Wild"), "into the wild");
}

TEST(NormalizeTitleTest, RomanNumeralsBecomeDigits) {
  EXPECT_EQ(normalize_title("Rocky II"), "rocky 2");
  EXPECT_EQ(normalize_title("Star Wars: Episode IV - A New Hope"),
            "star wars episode 4 a new hope");
  // I, V and X stay words: "V for Vendetta", "Malcolm X".
  EXPECT_EQ(normalize_title("V for Vendetta"), "v for vendetta");
}

TEST(NormalizeTitleTest, OtherScriptsPassThroughAndBadBytesBreakWords) {
  EXPECT_EQ(normalize_title("千と千尋の神隠し"), "千と千尋の神隠し");
  EXPECT_EQ(normalize_title("Сталкер"), "Сталкер");
  EXPECT_EQ(normalize_title("Bad\xFF"
                            "Byte\xC3"),
            "bad byte");
  EXPECT_EQ(normalize_title(""), "");
}

TEST(TitleSimilarityTest, IsOneForEqualTitlesAndZeroForEmptyOnes) {
  EXPECT_DOUBLE_EQ(title_similarity("The Matrix", "the matrix"), 1.0);
  EXPECT_DOUBLE_EQ(title_similarity("Amelie", "Amélie"), 1.0);
  EXPECT_DOUBLE_EQ(title_similarity("Lord of the Rings: The Return of the King",
                                    "The Lord of the Rings The Return of the King"),
                   1.0);
  EXPECT_DOUBLE_EQ(title_similarity("", "Heat"), 0.0);
  EXPECT_DOUBLE_EQ(title_similarity("!!!", "Heat"), 0.0);
}

TEST(TitleSimilarityTest, ToleratesSpellingButNotExtraWords) {
  EXPECT_GE(title_similarity("Spiderman", "Spider-Man"), 0.85);
  EXPECT_GE(title_similarity("Pans Labyrinth", "Pan's Labyrinth"), 0.99);
  EXPECT_GE(title_similarity("Batman v Superman", "Superman v Batman"), 0.99);
  EXPECT_LT(title_similarity("Dune", "Dune: Part Two"), 0.5);
  EXPECT_LT(title_similarity("The Thing", "The Thing from Another World"), 0.5);
  EXPECT_LT(title_similarity("Heat", "Hear"), 0.8);
  EXPECT_DOUBLE_EQ(title_similarity("Dune", "Dune: Part Two"),
                   title_similarity("Dune: Part Two", "Dune"));
}

std::vector<std::int64_t> ids(const std::vector<RankedCandidate>& ranked) {
  std::vector<std::int64_t> out;
  for (const auto& r : ranked) out.push_back(r.candidate.id);
  return out;
}

// TMDB's search/movie answer for "The Thing", trimmed to the fields ranking reads.
std::vector<TitleCandidate> the_thing() {
  return {{60935, "The Thing", "The Thing", 2011, 28.4},
          {1091, "The Thing", "The Thing", 1982, 45.9},
          {10785, "The Thing from Another World", "The Thing from Another World", 1951, 9.7},
          {463112, "The Thing About Harry", "The Thing About Harry", 2020, 6.1}};
}

TEST(RankCandidatesTest, TheYearPicksBetweenRemakes) {
  const auto ranked = rank_candidates({"The Thing", 1982, {}}, the_thing());
  ASSERT_EQ(ranked.size(), 4u);
  EXPECT_EQ(ranked[0].candidate.id, 1091);
  EXPECT_EQ(ranked[1].candidate.id, 60935);
  EXPECT_GE(ranked[0].confidence, 0.95);
  EXPECT_DOUBLE_EQ(ranked[0].year_score, 1.0);
  EXPECT_LE(ranked[1].confidence, 0.75);
  const auto remake = rank_candidates({"The Thing", 2011, {}}, the_thing());
  EXPECT_EQ(remake[0].candidate.id, 60935);
}

TEST(RankCandidatesTest, WithoutAYearPopularityBreaksTheTie) {
  const std::vector<TitleCandidate> dune = {
      {693134, "Dune: Part Two", "Dune: Part Two", 2024, 410.2},
      {841, "Dune", "Dune", 1984, 31.5},
      {438631, "Dune", "Dune", 2021, 212.7}};
  const auto ranked = rank_candidates({"Dune", std::nullopt, {}}, dune);
  // Part Two is the most popular, but its title is not the one asked for.
  EXPECT_EQ(ids(ranked), (std::vector<std::int64_t>{438631, 841, 693134}));
  EXPECT_GE(ranked[0].confidence, 0.825);
  EXPECT_LE(ranked[0].confidence, 0.875);
  EXPECT_EQ(rank_candidates({"Dune", 1984, {}}, dune)[0].candidate.id, 841);
}

TEST(RankCandidatesTest, AnArticleDoesNotMakeADifferentFilmWin) {
  const std::vector<TitleCandidate> heat = {{949, "Heat", "Heat", 1995, 48.0},
                                            {205, "Heat", "Heat", 1986, 7.2},
                                            {136795, "The Heat", "The Heat", 2013, 22.4}};
  EXPECT_EQ(rank_candidates({"Heat", 1995, {}}, heat)[0].candidate.id, 949);
  EXPECT_EQ(rank_candidates({"The Heat", 2013, {}}, heat)[0].candidate.id, 136795);
  EXPECT_EQ(rank_candidates({"Heat", 1986, {}}, heat)[0].candidate.id, 205);
}

TEST(RankCandidatesTest, OneYearOffBeatsFurtherOff) {
  // Festival premieres and releases straddle New Year: a year off is likely the same film.
  const std::vector<TitleCandidate> c = {{1, "Crash", "Crash", 1996, 10.0},
                                         {2, "Crash", "Crash", 2005, 10.0}};
  const auto ranked = rank_candidates({"Crash", 2004, {}}, c);
  EXPECT_EQ(ranked[0].candidate.id, 2);
  EXPECT_DOUBLE_EQ(ranked[0].year_score, 0.7);
  EXPECT_DOUBLE_EQ(ranked[1].year_score, 0.0);
}

TEST(RankCandidatesTest, TheOriginalTitleMatchesToo) {
  const std::vector<TitleCandidate> c = {
      {194, "Amélie", "Le Fabuleux Destin d'Amélie Poulain", 2001, 30.0},
      {99, "Poulain", "Poulain", 2001, 2.0}};
  const auto ranked = rank_candidates({"Le Fabuleux Destin d'Amelie Poulain", 2001, {}}, c);
  EXPECT_EQ(ranked[0].candidate.id, 194);
  EXPECT_DOUBLE_EQ(ranked[0].similarity, 1.0);
  // And the query's own original title, when the input knows it.
  const auto by_original = rank_candidates({"Amelie from Montmartre", 2001, "Amélie"}, c);
  EXPECT_EQ(by_original[0].candidate.id, 194);
}

TEST(RankCandidatesTest, UnknownYearsNeitherConfirmNorRefute) {
  const auto ranked = rank_candidates({"Heat", 1995, {}}, {{1, "Heat", "", std::nullopt, 0.0}});
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_DOUBLE_EQ(ranked[0].year_score, 0.5);
  EXPECT_DOUBLE_EQ(ranked[0].confidence, kSimilarityWeight + kYearWeight * 0.5);
}

TEST(RankCandidatesTest, EqualScoresAreOrderedByPopularityThenId) {
  const std::vector<TitleCandidate> c = {
      {30, "Twins", "", 1988, 5.0}, {10, "Twins", "", 1988, 5.0}, {20, "Twins", "", 1988, 5.0}};
  EXPECT_EQ(ids(rank_candidates({"Twins", 1988, {}}, c)), (std::vector<std::int64_t>{10, 20, 30}));
  EXPECT_TRUE(rank_candidates({"Twins", 1988, {}}, {}).empty());
}

TEST(SearchFallbacksTest, ListsTheAlternativesInOrderWithoutRepeats) {
  const auto f = search_fallbacks({"The Lord of the Rings: The Return of the King", 2003, {}});
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0].title, "The Lord of the Rings: The Return of the King");
  EXPECT_FALSE(f[0].year);
  EXPECT_EQ(f[1].title, "The Lord of the Rings The Return of the King");
  EXPECT_EQ(f[1].year, 2003);
  EXPECT_EQ(f[2].title, "The Lord of the Rings The Return of the King");
  EXPECT_FALSE(f[2].year);
  EXPECT_EQ(f[3].title, "Lord of the Rings The Return of the King");
  EXPECT_EQ(f[3].year, 2003);
  EXPECT_EQ(f[4].title, "Lord of the Rings The Return of the King");
  EXPECT_FALSE(f[4].year);
}

TEST(SearchFallbacksTest, TriesTheOriginalTitleBeforeRewritingTheTitle) {
  const auto f = search_fallbacks({"Mission: Impossible - Fallout", 2018, "Mission: Impossible 6"});
  ASSERT_GE(f.size(), 3u);
  EXPECT_EQ(f[0].title, "Mission: Impossible - Fallout");
  EXPECT_FALSE(f[0].year);
  EXPECT_EQ(f[1].title, "Mission: Impossible 6");
  EXPECT_EQ(f[1].year, 2018);
  EXPECT_EQ(f[2].title, "Mission: Impossible 6");
  EXPECT_FALSE(f[2].year);
  EXPECT_EQ(f[3].title, "Mission Impossible Fallout");
}

TEST(SearchFallbacksTest, AddsNothingThatWouldRepeatTheQuery) {
  EXPECT_TRUE(search_fallbacks({"Heat", std::nullopt, {}}).empty());
  const auto f = search_fallbacks({"Heat", 1995, {}});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].title, "Heat");
  EXPECT_FALSE(f[0].year);
  EXPECT_TRUE(search_fallbacks({"", 1995, {}}).empty());
  const auto thing = search_fallbacks({"The Thing", std::nullopt, {}});
  ASSERT_EQ(thing.size(), 1u);
  EXPECT_EQ(thing[0].title, "Thing");
  EXPECT_EQ(search_fallbacks({"Fast & Furious", std::nullopt, {}})[0].title, "Fast and Furious");
}

TEST(SearchFallbacksTest, DropsTheCountryReleaseNamesAddToShows) {
  const auto f = search_fallbacks({"The Office US", std::nullopt, {}});
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].title, "Office US");
  EXPECT_EQ(f[1].title, "The Office");
  // Only as the last word, in capitals, and never the whole title.
  EXPECT_TRUE(search_fallbacks({"US", std::nullopt, {}}).empty());
  EXPECT_TRUE(search_fallbacks({"Us", std::nullopt, {}}).empty());
}

}  // namespace
