"""Every version of a work at every storage location (issue 18): beside its newest bag
(``bags/<id>/``), a location holds what the work's OCFL object holds that the bag does not
(``versions/<id>/``, :mod:`cifa_ingest.storage.versions_copy`), so that the two together are the
whole object, which ocfl-py's validator (not ours) checks; copied by the real replication to a
filesystem location and to a real SeaweedFS bucket, audited by the location audit."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath

import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.audit.copies import audit_location
from cifa_ingest.audit.fixity_audit import ProblemKind
from cifa_ingest.catalogue.model import Work
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.storage.locations import FilesystemLocation, S3Location
from cifa_ingest.storage.replicate import ReplicationOutcome, replicate_archive
from cifa_ingest.storage.store import Store
from cifa_ingest.storage.stores import open_store
from cifa_ingest.versions.inventory import Inventory
from tests.helpers import run_cli
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_deaccession import _with_locations
from tests.test_ingest_versions import WORK_ID, _settings
from tests.test_versions import ocfl_object_report

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

OLD_TITLE, NEW_TITLE = "版本测试", "版本測試"


def _changed(work: Work, **update: object) -> Work:
    return Work.model_validate({**work.model_dump(mode="python"), **update})


def _two_versions(archive: Archive, work: Work) -> None:
    """A title fix: version 2 of the work, its payload unchanged."""
    corrected = _changed(work, title={"en": "Versions test", "zh": NEW_TITLE})
    assert preserve_work(corrected, archive, _settings()).outcome is Outcome.NEW_VERSION


def _download(store: Store, prefix: str, target: Path) -> dict[str, int]:
    """Every object under ``prefix`` into ``target`` at its path after the prefix; the sizes."""
    sizes = {}
    for found in store.list(prefix):
        relative = found.key.removeprefix(prefix)
        destination = target / PurePosixPath(relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with store.open(found.key) as reader, destination.open("wb") as out:
            shutil.copyfileobj(reader, out)
        sizes[relative] = found.size
    return sizes


def _object_from_location(store: Store, target: Path) -> tuple[Path, dict[str, int]]:
    """The work's object as the location gives it back: ``versions/<id>/`` as it is, and each
    content path it lacks from the bag's file of the same digest (the newest version is the
    bag). Returns the object's folder and the sizes of what ``versions/<id>/`` held."""
    bag, obj = target / "bag", target / WORK_ID
    _download(store, f"bags/{WORK_ID}/", bag)
    held = _download(store, f"versions/{WORK_ID}/", obj)
    inventory = Inventory.from_bytes((obj / "inventory.json").read_bytes(), WORK_ID)
    by_digest = {digest: path for path, digest in inventory.state().items()}
    for digest, content_paths in inventory.manifest.items():
        for content_path in content_paths:
            file = obj / PurePosixPath(content_path)
            if not file.exists():
                file.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bag / PurePosixPath(by_digest[digest]), file)
    return obj, held


def _disk2(tmp_path: Path) -> FilesystemLocation:
    """A filesystem location, ``disk2``, in a new folder of ``tmp_path``."""
    (tmp_path / "disk2").mkdir()
    return FilesystemLocation(name="disk2", zone="z", path=str(tmp_path / "disk2"))


def _replicated(archive: Archive, location: FilesystemLocation | S3Location) -> None:
    report = replicate_archive(archive, [location])
    assert report.ok, [(c.outcome, c.detail) for c in report.copies]
    copy = Ledger(archive.ledger_path).copy(WORK_ID, location.name)
    assert copy is not None and copy.state is CopyState.GOOD


def _check_every_version_there(
    archive: Archive, location: FilesystemLocation | S3Location, tmp_path: Path
) -> None:
    """Both versions at the location: together with the bag a valid object for ocfl-py, version
    1's own descriptive record there with the old title, kilobytes beside the bag; the location
    audit, cheap and deep, finds the copy whole."""
    store = open_store(location)
    obj, held = _object_from_location(store, tmp_path / location.name)
    valid, codes = ocfl_object_report(obj)
    assert valid, codes
    old = obj / "v1" / "content" / "metadata" / "descriptive.xml"
    assert OLD_TITLE in old.read_text("utf-8")
    assert "v1/content/metadata/descriptive.xml" in held
    assert not any(path.startswith("v1/content/data/") for path in held)  # the bag's own
    assert sum(held.values()) < 1_000_000
    assert json.loads((obj / "inventory.json").read_bytes())["head"] == "v2"
    for deep in (False, True):
        audit = audit_location(archive, location, deep=deep)
        assert audit.ok, audit.problems


def test_every_version_is_at_a_filesystem_location_beside_the_bag(
    preserved: tuple[Archive, Work], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, work = preserved
    disk2 = _disk2(tmp_path)
    _replicated(archive, disk2)
    # One version: the location holds the bag and the object's inventories, no content twice.
    held = sorted(
        p.relative_to(tmp_path / "disk2" / "versions" / WORK_ID).as_posix()
        for p in (tmp_path / "disk2" / "versions" / WORK_ID).rglob("*")
        if p.is_file()
    )
    assert held == [
        "0=ocfl_object_1.1", "inventory.json", "inventory.json.sha512",
        "v1/inventory.json", "v1/inventory.json.sha512",
    ]  # fmt: skip
    _two_versions(archive, work)
    copy = Ledger(archive.ledger_path).copy(WORK_ID, "disk2")
    assert copy is not None and copy.state is CopyState.PENDING
    _replicated(archive, disk2)
    _check_every_version_there(archive, disk2, tmp_path)
    # cifa history says where the versions are.
    code, out, _err = run_cli(capsys, "history", WORK_ID, "--archive", str(archive.root))
    assert code == 0
    assert "At the storage locations:\n  disk2: every version to v2 (verified " in out
    code, out, _err = run_cli(capsys, "history", WORK_ID, "--archive", str(archive.root), "--json")
    [copy] = json.loads(out)["copies"]
    assert copy["location"] == "disk2" and copy["state"] == "good" and copy["verified_at"]


def test_every_version_is_at_an_s3_location_beside_the_bag(
    preserved: tuple[Archive, Work], tmp_path: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    archive, work = preserved
    _two_versions(archive, work)
    bucket = s3_server.location(s3_server.create_bucket(), name="s3-versions", prefix="cifa/")
    _replicated(archive, bucket)
    _check_every_version_there(archive, bucket, tmp_path)


def test_a_versions_file_lost_at_a_location_is_found_by_its_audit(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    archive, work = preserved
    _two_versions(archive, work)
    disk2 = _disk2(tmp_path)
    _replicated(archive, disk2)
    lost = tmp_path / "disk2" / "versions" / WORK_ID / "v1" / "content" / "metadata"
    (lost / "descriptive.xml").unlink()

    audit = audit_location(archive, disk2)

    assert [(p.kind, p.path) for p in audit.problems] == [
        (ProblemKind.COPY_MISSING, "v1/content/metadata/descriptive.xml")
    ]
    copy = Ledger(archive.ledger_path).copy(WORK_ID, "disk2")
    assert copy is not None and copy.state is CopyState.MISSING
    # Replication leaves a copy recorded missing to repair; repair's tests remake it.


def test_an_object_that_is_not_the_bag_the_ledger_vouches_for_is_not_sent(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    """A primary whose object's newest version differs from the bag (here: its inventories and
    their digest files rewritten to name another digest for a file) is source_damaged: nothing
    of the work reaches the location, and the copy is not recorded good."""
    archive, _work = preserved
    obj = archive.objects_dir / WORK_ID
    inventory = json.loads((obj / "inventory.json").read_bytes())
    state = inventory["versions"]["v1"]["state"]
    digest = next(d for d, paths in state.items() if "bagit.txt" in paths)
    state["0" * 128] = state.pop(digest)
    data = json.dumps(inventory, indent=2).encode()
    sidecar = f"{hashlib.sha512(data).hexdigest()}  inventory.json\n".encode()
    for folder in (obj, obj / "v1"):  # the object's and the version's copy, as OCFL has them
        for name, blob in (("inventory.json", data), ("inventory.json.sha512", sidecar)):
            (folder / name).chmod(0o644)
            (folder / name).write_bytes(blob)
    disk2 = _disk2(tmp_path)

    report = replicate_archive(archive, [disk2])

    [row] = report.copies
    assert row.outcome is ReplicationOutcome.SOURCE_DAMAGED
    assert "is not the bag's" in row.detail
    assert not (tmp_path / "disk2" / "bags").exists()
    assert not (tmp_path / "disk2" / "versions").exists()
    assert Ledger(archive.ledger_path).copy(WORK_ID, "disk2") is None


def test_a_deaccession_removes_the_versions_from_the_locations_too(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    from cifa_ingest.deaccession import deaccession

    archive, work = preserved
    _two_versions(archive, work)
    disk2 = _disk2(tmp_path)
    _replicated(archive, disk2)
    settings = _with_locations(disk2)

    deaccession(archive, WORK_ID, settings, reason="The filmmaker asked", agent="Archivist")

    left = tmp_path / "disk2" / "versions" / WORK_ID
    assert not left.exists() or not any(p.is_file() for p in left.rglob("*"))
    _replicated(archive, disk2)  # the tombstone, and its object's inventories
    held = {p.relative_to(left).as_posix() for p in left.rglob("*") if p.is_file()}
    assert held == {
        "0=ocfl_object_1.1", "inventory.json", "inventory.json.sha512",
        "v1/inventory.json", "v1/inventory.json.sha512",
    }  # fmt: skip


def test_a_copy_verified_while_a_new_version_was_made_is_not_recorded_good(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    """Replication sends and verifies every file of a work, and just before it records the copy
    good a new version is made (its copies made pending): the copy holds the version before,
    so it is not recorded good (the ledger's row is written only while it vouches for the bag
    the copy was made of); the next replication brings the new version."""
    archive, work = preserved
    disk2 = _disk2(tmp_path)

    class NewVersionAfterTheLastFile:
        """The location's real store; a new version of the work is made right after the last
        file of the copy (the object's declaration) is put and verified."""

        def __init__(self, store: Store) -> None:
            self.store = store

        def __getattr__(self, name: str) -> object:
            return getattr(self.store, name)

        def put(self, key: str, source: Path, sha256: str) -> object:
            stored = self.store.put(key, source, sha256)
            if key.endswith("/0=ocfl_object_1.1"):
                _two_versions(archive, work)
            return stored

    report = replicate_archive(
        archive, [disk2], stores=lambda where: NewVersionAfterTheLastFile(open_store(where))
    )

    [row] = report.copies
    assert row.outcome is ReplicationOutcome.COPY_FAILED
    assert "no longer vouches for the bag" in row.detail
    copy = Ledger(archive.ledger_path).copy(WORK_ID, "disk2")
    assert copy is not None and copy.state is CopyState.PENDING
    _replicated(archive, disk2)
    _check_every_version_there(archive, disk2, tmp_path)
