"""End to end, with real parts: a real HTTP server on 127.0.0.1, the real yt-dlp, the real ffmpeg,
the real Prefect flows (embedded server), bags checked with bagit-python and ffprobe."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.demo.http_server import LocalFileServer
from tests.helpers import assert_valid_preserved_bag, sha256

PRESERVED = [f"cifa-demo-{n:04d}" for n in (1, 2, 3, 6, 7, 8, 9, 10)]


def _ingest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    status = cli.main(["ingest", *args, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert captured.out.startswith("{"), captured.err
    return status, json.loads(captured.out)


def _film_requests(server: LocalFileServer) -> list[str]:
    return [r.path for r in server.requests if r.path.startswith("/films/")]


def test_demo_catalogue_is_preserved_once_and_only_what_is_permitted(
    capsys: pytest.CaptureFixture[str],
    demo_catalogue: Path,
    archive_dir: Path,
    film_server: LocalFileServer,
    served_root: Path,
) -> None:
    status, report = _ingest(
        capsys, str(demo_catalogue), "--archive", str(archive_dir), "--allow-private-sources"
    )
    outcomes = {work["id"]: work["outcome"] for work in report["works"]}
    assert status == 0, report
    assert outcomes == {
        **dict.fromkeys(PRESERVED, "preserved"),
        "cifa-demo-0004": "not-permitted",
        "cifa-demo-0005": "awaiting-source",
    }
    for work_id in PRESERVED:
        assert_valid_preserved_bag(archive_dir / "bags" / work_id, work_id)

    # The original bytes are exactly those the server sent.
    bag1 = archive_dir / "bags" / "cifa-demo-0001" / "data" / "original" / "cifa-demo-0001.mp4"
    assert sha256(bag1) == sha256(served_root / "films" / "test-card-beijing.mp4")
    parts = sorted((archive_dir / "bags" / "cifa-demo-0003" / "data" / "original").iterdir())
    assert [p.name for p in parts] == ["cifa-demo-0003-part-01.mp4", "cifa-demo-0003-part-02.mp4"]
    assert sha256(parts[1]) == sha256(served_root / "films" / "three-days-day-2.mp4")

    # The pending work's file is served, but was never requested.
    assert not any("pending-film" in path for path in _film_requests(film_server))

    # Chinese titles survive in the tag files, as UTF-8.
    bag_info = (archive_dir / "bags" / "cifa-demo-0001" / "bag-info.txt").read_text("utf-8")
    assert "Title-Zh: 北京测试卡" in bag_info
    descriptive = json.loads(
        (archive_dir / "bags" / "cifa-demo-0002" / "metadata" / "descriptive.json").read_text()
    )
    assert descriptive["title"] == {"en": "Colour Bars", "zh": "彩条"}

    # The ledger knows every bag, by a path relative to the archive; nothing is left in staging.
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        rows = dict(conn.execute("SELECT work_id, bag_path FROM bags").fetchall())
    assert rows == {work_id: f"bags/{work_id}" for work_id in PRESERVED}
    assert list((archive_dir / "staging").iterdir()) == []

    # Running again preserves nothing twice and fetches nothing.
    requests_before = len(film_server.requests)
    mtimes = {p: p.stat().st_mtime_ns for p in (archive_dir / "bags").rglob("*")}
    status, again = _ingest(
        capsys, str(demo_catalogue), "--archive", str(archive_dir), "--allow-private-sources"
    )
    assert status == 0
    assert [w["outcome"] for w in again["works"] if w["id"] in PRESERVED] == [
        "already-preserved"
    ] * len(PRESERVED)
    assert len(film_server.requests) == requests_before  # not one request on a re-run
    assert {p: p.stat().st_mtime_ns for p in (archive_dir / "bags").rglob("*")} == mtimes


def test_a_failing_film_does_not_stop_the_others_and_leaves_nothing_behind(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    archive_dir: Path,
    film_server: LocalFileServer,
) -> None:
    catalogue = tmp_path / "catalogue.yaml"
    granted = {"status": "granted", "granted_by": "Test"}
    catalogue.write_text(
        yaml.safe_dump(
            {
                "works": [
                    {
                        "id": "cifa-gone",
                        "title": {"en": "Gone"},
                        "source": {"url": f"{film_server.base_url}/films/no-such-film.mp4"},
                        "permission": dict(granted),
                    },
                    {
                        "id": "cifa-ok",
                        "title": {"en": "Fine"},
                        "source": {"url": f"{film_server.base_url}/films/colour-bars.mkv"},
                        "permission": dict(granted),
                    },
                ]
            }
        ),
        "utf-8",
    )
    status, report = _ingest(
        capsys, str(catalogue), "--archive", str(archive_dir), "--allow-private-sources"
    )
    assert status == 1
    by_id = {work["id"]: work for work in report["works"]}
    assert by_id["cifa-gone"]["outcome"] == "failed"
    assert "404" in by_id["cifa-gone"]["error"]
    assert by_id["cifa-ok"]["outcome"] == "preserved"
    assert report["ok"] is False
    assert not (archive_dir / "bags" / "cifa-gone").exists()
    assert list((archive_dir / "staging").iterdir()) == []
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        outcomes = conn.execute("SELECT work_id, outcome FROM work_outcomes").fetchall()
    assert ("cifa-gone", "failed") in outcomes


def test_nightly_ingest_flow_ends_failed_when_a_work_failed(
    tmp_path: Path, archive_dir: Path, film_server: LocalFileServer
) -> None:
    from cifa_ingest.pipelines.flows import nightly_ingest

    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        yaml.safe_dump(
            {
                "works": [
                    {
                        "id": "cifa-gone",
                        "title": {"en": "Gone"},
                        "source": {"url": f"{film_server.base_url}/films/missing.mp4"},
                        "permission": {"status": "granted", "granted_by": "Test"},
                    }
                ]
            }
        ),
        "utf-8",
    )
    state = nightly_ingest(
        [str(catalogue)], str(archive_dir), allow_private_sources=True, return_state=True
    )
    assert state.is_failed()
    assert "cifa-gone" in (state.message or "")


def test_preserve_one_film(
    capsys: pytest.CaptureFixture[str], archive_dir: Path, film_server: LocalFileServer
) -> None:
    url = f"{film_server.base_url}/films/three-days-day-1.mp4"
    args = ["preserve", url, "--id", "cifa-0101", "--title", "Day One", "--title-zh", "第一天"]
    args += ["--granted-by", "The director", "--archive", str(archive_dir)]
    status = cli.main([*args, "--allow-private-sources", "--json", "--quiet"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["works"][0]["outcome"] == "preserved"
    assert_valid_preserved_bag(archive_dir / "bags" / "cifa-0101", "cifa-0101")
    permission = json.loads(
        (archive_dir / "bags" / "cifa-0101" / "metadata" / "permission.json").read_text()
    )
    assert permission["granted_by"] == "The director"

    # Without --allow-private-sources, a loopback source is refused before any request.
    before = len(film_server.requests)
    status = cli.main(["preserve", url, "--id", "cifa-0102", "--title", "X", "--granted-by", "Y",
                       "--archive", str(archive_dir), "--quiet"])  # fmt: skip
    assert status == 2
    assert "127.0.0.1" in capsys.readouterr().err
    assert len(film_server.requests) == before
