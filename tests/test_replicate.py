"""Replication to filesystem locations (issue 16), on real bags made by the pipeline: every copy
verified (bagit-python validates each), recorded good only then; a re-run does nothing; an
unreachable location is reported and nothing recorded; a run killed mid-copy leaves no good copy
and the next completes it; a primary damaged since ingest is refused, never spread."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import bagit
import pytest

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.storage.filesystem import FilesystemStore
from cifa_ingest.storage.locations import FilesystemLocation
from cifa_ingest.storage.replicate import ReplicationOutcome, SourceDamaged, source_files
from cifa_ingest.storage.store import CopyRefused, LocationUnreachable
from tests.conftest import REPO, TEST_CONFIG
from tests.helpers import archive_of_films, fresh_copy
from tests.s3server import S3Server, s3_env, s3_server

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

WORKS = {"cifa-r-0001": "colour-bars.mkv", "cifa-r-0002": "three-days-day-1.mp4"}


@pytest.fixture(scope="module")
def pristine(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of two real bags, made once for this module."""
    title = {"en": "Replication test", "zh": "复制测试"}
    return archive_of_films(tmp_path_factory.mktemp("replicate"), served_root, title, WORKS)


@pytest.fixture
def archive(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the archive for each test (read-only files stay read-only)."""
    return fresh_copy(pristine, tmp_path)


def _settings(tmp_path: Path, *locations: tuple[str, Path]) -> Path:
    """The test settings with ``[[storage.locations]]`` (name, path) added."""
    text = TEST_CONFIG.read_text("utf-8")
    for name, path in locations:
        text += (
            f'\n[[storage.locations]]\nname = "{name}"\nkind = "filesystem"\n'
            f'path = "{path}"\nzone = "zone-{name}"\n'
        )
    config = tmp_path / "cifa.toml"
    config.write_text(text, "utf-8")
    return config


@pytest.fixture
def two_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    disk, nas = tmp_path / "disk2", tmp_path / "nas"
    disk.mkdir()
    nas.mkdir()
    monkeypatch.setenv("CIFA_CONFIG", str(_settings(tmp_path, ("disk2", disk), ("nas", nas))))
    yield disk, nas


def _replicate(capsys: pytest.CaptureFixture[str], archive: Path, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["replicate", "--archive", str(archive), "--json", "--quiet", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: its digest and mode."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mode,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _bags(root: Path) -> dict[str, tuple[str, int]]:
    return _tree(root / "bags")


def _outcomes(report: dict) -> set[tuple[str, str, str]]:
    return {(c["id"], c["location"], c["outcome"]) for c in report["copies"]}


# ---------------------------------------------------------------------------------------------


def test_every_bag_is_copied_to_two_locations_verified_and_recorded(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    primary = _bags(archive)
    code, report = _replicate(capsys, archive)
    assert code == 0, report
    assert report["ok"] is True
    assert _outcomes(report) == {
        (work, location, "copied") for work in WORKS for location in ("disk2", "nas")
    }
    assert report["counts"] == {ReplicationOutcome.COPIED: 4}
    for root in two_locations:
        for work in WORKS:
            bagit.Bag(str(root / "bags" / work)).validate()  # every checksum, by bagit-python
        # Byte for byte the primary, read-only like it; no temporary file left anywhere.
        assert _bags(root) == primary
        assert not [p for p in root.rglob(".*") if p.is_file()]
    ledger = Ledger(archive / "ledger.sqlite")
    copies = ledger.copies()
    assert [(c.work_id, c.location, c.state) for c in copies] == [
        (work, location, CopyState.GOOD) for work in sorted(WORKS) for location in ("disk2", "nas")
    ]
    for copy in copies:
        assert copy.verified_at and copy.copied_at and copy.bytes and copy.bytes > 0
        assert copy.software.startswith("cifa-ingest") and copy.detail == ""
    # The ledger's snapshot, at each location, holds the copies it vouches for.
    for root in two_locations:
        [snapshot] = (root / "ledger").glob("ledger-*.sqlite")
        with closing(sqlite3.connect(snapshot)) as conn:
            states = conn.execute("SELECT DISTINCT state FROM copies").fetchall()
            assert conn.execute("SELECT COUNT(*) FROM bags").fetchone()[0] == 2
        assert states == [("good",)]
    assert _bags(archive) == primary

    # Run again: nothing to do, nothing read or written, no second snapshot.
    before = {root: _tree(root) for root in two_locations}
    code, again = _replicate(capsys, archive)
    assert code == 0 and again["counts"] == {"already_copied": 4}
    assert again["snapshots"] == []
    assert {root: _tree(root) for root in two_locations} == before
    assert [c.verified_at for c in Ledger(archive / "ledger.sqlite").copies()] == [
        c.verified_at for c in copies
    ]


def test_the_json_shape(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _replicate(capsys, archive, "--location", "nas")
    assert code == 0
    assert set(report) == {
        "archive", "started", "seconds", "locations", "counts", "copies", "snapshots", "ok"
    }  # fmt: skip
    assert report["archive"] == str(archive)
    assert report["locations"] == [{"name": "nas", "reachable": True, "detail": ""}]
    copy = report["copies"][0]
    assert set(copy) == {
        "id", "location", "outcome", "state", "files_copied", "files_present", "bytes",
        "seconds", "detail",
    }  # fmt: skip
    assert copy["state"] == "good" and copy["files_copied"] > 0 and copy["files_present"] == 0
    assert [s["location"] for s in report["snapshots"]] == ["nas"]
    assert report["snapshots"][0]["ok"] is True
    assert report["snapshots"][0]["key"].startswith("ledger/ledger-")
    assert not (two_locations[0] / "bags").exists()  # --location: only that one


def test_an_unreachable_location_is_reported_and_nothing_is_recorded(
    archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    unmounted = tmp_path / "mnt" / "offsite"  # a disk not mounted: not even its mount point
    present = tmp_path / "disk2"
    present.mkdir()
    config = _settings(tmp_path, ("offsite", unmounted), ("disk2", present))
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    primary = _tree(archive)
    code, report = _replicate(capsys, archive)
    assert code == 1 and report["ok"] is False
    assert _outcomes(report) == {
        *((work, "offsite", "location_unreachable") for work in WORKS),
        *((work, "disk2", "copied") for work in WORKS),
    }
    offsite = next(loc for loc in report["locations"] if loc["name"] == "offsite")
    assert offsite["reachable"] is False and "does not exist" in offsite["detail"]
    assert not unmounted.exists() and not unmounted.parent.exists()  # never created
    ledger = Ledger(archive / "ledger.sqlite")
    assert ledger.copies(location="offsite") == []  # nothing recorded, neither good nor damaged
    assert {c.state for c in ledger.copies(location="disk2")} == {CopyState.GOOD}
    assert [s["location"] for s in report["snapshots"]] == ["disk2"]
    # The primary is untouched (the ledger aside, which now records disk2's copies).
    assert {k: v for k, v in _tree(archive).items() if k.startswith("bags/")} == {
        k: v for k, v in primary.items() if k.startswith("bags/")
    }
    # In words, for people: the location named once, with why.
    capsys.readouterr()
    assert cli.main(["replicate", "--archive", str(archive), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "offsite: location_unreachable:" in out and "does not exist" in out


_KILLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cifa_ingest import cli
    from cifa_ingest.storage import filesystem

    real_copy, copies = filesystem._copy_flushed, []

    def slow_copy(source, temporary):
        copies.append(source)
        if len(copies) == int(sys.argv[1]):  # this file half written when the SIGKILL comes
            data = source.read_bytes()
            with open(temporary, "xb") as out:
                out.write(data[: len(data) // 2])
                out.flush()
            Path(sys.argv[2]).touch()
            time.sleep(600)
        return real_copy(source, temporary)

    filesystem._copy_flushed = slow_copy
    sys.exit(cli.main(sys.argv[3:]))
    """
)


def test_a_run_killed_mid_copy_records_nothing_good_and_the_next_completes_it(
    archive: Path,
    tmp_path: Path,
    two_locations: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk, _nas = two_locations
    ready = tmp_path / "mid-copy"
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED, "4", str(ready),
         "replicate", "--archive", str(archive), "--location", "disk2", "--quiet"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the copy never reached its fourth file"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # mid-copy: no cleanup, no rollback, no handler runs
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.stderr.close()  # type: ignore[union-attr]
    ledger = Ledger(archive / "ledger.sqlite")
    states = [(c.work_id, c.state) for c in ledger.copies(location="disk2")]
    assert states == [(sorted(WORKS)[0], CopyState.PENDING)]  # begun, never good
    assert list(disk.rglob("*.partial"))  # the half-written file, under a temporary name only
    written = [p for p in disk.rglob("*") if p.is_file() and not p.name.endswith(".partial")]
    assert len(written) == 3
    assert not (disk / "bags" / sorted(WORKS)[0] / "bagit.txt").exists()  # never looks whole

    code, report = _replicate(capsys, archive, "--location", "disk2")
    assert code == 0, report
    first = next(c for c in report["copies"] if c["id"] == sorted(WORKS)[0])
    assert first["outcome"] == "copied" and first["files_present"] == 3  # resumed, not redone
    assert not list(disk.rglob("*.partial"))
    for work in WORKS:
        bagit.Bag(str(disk / "bags" / work)).validate()
    assert {c.state for c in Ledger(archive / "ledger.sqlite").copies()} == {CopyState.GOOD}


def test_a_primary_damaged_since_ingest_is_refused_not_spread(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    damaged_work, intact_work = sorted(WORKS)
    original = next((archive / "bags" / damaged_work / "data" / "original").iterdir())
    original.chmod(0o644)
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit
    original.write_bytes(bytes(data))
    code, report = _replicate(capsys, archive)
    assert code == 1
    assert _outcomes(report) == {
        *((damaged_work, loc, "source_damaged") for loc in ("disk2", "nas")),
        *((intact_work, loc, "copied") for loc in ("disk2", "nas")),
    }
    refused = next(c for c in report["copies"] if c["outcome"] == "source_damaged")
    assert original.name in refused["detail"] and "differs from the ledger" in refused["detail"]
    ledger = Ledger(archive / "ledger.sqlite")
    for root in two_locations:
        copy_of_damaged = (
            root / "bags" / damaged_work / original.relative_to(archive / "bags" / damaged_work)
        )
        assert not copy_of_damaged.exists()  # the damaged bytes went nowhere
        assert not list(root.rglob("*.partial"))
    for location in ("disk2", "nas"):
        damaged_copy = ledger.copy(damaged_work, location)
        assert damaged_copy is None or damaged_copy.state is not CopyState.GOOD
        intact_copy = ledger.copy(intact_work, location)
        assert intact_copy is not None and intact_copy.state is CopyState.GOOD


def test_a_rewritten_manifest_is_found_before_anything_is_sent(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bag rewritten with manifests to match: self-consistent, but not what was ingested."""
    work = sorted(WORKS)[0]
    bag = archive / "bags" / work
    manifest = bag / "manifest-sha256.txt"
    manifest.chmod(0o644)
    with manifest.open("a", encoding="utf-8") as out:
        out.write("\n")
    record = Ledger(archive / "ledger.sqlite").bag(work)
    assert record is not None
    with pytest.raises(SourceDamaged, match=r"manifest-sha256\.txt differs from ingest"):
        source_files(Archive(archive), record)
    code, report = _replicate(capsys, archive)
    assert code == 1
    assert {c["outcome"] for c in report["copies"] if c["id"] == work} == {"source_damaged"}
    assert not any((root / "bags" / work).exists() for root in two_locations)


def test_source_files_cover_every_file_of_the_bag_with_the_ledgers_digests(
    archive: Path,
) -> None:
    for work in WORKS:
        record = Ledger(archive / "ledger.sqlite").bag(work)
        assert record is not None
        files = source_files(Archive(archive), record)
        bag = archive / "bags" / work
        on_disk = sorted(p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file())
        assert sorted(f.path for f in files) == on_disk
        for file in files:
            assert hashlib.sha256((bag / file.path).read_bytes()).hexdigest() == file.sha256
        assert files[-1].path == "bagit.txt" and files[0].path.startswith("data/")


# ---------------------------------------------------------------------------------------------
# Usage


def test_an_unknown_location_or_none_at_all_is_bad_usage(
    archive: Path, tmp_path: Path, two_locations: tuple[Path, Path]
) -> None:
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "replicate", "--archive", str(archive),
         "--location", "offsite"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "--location: no location named 'offsite' in the settings" in result.stderr
    assert "disk2, nas" in result.stderr
    assert Ledger(archive / "ledger.sqlite").copies() == []

    env["CIFA_CONFIG"] = str(TEST_CONFIG)  # no [[storage.locations]]
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "replicate", "--archive", str(archive)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 2 and "no storage locations in the settings" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_archive_is_bad_usage(
    tmp_path: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replicate", "--archive", str(tmp_path / "none"), "--quiet"]) == 2
    assert "no archive here" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------------------------------------
# The filesystem store on its own


def test_the_filesystem_store_writes_verified_read_only_files_all_or_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "disk2"
    root.mkdir()
    store = FilesystemStore(FilesystemLocation(name="disk2", zone="z", path=str(root)))
    source = tmp_path / "film.bin"
    source.write_bytes(b"frames" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    stored = store.put("bags/x/data/film.bin", source, digest)
    target = root / "bags" / "x" / "data" / "film.bin"
    assert target.read_bytes() == source.read_bytes() and stored.size == 6000
    assert target.stat().st_mode & 0o777 == 0o444
    assert store.stat("bags/x/data/film.bin") == stored.__class__("bags/x/data/film.bin", 6000)
    assert [o.key for o in store.list("bags/x/")] == ["bags/x/data/film.bin"]
    with store.open("bags/x/data/film.bin") as reader:
        assert reader.read() == source.read_bytes()

    # Bytes that do not verify are refused: nothing under the key, no temporary file.
    with pytest.raises(CopyRefused, match="not kept"):
        store.put("bags/x/data/other.bin", source, "0" * 64)
    assert sorted(p.name for p in target.parent.iterdir()) == ["film.bin"]
    # A temporary file a killed writer left is removed by the next put of its key.
    (target.parent / ".other.bin.deadbeef0000.partial").write_bytes(b"half")
    store.put("bags/x/data/other.bin", source, digest)
    assert sorted(p.name for p in target.parent.iterdir()) == ["film.bin", "other.bin"]
    with pytest.raises(ValueError):
        store.put("../escape", source, digest)


def test_a_missing_root_is_unreachable_and_never_created(tmp_path: Path) -> None:
    root = tmp_path / "media" / "disk2"
    store = FilesystemStore(FilesystemLocation(name="disk2", zone="z", path=str(root)))
    source = tmp_path / "f"
    source.write_bytes(b"x")
    for attempt in (
        store.check,
        lambda: store.put("bags/a/f", source, hashlib.sha256(b"x").hexdigest()),
        lambda: store.stat("bags/a/f"),
    ):
        with pytest.raises(LocationUnreachable, match="never created"):
            attempt()
    assert not root.exists() and not root.parent.exists()
    relative = FilesystemStore(FilesystemLocation(name="d", zone="z", path="relative/path"))
    with pytest.raises(LocationUnreachable, match="not absolute"):
        relative.check()


# ---------------------------------------------------------------------------------------------
# The nightly run


def test_the_nightly_run_replicates_after_placing_and_a_failure_fails_the_run_not_the_work(
    tmp_path: Path,
    film_server: LocalFileServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "works:\n- id: cifa-n-0001\n  title: {en: Nightly}\n"
        f"  source: {{url: '{film_server.base_url}/films/colour-bars.mkv'}}\n"
        "  permission: {status: granted, granted_by: Test}\n",
        "utf-8",
    )
    disk, offsite = tmp_path / "disk2", tmp_path / "unmounted"
    disk.mkdir()
    monkeypatch.setenv(
        "CIFA_CONFIG", str(_settings(tmp_path, ("disk2", disk), ("offsite", offsite)))
    )
    archive = tmp_path / "archive"
    capsys.readouterr()
    code = cli.main(
        ["ingest", str(catalogue), "--archive", str(archive), "--allow-private-sources",
         "--json", "--quiet"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1  # the run failed: a copy could not be made
    assert [w["outcome"] for w in json.loads(out)["works"]] == ["preserved"]  # the work did not
    assert "offsite" in err and "location_unreachable" in err and "Traceback" not in err
    bagit.Bag(str(disk / "bags" / "cifa-n-0001")).validate()
    ledger = Ledger(archive / "ledger.sqlite")
    assert [(c.location, c.state) for c in ledger.copies()] == [("disk2", CopyState.GOOD)]
    assert not offsite.exists()

    # The location back: the next run preserves nothing new and completes the copies.
    offsite.mkdir()
    code = cli.main(
        ["ingest", str(catalogue), "--archive", str(archive), "--allow-private-sources",
         "--json", "--quiet"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [w["outcome"] for w in json.loads(out)["works"]] == ["already-preserved"]
    bagit.Bag(str(offsite / "bags" / "cifa-n-0001")).validate()
    assert {c.state for c in ledger.copies()} == {CopyState.GOOD} and len(ledger.copies()) == 2


def test_a_copy_not_good_is_remade_each_file_verified_a_damaged_one_replaced(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy a check found damaged (a location's audit, to come) is made again: the files that
    verify are kept, the damaged one is replaced, and only then is the copy good again."""
    disk, _nas = two_locations
    assert _replicate(capsys, archive, "--location", "disk2")[0] == 0
    work = sorted(WORKS)[0]
    damaged = next((disk / "bags" / work / "data" / "master").iterdir())
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    ledger = Ledger(archive / "ledger.sqlite")
    ledger.record_copy(work, "disk2", CopyState.DAMAGED, software="test", detail="a flipped byte")
    code, report = _replicate(capsys, archive, "--location", "disk2")
    assert code == 0
    remade = next(c for c in report["copies"] if c["id"] == work)
    assert (remade["outcome"], remade["files_copied"]) == ("copied", 1)
    assert remade["files_present"] > 1
    bagit.Bag(str(disk / "bags" / work)).validate()
    assert damaged.stat().st_mode & 0o777 == 0o444
    copy = ledger.copy(work, "disk2")
    assert copy is not None and copy.state is CopyState.GOOD and copy.detail == ""


# ---------------------------------------------------------------------------------------------
# To an S3-compatible store (a real SeaweedFS, tests/s3server.py)


def test_replication_to_s3_is_verified_by_the_server_and_resumes_on_its_digests(
    archive: Path, tmp_path: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    from cifa_ingest.storage.replicate import replicate_archive
    from cifa_ingest.storage.stores import open_store

    location = s3_server.location(s3_server.create_bucket(), name="offsite", prefix="cifa/")
    report = replicate_archive(Archive(archive), [location])
    assert report.ok, [c.detail for c in report.problems]
    assert {(c.work_id, c.outcome) for c in report.copies} == {
        (work, ReplicationOutcome.COPIED) for work in WORKS
    }
    store = open_store(location)
    # What the store holds, fetched back to a folder, is each bag: bagit-python validates it.
    for work in WORKS:
        fetched = tmp_path / "fetched" / work
        for found in store.list(f"bags/{work}/"):
            target = fetched / found.key.removeprefix(f"bags/{work}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with store.open(found.key) as reader:
                target.write_bytes(reader.read())
        bagit.Bag(str(fetched)).validate()
    assert [s.key for s in report.snapshots if s.ok] == [
        o.key for o in store.list("ledger/")
    ]  # fmt: skip
    for secret in s3_env.values():
        if "SECRET" in secret:
            assert secret not in json.dumps(report.as_dict())
    ledger = Ledger(archive / "ledger.sqlite")
    assert {c.state for c in ledger.copies(location="offsite")} == {CopyState.GOOD}

    # A copy no longer trusted is verified object by object on the server's own digests: the
    # objects that match are kept, none is sent again.
    work = sorted(WORKS)[0]
    ledger.record_copy(work, "offsite", CopyState.PENDING, software="test")
    again = replicate_archive(Archive(archive), [location])
    remade = next(c for c in again.copies if c.work_id == work)
    assert remade.outcome is ReplicationOutcome.COPIED
    assert (remade.files_copied, remade.bytes) == (0, 0) and remade.files_present > 0


def test_a_mount_point_left_empty_is_unreachable_not_filled(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk that held the copies is not mounted tonight: its mount point is an empty folder
    of the system disk. The ledger records good copies there, none is found: nothing is written
    to the system disk, nothing is recorded, and the run says why."""
    disk, _nas = two_locations
    assert _replicate(capsys, archive, "--location", "disk2")[0] == 0
    ledger = Ledger(archive / "ledger.sqlite")
    work = sorted(WORKS)[0]
    ledger.record_copy(work, "disk2", CopyState.PENDING, software="test")  # a copy to complete
    disk.rename(disk.with_name("disk2-unmounted"))
    disk.mkdir()  # the bare mount point
    code, report = _replicate(capsys, archive, "--location", "disk2")
    assert code == 1
    assert {c["outcome"] for c in report["copies"]} == {"location_unreachable"}
    assert "not there (a disk not mounted?" in report["locations"][0]["detail"]
    assert list(disk.iterdir()) == []  # the system disk is not filled
    copy = ledger.copy(work, "disk2")
    assert copy is not None and copy.state is CopyState.PENDING  # nothing new recorded
    assert report["snapshots"] == []


# ---------------------------------------------------------------------------------------------
# The ledger's snapshots kept at each location ([storage] ledger_snapshots_kept)


def _at(monkeypatch: pytest.MonkeyPatch, moment: str) -> str:
    """Make the next snapshot's key that of ``moment`` (``YYYYmmddTHHMMSSZ``); the key."""
    from cifa_ingest.storage import replicate

    key = f"ledger/ledger-{moment}.sqlite"
    monkeypatch.setattr(replicate, "snapshot_key", lambda at=None: key)
    return key


def _snapshots(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "ledger").iterdir())


def test_the_newest_snapshots_are_kept_the_older_removed_and_recovery_takes_the_newest(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[storage] ledger_snapshots_kept = 3``: after a run that sent its snapshot, verified,
    only the newest three of the location's snapshots are left (the one just sent among them);
    nothing else under ``ledger/`` is touched; a location that sets 0 keeps every one; and
    ``cifa recover`` rebuilds from the newest."""
    from cifa_ingest.storage.locations import StorageSettings
    from cifa_ingest.storage.recover import recover_archive
    from cifa_ingest.storage.replicate import replicate_archive

    disk, nas = tmp_path / "disk2", tmp_path / "nas"
    storage = StorageSettings.model_validate(
        {
            "ledger_snapshots_kept": 3,
            "locations": [
                {"name": "disk2", "kind": "filesystem", "path": str(disk), "zone": "a"},
                {"name": "nas", "kind": "filesystem", "path": str(nas), "zone": "b",
                 "ledger_snapshots_kept": 0},
            ],
        }
    )  # fmt: skip
    assert [loc.ledger_snapshots_kept for loc in storage.locations] == [3, 0]
    older = [f"ledger/ledger-2026010{day}T020000Z.sqlite" for day in range(1, 6)]
    for root in (disk, nas):
        (root / "ledger").mkdir(parents=True)
        for key in older:
            (root / key).write_bytes(b"an older night's snapshot")
        (root / "ledger" / "README.txt").write_text("not a snapshot: never removed", "utf-8")

    newest = _at(monkeypatch, "20261127T020000Z")
    report = replicate_archive(Archive(archive), storage.locations)
    assert report.ok, [c.detail for c in report.problems]
    pruned = {s.location: s.pruned for s in report.snapshots}
    assert pruned == {"disk2": older[:3], "nas": []}
    assert report.as_dict()["snapshots"][0]["pruned"] == older[:3]
    assert _snapshots(disk) == ["ledger/README.txt", *older[3:], newest]
    assert _snapshots(nas) == ["ledger/README.txt", *older, newest]

    # A run that changed nothing sends nothing and removes nothing; the next that did, does.
    assert replicate_archive(Archive(archive), storage.locations).snapshots == []
    Ledger(archive / "ledger.sqlite").record_copy(
        sorted(WORKS)[0], "disk2", CopyState.PENDING, software="test"
    )
    newer = _at(monkeypatch, "20261128T020000Z")
    again = replicate_archive(Archive(archive), storage.locations)
    assert again.ok and [s.pruned for s in again.snapshots] == [[older[3]], []]
    assert _snapshots(disk) == ["ledger/README.txt", older[4], newest, newer]

    # Recovery takes the newest: the one just sent, sound.
    recovered = recover_archive(storage.locations[0], tmp_path / "recovered")
    assert recovered.snapshot == newer and recovered.ok


def test_no_snapshot_is_removed_after_one_recovery_would_refuse_or_one_not_the_newest(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A ledger whose audit log's chain is broken is still sent (it is the archive's memory), but
    no older snapshot is removed for it: the last sound one stays for recovery. Nor when the one
    just sent is not the newest there (a clock set back)."""
    from cifa_ingest.storage.replicate import replicate_archive

    disk = tmp_path / "disk2"
    (disk / "ledger").mkdir(parents=True)
    older = [f"ledger/ledger-2026010{day}T020000Z.sqlite" for day in range(1, 5)]
    for key in older:
        (disk / key).write_bytes(b"an older night's snapshot")
    location = FilesystemLocation(name="disk2", path=str(disk), zone="a", ledger_snapshots_kept=2)

    _at(monkeypatch, "20251231T020000Z")  # older than what is there
    report = replicate_archive(Archive(archive), [location])
    assert report.ok and report.snapshots[0].pruned == []
    assert "is not the newest there" in caplog.text
    assert len(_snapshots(disk)) == 5

    from cifa_ingest.archive.audit_log import AuditLog

    AuditLog(archive / "ledger.sqlite").record(
        sorted(WORKS)[0], "2026-11-26T00:00:00+00:00", "test", "intact", [], 0, 0.0
    )
    with closing(sqlite3.connect(archive / "ledger.sqlite")) as db, db:
        db.execute("UPDATE fixity_checks SET outcome = 'damaged'")  # the chain no longer holds
    Ledger(archive / "ledger.sqlite").record_copy(
        sorted(WORKS)[0], "disk2", CopyState.PENDING, software="test"
    )
    caplog.clear()
    sent = _at(monkeypatch, "20261127T020000Z")
    report = replicate_archive(Archive(archive), [location])
    assert report.ok and report.snapshots[0].pruned == []
    assert "not one recovery would take" in caplog.text and "hash chain" in caplog.text
    assert _snapshots(disk)[-1] == sent and len(_snapshots(disk)) == 6
    assert not list(archive.glob(".ledger-snapshot*"))


def test_a_snapshot_the_store_refuses_to_remove_is_kept_without_error(tmp_path: Path) -> None:
    """Object Lock: the store refuses to remove a snapshot still under retention; it is kept,
    and so are the newer ones (retained longer), with no error. Any other failure is a warning:
    the next is tried."""
    from cifa_ingest.storage.replicate import prune_snapshots

    root = tmp_path / "loc"
    (root / "ledger").mkdir(parents=True)
    keys = [f"ledger/ledger-2026010{day}T020000Z.sqlite" for day in range(1, 7)]
    for key in keys:
        (root / key).write_bytes(b"x")

    class Store(FilesystemStore):
        refused: set[str]
        failing: set[str]

        def delete(self, key: str) -> None:
            if key in self.refused:
                raise CopyRefused(f"{key} is held under Object Lock")
            if key in self.failing:
                raise OSError("an I/O error")
            super().delete(key)

    store = Store(FilesystemLocation(name="loc", path=str(root), zone="a"))
    store.failing = {keys[0]}
    store.refused = {keys[2]}
    assert prune_snapshots(store, keys[-1], 2) == [keys[1]]
    assert _snapshots(root) == [keys[0], *keys[2:]]
    store.refused = set()
    assert prune_snapshots(store, keys[-1], 0) == []  # 0: keep all
    assert prune_snapshots(store, keys[-1], 3) == [keys[2]]  # keys[0] fails again: kept
    assert _snapshots(root) == [keys[0], *keys[3:]]


def test_ledger_snapshots_kept_is_0_or_2_at_least() -> None:
    from pydantic import ValidationError

    from cifa_ingest.storage.locations import StorageSettings

    assert StorageSettings().ledger_snapshots_kept == 0
    for wrong in (1, -1):
        with pytest.raises(ValidationError, match="ledger_snapshots_kept"):
            StorageSettings.model_validate({"ledger_snapshots_kept": wrong})


def test_snapshots_beyond_those_kept_are_removed_from_s3_but_not_under_object_lock(
    archive: Path, s3_server: S3Server, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifa_ingest.storage.replicate import replicate_archive
    from cifa_ingest.storage.stores import open_store

    plain = s3_server.location(s3_server.create_bucket(), name="offsite")
    locked = s3_server.location(
        s3_server.create_bucket(object_lock=True), name="vault", object_lock_days=1
    )
    plain, locked = (loc.model_copy(update={"ledger_snapshots_kept": 2}) for loc in (plain, locked))
    keys = []
    for night in range(1, 4):
        keys.append(_at(monkeypatch, f"2026112{night}T020000Z"))
        if night > 1:
            Ledger(archive / "ledger.sqlite").record_copy(
                sorted(WORKS)[0], "offsite", CopyState.PENDING, software="test"
            )
        report = replicate_archive(Archive(archive), [plain, locked])
        assert report.ok, [c.detail for c in report.problems] + [s.detail for s in report.snapshots]
    assert [s.pruned for s in report.snapshots] == [[keys[0]], []]
    assert [o.key for o in open_store(plain).list("ledger/")] == keys[1:]
    assert [o.key for o in open_store(locked).list("ledger/")] == keys  # retained: all kept
