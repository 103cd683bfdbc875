"""A full disk during download, encoding and bagging: the work fails with the reason `disk-full`
naming the step, its staging is cleared, the archive and the ledger are left as they were, and
the next work of the run goes on.

Where the machine allows it (root with CAP_SYS_ADMIN, as in CI), the archive lives on a small
tmpfs and a ballast file leaves exactly the free space that runs out in the step wanted: the
kernel's own ENOSPC, seen by yt-dlp, ffmpeg and our bagging code alike. How much each step writes
is measured first from the same film preserved on the normal disk. Everywhere, the same film also
meets the kernel's file size limit (RLIMIT_FSIZE, set in a child process): writes past it fail
with EFBIG (ffmpeg, whose SIGXFSZ is not ignored, is killed by it); that covers download and
encoding (a bag's tag files are smaller than its films, so bagging cannot be reached that way).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.preserve import Outcome, preserve_work
from tests.conftest import REPO
from tests.helpers import assert_valid_preserved_bag

PAGE = 4096
#: The victim: the largest demo film (1280x720, 1.2 MB); the other work: a small one after it.
VICTIM, OTHER, KEPT = "cifa-df-victim", "cifa-df-other", "cifa-df-kept"
FILMS = {
    VICTIM: "test-card-beijing.mp4",
    OTHER: "colour-bars.mkv",
    KEPT: "three-days-day-1.mp4",
}


def _work(work_id: str, base_url: str) -> dict[str, object]:
    return {
        "id": work_id,
        "title": {"en": f"Disk full test {work_id}"},
        "source": {"url": f"{base_url}/films/{FILMS[work_id]}"},
        "permission": {"status": "granted", "granted_by": "Test"},
    }


def _pages(path: Path) -> int:
    return -(-path.stat().st_size // PAGE) * PAGE


def _snapshot(archive: Path) -> tuple[dict[str, tuple[int, int, int]], list[tuple], list[tuple]]:
    """Every file under bags/ (size, mode, mtime) and the ledger's bags and bag files."""
    files = {
        p.relative_to(archive).as_posix(): (
            p.stat().st_size,
            p.stat().st_mode,
            p.stat().st_mtime_ns,
        )
        for p in sorted((archive / "bags").rglob("*"))
    }
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        bags = conn.execute("SELECT * FROM bags ORDER BY work_id").fetchall()
        bag_files = conn.execute("SELECT * FROM bag_files ORDER BY work_id, path").fetchall()
    return files, bags, bag_files


def _without(snapshot: tuple, work_id: str) -> tuple:
    files, bags, bag_files = snapshot
    return (
        {p: v for p, v in files.items() if not p.startswith(f"bags/{work_id}")},
        [row for row in bags if row[0] != work_id],
        [row for row in bag_files if row[0] != work_id],
    )


def _outcomes(archive: Path, work_id: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        return conn.execute(
            "SELECT outcome, error_kind FROM work_outcomes WHERE work_id = ? ORDER BY id",
            (work_id,),
        ).fetchall()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, served_root: Path) -> dict[str, object]:
    """The victim and a kept work preserved on the normal disk: how much the victim writes in
    each step, and an archive (holding the kept work) to copy onto the small disk."""
    root = tmp_path_factory.mktemp("disk-full-reference")
    with LocalFileServer(served_root) as server:
        settings = load_settings()
        kept = Archive(root / "kept")
        for work_id, archive in ((KEPT, kept), (VICTIM, Archive(root / "victim"))):
            work = Work.model_validate(_work(work_id, server.base_url))
            report = preserve_work(work, archive, settings, allow_private_sources=True)
            assert report.outcome is Outcome.PRESERVED, report.error
    bag = root / "victim" / "bags" / VICTIM
    fetched = [*(bag / "data" / "original").iterdir(), *(bag / "metadata").glob("*.info.json")]
    encoded = [
        *(bag / "data" / "master").iterdir(),
        *(bag / "data" / "access").iterdir(),
        *(bag / "metadata" / "proof").iterdir(),
    ]
    tags = [p for p in bag.rglob("*") if p.is_file() and p not in fetched and p not in encoded]
    return {
        "kept": kept.root,
        "fetch": sum(map(_pages, fetched)),
        "encode": sum(map(_pages, encoded)),
        "tags": sum(map(_pages, tags)),
        "original": (bag / "data" / "original" / f"{VICTIM}.mp4").stat().st_size,
        "master": (bag / "data" / "master" / f"{VICTIM}.mkv").stat().st_size,
    }


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MB tmpfs, or a skip where this machine may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    tried = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if tried.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({tried.stderr.strip()}); RLIMIT_FSIZE tests run")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("step", ["fetch", "normalise", "package"])
def test_a_full_disk_fails_the_work_clearly_and_leaves_the_archive_as_it_was(
    step: str,
    small_disk: Path,
    reference: dict[str, object],
    film_server: LocalFileServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = small_disk / "archive"
    shutil.copytree(reference["kept"], archive)  # type: ignore[arg-type]
    before = _snapshot(archive)
    fetch, encode, tags = (int(reference[k]) for k in ("fetch", "encode", "tags"))  # type: ignore[call-overload]
    # The space the victim may use: runs out half way through the step's writes.
    free = {
        "fetch": fetch * 4 // 5,
        "normalise": fetch + encode // 2,
        "package": fetch + encode + tags // 2,
    }[step]
    ballast = small_disk / "ballast"
    available = shutil.disk_usage(small_disk).free
    with ballast.open("wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, available - free)
    assert abs(shutil.disk_usage(small_disk).free - free) <= 2 * PAGE

    catalogue = tmp_path / "catalogue.yaml"
    works = [_work(VICTIM, film_server.base_url), _work(OTHER, film_server.base_url)]
    catalogue.write_text(yaml.safe_dump({"works": works}), "utf-8")
    args = ["ingest", str(catalogue), "--archive", str(archive), "--allow-private-sources"]
    status = cli.main([*args, "--json", "--quiet"])
    captured = capsys.readouterr()
    report = {w["id"]: w for w in json.loads(captured.out)["works"]}
    assert status == 1
    victim = report[VICTIM]
    assert victim["outcome"] == "failed"
    assert victim["error_kind"] == "disk-full", victim["error"]
    assert victim["error"].startswith(f"disk full during {step}:"), victim["error"]
    assert "Traceback" not in captured.err
    # The run went on: the small work after it fitted in the space the victim's staging freed.
    assert report[OTHER]["outcome"] == "preserved", report[OTHER]["error"]
    assert_valid_preserved_bag(archive / "bags" / OTHER, OTHER)
    # Staging cleared, the archive and the ledger as they were (but for the other work's bag).
    assert list((archive / "staging").iterdir()) == []
    assert _without(_snapshot(archive), OTHER) == before
    assert _outcomes(archive, VICTIM) == [("failed", "disk-full")]
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM placements").fetchone() == (0,)


#: Preserve the works named on the command line, one after another, in a process whose files may
#: not grow past RLIMIT_FSIZE; print each report as JSON.
_DRIVER = """
import json, resource, sys
from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import load_catalogues
from cifa_ingest.config import load_settings
from cifa_ingest.preserve import preserve_work
from pathlib import Path
limit, catalogue, archive = int(sys.argv[1]), Path(sys.argv[2]), Archive(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
for _path, cat in load_catalogues([catalogue]):
    for work in cat.works:
        report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
        print(json.dumps(report.as_dict()), flush=True)
"""


# Encoding under the file size limit is slow-only: the tmpfs test covers encoding where a tmpfs
# may be mounted (CI, as root).
@pytest.mark.parametrize("step", ["fetch", pytest.param("normalise", marks=pytest.mark.slow)])
def test_the_file_size_limit_fails_the_work_clearly_and_the_next_goes_on(
    step: str,
    reference: dict[str, object],
    film_server: LocalFileServer,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(reference["kept"], archive)  # type: ignore[arg-type]
    before = _snapshot(archive)
    original, master = int(reference["original"]), int(reference["master"])  # type: ignore[call-overload]
    # Past the other work's largest file (< 0.5 MB); below the victim's original or its master.
    limit = {"fetch": original * 3 // 4, "normalise": (original + master) // 2}[step]
    assert limit > 600_000
    catalogue = tmp_path / "catalogue.yaml"
    works = [_work(VICTIM, film_server.base_url), _work(OTHER, film_server.base_url)]
    catalogue.write_text(yaml.safe_dump({"works": works}), "utf-8")
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(limit), str(catalogue), str(archive)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = {r["id"]: r for r in map(json.loads, done.stdout.splitlines())}
    victim = report[VICTIM]
    assert victim["outcome"] == "failed"
    assert victim["error_kind"] == "disk-full", victim["error"]
    assert victim["error"].startswith(f"disk full during {step}:"), victim["error"]
    assert report[OTHER]["outcome"] == "preserved", report[OTHER]["error"]
    assert list((archive / "staging").iterdir()) == []
    assert _without(_snapshot(archive), OTHER) == before
    assert _outcomes(archive, VICTIM) == [("failed", "disk-full")]
