"""The main job: `cifa demo` (what `make demo` runs) preserves the demo films, and a second run
preserves nothing twice and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifa_ingest import cli


def test_demo_runs_twice_safely(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["demo", "--archive", str(tmp_path / "archive"), "--workdir", str(tmp_path / "demo")]
    assert cli.main([*args, "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "3 preserved, 0 already preserved, 0 failed, 1 not permitted, 1 awaiting" in first
    assert first.count("bags/cifa-demo-000") == 3
    bags = sorted(p.name for p in (tmp_path / "archive" / "bags").iterdir())
    assert bags == ["cifa-demo-0001", "cifa-demo-0002", "cifa-demo-0003"]

    assert cli.main([*args, "--quiet"]) == 0
    second = capsys.readouterr().out
    assert "0 preserved, 3 already preserved, 0 failed" in second
    assert second.count("already preserved  ") == 3
