// Unit tests of the release-name parser (release_name.hpp), one group per rule. The fixture of
// real-style names is measured as a whole by tests/python/test_release_names.py.
#include "cinejobs/release_name.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace cinejobs;

namespace {

ReleaseName parse(std::string_view name) { return parse_release_name(name); }

TEST(ReleaseNameTest, SplitsOnDotsUnderscoresAndSpacesAlike) {
  for (std::string_view name :
       {"The.Dark.Knight.2008.720p.BluRay.x264-GRP", "The_Dark_Knight_2008_720p_BluRay_x264-GRP",
        "The Dark Knight 2008 720p BluRay x264-GRP"}) {
    const ReleaseName r = parse(name);
    EXPECT_EQ(r.title, "The Dark Knight") << name;
    EXPECT_EQ(r.year, 2008) << name;
    EXPECT_EQ(r.resolution, "720p") << name;
    EXPECT_EQ(r.source, "BluRay") << name;
    EXPECT_EQ(r.codec, "H.264") << name;
    EXPECT_EQ(r.group, "GRP") << name;
    EXPECT_EQ(r.kind, ReleaseKind::kMovie) << name;
    EXPECT_TRUE(r.enrichable) << name;
  }
}

TEST(ReleaseNameTest, TheYearIsTheLastPlausibleOneBeforeTheTechnicalPart) {
  EXPECT_EQ(parse("Blade.Runner.2049.2017.1080p.BluRay.x264-GRP").title, "Blade Runner 2049");
  EXPECT_EQ(parse("Blade.Runner.2049.2017.1080p.BluRay.x264-GRP").year, 2017);
  EXPECT_EQ(parse("Wonder.Woman.1984.2020.1080p.WEB-DL-GRP").title, "Wonder Woman 1984");
  EXPECT_EQ(parse("2001.A.Space.Odyssey.1968.1080p.BluRay-GRP").title, "2001 A Space Odyssey");
  EXPECT_EQ(parse("2001.A.Space.Odyssey.1968.1080p.BluRay-GRP").year, 1968);
}

TEST(ReleaseNameTest, ATitleThatIsAYearIsNeverTakenAsTheYear) {
  const ReleaseName r = parse("1917.2019.1080p.WEB-DL.DDP5.1.H264-FGT");
  EXPECT_EQ(r.title, "1917");
  EXPECT_EQ(r.year, 2019);
  const ReleaseName alone = parse("2012.1080p.BluRay.x264-GRP");
  EXPECT_EQ(alone.title, "2012");
  EXPECT_FALSE(alone.year);
  EXPECT_EQ(parse("1883.S01E01.1080p.WEB.h264-KOGi").title, "1883");
}

TEST(ReleaseNameTest, ABracketedYearWinsOverABareOne) {
  const ReleaseName r = parse("Blade Runner 2049 (2017) [1080p]");
  EXPECT_EQ(r.title, "Blade Runner 2049");
  EXPECT_EQ(r.year, 2017);
  // Numbers that are not plausible years stay in the title.
  EXPECT_EQ(parse("Fahrenheit.451.1966.720p.BluRay-GRP").title, "Fahrenheit 451");
  EXPECT_EQ(parse("The.Year.1000.2031.2015.DVDRip-GRP").year, 2015);
}

TEST(ReleaseNameTest, AYearAfterTheFirstTagsStillDatesTheRelease) {
  EXPECT_EQ(parse("Movie.Title.1080p.2010.BluRay-GRP").year, 2010);
  EXPECT_EQ(parse("Movie.Title.1080p.2010.BluRay-GRP").title, "Movie Title");
}

TEST(ReleaseNameTest, ResolutionsHaveOneSpelling) {
  EXPECT_EQ(parse("Film.2019.4K.HDR.x265-GRP").resolution, "2160p");
  EXPECT_EQ(parse("Film.2019.UHD.BluRay.x265-GRP").resolution, "2160p");
  EXPECT_EQ(parse("Film.2019.1080P.BluRay.x264-GRP").resolution, "1080p");
  EXPECT_EQ(parse("Film.2019.1080i.HDTV-GRP").resolution, "1080i");
  EXPECT_EQ(parse("Film.2019.1920x1080.WEB-GRP").resolution, "1080p");
  EXPECT_EQ(parse("Film.2019.800p.WEB-GRP").resolution, "800p");
  // A 1080p encode of a UHD disc names both; the explicit one comes first and stays.
  EXPECT_EQ(parse("Film.2019.1080p.UHD.BluRay.x264-GRP").resolution, "1080p");
}

TEST(ReleaseNameTest, SourcesHaveOneSpelling) {
  EXPECT_EQ(parse("Film.2019.1080p.Blu-ray.x264-GRP").source, "BluRay");
  EXPECT_EQ(parse("Film.2019.1080p.WEBDL.x264-GRP").source, "WEB-DL");
  EXPECT_EQ(parse("Film.2019.1080p.WEB.DL.x264-GRP").source, "WEB-DL");
  EXPECT_EQ(parse("Film.2019.1080p.Web-Rip.x264-GRP").source, "WEBRip");
  EXPECT_EQ(parse("Film.2019.HDCAM.x264-GRP").source, "CAM");
  EXPECT_EQ(parse("Film.2019.TELESYNC.x264-GRP").source, "TS");
  EXPECT_EQ(parse("Film.2019.DVD9.NTSC-GRP").source, "DVD");
  // A remux is the most specific thing a name says, wherever it stands.
  EXPECT_EQ(parse("Film.2019.2160p.UHD.BluRay.REMUX.HEVC-GRP").source, "Remux");
}

TEST(ReleaseNameTest, CodecsHaveOneSpelling) {
  for (std::string_view name :
       {"Film.2019.x264-GRP", "Film.2019.H.264-GRP", "Film.2019.H264-GRP", "Film.2019.AVC-GRP"}) {
    EXPECT_EQ(parse(name).codec, "H.264") << name;
  }
  for (std::string_view name :
       {"Film.2019.x265-GRP", "Film.2019.H.265-GRP", "Film.2019.HEVC-GRP"}) {
    EXPECT_EQ(parse(name).codec, "H.265") << name;
  }
  EXPECT_EQ(parse("Film.2019.DVDRip.XviD-GRP").codec, "XviD");
  EXPECT_EQ(parse("Film.2019.2160p.WEB.AV1-GRP").codec, "AV1");
  EXPECT_EQ(parse("Film.2007.HD-DVD.VC-1-GRP").codec, "VC-1");
}

TEST(ReleaseNameTest, AudioCodecsCarryTheirChannelsAndAtmos) {
  const ReleaseName dd = parse("Film.2019.1080p.WEB-DL.DD5.1.H264-GRP");
  EXPECT_EQ(dd.audio, "DD");
  EXPECT_EQ(dd.channels, "5.1");
  EXPECT_EQ(dd.codec, "H.264");
  EXPECT_EQ(parse("Film.2019.BRRip.XviD.AC3-GRP").audio, "DD");
  const ReleaseName ddp = parse("Film.2019.1080p.WEB-DL.DDP5.1.Atmos.H.264-GRP");
  EXPECT_EQ(ddp.audio, "DDP Atmos");
  EXPECT_EQ(ddp.channels, "5.1");
  EXPECT_EQ(parse("Film.2019.1080p.WEB-DL.DD+5.1-GRP").audio, "DDP");
  EXPECT_EQ(parse("Film.2019.1080p.WEB-DL.EAC3-GRP").audio, "DDP");
  EXPECT_EQ(parse("Film.2019.1080p.WEB-DL.DDP51-GRP").channels, "5.1");
  const ReleaseName ma = parse("Film.2019.1080p.BluRay.DTS-HD.MA.5.1.x264-GRP");
  EXPECT_EQ(ma.audio, "DTS-HD MA");
  EXPECT_EQ(ma.channels, "5.1");
  EXPECT_EQ(ma.codec, "H.264");
  const ReleaseName truehd = parse("Film.2019.2160p.BluRay.TrueHD.7.1.Atmos.x265-GRP");
  EXPECT_EQ(truehd.audio, "TrueHD Atmos");
  EXPECT_EQ(truehd.channels, "7.1");
  EXPECT_EQ(parse("Film.2019.WEB.AAC2.0.x264-GRP").channels, "2.0");
  EXPECT_EQ(parse("Film.2019.BluRay.DTS-X.7.1-GRP").audio, "DTS-X");
}

TEST(ReleaseNameTest, TheGroupFollowsTheLastTechnicalTokensDash) {
  EXPECT_EQ(parse("The.Matrix.1999.1080p.BluRay.DTS.x264-D-Z0N3").group, "D-Z0N3");
  EXPECT_EQ(parse("Film.2019.1080p.WEB-DL-GRP").group, "GRP");
  EXPECT_EQ(parse("Film.2019.1080p.WEB-DL").group, "");
  EXPECT_EQ(parse("Film.2019.1080p.WEB-DL").source, "WEB-DL");
  EXPECT_EQ(parse("Oppenheimer 2023 1080p BluRay x265 - RARBG").group, "RARBG");
  // A dash inside the title is not a group.
  const ReleaseName spider = parse("Spider-Man");
  EXPECT_EQ(spider.title, "Spider-Man");
  EXPECT_EQ(spider.group, "");
  EXPECT_EQ(parse("9-1-1.S06E01.1080p.WEB-GRP").title, "9-1-1");
}

TEST(ReleaseNameTest, BracketedGroupsSitesAndRepostSuffixes) {
  EXPECT_EQ(parse("[SubsPlease] Frieren - 28 (720p) [5F4E3D2C].mkv").group, "SubsPlease");
  EXPECT_EQ(parse("The Matrix (1999) [1080p] [BluRay] [5.1] [YTS.MX]").group, "YTS.MX");
  EXPECT_EQ(parse("The.Godfather.1972.1080p.BluRay.x264-GRP[rarbg]").group, "GRP");
  EXPECT_EQ(parse("Drive.2011.1080p.BluRay.x264-SPARKS-Obfuscated").group, "SPARKS");
  const ReleaseName site = parse("www.Torrenting.com - Inception.2010.720p.BluRay.x264-GRP");
  EXPECT_EQ(site.title, "Inception");
  EXPECT_EQ(site.group, "GRP");
  EXPECT_EQ(parse("[ www.Torrenting.com ] - Heat.1995.720p.BluRay-GRP").title, "Heat");
}

TEST(ReleaseNameTest, EpisodeMarkers) {
  const ReleaseName sxe = parse("The.Office.US.S03E12.720p.WEB-DL.DD5.1-NTb");
  EXPECT_EQ(sxe.title, "The Office US");
  EXPECT_EQ(sxe.season, 3);
  EXPECT_EQ(sxe.episode, 12);
  EXPECT_FALSE(sxe.last_episode);
  EXPECT_EQ(sxe.kind, ReleaseKind::kEpisode);
  const ReleaseName x = parse("Seinfeld.3x17.The.Boyfriend.DVDRip.XviD-GRP");
  EXPECT_EQ(x.season, 3);
  EXPECT_EQ(x.episode, 17);
  const ReleaseName split = parse("Monk.S01.E05.DVDRip.XviD-GRP");
  EXPECT_EQ(split.season, 1);
  EXPECT_EQ(split.episode, 5);
  EXPECT_EQ(parse("Show.s1e2.720p-GRP").episode, 2);
}

TEST(ReleaseNameTest, MultiEpisodeRunsKeepTheFirstAndLast) {
  for (std::string_view name : {"Sherlock.S02E01E02E03.1080p-GRP", "Sherlock.S02E01-E03.1080p-GRP",
                                "Sherlock.S02E01-03.1080p-GRP"}) {
    const ReleaseName r = parse(name);
    EXPECT_EQ(r.season, 2) << name;
    EXPECT_EQ(r.episode, 1) << name;
    EXPECT_EQ(r.last_episode, 3) << name;
  }
}

TEST(ReleaseNameTest, SeasonPacksAreEnrichableAsShows) {
  for (std::string_view name : {"Breaking.Bad.S05.1080p.BluRay.x264-ROVERS",
                                "Breaking.Bad.Season.5.1080p.BluRay.x264-ROVERS",
                                "Breaking Bad Season 5 Complete 1080p BluRay x264"}) {
    const ReleaseName r = parse(name);
    EXPECT_EQ(r.title, "Breaking Bad") << name;
    EXPECT_EQ(r.season, 5) << name;
    EXPECT_FALSE(r.episode) << name;
    EXPECT_EQ(r.kind, ReleaseKind::kSeason) << name;
    EXPECT_TRUE(r.enrichable) << name;
  }
  const ReleaseName all = parse("Friends.Complete.Series.720p.BluRay.x264-GRP");
  EXPECT_EQ(all.title, "Friends");
  EXPECT_EQ(all.kind, ReleaseKind::kSeason);
  EXPECT_EQ(parse("Dark.Staffel.2.GERMAN.1080p.WEBRip-GRP").season, 2);
}

TEST(ReleaseNameTest, DailyShowsAreEpisodesByAirDate) {
  const ReleaseName r = parse("The.Daily.Show.2023.01.15.Guest.Name.720p.WEB.h264-KOGi");
  EXPECT_EQ(r.title, "The Daily Show");
  EXPECT_EQ(r.air_date, "2023-01-15");
  EXPECT_FALSE(r.year);  // the air date's year is not the show's
  EXPECT_EQ(r.kind, ReleaseKind::kEpisode);
  EXPECT_EQ(parse("WWE.Raw.2023-11-20.720p.HDTV-GRP").air_date, "2023-11-20");
}

TEST(ReleaseNameTest, FansubEpisodesAreNumberedFromTheStart) {
  const ReleaseName r = parse("[SubsPlease] Bocchi the Rock! - 03v2 (1080p) [00FF11AA].mkv");
  EXPECT_EQ(r.title, "Bocchi the Rock!");
  EXPECT_EQ(r.episode, 3);
  EXPECT_FALSE(r.season);
  EXPECT_EQ(r.resolution, "1080p");
  EXPECT_EQ(r.kind, ReleaseKind::kEpisode);
}

TEST(ReleaseNameTest, EditionsAndFlagsAreTagsNotTitleWords) {
  const ReleaseName r =
      parse("Alien.1979.Directors.Cut.REPACK.PROPER.IMAX.2160p.HDR10+.DV.10bit.x265-GRP");
  EXPECT_EQ(r.title, "Alien");
  EXPECT_EQ(r.tags, (std::vector<std::string>{"DIRECTORS CUT", "REPACK", "PROPER", "IMAX", "HDR10+",
                                              "DV", "10bit"}));
  // Without a year, flags just before the technical part still leave the title.
  const ReleaseName no_year = parse("Movie.Title.EXTENDED.UNRATED.1080p.BluRay.x264-GRP");
  EXPECT_EQ(no_year.title, "Movie Title");
  EXPECT_EQ(no_year.tags, (std::vector<std::string>{"EXTENDED", "UNRATED"}));
}

TEST(ReleaseNameTest, WeakWordsStayInTitlesBeforeTheTechnicalPart) {
  EXPECT_EQ(parse("Uncut.Gems.2019.1080p.WEB-DL-GRP").title, "Uncut Gems");
  EXPECT_EQ(parse("The.Italian.Job.2003.DVDRip.XviD-DMT").title, "The Italian Job");
  EXPECT_EQ(parse("Charlotte's.Web.2006.DVDRip.XviD-DoNE").title, "Charlotte's Web");
  EXPECT_EQ(parse("Trailer.Park.Boys.S01E01.DVDRip.XviD-GRP").title, "Trailer Park Boys");
  EXPECT_TRUE(parse("Trailer.Park.Boys.S01E01.DVDRip.XviD-GRP").enrichable);
  EXPECT_EQ(parse("It.2017.1080p.BluRay.x264-GRP").title, "It");
  // "iT" (iTunes) is a tag only in that spelling.
  EXPECT_EQ(parse("Film.2017.1080p.iT.WEB-DL-GRP").tags, std::vector<std::string>{"iT"});
  // The title keeps at least one word even when it is a tag word.
  EXPECT_EQ(parse("Hybrid.1080p.BluRay-GRP").title, "Hybrid");
}

TEST(ReleaseNameTest, InitialsAreJoinedWithDots) {
  EXPECT_EQ(parse("S.W.A.T.2017.S05E01.720p.HDTV.x264-GRP").title, "S.W.A.T.");
  EXPECT_EQ(parse("L.A.Confidential.1997.1080p.BluRay-GRP").title, "L.A. Confidential");
  EXPECT_EQ(parse("A.Quiet.Place.2018.1080p.BluRay-GRP").title, "A Quiet Place");
}

TEST(ReleaseNameTest, NonAsciiTitlesPassThroughUntouched) {
  EXPECT_EQ(parse("Amélie.2001.1080p.BluRay.x264-GRP").title, "Amélie");
  EXPECT_EQ(parse("千と千尋の神隠し.2001.1080p.BluRay.x264-WiKi").title, "千と千尋の神隠し");
  EXPECT_EQ(parse("Сталкер.1979.RUSSIAN.1080p.BluRay-GRP").title, "Сталкер");
  EXPECT_EQ(parse("Le.Fabuleux.Destin.d'Amélie.Poulain.2001-GRP").title,
            "Le Fabuleux Destin d'Amélie Poulain");
}

TEST(ReleaseNameTest, FileExtensionsAndPathsAreDropped) {
  const ReleaseName r = parse("/data/Movies/Heat.1995.720p.BluRay.x264-HDEX.mkv");
  EXPECT_EQ(r.title, "Heat");
  EXPECT_EQ(r.group, "HDEX");
  EXPECT_EQ(parse("C:\\Downloads\\Heat (1995).mkv").year, 1995);
  // TS in capitals is a telesync, ts in lower case a transport-stream file.
  EXPECT_EQ(parse("Transformers.2007.TS").source, "TS");
  EXPECT_EQ(parse("Transformers.2007.720p.HDTV.ts").source, "HDTV");
  // Archive volumes carry their number before the extension.
  EXPECT_EQ(parse("Tenet.2020.1080p.BluRay.x264-GRP.part01.rar").group, "GRP");
}

TEST(ReleaseNameTest, SamplesAreNotEnrichable) {
  for (std::string_view name :
       {"Inception.2010.1080p.BluRay.x264-SPARKS.sample.mkv",
        "sample-inception.2010.720p.bluray.x264-sparks.mkv",
        "inception.2010.720p.bluray.x264-sparks-sample.mkv", "Dune.2021.Sample.1080p.WEB-DL-EVO"}) {
    const ReleaseName r = parse(name);
    EXPECT_FALSE(r.enrichable) << name;
    EXPECT_EQ(r.reason, "sample") << name;
    EXPECT_EQ(r.kind, ReleaseKind::kMovie) << name;
  }
  EXPECT_TRUE(parse("Sample.People.2000.DVDRip.XviD-GRP").enrichable);
}

TEST(ReleaseNameTest, SubtitlesTrailersAndExtrasAreNotEnrichable) {
  const ReleaseName srt = parse("The.Office.US.S03E12.720p.WEB-DL.DD5.1-NTb.en.forced.srt");
  EXPECT_EQ(srt.reason, "subtitles");
  EXPECT_EQ(srt.group, "NTb");
  EXPECT_EQ(srt.kind, ReleaseKind::kEpisode);
  EXPECT_EQ(parse("Heat.1995.1080p.BluRay.x264-GRP.English.srt").group, "GRP");
  EXPECT_EQ(parse("Heat.1995.SUBPACK.1080p.BluRay-GRP").reason, "subtitles");
  EXPECT_EQ(parse("Dune.Part.Two.2024.Official.Trailer.1080p.WEB.h264").reason, "trailer");
  EXPECT_EQ(parse("Oppenheimer.2023.Behind.the.Scenes.1080p.WEB-GRP").reason, "extras");
  EXPECT_EQ(parse("Alien.1979.Bonus.Disc.720p.BluRay-GRP").reason, "extras");
}

TEST(ReleaseNameTest, SoftwareGamesAndMusicAreNotVideos) {
  const ReleaseName software =
      parse("Adobe.Photoshop.2023.v24.0.x64.Multilingual.Incl.Keygen-CORE");
  EXPECT_EQ(software.reason, "software");
  EXPECT_EQ(software.kind, ReleaseKind::kUnknown);
  EXPECT_FALSE(software.enrichable);
  EXPECT_EQ(parse("setup.exe").reason, "software");
  const ReleaseName game = parse("Cyberpunk.2077-CODEX");
  EXPECT_EQ(game.reason, "game");
  EXPECT_EQ(game.title, "Cyberpunk 2077");
  EXPECT_EQ(parse("Hogwarts.Legacy.PS5-DUPLEX").reason, "game");
  EXPECT_EQ(parse("Hades.II.v0.90-TENOKE").reason, "game");
  EXPECT_EQ(parse("Interstellar.OST.2014.FLAC-GRP").reason, "audio");
  EXPECT_EQ(parse("Pink.Floyd.The.Wall.1979.FLAC").reason, "audio");
  EXPECT_EQ(parse("01 - Main Title.mp3").reason, "audio");
  // FLAC next to a picture is a film's soundtrack, not an album.
  EXPECT_TRUE(parse("Casablanca.1942.1080p.BluRay.FLAC.1.0.x264-DON").enrichable);
}

TEST(ReleaseNameTest, BareTitlesAreMoviesAndEmptyNamesAreUnknown) {
  const ReleaseName bare = parse("The Shining");
  EXPECT_EQ(bare.title, "The Shining");
  EXPECT_EQ(bare.kind, ReleaseKind::kMovie);
  EXPECT_TRUE(bare.enrichable);
  for (std::string_view name : {"", "   ", "1080p.BluRay.x264", "[]"}) {
    const ReleaseName r = parse(name);
    EXPECT_EQ(r.title, "") << name;
    EXPECT_EQ(r.kind, ReleaseKind::kUnknown) << name;
    EXPECT_EQ(r.reason, "no title") << name;
    EXPECT_FALSE(r.enrichable) << name;
  }
}

TEST(ReleaseNameTest, AnyBytesParseWithoutThrowingAndKeepTheContract) {
  // Random names over an alphabet rich in separators and technical fragments.
  constexpr std::string_view kPieces[] = {
      ".",     "-",        "_",    " ",      "[",    "]",    "(",     ")",   "S01",
      "E02",   "1x02",     "2010", "1080p",  "x264", "DD5",  "1",     "WEB", "DL",
      "Title", "\xC3\xA9", "\xFF", "sample", "-GRP", ".mkv", "Season"};
  std::mt19937 random(12345);
  std::uniform_int_distribution<std::size_t> piece(0, std::size(kPieces) - 1);
  std::uniform_int_distribution<int> length(0, 24);
  for (int round = 0; round < 5000; ++round) {
    std::string name;
    for (int n = length(random); n > 0; --n) name += kPieces[piece(random)];
    const ReleaseName r = parse(name);
    if (r.enrichable) {
      EXPECT_FALSE(r.title.empty()) << name;
      EXPECT_NE(r.kind, ReleaseKind::kUnknown) << name;
      EXPECT_TRUE(r.reason.empty()) << name;
    } else {
      EXPECT_FALSE(r.reason.empty()) << name;
    }
    EXPECT_TRUE(!r.last_episode || r.episode) << name;
  }
}

TEST(ReleaseNameTest, KindsHaveNames) {
  EXPECT_EQ(to_string(ReleaseKind::kMovie), "movie");
  EXPECT_EQ(to_string(ReleaseKind::kEpisode), "episode");
  EXPECT_EQ(to_string(ReleaseKind::kSeason), "season");
  EXPECT_EQ(to_string(ReleaseKind::kUnknown), "unknown");
}

}  // namespace
