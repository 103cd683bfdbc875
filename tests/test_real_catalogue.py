"""The archive's real catalogue (manifests/cifa.yaml) says what the source texts say.

The expectations below are transcribed from the two source texts: Luke Robinson's themed playlist
for CIFA and Dorothee Xiaolong Hou's article on Rust Belt cinema. No network is used.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cifa_ingest.catalogue.model import Catalogue, PermissionStatus, Work, load_catalogue

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "manifests" / "cifa.yaml"

#: (English title, Chinese title, director, year) in the order the texts name them.
EXPECTED_WORKS = [
    # Luke Robinson, "Themed Playlist: Chinese Independent Cinema"
    ("Bumming in Beijing", "流浪北京", "Wu Wenguang", 1990),
    ("Xiao Shan Going Home", "小山回家", "Jia Zhangke", 1995),
    ("Wellspring", "在一起的时光", "Sha Qing", 2002),
    ("Disturbing the Peace", "老妈蹄花", "Ai Weiwei", 2009),
    ("Three Days in Wukan", "乌坎三日", "Ai Xiaoming", 2012),
    ("Condolences", "慰问", "Ying Liang", 2009),
    ("Falling from the Sky", "天降", "Zhang Zanbo", 2009),
    ("Disorder", "现实是过去的未来", "Huang Weikai", 2009),
    ("Stratum 1: The Visitors", "地层1:来客", "Cong Feng", 2013),
    ("A Filmless Festival", "没有电影的电影节", "Wang Wo", 2015),
    # Dorothee Xiaolong Hou, "Reforging the Rust Belt: China's Northeast on the Silver Screen"
    ("West of the Tracks", "铁西区", "Wang Bing", 2003),
    ("The Piano in a Factory", "钢的琴", "Zhang Meng", 2010),
    ("Black Coal, Thin Ice", "白日焰火", "Diao Yinan", 2014),
]

#: The films the playlist places on CIFA's own YouTube channel, uploaded "with the permission of
#: filmmakers": exactly these may be fetched.
CIFA_CHANNEL_FILMS = {
    "Bumming in Beijing",
    "Wellspring",
    "Condolences",
    "Falling from the Sky",
    "Stratum 1: The Visitors",
}

#: Where the playlist says the other films are published.
OTHER_PLATFORMS = {
    "Xiao Shan Going Home": "YouTube",
    "Disturbing the Peace": "Ai Weiwei's YouTube channel",
    "Three Days in Wukan": "YouTube",
    "Disorder": "DAFilms",
    "A Filmless Festival": "Wang Wo's YouTube channel",
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(CATALOGUE_PATH)


@pytest.fixture(scope="module")
def by_title(catalogue: Catalogue) -> dict[str, Work]:
    return {work.title.en: work for work in catalogue.works}


def test_collection_is_the_archive(catalogue: Catalogue) -> None:
    assert catalogue.collection is not None
    assert catalogue.collection.name == "Chinese Independent Film Archive"
    assert catalogue.collection.description


def test_every_film_from_the_texts_is_present_in_order(catalogue: Catalogue) -> None:
    titles = [work.title.en for work in catalogue.works]
    assert titles == [title for title, _, _, _ in EXPECTED_WORKS]


@pytest.mark.parametrize(("en", "zh", "director", "year"), EXPECTED_WORKS)
def test_titles_directors_and_years(
    by_title: dict[str, Work], en: str, zh: str, director: str, year: int
) -> None:
    work = by_title[en]
    assert work.title.zh == zh
    assert work.director is not None
    assert work.director.en == director
    assert work.year == year


def test_chinese_titles_survive_loading(by_title: dict[str, Work]) -> None:
    assert by_title["Bumming in Beijing"].display_title == "Bumming in Beijing / 流浪北京"
    assert by_title["The Piano in a Factory"].title.zh == "钢的琴"
    raw = CATALOGUE_PATH.read_text(encoding="utf-8")
    assert "流浪北京" in raw
    assert "乌坎三日" in raw


def test_ids_are_unique_and_sequential(catalogue: Catalogue) -> None:
    ids = [work.id for work in catalogue.works]
    assert len(ids) == len(set(ids))
    assert ids == [f"cifa-{number:04d}" for number in range(1, len(ids) + 1)]


def test_three_days_in_wukan_is_one_work_in_three_ordered_parts(
    catalogue: Catalogue, by_title: dict[str, Work]
) -> None:
    wukan = by_title["Three Days in Wukan"]
    assert wukan.source is None
    assert wukan.parts is not None
    assert [part.label for part in wukan.parts] == ["Day One", "Day Two", "Day Three"]
    assert all(part.platform == "YouTube" for part in wukan.parts)
    assert sum(1 for work in catalogue.works if "Wukan" in work.title.en) == 1


def test_no_web_address_anywhere(catalogue: Catalogue) -> None:
    # The addresses were lost from the texts: none may be invented.
    for work in catalogue.works:
        for source in work.sources:
            assert source.url is None, f"{work.id} has a url"
        assert not work.has_source_address
    raw = CATALOGUE_PATH.read_text(encoding="utf-8")
    assert not re.search(
        r"[a-z][a-z0-9+.-]*://|www\.|youtu\.be|youtube\.com|dafilms\.com", raw, re.IGNORECASE
    )


def test_every_source_states_url_null_explicitly() -> None:
    raw = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    for entry in raw["works"]:
        sources = entry["parts"] if "parts" in entry else [entry["source"]]
        for source in sources:
            assert "url" in source, f"{entry['id']}: write url: null"
            assert source["url"] is None


def test_exactly_the_cifa_channel_films_are_granted(catalogue: Catalogue) -> None:
    granted = {work.title.en for work in catalogue.works if work.is_permitted}
    assert granted == CIFA_CHANNEL_FILMS


@pytest.mark.parametrize("title", sorted(CIFA_CHANNEL_FILMS))
def test_granted_films_cite_the_cifa_channel(by_title: dict[str, Work], title: str) -> None:
    work = by_title[title]
    assert work.source is not None
    assert work.source.platform == "CIFA YouTube channel"
    permission = work.permission
    assert permission.status is PermissionStatus.GRANTED
    assert work.director is not None
    assert permission.granted_by == f"{work.director.en} (director)"
    assert permission.date is None  # no date is known
    assert permission.basis is not None
    assert "permission of filmmakers" in permission.basis
    assert "Luke Robinson" in permission.basis


def test_other_films_are_not_sought(catalogue: Catalogue) -> None:
    for work in catalogue.works:
        if work.title.en in CIFA_CHANNEL_FILMS:
            continue
        assert work.permission.status is PermissionStatus.NOT_SOUGHT, work.id
        assert work.permission.granted_by is None, work.id
        assert work.permission.basis, work.id
        assert all(source.platform != "CIFA YouTube channel" for source in work.sources), work.id


@pytest.mark.parametrize(("title", "platform"), sorted(OTHER_PLATFORMS.items()))
def test_where_the_other_films_are_published(
    by_title: dict[str, Work], title: str, platform: str
) -> None:
    assert {source.platform for source in by_title[title].sources} == {platform}


def test_subtitle_caveats_are_recorded(by_title: dict[str, Work]) -> None:
    assert "no English subtitles" in (by_title["Xiao Shan Going Home"].notes or "")
    assert "Chinese only" in (by_title["Three Days in Wukan"].notes or "")
