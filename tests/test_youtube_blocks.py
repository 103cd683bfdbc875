"""Blocks are not verdicts (issue 17), through the real YouTube extractor of yt-dlp.

YouTube's hosts are answered by a TLS server on 127.0.0.1 (:mod:`tests.youtube_server`) with
constructed watch pages and player responses: the bot wall, an age gate, a private video, a
removed video, a members-only video. Only the test maps the host names and trusts its own CA;
the request policy, the extractor and the certificate checks are production's. The kinds are
read where the archive keeps them: cifa's preserve (the ingest's entry point) and its ledger,
and the watch's check of a source.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import SourceStatus
from cifa_ingest.audit import watch
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.fetch.source_policy import SourcePolicy
from cifa_ingest.preserve import Outcome, preserve_work
from tests.youtube_server import FakeYouTube, serve_youtube

#: Each constructed video, the kind of its failure and what the watch reads it as.
VIDEOS = {
    "cifaBotWall": ("blocked", SourceStatus.UNREACHABLE),
    "cifaAgeGate": ("age-restricted", SourceStatus.PRIVATE),
    "cifaPrivate": ("private", SourceStatus.PRIVATE),
    "cifaRemoved": ("gone", SourceStatus.GONE),
    "cifaMembers": ("login-required", SourceStatus.PRIVATE),
}


@pytest.fixture
def youtube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeYouTube]:
    folder = tmp_path / "tls"
    folder.mkdir()
    with serve_youtube(folder, monkeypatch) as server:
        yield server


def youtube_work(work_id: str, video_id: str) -> Work:
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": f"YouTube {video_id}"},
            "source": {"url": f"https://www.youtube.com/watch?v={video_id}"},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )


def test_youtubes_answers_are_classified_and_the_ledger_keeps_them(
    archive_dir: Path, youtube: FakeYouTube
) -> None:
    archive, settings = Archive(archive_dir), load_settings()
    kinds = {}
    for number, video_id in enumerate(VIDEOS, start=1):
        work = youtube_work(f"cifa-yt-{number:04d}", video_id)
        report = preserve_work(work, archive, settings, allow_private_sources=True)
        assert report.outcome is Outcome.FAILED
        kinds[video_id] = report.error_kind
    assert kinds == {video_id: kind for video_id, (kind, _status) in VIDEOS.items()}
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT work_id, outcome, error_kind FROM work_outcomes").fetchall()
    assert sorted(rows) == [
        (f"cifa-yt-{number:04d}", "failed", kind)
        for number, (kind, _status) in enumerate(VIDEOS.values(), start=1)
    ]
    # Through YouTube's own hosts, over TLS, as production asks them.
    assert {seen.host for seen in youtube.seen} == {"www.youtube.com"}
    # The bot wall is not asked again at once: one watch page, never a second attempt.
    pages = [s for s in youtube.asked_about("cifaBotWall") if s.path.startswith("/watch")]
    assert len(pages) == 1


def test_the_watch_reads_a_block_as_unreachable_never_private_or_gone(
    youtube: FakeYouTube,
) -> None:
    settings = load_settings()
    policy = SourcePolicy.of(settings.fetch, True)
    for video_id, (kind, status) in VIDEOS.items():
        source = watch.CapturedSource(
            work_id="cifa-yt-0001",
            index=1,
            url=f"https://www.youtube.com/watch?v={video_id}",
            extractor="youtube",
            source_id=video_id,
            title=f"Test film {video_id}",
            duration=60.0,
            formats=("18",),
        )
        check = watch.check_source(source, settings, policy)
        assert (video_id, check.status, check.error_kind) == (video_id, status, kind)
