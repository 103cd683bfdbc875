"""Long films (the archive's run 3 to 9 hours): the data streams to disk and the Python process's
memory stays flat whatever the size. Slow: `make test-slow`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO

_MEASURE = """
import json, resource, sys
from pathlib import Path
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.fetch.ytdlp import fetch_work
work = Work.model_validate({"id": "cifa-long", "title": {"en": "Long"},
    "source": {"url": sys.argv[1]}, "permission": {"status": "granted", "granted_by": "T"}})
out = Path(sys.argv[2])
capture = fetch_work(work, out / "original", out / "metadata", load_settings().fetch,
                     allow_private_sources=True)
print(json.dumps({"max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "bytes": capture.sources[0].media[0].bytes}))
"""


def _fetch_in_child(url: str, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, url, str(out)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_memory_stays_flat_for_a_large_download(tmp_path: Path, served_root: Path) -> None:
    site = tmp_path / "site"
    (site / "films").mkdir(parents=True)
    film = (served_root / "films" / "colour-bars.mkv").read_bytes()
    (site / "films" / "small.mkv").write_bytes(film)
    large = site / "films" / "large.mkv"
    with large.open("wb") as fh:  # a real film's header, then 768 MB in all (sparse)
        fh.write(film)
        fh.truncate(768 * 1024 * 1024)
    with LocalFileServer(site) as server:
        baseline = _fetch_in_child(f"{server.base_url}/films/small.mkv", tmp_path / "a")
        measured = _fetch_in_child(f"{server.base_url}/films/large.mkv", tmp_path / "b")
    assert measured["bytes"] == 768 * 1024 * 1024
    growth_mb = (measured["max_rss_kb"] - baseline["max_rss_kb"]) / 1024
    assert growth_mb < 64, f"memory grew by {growth_mb:.0f} MB for a 768 MB film"
