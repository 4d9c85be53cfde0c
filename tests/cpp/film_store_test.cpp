// The film stores (SQLite, PostgreSQL) under one suite, and the pure parts of enrichment:
// reading TMDB search results and building records from details bodies shaped as TMDB's.
#include "cinejobs/film_store.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "broker_factories.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/tmdb_pipeline.hpp"

namespace cinejobs {
namespace {

using test::in_ci;
using test::keep_location;
using test::PostgresServer;
using test::PostgresStore;
using test::SqliteStore;

struct FilmStoreCase {
  std::string name;
  std::function<std::string(std::vector<std::shared_ptr<void>>&)> make_url;  // keeps it alive
};
void PrintTo(const FilmStoreCase& c, std::ostream* os) { *os << c.name; }

std::vector<FilmStoreCase> film_store_cases() {
  std::vector<FilmStoreCase> cases{{"sqlite", keep_location<SqliteStore>}};
  if (PostgresServer::available() || in_ci()) {
    cases.push_back({"postgres", keep_location<PostgresStore>});
  }
  return cases;
}

FilmInput movie(std::string title, std::optional<int> year) {
  FilmInput f;
  f.input = title + "," + (year ? std::to_string(*year) : "");
  f.title = std::move(title);
  f.year = year;
  return f;
}

FilmOutcome enriched(std::int64_t id) {
  FilmOutcome o;
  o.status = FilmStatus::kEnriched;
  o.tmdb_id = id;
  o.confidence = 0.97;
  o.query = "q";
  o.record = R"({"tmdb_id": )" + std::to_string(id) + "}";
  return o;
}

class FilmStores : public ::testing::TestWithParam<FilmStoreCase> {
 protected:
  void SetUp() override {
    url_ = GetParam().make_url(keep_);
    store_ = open_film_store(url_);
  }
  std::vector<std::shared_ptr<void>> keep_;
  std::string url_;
  std::shared_ptr<FilmStore> store_;
};

INSTANTIATE_TEST_SUITE_P(AllStores, FilmStores, ::testing::ValuesIn(film_store_cases()),
                         [](const auto& info) { return info.param.name; });

TEST_P(FilmStores, IngestStoresEveryFilmPendingAndSearchableAtOnce) {
  const std::string id = store_->create_session(
      "list.csv", {movie("Amélie", 2001), movie("The Matrix", 1999), movie("Heat", std::nullopt)});
  const auto session = store_->session(id);
  ASSERT_TRUE(session);
  EXPECT_EQ(session->total, 3);
  EXPECT_EQ(session->pending, 3);
  EXPECT_FALSE(session->finished());
  const auto found = store_->search("amelie", 10);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].input.title, "Amélie");
  EXPECT_EQ(found[0].status, FilmStatus::kPending);
  EXPECT_EQ(store_->search("matrix", 10).at(0).input.year, 1999);
  EXPECT_FALSE(store_->film(id, 2)->input.year) << "a film without a year keeps none";
  EXPECT_TRUE(store_->search("100%_", 10).empty()) << "LIKE wildcards are matched literally";
}

TEST_P(FilmStores, AFinalStateIsWrittenOnceAndTheLastFinishesTheSession) {
  const std::string id = store_->create_session("x", {movie("A", 2000), movie("B", 2001)});
  auto first = store_->finish(id, 0, enriched(11));
  EXPECT_TRUE(first.changed);
  EXPECT_FALSE(first.session_finished);
  FilmOutcome failed;
  failed.error = "boom";
  auto again = store_->finish(id, 0, failed);
  EXPECT_FALSE(again.changed) << "a finished film is never overwritten";
  EXPECT_EQ(store_->film(id, 0)->status, FilmStatus::kEnriched);
  EXPECT_EQ(*store_->film(id, 0)->outcome.tmdb_id, 11);
  FilmOutcome missing;
  missing.status = FilmStatus::kNotFound;
  missing.query = "B (2001)";
  auto last = store_->finish(id, 1, missing);
  EXPECT_TRUE(last.changed);
  EXPECT_TRUE(last.session_finished);
  const auto session = store_->session(id);
  EXPECT_TRUE(session->finished());
  EXPECT_EQ(session->enriched, 1);
  EXPECT_EQ(session->not_found, 1);
  EXPECT_EQ(session->pending, 0);
  EXPECT_THROW(store_->finish(id, 7, missing), ConfigError);
  FilmOutcome pending;
  pending.status = FilmStatus::kPending;
  EXPECT_THROW(store_->finish(id, 1, pending), ConfigError);
}

TEST_P(FilmStores, ConcurrentFinishesFinishTheSessionExactlyOnce) {
  std::vector<FilmInput> films;
  for (int i = 0; i < 64; ++i) films.push_back(movie("Film " + std::to_string(i), 2000));
  const std::string id = store_->create_session("many", films);
  std::atomic<int> session_finishes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto own = open_film_store(url_);
      for (int i = t; i < 64; i += 4) {
        if (own->finish(id, i, enriched(i + 1)).session_finished) ++session_finishes;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(session_finishes.load(), 1);
  EXPECT_EQ(store_->session(id)->enriched, 64);
}

TEST_P(FilmStores, SyncTakesEnrichedFilmsOnce) {
  const std::string id =
      store_->create_session("x", {movie("A", 2000), movie("B", 2001), movie("C", 2002)});
  store_->finish(id, 0, enriched(1));
  store_->finish(id, 2, enriched(3));
  FilmOutcome failed;
  failed.error = "TMDB answered 503";
  store_->finish(id, 1, failed);
  const auto todo = store_->unsynced(id, 10);
  ASSERT_EQ(todo.size(), 2u);
  EXPECT_EQ(todo[0].outcome.record, R"({"tmdb_id": 1})");
  store_->mark_synced(id, {0});
  EXPECT_EQ(store_->unsynced(id, 10).size(), 1u);
  EXPECT_EQ(store_->session(id)->synced, 1);
  EXPECT_EQ(store_->films(id, FilmStatus::kFailed).at(0).outcome.error, "TMDB answered 503");
}

TEST_P(FilmStores, EmptyListsAreRefused) {
  EXPECT_THROW(store_->create_session("empty", {}), ConfigError);
}

TEST(FilmStoreUrls, RedisKeepsNoFilmsAndSaysWhatToDo) {
  try {
    open_film_store("redis://127.0.0.1:6379/0");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("SQLite or PostgreSQL"), std::string::npos) << e.what();
  }
}

// ---- enrichment's pure parts ----

TEST(SearchResults, MoviesAndShowsBecomeCandidatesAndBrokenResultsAreSkipped) {
  const auto movies = parse_search_results(R"({"page": 1, "results": [
      {"id": 27205, "title": "Inception", "original_title": "Inception",
       "release_date": "2010-07-15", "popularity": 83.9},
      {"id": 1, "title": "No date", "release_date": "", "popularity": null},
      {"title": "no id"},
      {"id": 1399, "name": "Game of Thrones", "original_name": "Game of Thrones",
       "first_air_date": "2011-04-17", "popularity": 369.6}],
      "total_pages": 1, "total_results": 4})");
  ASSERT_EQ(movies.size(), 3u);
  EXPECT_EQ(movies[0].id, 27205);
  EXPECT_EQ(movies[0].year, 2010);
  EXPECT_DOUBLE_EQ(movies[0].popularity, 83.9);
  EXPECT_FALSE(movies[1].year);
  EXPECT_EQ(movies[1].popularity, 0.0);
  EXPECT_EQ(movies[2].title, "Game of Thrones");
  EXPECT_EQ(movies[2].year, 2011);
  EXPECT_THROW(parse_search_results(R"({"status_code": 34})"), TmdbError);
}

TEST(Records, AMovieRecordTakesDirectorsCastByBillingAndThePosterUrl) {
  TmdbImages images{"https://image.tmdb.org/t/p/", {"w92", "w500", "original"}};
  const std::string record = build_record(R"({"id": 27205, "title": "Inception",
      "original_title": "Inception", "release_date": "2010-07-15", "runtime": 148,
      "overview": "Cobb steals secrets.", "poster_path": "/p.jpg", "imdb_id": "tt1375666",
      "genres": [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"}],
      "credits": {"cast": [{"name": "Ken Watanabe", "order": 2},
                           {"name": "Leonardo DiCaprio", "order": 0},
                           {"name": "Joseph Gordon-Levitt", "order": 1}],
                  "crew": [{"name": "Christopher Nolan", "job": "Director"},
                           {"name": "Christopher Nolan", "job": "Director"},
                           {"name": "Hans Zimmer", "job": "Original Music Composer"}]},
      "keywords": {"keywords": [{"id": 1, "name": "dream"}]},
      "popularity": 83.9, "vote_average": 8.4, "vote_count": 36000})",
                                          movie("Inception", 2010), images, EnrichOptions{});
  EXPECT_NO_THROW(json_kind(record, "record"));
  for (const char* part :
       {R"("tmdb_id": 27205)", R"("year": 2010)", R"("runtime": 148)",
        R"("genres": ["Action", "Science Fiction"])", R"("directors": ["Christopher Nolan"])",
        R"("cast": ["Leonardo DiCaprio", "Joseph Gordon-Levitt", "Ken Watanabe"])",
        R"("keywords": ["dream"])", R"("imdb_id": "tt1375666")",
        R"("poster_url": "https://image.tmdb.org/t/p/w500/p.jpg")"}) {
    EXPECT_NE(record.find(part), std::string::npos) << part << " in " << record;
  }
}

TEST(Records, MissingAndNullFieldsBecomeNullOrEmpty) {
  TmdbImages images{"https://image.tmdb.org/t/p/", {"w500"}};
  const std::string record =
      build_record(R"({"id": 5, "title": "Obscure", "release_date": "", "poster_path": null,
                       "runtime": null, "credits": {"cast": [], "crew": []}})",
                   movie("Obscure", std::nullopt), images, EnrichOptions{});
  EXPECT_NO_THROW(json_kind(record, "record"));
  for (const char* part :
       {R"("year": null)", R"("release_date": null)", R"("runtime": null)", R"("poster_url": null)",
        R"("cast": [])", R"("genres": [])", R"("imdb_id": null)"}) {
    EXPECT_NE(record.find(part), std::string::npos) << part << " in " << record;
  }
}

TEST(Records, AnEpisodeRecordNamesTheShowSeasonAndEpisode) {
  FilmInput episode = movie("The Office US", std::nullopt);
  episode.kind = "episode";
  episode.season = 3;
  episode.episode = 12;
  const std::string record = build_record(
      R"({"id": 2316, "name": "The Office", "first_air_date": "2005-03-24",
          "episode_run_time": [22], "created_by": [{"name": "Greg Daniels"}],
          "external_ids": {"imdb_id": "tt0386676"}})",
      episode, TmdbImages{}, EnrichOptions{});
  for (const char* part :
       {R"("media_type": "tv")", R"("title": "The Office")", R"("season": 3)", R"("episode": 12)",
        R"("runtime": 22)", R"("directors": ["Greg Daniels"])", R"("imdb_id": "tt0386676")"}) {
    EXPECT_NE(record.find(part), std::string::npos) << part << " in " << record;
  }
}

}  // namespace
}  // namespace cinejobs
