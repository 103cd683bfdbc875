"""Proof that a capture is complete (issue 17), through the real yt-dlp and ffmpeg against
servers on 127.0.0.1: an MP4 cut off in its media data but served whole and consistent, an HLS
playlist with a segment that answers 404, and separate picture and sound whose sound is half as
long all fail as ``incomplete``, after a second attempt, naming what is missing, and leave no
bag. The demo's good films are complete (their verdicts: tests/test_fetch.py)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
from pathlib import Path

import ffmpeg
import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.fetch.completeness import FileEvidence, StreamEvidence, clock, judge
from cifa_ingest.preserve import Outcome, WorkReport, preserve_work
from cifa_ingest.tools import runner


def _lavfi(spec: str, seconds: float) -> ffmpeg.nodes.FilterableStream:
    return ffmpeg.input(spec, f="lavfi", t=seconds)


def _small_film(target: Path, seconds: float = 6) -> None:
    """A few seconds of 160x120 picture and a tone in an MP4, its moov at the front."""
    runner.run_ffmpeg(
        ffmpeg.output(
            _lavfi("testsrc=size=160x120:rate=25", seconds),
            _lavfi("sine=frequency=440:sample_rate=48000", seconds),
            str(target),
            vcodec="libx264",
            preset="veryfast",
            pix_fmt="yuv420p",
            acodec="aac",
            movflags="+faststart",
        )
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, served_root: Path) -> Path:
    """The damaged films, made once: films/cut.mp4, films/hls-hole/, films/split-short/."""
    root = tmp_path_factory.mktemp("incomplete-site")
    films = root / "films"
    films.mkdir()
    # An MP4 whose header promises 6 s, cut in the middle of its media data: served whole and
    # consistent, its Content-Length the cut file's length.
    whole = root / "whole.mp4"
    _small_film(whole)
    data = whole.read_bytes()
    mdat = data.index(b"mdat") - 4
    assert data.index(b"moov") < mdat  # faststart: the header before the media
    (films / "cut.mp4").write_bytes(data[: mdat + (len(data) - mdat) // 2])
    # The demo's HLS stream (4 segments) with its third segment gone: the server answers 404.
    shutil.copytree(served_root / "films" / "hls", films / "hls-hole")
    (films / "hls-hole" / "seg-002.ts").unlink()
    # Separate video and audio renditions (as DASH sources are): 6 s of picture, 3 s of sound.
    split = films / "split-short"
    split.mkdir()
    runner.run_ffmpeg(
        ffmpeg.output(
            _lavfi("testsrc2=size=160x120:rate=25", 6),
            _lavfi("sine=frequency=700:sample_rate=48000", 3),
            str(split / "stream-%v.m3u8"),
            vcodec="libx264",
            preset="veryfast",
            pix_fmt="yuv420p",
            g=25,
            acodec="aac",
            f="hls",
            hls_time=1,
            hls_playlist_type="vod",
            var_stream_map="v:0,agroup:aud a:0,agroup:aud,default:yes",
            master_pl_name="master.m3u8",
            hls_segment_filename=str(split / "s%v-%03d.ts"),
        )
    )
    return root


def _preserve(archive_dir: Path, url: str) -> WorkReport:
    work = Work.model_validate(
        {
            "id": "cifa-c-0001",
            "title": {"en": "Completeness test"},
            "permission": {"status": "granted", "granted_by": "Test"},
            "source": {"url": url},
        }
    )
    return preserve_work(work, Archive(archive_dir), load_settings(), allow_private_sources=True)


def _assert_failed_incomplete(report: WorkReport, archive_dir: Path) -> None:
    assert report.outcome is Outcome.FAILED, report
    assert report.error_kind == "incomplete", report.error
    assert not (archive_dir / "bags" / "cifa-c-0001").exists()  # never a bag of a short film
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT outcome, error_kind FROM work_outcomes").fetchall()
    assert rows == [("failed", "incomplete")]


def test_an_mp4_cut_off_in_its_media_data_is_incomplete(
    site: Path, archive_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cifa_ingest.fetch.ytdlp")
    with LocalFileServer(site) as server:
        report = _preserve(archive_dir, f"{server.base_url}/films/cut.mp4")
        sent = [r for r in server.requests if r.path == "/films/cut.mp4" and r.range is None]
    _assert_failed_incomplete(report, archive_dir)
    # Both streams stop near the cut, three seconds short of the six the header promises.
    assert re.search(r"video ends at 0:00:0[1-4] of 0:00:06 \(cifa-c-0001\.mp4\)", report.error)
    assert re.search(r"audio ends at 0:00:0[1-4] of 0:00:06", report.error or "")
    assert "incomplete (" in caplog.text and "trying again" in caplog.text  # fetched twice
    assert len(sent) >= 2 and all(r.status == 200 for r in sent)


def test_an_hls_segment_answering_404_is_incomplete(site: Path, archive_dir: Path) -> None:
    with LocalFileServer(site) as server:
        report = _preserve(archive_dir, f"{server.base_url}/films/hls-hole/stream.m3u8")
        missing = [r for r in server.requests if r.path.endswith("/seg-002.ts")]
        after = [r for r in server.requests if r.path.endswith("/seg-003.ts")]
    _assert_failed_incomplete(report, archive_dir)
    assert "fragment 3 of 4 could not be fetched (HTTP Error 404" in (report.error or "")
    assert missing and all(r.status == 404 for r in missing)
    assert not after  # not skipped: the download stops at the hole


def test_separate_audio_half_as_long_as_the_video_is_incomplete(
    site: Path, archive_dir: Path
) -> None:
    with LocalFileServer(site) as server:
        report = _preserve(archive_dir, f"{server.base_url}/films/split-short/master.m3u8")
    _assert_failed_incomplete(report, archive_dir)
    assert re.search(
        r"audio ends at 0:00:03 of 0:00:06 \(cifa-c-0001\.stream-\d\.ts\)", report.error
    )
    assert "video ends" not in (report.error or "")


def test_a_complete_capture_records_its_verdict_and_evidence(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    report = _preserve(archive_dir, f"{film_server.base_url}/films/hls-split/master.m3u8")
    assert report.outcome is Outcome.PRESERVED, report.error
    bag = archive_dir / "bags" / "cifa-c-0001"
    capture = json.loads((bag / "metadata" / "capture.json").read_text("utf-8"))
    (source,) = capture["sources"]
    verdict = source["completeness"]
    assert verdict["verdict"] == "complete" and verdict["missing"] == []
    assert verdict["tolerance_seconds"] == load_settings().fetch.duration_tolerance_seconds
    assert capture["options"]["skip_unavailable_fragments"] is False  # a hole is never skipped
    kinds = sorted(s["kind"] for f in verdict["files"] for s in f["streams"])
    assert kinds == ["audio", "video"]
    for evidence in verdict["files"]:
        assert evidence["fragments_received"] == evidence["fragments_expected"] > 0
        assert evidence["decode_error_count"] == 0
        for stream in evidence["streams"]:
            assert stream["decoded_end"] == pytest.approx(4, abs=0.1) and stream["frames"] > 0


def test_the_verdict_names_what_is_missing_within_the_tolerance() -> None:
    def stream(kind: str, declared: float | None, decoded: float) -> StreamEvidence:
        return StreamEvidence(0, kind, None, declared, decoded, frames=1)

    video = FileEvidence("f.stream-1.mp4", "video", 10, streams=[stream("video", 5532, 5530)])
    audio = FileEvidence("f.stream-2.m4a", "audio", 5, streams=[stream("audio", None, 2467.4)])
    verdict = judge([video, audio], source_duration=5530.0, tolerance=2)
    assert not verdict.complete
    assert verdict.missing == ["audio ends at 0:41:07 of 1:32:10 (f.stream-2.m4a)"]
    assert verdict.as_dict()["verdict"] == "incomplete"
    sized = FileEvidence("g.mp4", "video+audio", 600, 1200, "Content-Length")
    sized.streams = [stream("video", 60, 59.5)]
    assert judge([sized], None, 2).missing == [
        "g.mp4: 600 bytes received of 1200 declared by the Content-Length"
    ]
    assert judge([FileEvidence("h.mp4", "video", 1, streams=[stream("video", 60, 59)])], 60, 2)
    assert clock(5530) == "1:32:10"
