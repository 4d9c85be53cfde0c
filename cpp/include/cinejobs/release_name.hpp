// ReleaseName: what a scene- or P2P-style release name says about the film or episode it holds
// (`Inception.2010.1080p.BluRay.x264-SPARKS`, `The.Office.US.S03E12.720p.WEB-DL.DD5.1-NTb`),
// and whether it is worth a TMDB lookup at all (not a sample, a subtitle pack, software...).
//
// The parser is a tokenizer plus a table-driven classifier: the name is cut on separators (dots,
// underscores, spaces, brackets), each token is looked up in one table per field, and the
// title is what precedes the first technical token, minus the year. It never throws and never
// backtracks: cost is linear in the name's length. UTF-8 in titles passes through untouched.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs {

enum class ReleaseKind {
  kMovie,    // a film (also a bare title with no episode marker)
  kEpisode,  // one episode or a run of episodes of a show (S01E02, 1x02, S01E02E03, a date)
  kSeason,   // a season pack or complete series of a show (S01, Season 2, Complete.Series)
  kUnknown,  // no title could be found, or the name is not a video at all (software, music)
};

std::string_view to_string(ReleaseKind kind) noexcept;

// ReleaseName is one parsed name. Strings are empty and optionals empty when the name does not
// say. Technical fields hold one normalised spelling each, whatever the name used:
//   resolution  2160p 1080p 1080i 720p 576p 480p          (4K, UHD -> 2160p)
//   source      BluRay Remux BDRip BRRip WEB-DL WEBRip WEB HDTV PDTV DVDRip DVD HDRip
//               CAM TS TC SCR R5 VHSRip SATRip             (Blu-ray, WEBDL, ... -> these)
//   codec       H.264 H.265 AV1 XviD DivX VP9 VC-1 MPEG-2 (x264, AVC -> H.264; x265, HEVC -> H.265)
//   audio       DTS DTS-HD MA DTS-HD DTS-X TrueHD DD DDP AAC FLAC LPCM Opus MP3, with " Atmos"
//               appended when present (AC3, DD5.1 -> DD; EAC3, DD+, DDP5.1 -> DDP)
//   channels    "5.1", "7.1", "2.0" as written after the audio codec
struct ReleaseName {
  std::string title;                // as written, separators turned to spaces
  std::optional<int> year;          // the last plausible year before the technical tokens
  std::optional<int> season;        // S01E02 -> 1; also season packs (S01, Season 1)
  std::optional<int> episode;       // S01E02 -> 2; the first of a multi-episode run
  std::optional<int> last_episode;  // S01E02E03 / S01E02-E03 -> 3; empty for one episode
  std::string air_date;             // daily shows: Show.2023.01.15 -> "2023-01-15"
  std::string resolution;
  std::string source;
  std::string codec;
  std::string audio;
  std::string channels;
  std::string group;              // after the last technical token's '-', or a [GROUP] tag
  std::vector<std::string> tags;  // editions and flags: REPACK, EXTENDED, IMAX, HDR, 10bit,
                                  // languages, streaming services... in one spelling each
  ReleaseKind kind = ReleaseKind::kUnknown;
  bool enrichable = false;  // a film, an episode or a season of a show with a title
  std::string reason;       // why not enrichable: "sample", "subtitles", "trailer", "extras",
                            // "software", "game", "audio", "no title"; empty when enrichable
};

// parse_release_name parses one release or file name (a path is cut to its last component;
// a video or subtitle file extension is dropped). Any input is accepted: a name with nothing
// recognisable becomes a movie whose title is the whole name, and an empty one is kUnknown.
ReleaseName parse_release_name(std::string_view name);

}  // namespace cinejobs
