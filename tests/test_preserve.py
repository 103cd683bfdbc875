"""The pipeline as a library, without Prefect: one work through every step, crash leftovers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.preserve import Outcome, preserve_work
from tests.helpers import assert_valid_preserved_bag


def _work(url: str | None, work_id: str = "cifa-lib-0001", status: str = "granted") -> Work:
    permission = (
        {"status": status, "granted_by": "Test"} if status == "granted" else {"status": status}
    )
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": "Library test", "zh": "图书馆测试"},
            "source": {"url": url},
            "permission": permission,
        }
    )


def test_library_preserves_without_prefect(archive_dir: Path, film_server: LocalFileServer) -> None:
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    report = preserve_work(work, Archive(archive_dir), load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    assert report.bag == "bags/cifa-lib-0001"
    assert report.bytes["master"] > 0 and report.bytes["original"] > 0
    assert_valid_preserved_bag(archive_dir / report.bag, work.id)


def test_library_modules_do_not_import_prefect() -> None:
    """The library is usable without Prefect, and quick commands must not pay its start-up."""
    code = (
        "import sys, cifa_ingest.preserve, cifa_ingest.cli, cifa_ingest.reports.summary;"
        "sys.exit(1 if 'prefect' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_crash_debris_in_staging_is_cleared(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    archive = Archive(archive_dir)
    archive.ensure()
    debris = archive.staging_dir / "cifa-lib-0001" / "bag" / "original"
    debris.mkdir(parents=True)
    (debris / "half-written.mp4").write_bytes(b"\0" * 100)
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED
    originals = list((archive_dir / "bags" / work.id / "data" / "original").iterdir())
    assert [p.name for p in originals] == ["cifa-lib-0001.mkv"]
    assert list(archive.staging_dir.iterdir()) == []


def test_a_bag_placed_but_not_registered_is_registered_not_fetched_again(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    archive = Archive(archive_dir)
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    assert preserve_work(work, archive, load_settings(), allow_private_sources=True).outcome is (
        Outcome.PRESERVED
    )
    # Simulate a crash between placement and registration: forget the ledger row.
    import sqlite3

    with sqlite3.connect(archive.ledger_path) as conn:
        conn.execute("DELETE FROM bag_files")
        conn.execute("DELETE FROM bags")
    requests_before = len(film_server.requests)
    report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.ALREADY_PRESERVED
    assert len(film_server.requests) == requests_before
    assert Ledger(archive.ledger_path).bag(work.id) is not None


def test_a_damaged_unregistered_bag_is_reported_not_overwritten(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    archive = Archive(archive_dir)
    archive.ensure()
    intruder = archive.bag_path("cifa-lib-0001")
    intruder.mkdir()
    (intruder / "something.txt").write_text("not a bag")
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.FAILED
    assert "unregistered bag" in (report.error or "")
    assert (intruder / "something.txt").read_text() == "not a bag"


def test_a_registered_bag_missing_from_disk_is_a_failure(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    import shutil

    archive = Archive(archive_dir)
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    preserve_work(work, archive, load_settings(), allow_private_sources=True)
    shutil.rmtree(archive.bag_path(work.id))
    report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.FAILED
    assert "missing" in (report.error or "")


@pytest.mark.parametrize(
    ("url", "status", "expected"),
    [
        (None, "granted", Outcome.AWAITING_SOURCE),
        ("http://127.0.0.1:9/never.mp4", "pending", Outcome.NOT_PERMITTED),
        ("http://127.0.0.1:9/never.mp4", "refused", Outcome.NOT_PERMITTED),
    ],
)
def test_works_that_may_not_be_fetched_are_reported(
    archive_dir: Path, url: str | None, status: str, expected: Outcome
) -> None:
    report = preserve_work(_work(url, status=status), Archive(archive_dir), load_settings())
    assert report.outcome is expected
    assert not Archive(archive_dir).bag_path("cifa-lib-0001").exists()


def test_private_source_is_refused_by_default(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    report = preserve_work(work, Archive(archive_dir), load_settings())
    assert report.outcome is Outcome.FAILED
    assert "--allow-private-sources" in (report.error or "")
    assert film_server.requests == []


def test_the_ledger_keeps_each_file_size_and_digests_at_ingest(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    import hashlib

    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    preserve_work(work, Archive(archive_dir), load_settings(), allow_private_sources=True)
    files = Ledger(archive_dir / "ledger.sqlite").bag_files(work.id)
    bag = archive_dir / "bags" / work.id
    assert {path for path, *_ in files} == {
        p.relative_to(bag).as_posix() for p in (bag / "data").rglob("*") if p.is_file()
    }
    for path, size, sha256, sha512 in files:
        data = (bag / path).read_bytes()
        assert (size, sha256, sha512) == (
            len(data),
            hashlib.sha256(data).hexdigest(),
            hashlib.sha512(data).hexdigest(),
        )


def test_a_placed_bag_is_read_only(archive_dir: Path, film_server: LocalFileServer) -> None:
    import stat

    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    preserve_work(work, Archive(archive_dir), load_settings(), allow_private_sources=True)
    files = [p for p in (archive_dir / "bags" / work.id).rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in files)
