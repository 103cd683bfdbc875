"""Blocks are not verdicts (issue 17), through the real YouTube extractor of yt-dlp.

YouTube's hosts are answered by a TLS server on 127.0.0.1 (:mod:`tests.youtube_server`) with
constructed watch pages and player responses: the bot wall, an age gate, a private video, a
removed video, a members-only video. Only the test maps the host names and trusts its own CA;
the request policy, the extractor and the certificate checks are production's. The kinds are
read where the archive keeps them: cifa's preserve (the ingest's entry point) and its ledger,
and the watch's check of a source.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import SourceStatus
from cifa_ingest.audit import watch
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings, locks_dir
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.fetch import pauses
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


def _ingest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    status = cli.main(["ingest", *args, "--allow-private-sources", "--json", "--quiet"])
    captured = capsys.readouterr()
    assert captured.out.startswith("{"), captured.err
    return status, json.loads(captured.out)


def test_a_block_defers_the_hosts_other_works_of_the_run_only(
    archive_dir: Path, youtube: FakeYouTube, film_server: LocalFileServer
) -> None:
    """The pause, quickly (no film encoded): in one run, the bot wall pauses youtube.com; the
    run's next YouTube work is deferred without a request, recorded as such; a work on another
    host is still asked. Another run tries YouTube again."""
    archive, settings = Archive(archive_dir), load_settings()
    elsewhere = Work.model_validate(
        {
            "id": "cifa-p-0003",
            "title": {"en": "Elsewhere"},
            "source": {"url": f"{film_server.base_url}/status/404/films/colour-bars.mkv"},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )

    def preserve(work: Work, run_id: str) -> tuple[str, str | None]:
        report = preserve_work(work, archive, settings, allow_private_sources=True, run_id=run_id)
        return report.outcome, report.error_kind

    assert preserve(youtube_work("cifa-p-0001", "cifaBotWall"), "night-1") == ("failed", "blocked")
    assert preserve(youtube_work("cifa-p-0002", "cifaMembers"), "night-1") == ("deferred", None)
    assert youtube.asked_about("cifaMembers") == []
    assert preserve(elsewhere, "night-1") == ("failed", "not-found")
    assert film_server.requests  # the other host was asked
    # The next run asks YouTube again.
    assert preserve(youtube_work("cifa-p-0002", "cifaMembers"), "night-2") == (
        "failed",
        "login-required",
    )
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT run_id, outcome, error FROM work_outcomes").fetchall()
    assert rows[1][:2] == ("night-1", "deferred")
    assert re.fullmatch(r"host youtube\.com blocked us \(bot wall\) at \d\d:\d\d UTC", rows[1][2])


@pytest.mark.slow
def test_the_bot_wall_halts_one_host_while_works_on_another_host_continue(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    archive_dir: Path,
    youtube: FakeYouTube,
    film_server: LocalFileServer,
    served_root: Path,
) -> None:
    """A night's run: the first YouTube work meets the bot wall; the second YouTube work is
    deferred without a request; the work on another host is preserved. The next night, YouTube
    lets us in: the deferred work is preserved. Through ``cifa ingest`` (the nightly-ingest
    flow, its report and exit code), twice: about 40 s."""
    works = [
        youtube_work("cifa-b-0001", "cifaBotWall"),
        youtube_work("cifa-b-0002", "cifaDeferrd"),
        Work.model_validate(
            {
                "id": "cifa-b-0003",
                "title": {"en": "Elsewhere"},
                "source": {"url": f"{film_server.base_url}/films/colour-bars.mkv"},
                "permission": {"status": "granted", "granted_by": "Test"},
            }
        ),
    ]
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        yaml.safe_dump({"works": [work.model_dump(mode="json") for work in works]}), "utf-8"
    )
    youtube.playability["cifaDeferrd"] = {"status": "OK"}  # never asked in the first run

    status, document = _ingest(capsys, str(catalogue), "--archive", str(archive_dir))
    outcomes = {w["id"]: (w["outcome"], w["error_kind"]) for w in document["works"]}
    assert outcomes == {
        "cifa-b-0001": ("failed", "blocked"),
        "cifa-b-0002": ("deferred", None),
        "cifa-b-0003": ("preserved", None),
    }
    assert status == 1  # as for any run with a failure
    assert document["counts"]["deferred"] == 1
    assert youtube.asked_about("cifaDeferrd") == []  # not one request
    deferred = next(w for w in document["works"] if w["id"] == "cifa-b-0002")
    assert re.fullmatch(
        r"host youtube\.com blocked us \(bot wall\) at \d\d:\d\d UTC", deferred["error"]
    )
    # Said once, in the run's report.
    page = (archive_dir / "reports" / "ingest-latest.html").read_text("utf-8")
    line = f"{deferred['error']}; 1 work deferred to the next run."
    assert page.count(line) == 1
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT work_id, outcome FROM work_outcomes ORDER BY id").fetchall()
    assert rows == [
        ("cifa-b-0001", "failed"),
        ("cifa-b-0002", "deferred"),
        ("cifa-b-0003", "preserved"),
    ]
    assert not list((archive_dir / "locks" / "paused").glob("*/*"))  # the pause ends with the run

    # The next night: YouTube answers again.
    film = served_root / "films" / "test-card-beijing.mp4"
    youtube.make_playable("cifaBotWall", film)
    youtube.make_playable("cifaDeferrd", film)
    status, document = _ingest(capsys, str(catalogue), "--archive", str(archive_dir))
    outcomes = {w["id"]: (w["outcome"], w["error_kind"]) for w in document["works"]}
    assert outcomes == {
        "cifa-b-0001": ("preserved", None),
        "cifa-b-0002": ("preserved", None),
        "cifa-b-0003": ("already-preserved", None),
    }
    assert status == 0
    # The capture record names the YouTube client whose answer gave the media.
    capture = json.loads(
        (archive_dir / "bags" / "cifa-b-0001" / "metadata" / "capture.json").read_text("utf-8")
    )
    client = capture["sources"][0]["ytdlp_client"]
    assert client and set(client.split(", ")) <= youtube.clients_given("cifaBotWall")


def test_a_block_halts_the_watch_of_that_host_only(
    archive_dir: Path, youtube: FakeYouTube, film_server: LocalFileServer
) -> None:
    """The watch meets the bot wall on its first YouTube source: the next YouTube work is not
    asked (no request, no ledger row, a note), the report names the host once; a work on
    another host is still asked. The next watch asks YouTube again."""
    archive, settings = Archive(archive_dir), load_settings()
    archive.ensure()

    def watched(work_id: str, url: str, source_id: str) -> watch.WatchedWork:
        source = watch.CapturedSource(work_id, 1, url, "youtube", source_id, "A film", 60.0, ())
        return watch.WatchedWork(work_id, (source,))

    youtube_url = "https://www.youtube.com/watch?v={}".format
    works = [
        watched("cifa-w-0001", youtube_url("cifaBotWall"), "cifaBotWall"),
        watched("cifa-w-0002", youtube_url("cifaMembers"), "cifaMembers"),
        watched("cifa-w-0003", f"{film_server.base_url}/films/colour-bars.mkv", "colour-bars"),
    ]
    report = watch.run(works, archive, settings, allow_private_sources=True)
    assert [(c.work_id, c.status, c.error_kind) for c in report.checks] == [
        ("cifa-w-0001", SourceStatus.UNREACHABLE, "blocked"),
        ("cifa-w-0003", SourceStatus.CHANGED, None),  # asked: its host did not block us
    ]
    assert youtube.asked_about("cifaMembers") == []
    sentence = r"host youtube\.com blocked us \(bot wall\) at \d\d:\d\d UTC"
    [note] = report.notes
    assert note.work_id == "cifa-w-0002"
    assert re.fullmatch(f"not asked: {sentence}", note.reason)
    line = report.summary_line()
    assert re.search(f"; {sentence}: 1 work\\(s\\) left for the next watch$", line), line
    assert len(re.findall(sentence, watch.table(report))) == 2  # the note, and the summary once
    document = report.as_dict(str(archive_dir))
    [paused] = document["paused_hosts"]
    assert (paused["site"], paused["work_id"], paused["not_checked"]) == (
        "youtube.com",
        "cifa-w-0001",
        ["cifa-w-0002"],
    )
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        asked = conn.execute("SELECT DISTINCT work_id FROM source_checks").fetchall()
    assert sorted(asked) == [("cifa-w-0001",), ("cifa-w-0003",)]

    # The next watch asks YouTube again.
    report = watch.run(works[1:2], archive, settings, allow_private_sources=True)
    assert [(c.work_id, c.error_kind) for c in report.checks] == [("cifa-w-0002", "login-required")]
    assert report.paused == {}


def test_the_media_hosts_403_after_the_metadata_is_a_block(
    archive_dir: Path, youtube: FakeYouTube, served_root: Path
) -> None:
    """YouTube's watch page and player say the film plays, then its media host refuses the
    bytes (403, as googlevideo.com answers an address or a missing PO token it distrusts):
    ``blocked``, never ``forbidden`` or ``private``, through the real YouTube extractor."""
    archive, settings = Archive(archive_dir), load_settings()
    youtube.make_playable("cifaMedia40", served_root / "films" / "test-card-beijing.mp4")
    youtube.refuse_media("cifaMedia40")
    report = preserve_work(
        youtube_work("cifa-m-0001", "cifaMedia40"), archive, settings, allow_private_sources=True
    )
    assert (report.outcome, report.error_kind) == (Outcome.FAILED, "blocked")
    asked = youtube.asked_about("cifaMedia40")
    assert any(s.path.startswith("/watch") for s in asked)  # the metadata phase succeeded
    media = [s for s in youtube.seen if s.path.startswith("/videoplayback")]
    assert media and {s.host for s in media} == {"rr1---sn-cifa.googlevideo.com"}
    assert not list((archive_dir / "bags").glob("*"))


def test_a_work_under_way_when_its_host_blocks_the_run_stops_before_its_media(
    archive_dir: Path, youtube: FakeYouTube, served_root: Path
) -> None:
    """Works run side by side: while one reads its watch page, another work of the same run
    meets the bot wall and pauses the host. The first stops before asking for its media, and
    is deferred like the run's later works there, not failed on its own."""
    archive, settings = Archive(archive_dir), load_settings()
    youtube.make_playable("cifaUnderWy", served_root / "films" / "test-card-beijing.mp4")
    locks = locks_dir(settings, archive_dir)
    youtube.when_asked(
        "cifaUnderWy",
        lambda: pauses.pause(locks, "night-1", "youtube.com", "bot wall", "cifa-u-0002"),
    )
    report = preserve_work(
        youtube_work("cifa-u-0001", "cifaUnderWy"),
        archive,
        settings,
        allow_private_sources=True,
        run_id="night-1",
    )
    assert report.outcome is Outcome.DEFERRED, report.error
    sentence = r"host youtube\.com blocked us \(bot wall\) at \d\d:\d\d UTC"
    assert re.fullmatch(sentence, report.error or "")
    assert youtube.asked_about("cifaUnderWy")  # its page was read
    assert not [s for s in youtube.seen if s.path.startswith("/videoplayback")]
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT work_id, outcome FROM work_outcomes").fetchall()
    assert rows == [("cifa-u-0001", "deferred")]
    assert not (archive_dir / "staging" / "cifa-u-0001").exists()
