"""Resume across runs (issue 17), through the real pipeline (``preserve_work``), the real yt-dlp
and a real HTTP server on 127.0.0.1 that sends validators (ETag, Last-Modified), honours
``Range`` and ``If-Range`` as RFC 9110 says, and can cut every response off at a byte of the
file: a download cut off on night one is kept aside with its validators, and finished on night
two with one Range request; a source that changed in between is fetched whole and the kept bytes
discarded, saying why; partials expire, are never kept without validators, and give way to the
disk-space check. See cifa_ingest/fetch/resume.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import Settings, load_settings
from cifa_ingest.errors import InsufficientSpace
from cifa_ingest.fetch.resume import Partials, SourceResume, Validators
from cifa_ingest.normalise import master
from cifa_ingest.preserve import Outcome, WorkReport, preserve_work
from tests.helpers import sha256

WORK_ID = "cifa-r-0001"
PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Resume test</title></head>
<body><video controls><source src="/film.mp4" type="video/mp4"></video></body></html>
"""
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Served:
    """One request as the server saw it, and the body bytes it sent."""

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    sent: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _FilmServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        film = self.server.film
        path = self.path.split("?", 1)[0]
        data = PAGE if path == "/page.html" else film.data if path == "/film.mp4" else None
        if data is None:
            self._send(Served(self.command, path, None, None, 404), b"", {}, body)
            return
        headers = {"Content-Type": "text/html" if data is PAGE else "video/mp4"}
        if data is film.data:
            headers.update(
                {k: v for k, v in (("ETag", film.etag), ("Last-Modified", film.modified)) if v}
            )
        asked, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        served = Served(self.command, path, asked, if_range, 200)
        match = _RANGE.match(asked or "") if data is film.data else None
        # RFC 9110 13.1.5: a Range is answered only if If-Range (when sent) names this version
        # (unless this server is one of those that ignore If-Range).
        current = {film.etag, film.modified}
        if match and if_range is not None and if_range not in current and film.heeds_if_range:
            match = None
        if match:
            start, end = int(match.group(1)), int(match.group(2) or len(data) - 1)
            if start >= len(data):
                served.status = 416
                headers["Content-Range"] = f"bytes */{len(data)}"
                self._send(served, b"", headers, body)
                return
            served.status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
        self._send(served, data, headers, body)

    def _send(self, served: Served, data: bytes, headers: dict[str, str], body: bool) -> None:
        with self.server.lock:
            self.server.log.append(served)
        self.send_response(served.status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        cut = self.server.film.cut_after if served.path == "/film.mp4" else None
        if cut is not None:  # tonight, the server hangs up after this many bytes of the film
            data = data[:cut]
        for offset in range(0, len(data), 4096):
            self.wfile.write(data[offset : offset + 4096])
            with self.server.lock:
                served.sent += len(data[offset : offset + 4096])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


@dataclass
class Film:
    """What the server serves at /film.mp4 tonight."""

    data: bytes
    etag: str | None
    modified: str | None
    cut_after: int | None = None  # every response for it hangs up after this many bytes
    heeds_if_range: bool = True


class _FilmServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, film: Film) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.film = film
        self.log: list[Served] = []
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up early is not an error."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/page.html"

    def media(self) -> list[Served]:
        with self.lock:
            return [s for s in self.log if s.path == "/film.mp4"]

    def new_night(self) -> None:
        with self.lock:
            self.log.clear()


@pytest.fixture
def films(served_root: Path) -> tuple[bytes, bytes]:
    """Two different films: the source's file, and the same source re-encoded."""
    first = (served_root / "films" / "three-days-day-1.mp4").read_bytes()
    second = (served_root / "films" / "three-days-day-2.mp4").read_bytes()
    return first, second


@pytest.fixture
def server(films: tuple[bytes, bytes]) -> Iterator[_FilmServer]:
    film = Film(films[0], '"v1"', "Mon, 02 Nov 2026 10:00:00 GMT")
    running = _FilmServer(film)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def _settings(kept_days: int = 7) -> Settings:
    settings = load_settings()
    return settings.model_copy(
        update={"fetch": settings.fetch.model_copy(update={"resume_kept_days": kept_days})}
    )


def _night(archive: Path, url: str, settings: Settings | None = None) -> WorkReport:
    work = Work.model_validate(
        {
            "id": WORK_ID,
            "title": {"en": "Resume test"},
            "permission": {"status": "granted", "granted_by": "Test"},
            "source": {"url": url},
        }
    )
    return preserve_work(
        work, Archive(archive), settings or _settings(), allow_private_sources=True
    )


def _kept(archive: Path) -> list[dict[str, object]]:
    return [
        json.loads(p.read_text("utf-8"))
        for p in sorted((archive / "partials").glob(f"{WORK_ID}/*.json"))
    ]


#: Tonight's connections carry at most this many bytes of the film each: yt-dlp resumes each
#: cut-off response with Range (its ``retries``: 4 responses of 1,000 bytes of 33,202), then
#: gives up, and the work fails.
CUT = 1000


def _cut_night(archive: Path, server: _FilmServer) -> int:
    """A night whose every response for the film is cut off: the work fails. Returns the bytes
    of the film the server sent."""
    server.new_night()
    server.film.cut_after = CUT
    report = _night(archive, server.url)
    assert report.outcome is Outcome.FAILED, report
    assert not (archive / "staging" / WORK_ID).exists()
    server.film.cut_after = None
    return sum(s.sent for s in server.media())


def test_a_download_cut_off_on_night_one_is_finished_on_night_two_with_one_range_request(
    archive_dir: Path,
    server: _FilmServer,
    films: tuple[bytes, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest")
    source = films[0]
    cut = _cut_night(archive_dir, server)
    assert 0 < cut < len(source)
    # Kept aside, with the validators it came with: nothing of it in staging any more.
    (kept,) = _kept(archive_dir)
    assert kept["work_id"] == WORK_ID and kept["stem"] == WORK_ID
    assert kept["bytes"] == cut
    assert kept["etag"] == '"v1"' and kept["last_modified"] == "Mon, 02 Nov 2026 10:00:00 GMT"
    assert kept["content_length"] == len(source)
    assert str(kept["ytdlp_name"]).endswith(".part") and kept["format_id"]
    (partial,) = (archive_dir / "partials" / WORK_ID).glob("*.partial")
    assert partial.read_bytes() == source[:cut]  # the exact bytes received
    assert re.fullmatch(rf"{WORK_ID}\.[0-9a-f]{{16}}\.partial", partial.name)  # named by us

    server.new_night()
    report = _night(archive_dir, server.url)
    assert report.outcome is Outcome.PRESERVED, report.error
    media = server.media()
    ranged = [s for s in media if s.range is not None]
    assert len(ranged) == 1, media  # one Range request for the film ...
    (resumed,) = ranged
    assert (resumed.range, resumed.if_range, resumed.status) == (f"bytes={cut}-", '"v1"', 206)
    assert sum(s.sent for s in media) == len(source) - cut  # ... and only the rest was sent
    original = archive_dir / "bags" / WORK_ID / "data" / "original" / f"{WORK_ID}.mp4"
    assert sha256(original) == hashlib.sha256(source).hexdigest()
    capture = json.loads(
        (archive_dir / "bags" / WORK_ID / "metadata" / "capture.json").read_text("utf-8")
    )
    (record,) = capture["sources"][0]["files"][:1]
    assert record["sha256"] == sha256(original) and record["bytes"] == len(source)
    assert capture["sources"][0]["completeness"]["verdict"] == "complete"
    # Its size proved against the whole length the 206 named (no 200 that night).
    (evidence,) = capture["sources"][0]["completeness"]["files"]
    assert (evidence["bytes_declared"], evidence["bytes_declared_by"]) == (
        len(source),
        "Content-Range",
    )
    (answer,) = [x for x in capture["sources"][0]["http"] if x["url"].endswith("/film.mp4")]
    assert (answer["status"], answer["etag"]) == (206, '"v1"')
    assert answer["content_range"] == f"bytes {cut}-{len(source) - 1}/{len(source)}"
    # The info JSON the bag keeps is the source's, without our If-Range.
    info = (archive_dir / "bags" / WORK_ID / "metadata" / f"{WORK_ID}.info.json").read_text()
    assert "If-Range" not in info
    assert "resumed at byte" in caplog.text
    assert not (archive_dir / "partials" / WORK_ID).exists()  # captured: nothing kept


def test_a_source_that_changed_between_nights_is_fetched_whole_and_the_partial_discarded(
    archive_dir: Path,
    server: _FilmServer,
    films: tuple[bytes, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest")
    _cut_night(archive_dir, server)
    assert len(_kept(archive_dir)) == 1
    server.film.data, server.film.etag = films[1], '"v2"'  # re-encoded at the source
    server.film.modified = "Tue, 03 Nov 2026 10:00:00 GMT"
    server.new_night()
    report = _night(archive_dir, server.url)
    assert report.outcome is Outcome.PRESERVED, report.error
    media = server.media()
    asked = [s for s in media if s.if_range is not None]
    assert [(s.if_range, s.status) for s in asked] == [('"v1"', 200)]  # not the old bytes
    assert sum(s.sent for s in media) == len(films[1])
    original = archive_dir / "bags" / WORK_ID / "data" / "original" / f"{WORK_ID}.mp4"
    assert original.read_bytes() == films[1]
    assert 'discarded: the source changed (ETag "v1", now ETag "v2")' in caplog.text
    assert not (archive_dir / "partials" / WORK_ID).exists()


def test_kept_partials_expire_and_are_never_kept_without_validators_or_when_off(
    archive_dir: Path,
    server: _FilmServer,
    films: tuple[bytes, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest")
    _cut_night(archive_dir, server)
    (sidecar,) = (archive_dir / "partials" / WORK_ID).glob("*.json")
    record = json.loads(sidecar.read_text("utf-8"))
    eight_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    record["kept_at"] = eight_days_ago.isoformat(timespec="seconds")
    sidecar.write_text(json.dumps(record), "utf-8")
    # Night two (cut off again): the expired partial is removed first, never resumed.
    _cut_night(archive_dir, server)
    assert "expired: kept since" in caplog.text
    assert all(s.range is None or s.if_range is None for s in server.media())
    assert server.media()[0].range is None  # from the first byte
    (fresh,) = _kept(archive_dir)  # the new night's own partial
    assert fresh["kept_at"] != record["kept_at"]

    # resume_kept_days = 0: nothing is kept, and what was kept is removed.
    server.new_night()
    server.film.cut_after = CUT
    assert _night(archive_dir, server.url, _settings(kept_days=0)).outcome is Outcome.FAILED
    assert _kept(archive_dir) == []
    assert "not kept: [fetch] resume_kept_days is 0" in caplog.text

    # No ETag and no Last-Modified: nothing would prove the same bytes.
    server.film.etag = server.film.modified = None
    _cut_night(archive_dir, server)
    assert _kept(archive_dir) == []
    assert not list((archive_dir / "partials").glob("*/*"))
    assert "its validators are unknown (no validators)" in caplog.text


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def _partial(archive: Archive, work_id: str, size: int, kept_at: str) -> Path:
    """A kept partial of ``size`` bytes, kept as a failed fetch keeps one."""
    part = archive.staging_dir / work_id / f"{work_id}.mp4.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"\1" * size)
    partials = Partials(archive.partials_dir, 7)
    assert partials.keep(work_id, work_id, "18", part, Validators('"x"', None, size * 2))
    (sidecar,) = (archive.partials_dir / work_id).glob("*.json")
    record = json.loads(sidecar.read_text("utf-8"))
    sidecar.write_text(json.dumps({**record, "kept_at": kept_at}), "utf-8")
    shutil.rmtree(part.parent)
    return sidecar


def test_the_disk_space_check_counts_kept_partials_and_discards_them_oldest_first(
    archive_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest")
    archive = Archive(archive_dir)
    archive.ensure()
    archive.ledger_path.touch()
    old = _partial(archive, "cifa-r-0002", 3000, "2026-11-20T01:00:00+00:00")
    new = _partial(archive, "cifa-r-0003", 5000, "2026-11-25T01:00:00+00:00")
    target = archive.staging_dir / WORK_ID / "bag"
    target.mkdir(parents=True)
    base = 10_000  # the disk's free bytes with no partial kept

    def usage(path: object) -> _Usage:
        held = Partials(archive.partials_dir, 7).held_bytes()
        return _Usage(10**9, 0, base - held)

    monkeypatch.setattr(master.shutil, "disk_usage", usage)
    settings = load_settings().normalise.model_copy(update={"free_space_margin_bytes": 0})
    master.check_space(2000, target, settings, "film")  # 2,000 free: room enough, nothing gone
    assert old.exists() and new.exists()
    master.check_space(4000, target, settings, "film")  # the oldest is enough
    assert not old.exists() and not old.with_suffix(".partial").exists() and new.exists()
    assert "cifa-r-0002" in caplog.text and "the disk-space check needs the room" in caplog.text
    with pytest.raises(InsufficientSpace, match=r"kept partial downloads hold 5.0 KB, 5000 bytes"):
        master.check_space(20_000, target, settings, "film")  # more than they could give
    assert new.exists()  # not discarded in vain


def test_a_server_that_ignores_if_range_never_makes_a_file_of_two_versions(
    archive_dir: Path,
    server: _FilmServer,
    films: tuple[bytes, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest")
    cut = _cut_night(archive_dir, server)
    server.film.data, server.film.etag, server.film.heeds_if_range = films[1], '"v2"', False
    server.new_night()
    report = _night(archive_dir, server.url)
    assert report.outcome is Outcome.PRESERVED, report.error
    media = server.media()
    # It answered the resumed Range with the other version's bytes: removed, fetched whole.
    assert [(s.range, s.status) for s in media] == [(f"bytes={cut}-", 206), (None, 200)]
    original = archive_dir / "bags" / WORK_ID / "data" / "original" / f"{WORK_ID}.mp4"
    assert original.read_bytes() == films[1]
    assert "it ignored If-Range" in caplog.text


def test_partials_of_formats_gone_too_long_or_without_their_pair_are_discarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest")
    archive = Archive(tmp_path / "archive")
    archive.ensure()
    partials = Partials(archive.partials_dir, 7)
    staging = archive.staging_dir / WORK_ID
    staging.mkdir()

    def keep(format_id: str, size: int, length: int) -> None:
        part = staging / f"{format_id}.part"
        part.write_bytes(b"\2" * size)
        assert partials.keep(WORK_ID, WORK_ID, format_id, part, Validators('"e"', None, length))

    keep("gone", 10, 100)
    keep("other", 10, 100)
    keep("long", 10, 100)
    (long_data,) = [
        p.with_suffix(".partial")
        for p in archive.partials_dir.glob(f"{WORK_ID}/*.json")
        if json.loads(p.read_text())["format_id"] == "long"
    ]
    long_data.write_bytes(b"\2" * 200)  # grown past the file's recorded length
    resume = SourceResume(partials, WORK_ID, WORK_ID)
    chosen = {"format_id": "long", "url": "http://a.example/f", "protocol": "https"}
    resume.put_back([(chosen, staging / "film.mp4.part")], offered={"long", "other"})
    assert "format gone is no longer offered by the source" in caplog.text
    assert "format other is offered but no longer the one chosen" in caplog.text
    assert "it holds 200 bytes, its sidecar says 10" in caplog.text
    assert not (staging / "film.mp4.part").exists() and not resume.resumed
    assert not archive.partials_dir.joinpath(WORK_ID).exists()
    # A crash between the rename and the sidecar, or a sidecar left alone: debris.
    keep("a", 10, 100)
    keep("b", 10, 100)
    sidecars = sorted(archive.partials_dir.glob(f"{WORK_ID}/*.json"))
    sidecars[0].unlink()
    sidecars[1].with_suffix(".partial").unlink()
    partials.tidy(own_work=WORK_ID)
    assert not archive.partials_dir.joinpath(WORK_ID).exists()
    assert "debris: bytes without a sidecar" in caplog.text
    assert "debris: a sidecar without its bytes" in caplog.text


def test_chunked_downloads_are_kept_and_a_refused_range_is_never_taken_for_the_whole(
    tmp_path: Path,
) -> None:
    """yt-dlp fetches YouTube's formats in chunks (``http_chunk_size``): every answer is a 206,
    the first from byte 0. After a 416 to If-Range, yt-dlp would take kept bytes within 100 of
    the file's length for the whole file: that file is fetched again instead. After a 200 (the
    source changed), If-Range is no longer sent."""
    archive = Archive(tmp_path / "archive")
    archive.ensure()
    partials = Partials(archive.partials_dir, 7)
    staging = archive.staging_dir / WORK_ID
    staging.mkdir()
    url, part = "https://media.example/v.mp4", staging / f"{WORK_ID}.mp4.part"
    night = SourceResume(partials, WORK_ID, WORK_ID)
    chunk = {"ETag": '"c1"', "Content-Range": "bytes 0-999/5000", "Content-Length": "1000"}
    night.after(url, "GET", {"Range": "bytes=0-999"}, 206, chunk)
    night.progress(
        {
            "status": "downloading",
            "tmpfilename": str(part),
            "info_dict": {"format_id": "137", "url": url, "protocol": "https"},
        }
    )
    part.write_bytes(b"\3" * 1000)
    partials.failed.append(night)
    partials.keep_failed()
    (kept,) = _kept(archive.root)
    assert (kept["bytes"], kept["etag"], kept["content_length"]) == (1000, '"c1"', 5000)

    def resumed_night() -> SourceResume:
        again = SourceResume(partials, WORK_ID, WORK_ID)
        fmt = {"format_id": "137", "url": url, "protocol": "https"}
        again.put_back([(fmt, part)], offered={"137"})
        assert part.stat().st_size == 1000
        return again

    refused = resumed_night()
    headers: dict[str, str] = {"Range": "bytes=1000-"}
    refused.before(url, "GET", headers)
    assert headers["If-Range"] == '"c1"'
    refused.after(url, "GET", headers, 416, {"Content-Range": "bytes */1050"})
    assert refused.joined_versions() == ["137"]

    # Kept again (as a failed night keeps it), and the next night the source has changed.
    assert partials.keep(WORK_ID, WORK_ID, "137", part, Validators('"c1"', None, 5000))
    changed = resumed_night()
    first: dict[str, str] = {"Range": "bytes=1000-"}
    changed.before(url, "GET", first)
    changed.after(url, "GET", first, 200, {"ETag": '"c2"', "Content-Length": "5000"})
    later: dict[str, str] = {"Range": "bytes=2000-"}  # yt-dlp's next try within the night
    changed.before(url, "GET", later)
    assert "If-Range" not in later
    assert changed.joined_versions() == []
