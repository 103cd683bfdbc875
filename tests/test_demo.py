"""The main job: `cifa demo` (what `make demo` runs) preserves the demo films, and a second run
preserves nothing twice and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifa_ingest import cli
from cifa_ingest.archive.ledger import CopyState, Ledger


# The README's main command twice (about 50 s): in the slow set, which CI runs too, so that the
# fast suite keeps its 20 minutes (tests/test_ingest_end_to_end.py runs the demo catalogue there).
@pytest.mark.slow
def test_demo_runs_twice_safely(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["demo", "--archive", str(tmp_path / "archive"), "--workdir", str(tmp_path / "demo")]
    args += ["--port", "0"]
    assert cli.main([*args, "--quiet"]) == 0
    first = capsys.readouterr().out
    assert (
        "10 works: 8 preserved, 0 already preserved, 0 new versions, 0 failed, 1 not permitted,"
        in (first)
    )
    bags = sorted(p.name for p in (tmp_path / "archive" / "bags").iterdir())
    assert bags == [f"cifa-demo-{n:04d}" for n in (1, 2, 3, 6, 7, 8, 9, 10)]
    assert all(f"bags/{bag}" in first for bag in bags)

    assert cli.main([*args, "--quiet"]) == 0
    second = capsys.readouterr().out
    assert "0 preserved, 8 already preserved, 0 new versions, 0 failed" in second
    assert second.count("already preserved  ") == 8

    # The second copy the demo shows: every bag in the demo's replica, byte for byte, with the
    # ledger's snapshot (one: the second run changed nothing), each copy recorded good.
    replica = tmp_path / "demo" / "replica"
    assert f"{replica} (the storage location 'demo-replica')" in first
    for bag in bags:
        primary = tmp_path / "archive" / "bags" / bag
        copy = replica / "bags" / bag
        files = sorted(p.relative_to(primary) for p in primary.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
        assert all((primary / f).read_bytes() == (copy / f).read_bytes() for f in files)
    assert len(list((replica / "ledger").glob("ledger-*.sqlite"))) == 1
    copies = Ledger(tmp_path / "archive" / "ledger.sqlite").copies(location="demo-replica")
    assert sorted(c.work_id for c in copies if c.state is CopyState.GOOD) == bags

    # `cifa status` afterwards says what demo-replica is: the demo's, at that folder, never a
    # location that was once in the settings (it never was).
    assert cli.main(["status", "--archive", str(tmp_path / "archive"), "--quiet"]) == 0
    status = capsys.readouterr().out
    assert f"demo-replica (the demo's replica at {replica}, made by `cifa demo`" in status
    assert "no longer in the settings" not in status
    assert cli.main(["status", "--archive", str(tmp_path / "archive"), "--json", "--quiet"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["locations"]
    assert shown["name"] == "demo-replica" and not shown["declared"]
    assert str(replica) in shown["note"] and shown["copies"]["good"] == len(bags)
