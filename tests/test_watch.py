"""The source watch, with real parts: films preserved from a real HTTP server on 127.0.0.1, then
asked about again with the real yt-dlp after they were left alone, deleted, or replaced by another
film at the same address; the checks as the ledger keeps them; the ``cifa watch`` command; the
``source-watch`` flow and the nightly run's last step on Prefect's embedded server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.audit import watch
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.preserve import Outcome, WorkReport, preserve_work
from tests.conftest import REPO, TEST_CONFIG

FILM = "/films/watched.mkv"
STREAM = "/films/watched-hls/stream.m3u8"


@pytest.fixture
def own_root(tmp_path: Path, served_root: Path) -> Path:
    """A site of our own, so that a test can delete or replace its films: a copy of a demo film
    and of the demo HLS stream."""
    root = tmp_path / "site"
    (root / "films").mkdir(parents=True)
    shutil.copy(served_root / "films" / "colour-bars.mkv", root / FILM.lstrip("/"))
    shutil.copytree(served_root / "films" / "hls", root / "films" / "watched-hls")
    return root


@pytest.fixture
def own_server(own_root: Path) -> LocalFileServer:
    with LocalFileServer(own_root) as server:
        yield server


def _work(work_id: str, url: str) -> Work:
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": "Watched", "zh": "被注视的"},
            "source": {"url": url},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )


def _preserve(archive_dir: Path, work_id: str, url: str) -> Work:
    work = _work(work_id, url)
    report = preserve_work(work, Archive(archive_dir), load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    return work


def _watch(archive_dir: Path, *work_ids: str) -> watch.WatchReport:
    return watch.watch(
        Archive(archive_dir), load_settings(), work_ids or None, allow_private_sources=True
    )


def _tree(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*")}


def test_a_film_that_vanishes_is_gone_and_the_ledger_keeps_since_when(
    archive_dir: Path, own_root: Path, own_server: LocalFileServer
) -> None:
    _preserve(archive_dir, "cifa-w-0001", own_server.base_url + FILM)
    bags = _tree(archive_dir / "bags")

    first = _watch(archive_dir)
    [check] = first.checks
    assert (check.work_id, check.source_index, check.status) == ("cifa-w-0001", 1, "present")
    assert check.url == own_server.base_url + FILM  # the URL the capture record says was fetched
    assert check.changes == {} and check.previous_status is None
    assert check.since == check.checked_at
    assert first.ok
    assert _tree(archive_dir / "bags") == bags  # only the ledger is written

    (own_root / FILM.lstrip("/")).unlink()
    [gone] = _watch(archive_dir).checks
    assert gone.status == "gone" and gone.error_kind == "not-found"
    assert "404" in (gone.error or "")
    assert gone.previous_status == "present" and gone.is_change
    assert gone.since == gone.checked_at

    [still_gone] = _watch(archive_dir).checks
    assert still_gone.status == "gone" and not still_gone.is_change
    assert still_gone.since == gone.checked_at  # gone since the first check that found it gone

    # The film comes back (the very bytes the archive received).
    original = archive_dir / "bags" / "cifa-w-0001" / "data" / "original" / "cifa-w-0001.mkv"
    shutil.copy(original, own_root / FILM.lstrip("/"))
    [back] = _watch(archive_dir).checks
    assert back.status == "present" and back.previous_status == "gone"

    ledger = Ledger(archive_dir / "ledger.sqlite")
    history = ledger.source_history("cifa-w-0001")
    assert [r.status for r in history] == ["present", "gone", "gone", "present"]
    assert [r.previous_status for r in history] == [None, "present", "gone", "gone"]
    assert [r.checked_at for r in history] == sorted(r.checked_at for r in history)
    assert all(r.checked_at.endswith("+00:00") for r in history)
    assert history[1].details["error_kind"] == "not-found"
    assert history[0].details["observed"]["id"] == "Generic:watched"
    assert "yt-dlp" in history[0].software
    changes = ledger.source_changes()
    assert [(r.status, r.previous_status) for r in changes] == [
        ("present", None),
        ("gone", "present"),
        ("present", "gone"),
    ]
    assert ledger.source_changes(since="9999-01-01") == []
    [latest] = ledger.latest_source_checks()
    assert (latest.status, latest.since) == ("present", back.checked_at)


def test_another_film_at_the_same_address_is_changed(
    archive_dir: Path, own_root: Path, own_server: LocalFileServer, served_root: Path
) -> None:
    _preserve(archive_dir, "cifa-w-0002", own_server.base_url + STREAM)
    assert [c.status for c in _watch(archive_dir).checks] == ["present"]

    # The same address now serves another film: picture and sound as separate streams.
    stream_dir = own_root / "films" / "watched-hls"
    shutil.rmtree(stream_dir)
    shutil.copytree(served_root / "films" / "hls-split", stream_dir)
    shutil.copy(stream_dir / "master.m3u8", stream_dir / "stream.m3u8")

    report = _watch(archive_dir)
    [check] = report.checks
    assert check.status == "changed" and check.previous_status == "present"
    assert check.changes["formats"]["old"] == ["0"]
    assert set(check.changes["formats"]["new"]) >= {"group_aud-audio_1"}
    assert "formats: [0] → [" in check.summary()
    assert not report.ok
    stored = Ledger(archive_dir / "ledger.sqlite").source_history("cifa-w-0002")[-1]
    assert stored.status == "changed" and stored.details["changes"] == check.changes


def test_compare_names_each_field_that_differs() -> None:
    captured = watch.CapturedSource(
        "cifa-x", 1, "https://example.org/v", "Generic", "v", "Title", 120.0, ("hd", "sd")
    )
    same = {"extractor_key": "Generic", "id": "v", "title": "Title", "duration": 120.2,
            "formats": [{"format_id": "sd"}, {"format_id": "hd"}]}  # fmt: skip
    assert watch.compare(captured, same) == {}
    cut = {**same, "duration": 95, "title": "Title (edited)", "formats": [{"format_id": "sd"}]}
    assert watch.compare(captured, cut) == {
        "title": {"old": "Title", "new": "Title (edited)"},
        "formats": {"old": ["hd", "sd"], "new": ["sd"]},
        "duration": {"old": 120.0, "new": 95.0},
    }
    assert set(watch.compare(captured, {**same, "id": "w"})) == {"id"}


def test_ledger_history_is_per_source_and_schema_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    for at, index, status in [
        ("2026-01-01T00:00:00+00:00", 1, "present"),
        ("2026-01-01T00:00:00+00:00", 2, "present"),
        ("2026-01-02T00:00:00+00:00", 1, "present"),
        ("2026-01-02T00:00:00+00:00", 2, "private"),
        ("2026-01-03T00:00:00+00:00", 1, "present"),
        ("2026-01-03T00:00:00+00:00", 2, "private"),
    ]:
        ledger.record_source_check("cifa-x", index, f"https://e.org/{index}", status, {}, "t", at)
    ledger = Ledger(path)  # opening again changes nothing
    latest = {r.source_index: r for r in ledger.latest_source_checks(["cifa-x"])}
    assert (latest[1].status, latest[1].since) == ("present", "2026-01-01T00:00:00+00:00")
    assert (latest[2].status, latest[2].since) == ("private", "2026-01-02T00:00:00+00:00")
    assert ledger.latest_source_checks(["cifa-other"]) == []
    changes = ledger.source_changes(since="2026-01-02")
    assert [(r.source_index, r.previous_status, r.status) for r in changes] == [
        (2, "present", "private")
    ]
    assert [r.since for r in ledger.source_history("cifa-x", 2)] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-02T00:00:00+00:00",
        "2026-01-02T00:00:00+00:00",
    ]
    stored = ledger.record_source_check("cifa-x", 2, "https://e.org/2", "gone", {"a": 1}, "t")
    assert (stored.previous_status, stored.since) == ("private", stored.checked_at)


def test_a_bag_without_capture_record_is_skipped_with_a_note(
    archive_dir: Path, own_server: LocalFileServer
) -> None:
    _preserve(archive_dir, "cifa-w-0003", own_server.base_url + FILM)
    (archive_dir / "bags" / "cifa-w-0003" / "metadata" / "capture.json").unlink()
    report = _watch(archive_dir, "cifa-w-0003", "cifa-not-there")
    assert report.checks == [] and report.ok
    reasons = {note.work_id: note.reason for note in report.notes}
    assert "capture.json" in reasons["cifa-w-0003"]
    assert "not preserved" in reasons["cifa-not-there"]


# ---------------------------------------------------------------------------------------------
# The command


def _cli_watch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    status = cli.main(["watch", *args, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert captured.out.startswith("{"), captured.err
    return status, json.loads(captured.out)


def _catalogue(path: Path, *works: Work) -> Path:
    path.write_text(
        yaml.safe_dump({"works": [work.model_dump(mode="json") for work in works]}), "utf-8"
    )
    return path


def test_watch_command_exit_codes_json_and_table(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    archive_dir: Path,
    own_root: Path,
    own_server: LocalFileServer,
) -> None:
    film = _preserve(archive_dir, "cifa-w-0004", own_server.base_url + FILM)
    stream = _preserve(archive_dir, "cifa-w-0005", own_server.base_url + STREAM)
    archive = ["--archive", str(archive_dir), "--allow-private-sources"]

    status, document = _cli_watch(capsys, *archive)
    assert status == 0 and document["ok"] is True
    assert [(s["id"], s["status"]) for s in document["sources"]] == [
        ("cifa-w-0004", "present"),
        ("cifa-w-0005", "present"),
    ]
    assert document["counts"] == {"present": 2}

    # With a catalogue: only its works, validated first; --only narrows further.
    catalogue = _catalogue(tmp_path / "c.yaml", film, _work("cifa-w-0099", "http://127.0.0.1:9/x"))
    status, document = _cli_watch(capsys, str(catalogue), *archive)
    assert status == 0
    assert [s["id"] for s in document["sources"]] == ["cifa-w-0004"]
    assert document["skipped"] == [
        {"id": "cifa-w-0099", "reason": "not preserved: nothing to watch"}
    ]
    status, document = _cli_watch(capsys, *archive, "--only", "cifa-w-0005")
    assert [s["id"] for s in document["sources"]] == ["cifa-w-0005"]

    (own_root / FILM.lstrip("/")).unlink()
    status, document = _cli_watch(capsys, *archive)
    assert status == 1 and document["ok"] is False
    gone = document["sources"][0]
    assert (gone["id"], gone["status"], gone["previous_status"]) == (
        "cifa-w-0004",
        "gone",
        "present",
    )
    assert gone["is_change"] is True and gone["since"] == gone["checked_at"]
    assert gone["error_kind"] == "not-found"
    assert document["sources"][1]["status"] == "present"

    assert cli.main(["watch", *archive, "--quiet"]) == 1
    table = capsys.readouterr().out
    assert "cifa-w-0004" in table and "GONE" in table and "not-found" in table
    assert "2 source(s) checked, 1 gone, 1 present" in table
    assert stream.id in table


def test_watch_command_bad_input_exits_2_before_any_request(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    archive_dir: Path,
    own_server: LocalFileServer,
) -> None:
    _preserve(archive_dir, "cifa-w-0006", own_server.base_url + FILM)
    before = len(own_server.requests)

    def refused(*args: str) -> str:
        assert cli.main(["watch", *args, "--quiet"]) == 2
        return capsys.readouterr().err

    # A loopback source without --allow-private-sources, named with its work.
    assert "cifa-w-0006: source 1: " in refused("--archive", str(archive_dir))
    assert "--only: no such work preserved" in refused(
        "--archive", str(archive_dir), "--only", "cifa-nope", "--allow-private-sources"
    )
    invalid = REPO / "tests" / "data" / "catalogues" / "invalid" / "granted-without-granted-by.yaml"
    assert "granted_by is required" in refused(str(invalid), "--archive", str(archive_dir))
    valid = REPO / "tests" / "data" / "catalogues" / "valid" / "full.yaml"
    assert "--only: no such work in the catalogues" in refused(
        str(valid), "--archive", str(archive_dir), "--only", "cifa-w-0006"
    )
    nowhere = tmp_path / "no-archive"
    assert "nothing is preserved" in refused("--archive", str(nowhere))
    assert not nowhere.exists()
    assert len(own_server.requests) == before


def test_watch_command_does_not_start_prefect(
    tmp_path: Path, archive_dir: Path, own_server: LocalFileServer
) -> None:
    _preserve(archive_dir, "cifa-w-0007", own_server.base_url + FILM)
    code = (
        "import sys; from cifa_ingest import cli; status = cli.main(sys.argv[1:]);"
        "print('prefect imported' if 'prefect' in sys.modules else 'prefect not imported',"
        " file=sys.stderr); sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "watch", "--archive", str(archive_dir),
         "--allow-private-sources"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
             "CIFA_CONFIG": str(TEST_CONFIG)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "prefect not imported" in result.stderr
    assert "cifa-w-0007" in result.stdout and "present" in result.stdout


# ---------------------------------------------------------------------------------------------
# Prefect: the source-watch flow, and the nightly run's last step


def test_nightly_ingest_watches_its_preserved_works_last(
    tmp_path: Path, archive_dir: Path, own_root: Path, own_server: LocalFileServer
) -> None:
    from cifa_ingest.pipelines.flows import nightly_ingest, reports_of_state, source_watch

    ok = _work("cifa-w-0008", own_server.base_url + FILM)
    missing = _work("cifa-w-0009", own_server.base_url + "/films/never-there.mp4")
    catalogue = _catalogue(tmp_path / "c.yaml", ok, missing)

    def nightly() -> object:
        return nightly_ingest(
            [str(catalogue)], str(archive_dir), allow_private_sources=True, return_state=True
        )

    state = nightly()
    # The ingest's own state and reports, whatever the watch found: Failed for the missing film.
    assert state.is_failed() and "cifa-w-0009" in (state.message or "")
    reports = reports_of_state(state)
    assert reports is not None, state
    assert [(r.id, r.outcome) for r in reports] == [
        ("cifa-w-0008", Outcome.PRESERVED),
        ("cifa-w-0009", Outcome.FAILED),
    ]
    assert all(isinstance(r, WorkReport) for r in reports)
    ledger = Ledger(archive_dir / "ledger.sqlite")
    assert [(r.work_id, r.status) for r in ledger.latest_source_checks()] == [
        ("cifa-w-0008", "present")
    ]

    # Run again the same night: nothing is fetched, and the sources are not asked again.
    requests = len(own_server.requests)
    nightly()
    assert len(ledger.source_history("cifa-w-0008")) == 1
    assert not any(r.path == FILM for r in own_server.requests[requests:])

    # The flow on its own asks every time.
    (own_root / FILM.lstrip("/")).unlink()
    state = source_watch(str(archive_dir), allow_private_sources=True, return_state=True)
    assert state.is_completed()
    report = state.result()
    assert [(c.work_id, c.status) for c in report.checks] == [("cifa-w-0008", "gone")]
    assert "cifa-w-0008/1 gone" in (state.message or "")


def test_a_failing_watch_never_fails_the_nightly_ingest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, archive_dir: Path, own_server: LocalFileServer
) -> None:
    from cifa_ingest.pipelines.flows import nightly_ingest

    calls = []

    def broken(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise RuntimeError("the watch broke")

    monkeypatch.setattr(watch, "plan", broken)
    catalogue = _catalogue(tmp_path / "c.yaml", _work("cifa-w-0010", own_server.base_url + FILM))
    state = nightly_ingest(
        [str(catalogue)], str(archive_dir), allow_private_sources=True, return_state=True
    )
    assert calls, "the watch ran, and failed"
    assert state.is_completed(), state.message
    [report] = state.result()
    assert (report.id, report.outcome) == ("cifa-w-0010", Outcome.PRESERVED)
    assert Ledger(archive_dir / "ledger.sqlite").latest_source_checks() == []
