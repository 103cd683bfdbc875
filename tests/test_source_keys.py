"""What identifies a source video (its key), so that one video is preserved once and two videos
are never taken for one (issue 14).

yt-dlp's generic extractor names a direct file by its file name: two different films both called
``film.mp4`` on two sites (or two paths of one site) were one "Generic:film", and the second was
refused as a duplicate. With the real yt-dlp against the real test server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.fetch.capture import SourceKey, captured_source_keys
from cifa_ingest.preserve import Outcome, place_step, preserve_work
from tests.helpers import assert_valid_preserved_bag, sha256


def _work(url: str, work_id: str) -> Work:
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": "Source key test", "zh": "来源测试"},
            "permission": {"status": "granted", "granted_by": "Test"},
            "source": {"url": url},
        }
    )


@pytest.fixture
def two_films_named_alike(
    tmp_path_factory: pytest.TempPathFactory, served_root: Path
) -> Iterator[LocalFileServer]:
    """Two different demo films, each served as ``film.mp4``: under ``a/`` and under ``b/``."""
    root = tmp_path_factory.mktemp("alike")
    for folder, film in (("a", "three-days-day-1.mp4"), ("b", "three-days-day-2.mp4")):
        (root / folder).mkdir()
        shutil.copyfile(served_root / "films" / film, root / folder / "film.mp4")
    assert sha256(root / "a" / "film.mp4") != sha256(root / "b" / "film.mp4")
    with LocalFileServer(root) as server:
        yield server


def _preserve(archive: Archive, url: str, work_id: str):
    return preserve_work(_work(url, work_id), archive, load_settings(), allow_private_sources=True)


def _keys(archive_dir: Path) -> dict[str, str]:
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        return dict(conn.execute("SELECT source_key, work_id FROM source_keys"))


def test_two_films_of_one_name_on_two_paths_are_two_works(
    archive_dir: Path, two_films_named_alike: LocalFileServer
) -> None:
    archive, base = Archive(archive_dir), two_films_named_alike.base_url
    first = _preserve(archive, f"{base}/a/film.mp4", "cifa-k-0001")
    second = _preserve(archive, f"{base}/b/film.mp4", "cifa-k-0002")
    assert first.outcome is Outcome.PRESERVED, first.error
    assert second.outcome is Outcome.PRESERVED, second.error
    for work_id in ("cifa-k-0001", "cifa-k-0002"):
        assert_valid_preserved_bag(archive_dir / "bags" / work_id, work_id)
    host = base.removeprefix("http://")
    assert _keys(archive_dir) == {
        f"Generic:{host}/a/film.mp4": "cifa-k-0001",
        f"Generic:{host}/b/film.mp4": "cifa-k-0002",
    }


def test_the_same_url_under_two_work_ids_is_still_a_duplicate(
    archive_dir: Path, two_films_named_alike: LocalFileServer
) -> None:
    archive, url = Archive(archive_dir), f"{two_films_named_alike.base_url}/a/film.mp4"
    assert _preserve(archive, url, "cifa-k-0001").outcome is Outcome.PRESERVED
    again = _preserve(archive, url, "cifa-k-0002")
    assert again.outcome is Outcome.FAILED and again.error_kind == "duplicate"
    host = two_films_named_alike.base_url.removeprefix("http://")
    assert again.error == (
        f"cifa-k-0002: the same source video (Generic:{host}/a/film.mp4) is already preserved"
        " as cifa-k-0001"
    )
    assert not archive.bag_path("cifa-k-0002").exists()
    # ... and with tracking parameters, or another spelling of the host and scheme.
    spelt = url.replace("http://127.0.0.1", "HTTP://127.0.0.1") + "?utm_source=x#t=3"
    assert _preserve(archive, spelt, "cifa-k-0003").error_kind == "duplicate"
    # The work itself, run again, is already preserved.
    assert _preserve(archive, url, "cifa-k-0001").outcome is Outcome.ALREADY_PRESERVED


def test_the_same_url_preserved_meanwhile_is_refused_at_placement(
    archive_dir: Path, two_films_named_alike: LocalFileServer
) -> None:
    """Two works of one address side by side: both pass the fetch's check while neither is
    registered; the one placed second is refused, by its key, when it is placed."""
    archive, url = Archive(archive_dir), f"{two_films_named_alike.base_url}/a/film.mp4"
    other_film = f"{two_films_named_alike.base_url}/b/film.mp4"

    def meanwhile(archive: Archive, preserved_meanwhile: str, work_id: str):
        def run_step(step, job):
            if step is place_step:
                report = _preserve(archive, preserved_meanwhile, work_id)
                assert report.outcome is Outcome.PRESERVED, report.error
            return step(job)

        return run_step

    settings = load_settings()
    refused = preserve_work(
        _work(url, "cifa-k-0002"), archive, settings, allow_private_sources=True,
        run_step=meanwhile(archive, url, "cifa-k-0001"),
    )  # fmt: skip
    assert refused.outcome is Outcome.FAILED and refused.error_kind == "duplicate"
    assert "was preserved as cifa-k-0001 while this work was in progress" in (refused.error or "")
    # Another film of the same name, preserved meanwhile, does not stop the placement.
    other = Archive(archive_dir.parent / "other-archive")
    placed = preserve_work(
        _work(url, "cifa-k-0004"), other, settings, allow_private_sources=True,
        run_step=meanwhile(other, other_film, "cifa-k-0003"),
    )  # fmt: skip
    assert placed.outcome is Outcome.PRESERVED, placed.error


def test_keys_stored_in_the_old_form_are_still_recognised(
    archive_dir: Path, two_films_named_alike: LocalFileServer
) -> None:
    """An archive whose ledger holds a generic source under its old key (``Generic:film``, the
    file's name): the same address under another work is still a duplicate, another film of the
    same name is not."""
    archive, base = Archive(archive_dir), two_films_named_alike.base_url
    assert _preserve(archive, f"{base}/a/film.mp4", "cifa-k-0001").outcome is Outcome.PRESERVED
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        conn.execute("UPDATE source_keys SET source_key = 'Generic:film'")
        conn.execute("UPDATE bags SET source_keys = '[\"Generic:film\"]'")
    assert _keys(archive_dir) == {"Generic:film": "cifa-k-0001"}
    again = _preserve(archive, f"{base}/a/film.mp4", "cifa-k-0002")
    assert again.outcome is Outcome.FAILED and again.error_kind == "duplicate"
    assert "is already preserved as cifa-k-0001" in (again.error or "")
    other = _preserve(archive, f"{base}/b/film.mp4", "cifa-k-0003")
    assert other.outcome is Outcome.PRESERVED, other.error
    assert Ledger(archive.ledger_path).work_for_source("Generic:film") == "cifa-k-0001"


def test_a_capture_record_without_an_address_gives_the_key_of_its_url(tmp_path: Path) -> None:
    """Bags captured before keys held the address: the key is made from the source's URL."""
    (tmp_path / "metadata").mkdir()
    sources = [
        {"url": "https://Films.Example.org:443/a/film.mp4?utm_medium=x", "extractor": "Generic",
         "source_id": "film"},
        {"url": "https://youtu.be/dQw4w9WgXcQ", "extractor": "Youtube",
         "source_id": "dQw4w9WgXcQ"},
    ]  # fmt: skip
    (tmp_path / "metadata" / "capture.json").write_text(json.dumps({"sources": sources}))
    assert captured_source_keys(tmp_path) == [
        "Generic:films.example.org/a/film.mp4",
        "Youtube:dQw4w9WgXcQ",
    ]


@pytest.mark.parametrize(
    ("extractor", "source_id", "url", "key"),
    [
        # A platform's own id: the key is unchanged, whatever URL reached the video.
        ("Youtube", "dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ", "Youtube:dQw4w9WgXcQ"),
        ("Vimeo", "76979871", "https://vimeo.com/76979871?share=copy", "Vimeo:76979871"),
        # The generic extractor: the address, without scheme, fragment or tracking parameters.
        ("Generic", "film", "https://example.org/a/film.mp4", "Generic:example.org/a/film.mp4"),
        ("Generic", "film", "http://EXAMPLE.org:80/a/film.mp4#t=1",
         "Generic:example.org/a/film.mp4"),
        ("Generic", "film", "https://example.org:8443/a/film.mp4",
         "Generic:example.org:8443/a/film.mp4"),
        # A query beside a file's name does not name the file (a playlist's, a cache's) ...
        ("Generic", "film", "https://example.org/a/film.mp4?from=playlist&v=2",
         "Generic:example.org/a/film.mp4"),
        # ... but it does where the path names no file: kept, sorted, tracking left out.
        ("Generic", "get", "https://example.org/get.php?id=7&utm_source=x&lang=zh",
         "Generic:example.org/get.php?id=7&lang=zh"),
        ("Generic", "watch", "https://example.org/watch?v=abc&fbclid=1",
         "Generic:example.org/watch?v=abc"),
        ("Generic", "example.org", "https://example.org", "Generic:example.org/"),
    ],
)  # fmt: skip
def test_what_a_key_is(extractor: str, source_id: str, url: str, key: str) -> None:
    found = SourceKey.of(extractor, source_id, url)
    assert found.key == key
    assert found.former == (f"Generic:{source_id}" if extractor == "Generic" else None)
