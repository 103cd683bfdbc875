"""One writer per archive: a second ingest waits for the first, and says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cifa_ingest.archive.layout import Archive
from tests.conftest import REPO


def test_a_second_ingest_waits_for_the_first(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    stderr = tmp_path / "stderr.txt"
    catalogue = REPO / "tests" / "data" / "catalogues" / "valid" / "minimal.yaml"
    with Archive(archive).writer_lock(), stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cifa_ingest.cli", "ingest", str(catalogue),
             "--archive", str(archive)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "another ingest" not in stderr.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, stderr.read_text()
            time.sleep(0.2)
        assert "another ingest is writing" in stderr.read_text()
        time.sleep(1)
        assert process.poll() is None  # still waiting while the lock is held
    assert process.wait(timeout=180) == 0, stderr.read_text()
