"""Hostile remote data, end to end: the real yt-dlp fetches from the real test server a page whose
title and description hold line breaks, colons that look like bag-info fields, NUL, a right-to-left
override, ``../../etc/passwd`` and a script tag; whose subtitle tracks are an HTML error page and
binary junk; and pages of several megabytes.

What an archivist expects: the film is preserved; nothing remote becomes a path (every file is
named from the work's id); bag-info.txt stays one field per line; the title is kept, whole and
exact, as data (JSON) in the capture record and the info JSON; every HTML report escapes it; a
"subtitle" that is not one is kept as received (it is what the source sent) with a note saying
why it has no WebVTT; a page over ``MAX_DOCUMENT_BYTES`` is refused as ``too-large`` before any
media byte is requested.
"""

from __future__ import annotations

import html
import io
import json
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import bagit
import pytest
from yt_dlp.networking.common import Response

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.errors import FetchError
from cifa_ingest.fetch.request_policy import MAX_DOCUMENT_BYTES, limit_document
from cifa_ingest.fetch.ytdlp import fetch_work
from cifa_ingest.preserve import Outcome, preserve_work
from tests.helpers import assert_valid_preserved_bag

HOSTILE = (
    "Line one\nExternal-Identifier: forged\r\nTitle: x\x00nul \u202eexe.mp4 "
    "../../etc/passwd <script>alert(1)</script> \"q\" 'a' &amp;"
)
ERROR_PAGE = (
    b"<!DOCTYPE html><html><body><h1>404 Not Found</h1><p>No such file.</p></body></html>\n"
)
GOOD_VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nBonjour\n"
WORK_ID = "cifa-hostile-0001"
#: Names the pipeline gives; everything else in a bag is named <id>… .
FIXED_NAMES = {
    "bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt",
    "tagmanifest-sha256.txt", "tagmanifest-sha512.txt", "capture.json", "descriptive.json",
    "descriptive.xml", "normalisation.json", "permission.json", "premis.xml", "technical.json",
    "technical.mediainfo.json",
}  # fmt: skip


def _attribute(text: str) -> str:
    """``text`` as an HTML attribute value, line breaks and NUL as character references (which
    yt-dlp decodes back)."""
    escaped = html.escape(text)
    return escaped.replace("\n", "&#10;").replace("\r", "&#13;").replace("\x00", "&#0;")


def _page(title: str, description: str, tracks: str = "", video: str = "/films/f.mp4") -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{_attribute(title)}</title>"
        f'<meta property="og:title" content="{_attribute(title)}">'
        f'<meta property="og:description" content="{_attribute(description)}">'
        f'<meta name="description" content="{_attribute(description)}">'
        f'</head><body><video src="{video}">{tracks}</video></body></html>'
    )


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory, served_root: Path) -> Path:
    site = tmp_path_factory.mktemp("hostile-site")
    films, pages = site / "films", site / "pages"
    films.mkdir()
    pages.mkdir()
    shutil.copyfile(served_root / "films" / "subtitled.mp4", films / "f.mp4")
    (films / "error-page.vtt").write_bytes(ERROR_PAGE)
    (films / "binary.srt").write_bytes(random.Random(8).randbytes(300_000))
    (films / "good.vtt").write_text(GOOD_VTT, "utf-8")
    tracks = (
        '<track kind="subtitles" srclang="en" src="/films/error-page.vtt">'
        '<track kind="subtitles" srclang="zh" src="/films/binary.srt">'
        '<track kind="subtitles" srclang="fr" src="/films/good.vtt">'
    )
    (pages / "hostile.html").write_text(_page(HOSTILE, HOSTILE, tracks), "utf-8")
    several = "A long description. " * (4 * 1024 * 1024 // 20)
    (pages / "several-mb.html").write_text(_page("Several MB", several), "utf-8")
    huge = "x" * (MAX_DOCUMENT_BYTES + 1024)
    (pages / "huge.html").write_text(_page("Huge", huge), "utf-8")
    return site


@pytest.fixture
def hostile_server(hostile_site: Path) -> Iterator[LocalFileServer]:
    with LocalFileServer(hostile_site) as server:
        yield server


def _work(url: str, work_id: str = WORK_ID) -> Work:
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": "A hostile page"},
            "source": {"url": url},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )


def test_a_hostile_page_is_preserved_with_its_title_as_data_and_nothing_forged(
    tmp_path: Path, hostile_server: LocalFileServer, hostile_site: Path
) -> None:
    archive = Archive(tmp_path / "archive")
    report = preserve_work(
        _work(f"{hostile_server.base_url}/pages/hostile.html"),
        archive,
        load_settings(),
        allow_private_sources=True,
    )
    assert report.outcome is Outcome.PRESERVED, report.error
    bag = archive.bags_dir / WORK_ID
    assert_valid_preserved_bag(bag, WORK_ID)  # bagit-python, our validator, PREMIS, profile

    # Nothing remote became a path, and nothing was asked for that the page did not offer.
    for path in bag.rglob("*"):
        if path.is_file():
            assert path.name in FIXED_NAMES or path.name.startswith(WORK_ID + "."), path
            assert path.resolve().is_relative_to(bag.resolve())
    assert not any(re.search(r"passwd|\.\.|<|\u202e|\x00|\n", str(p)) for p in bag.rglob("*"))
    assert hostile_server.requested_paths() <= {
        "/pages/hostile.html", "/films/f.mp4", "/films/error-page.vtt", "/films/binary.srt",
        "/films/good.vtt",
    }  # fmt: skip

    # bag-info.txt: one field per line, nothing forged; bagit-python reads the same fields.
    lines = (bag / "bag-info.txt").read_text("utf-8").splitlines()
    assert all(re.fullmatch(r"[A-Z][A-Za-z-]*: \S.*", line) for line in lines), lines
    names = [line.split(":", 1)[0] for line in lines]
    assert len(names) == len(set(names))
    info = bagit.Bag(str(bag)).info
    assert info["External-Identifier"] == WORK_ID  # one value, not a list: nothing forged
    assert "forged" not in (bag / "bag-info.txt").read_text("utf-8")

    # The title, whole and exact, as data: JSON escapes what must be escaped.
    capture_text = (bag / "metadata" / "capture.json").read_text("utf-8")
    assert "\x00" not in capture_text and "\\u0000" in capture_text
    (source,) = json.loads(capture_text)["sources"]
    assert source["title"].startswith(HOSTILE)
    info_json = json.loads((bag / "metadata" / f"{WORK_ID}.info.json").read_text("utf-8"))
    assert info_json["title"].startswith(HOSTILE) and info_json["description"] == HOSTILE
    # The description file is the source's text, kept as sent (NUL and all).
    described = (bag / "metadata" / f"{WORK_ID}.description").read_bytes().decode("utf-8")
    assert described.startswith(HOSTILE)

    # Subtitles that are not subtitles: kept as received, no WebVTT for them, and a note why.
    original = bag / "data" / "original"
    assert (original / f"{WORK_ID}.en.vtt").read_bytes() == ERROR_PAGE
    assert (original / f"{WORK_ID}.zh.srt").read_bytes() == (
        hostile_site / "films" / "binary.srt"
    ).read_bytes()
    assert (original / f"{WORK_ID}.fr.vtt").read_text("utf-8") == GOOD_VTT
    access = sorted(p.name for p in (bag / "data" / "access").glob("*.vtt"))
    assert access == [f"{WORK_ID}.fr.vtt"]
    record = json.loads((bag / "metadata" / "normalisation.json").read_text("utf-8"))
    notes = " ".join(note for group in record["groups"] for note in group["notes"])
    assert f"subtitle original/{WORK_ID}.en.vtt not converted to WebVTT: no subtitle cues" in notes
    assert f"subtitle original/{WORK_ID}.zh.srt not converted to WebVTT: Invalid data" in notes
    technical = json.loads((bag / "metadata" / "technical.json").read_text("utf-8"))
    assert "unreadable" in technical[f"original/{WORK_ID}.zh.srt"]

    # Every file ffmpeg read or wrote was an absolute path: none can be taken for an option.
    commands = [r["command"] for group in record["groups"] for r in group["renditions"]]
    assert commands
    for command in commands:
        inputs = [command[i + 1] for i, arg in enumerate(command) if arg == "-i"]
        assert inputs and all(path.startswith("/") for path in inputs), command
        assert command[-1].startswith("/"), command

    # Every HTML report escapes it (the audit's; the run report too when the flow wrote one).
    assert cli.main(["audit", str(archive.root), "--quiet"]) == 0
    reports = list((archive.root / "reports").glob("*.html"))
    assert reports
    for page in reports:
        text = page.read_text("utf-8")
        assert "<script>alert(1)</script>" not in text
        assert "\u202e" not in text and "\x00" not in text


def test_a_page_of_several_megabytes_is_kept_whole(
    tmp_path: Path, hostile_server: LocalFileServer
) -> None:
    """Under the cap, what the source says is kept whole: the info JSON holds the 4 MB
    description, the capture record the title."""
    capture = fetch_work(
        _work(f"{hostile_server.base_url}/pages/several-mb.html"),
        tmp_path / "original",
        tmp_path / "metadata",
        load_settings().fetch,
        allow_private_sources=True,
    )
    info = json.loads((tmp_path / "metadata" / f"{WORK_ID}.info.json").read_text("utf-8"))
    assert len(info["description"]) >= 4 * 1024 * 1024 - 20
    assert capture.sources[0].title.startswith("Several MB")
    assert len(json.dumps(capture.as_dict())) < 1024 * 1024  # the record is not the page


def test_a_page_over_the_cap_is_refused_before_any_media_byte(
    tmp_path: Path, hostile_server: LocalFileServer
) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_work(
            _work(f"{hostile_server.base_url}/pages/huge.html"),
            tmp_path / "original",
            tmp_path / "metadata",
            load_settings().fetch,
            allow_private_sources=True,
        )
    assert caught.value.kind == "too-large"
    assert f"larger than {MAX_DOCUMENT_BYTES // 2**20} MiB" in caught.value.message
    assert hostile_server.requested_paths() == {"/pages/huge.html"}
    assert not any((tmp_path / "original").glob("*"))


class _Body(io.BytesIO):
    """A response body that counts what was read from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


@pytest.mark.parametrize("amount", [None, 1 << 16])
def test_a_page_without_a_length_is_cut_off_at_the_cap(amount: int | None) -> None:
    """A server that sends no Content-Length (chunked) is stopped once the cap is passed, read
    whole or in blocks, and the connection closed: memory stays bounded."""
    body = _Body(b"<html>" + b"x" * (MAX_DOCUMENT_BYTES + 10) + b"</html>")
    response = limit_document(
        Response(body, "http://films.example/page", {"Content-Type": "text/html; charset=utf-8"})
    )
    with pytest.raises(FetchError, match="larger than") as caught:
        while response.read(amount):
            pass
    assert caught.value.kind == "too-large"
    assert body.taken <= MAX_DOCUMENT_BYTES + (1 << 20) and body.closed
    film = _Body(b"\x00" * (MAX_DOCUMENT_BYTES + 10))
    media = limit_document(
        Response(film, "http://films.example/f.mp4", {"Content-Type": "video/mp4"})
    )
    assert len(media.read()) == MAX_DOCUMENT_BYTES + 10  # media is never limited


@pytest.mark.slow
def test_a_50_mb_subtitle_track_of_junk_is_kept_and_noted(
    tmp_path: Path, served_root: Path
) -> None:
    """A "subtitle" of 50 MB of random bytes: streamed to disk like media (not a document, so
    not capped), kept byte for byte, no WebVTT made of it, a note; the film preserved."""
    site = tmp_path / "site"
    (site / "films").mkdir(parents=True)
    shutil.copyfile(served_root / "films" / "subtitled.mp4", site / "films" / "f.mp4")
    junk = site / "films" / "huge.vtt"
    with junk.open("wb") as fh:
        generator = random.Random(50)
        for _ in range(50):
            fh.write(generator.randbytes(1024 * 1024))
    track = '<track kind="subtitles" srclang="en" src="/films/huge.vtt">'
    (site / "page.html").write_text(_page("A film with a huge track", "", track), "utf-8")
    archive = Archive(tmp_path / "archive")
    with LocalFileServer(site) as server:
        report = preserve_work(
            _work(f"{server.base_url}/page.html"),
            archive,
            load_settings(),
            allow_private_sources=True,
        )
    assert report.outcome is Outcome.PRESERVED, report.error
    bag = archive.bags_dir / WORK_ID
    kept = bag / "data" / "original" / f"{WORK_ID}.en.vtt"
    assert kept.stat().st_size == junk.stat().st_size
    assert kept.read_bytes() == junk.read_bytes()
    assert not (bag / "data" / "access" / f"{WORK_ID}.en.vtt").exists()
    record = json.loads((bag / "metadata" / "normalisation.json").read_text("utf-8"))
    notes = [note for group in record["groups"] for note in group["notes"]]
    assert any(f"original/{WORK_ID}.en.vtt not converted to WebVTT" in note for note in notes)
    assert_valid_preserved_bag(bag, WORK_ID)
