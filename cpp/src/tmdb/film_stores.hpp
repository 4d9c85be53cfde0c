// The film stores, one per broker database, and the pieces of a row's meaning they share.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "cinejobs/film_store.hpp"

namespace cinejobs::detail {

std::shared_ptr<FilmStore> open_sqlite_film_store(std::string_view url);
std::shared_ptr<FilmStore> open_postgres_film_store(std::string_view url);

// like_pattern makes a LIKE pattern (ESCAPE '\') matching normalised titles containing `text`.
std::string like_pattern(std::string_view text);

// check_outcome refuses an outcome that is not final or whose fields contradict its status.
void check_outcome(const FilmOutcome& outcome);

// count_status adds `count` films of `status` to the session's counters.
void count_status(FilmSession& session, FilmStatus status, int count);

}  // namespace cinejobs::detail
