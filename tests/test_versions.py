"""Versioned works (cifa_ingest.versions): OCFL 1.1 objects whose every version is the work's bag.

Judged by a validator we did not write: ocfl-py's (its object and storage-root validators, every
digest checked), and every export by bagit-python. The only warning it gives is W005 (an object's
id SHOULD be a URI): the id is the archive's work id on purpose, the flat-direct layout making it
the object's folder name (a URI would put a colon in it); the tests hold the warnings to exactly
that one.

The crash test kills a real process adding a version (SIGKILL, at random instants) and checks
that the object is then at its previous version or complete at the new one, never in between.
"""

from __future__ import annotations

import datetime as dt
import filecmp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import bagit
import pytest

from cifa_ingest.errors import (
    ArchiveStateError,
    ExportRefused,
    InputError,
    NoSuchVersion,
    ObjectDamaged,
    UnchangedVersion,
    VersionRefused,
)
from cifa_ingest.versions import (
    StorageRoot,
    User,
    add_version,
    export,
    head,
    logical_state,
    recover,
    versions,
)
from cifa_ingest.versions import new_version as new_version_module
from cifa_ingest.versions import recovery as recovery_module

REPO = Path(__file__).resolve().parent.parent
WORK = "cifa-0001"
ARCHIVIST = User("Li Wei", "mailto:li.wei@example.org")
#: What ocfl-py may say of our objects, and why: W005, the id is the work id (see above).
JUSTIFIED_WARNINGS = {"W005"}


def _ocfl() -> Any:
    """ocfl-py, imported without the deprecation warnings of pyfilesystem2's pkg_resources."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ocfl
        import ocfl.validator

    return ocfl


def ocfl_object_report(object_dir: Path) -> tuple[bool, dict[str, str]]:
    """ocfl-py's verdict on one object, digests checked: valid?, and every code it logged."""
    validator = _ocfl().validator.Validator(log_warnings=True, check_digests=True)
    valid = validator.validate_object(str(object_dir))
    return valid, dict(validator.log.codes)


def assert_ocfl_valid(storage_root: Path) -> None:
    """The storage root and every object in it valid for ocfl-py, with no warning but W005."""
    root = _ocfl().StorageRoot(root=str(storage_root))
    valid = root.validate(log_warnings=True, check_digests=True)
    assert root.structure_error is None
    assert valid and root.num_objects > 0 and root.good_objects == root.num_objects, root.errors
    for work_id in StorageRoot(storage_root).ids():
        object_valid, codes = ocfl_object_report(storage_root / work_id)
        assert object_valid, codes
        assert set(codes) <= JUSTIFIED_WARNINGS, codes


def make_bag(folder: Path, payload: dict[str, bytes], metadata: dict[str, bytes]) -> Path:
    """A real bag by bagit-python (sha256 and sha512 manifests) with tag files under metadata/,
    as the pipeline's bags have them."""
    for name, data in payload.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    bagit.make_bag(str(folder), checksums=["sha256", "sha512"])
    return rewrite(folder, metadata=metadata)


def rewrite(
    bag_dir: Path,
    *,
    metadata: dict[str, bytes] | None = None,
    payload: dict[str, bytes | None] | None = None,
) -> Path:
    """Change a bag (None removes a file) and regenerate its manifests and tag manifests."""
    for name, data in (metadata or {}).items():
        (bag_dir / "metadata" / name).parent.mkdir(parents=True, exist_ok=True)
        (bag_dir / "metadata" / name).write_bytes(data)
    for name, data in (payload or {}).items():
        target = bag_dir / "data" / name
        if data is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    bagit.Bag(str(bag_dir)).save(manifests=True)
    bagit.Bag(str(bag_dir)).validate()
    return bag_dir


def descriptive(title: str) -> bytes:
    return f'<?xml version="1.0"?>\n<work id="{WORK}"><title>{title}</title></work>\n'.encode()


def small_bag(folder: Path) -> Path:
    return make_bag(
        folder,
        {
            "master/film.mkv": os.urandom(300_000),
            "access/film.mp4": os.urandom(100_000),
            "original/film.webm": os.urandom(200_000),
            "original/empty.txt": b"",
        },
        {"descriptive.xml": descriptive("Beijing Bastard"), "premis.xml": b"<premis/>\n"},
    )


def add(archive: Path, bag: Path, message: str = "a version", **kwargs: Any) -> Any:
    return add_version(
        archive / "objects",
        WORK,
        bag,
        message=message,
        user=ARCHIVIST,
        staging_dir=archive / "staging",
        **kwargs,
    )


def disk_use(folder: Path) -> int:
    """Bytes on disk under ``folder`` (as ``du`` counts them: allocated blocks)."""
    return (
        sum(p.lstat().st_blocks * 512 for p in folder.rglob("*")) + folder.lstat().st_blocks * 512
    )


def same_tree(left: Path, right: Path) -> bool:
    """The same files, byte for byte, at the same paths."""

    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    names = files(left)
    return names == files(right) and all(
        filecmp.cmp(left / n, right / n, shallow=False) for n in names
    )


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder``: a file's bytes, None for a folder."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


# ---------------------------------------------------------------------------------------------
# (1) A title fix: a new version of a few kilobytes


def test_a_title_fix_stores_only_what_changed_and_both_versions_export_as_their_bags(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive"
    bag = make_bag(
        tmp_path / "bag",
        {"master/film.mkv": os.urandom(50 * 1024 * 1024), "access/film.mp4": os.urandom(500_000)},
        {"descriptive.xml": descriptive("Beijing Bastard"), "premis.xml": b"<premis/>\n"},
    )
    first = add(archive, bag, "preserved", created=dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC))
    as_first = shutil.copytree(bag, tmp_path / "bag-v1")
    objects = archive / "objects"
    used = disk_use(objects)

    rewrite(bag, metadata={"descriptive.xml": descriptive("Beijing Bastards")})
    second = add(archive, bag, "title corrected: Beijing Bastards")

    assert (first.number, second.number) == (1, 2)
    assert first.stored_bytes > 50 * 1024 * 1024
    grown = disk_use(objects) - used
    assert grown < 1024 * 1024, f"the title fix took {grown} bytes on disk"
    assert second.stored_bytes < 10_000
    assert second.changed == (
        "metadata/descriptive.xml",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha512.txt",
    )
    assert second.added == second.removed == ()
    stored = sorted(p.relative_to(objects / WORK / "v2").as_posix() for p in
                    (objects / WORK / "v2").rglob("*") if p.is_file())  # fmt: skip
    assert stored == [
        "content/metadata/descriptive.xml",
        "content/tagmanifest-sha256.txt",
        "content/tagmanifest-sha512.txt",
        "inventory.json",
        "inventory.json.sha512",
    ]

    for number, expected in ((1, as_first), (2, bag)):
        exported = export(objects, WORK, number, tmp_path / f"export-v{number}")
        bagit.Bag(str(exported)).validate()  # bagit-python: every digest of every manifest
        assert same_tree(exported, expected), f"v{number} is not the bag it was made from"
    assert same_tree(export(objects, WORK, None, tmp_path / "export-head"), bag)

    assert_ocfl_valid(objects)
    # Storage root as the design says, and the object where flat-direct puts it.
    assert (objects / "0=ocfl_1.1").read_text() == "ocfl_1.1\n"
    assert '"0002-flat-direct-storage-layout"' in (objects / "ocfl_layout.json").read_text()
    assert (objects / "ocfl_1.1.md").is_file()
    assert (objects / WORK / "0=ocfl_object_1.1").read_text() == "ocfl_object_1.1\n"
    assert StorageRoot(objects).ids() == [WORK]
    assert head(objects, WORK) == 2


def test_the_inventory_records_the_version_as_ocfl_asks(tmp_path: Path) -> None:
    """sha512 addressing, sha256 fixity from the bag, RFC 3339 UTC times, v1 not padded, and
    every digest the same as the bag's own manifests."""
    import json

    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    when = dt.datetime(2026, 11, 27, 22, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    add(archive, bag, "preserved", created=when)
    inventory = json.loads((archive / "objects" / WORK / "inventory.json").read_text("utf-8"))
    assert inventory["id"] == WORK
    assert inventory["type"] == "https://ocfl.io/1.1/spec/#inventory"
    assert inventory["digestAlgorithm"] == "sha512"
    assert inventory["head"] == "v1"
    assert "contentDirectory" not in inventory  # the default, content
    version = inventory["versions"]["v1"]
    assert version["created"] == "2026-11-27T14:30:05Z"
    assert version["user"] == {"name": "Li Wei", "address": "mailto:li.wei@example.org"}
    assert version["message"] == "preserved"
    sha512 = dict(line.split(maxsplit=1)[::-1] for line in
                  (bag / "manifest-sha512.txt").read_text().splitlines())  # fmt: skip
    sha256 = dict(line.split(maxsplit=1)[::-1] for line in
                  (bag / "manifest-sha256.txt").read_text().splitlines())  # fmt: skip
    state = {p: d for d, paths in version["state"].items() for p in paths}
    for path, digest in sha512.items():
        assert state[path] == digest
        assert inventory["manifest"][digest] == [f"v1/content/{path}"]
        assert inventory["fixity"]["sha256"][sha256[path]] == [f"v1/content/{path}"]
    assert set(state) == {p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file()}
    assert logical_state(archive / "objects", WORK) == state


# ---------------------------------------------------------------------------------------------
# (2) Files removed and added; the history says what changed


def test_history_lists_what_each_version_added_changed_and_removed(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    add(archive, bag, "preserved")
    rewrite(bag, metadata={"descriptive.xml": descriptive("Beijing Bastards")})
    add(archive, bag, "title corrected")
    new_access = os.urandom(120_000)
    rewrite(bag, payload={"access/film.mp4": None, "access/film-v2.mp4": new_access})
    third = add(archive, bag, "new access copy")

    assert "data/access/film-v2.mp4" in third.added
    assert third.removed == ("data/access/film.mp4",)
    assert "data/master/film.mkv" not in third.changed
    assert {"manifest-sha256.txt", "manifest-sha512.txt", "bag-info.txt"} <= set(third.changed)
    history = versions(archive / "objects", WORK)
    assert [(v.number, v.message, v.user) for v in history] == [
        (1, "preserved", ARCHIVIST),
        (2, "title corrected", ARCHIVIST),
        (3, "new access copy", ARCHIVIST),
    ]
    assert history[2] == third
    assert history[0].added and not history[0].changed and not history[0].removed
    assert history[0].files == history[1].files == history[2].files == 12
    # v3 stored the new access copy and the rewritten manifests; nothing of the master again.
    assert third.stored_bytes - len(new_access) < 10_000
    assert all(v.created.tzinfo is not None for v in history)

    # Every version still exports as it was: v2 has the old access copy, v3 does not.
    v2 = export(archive / "objects", WORK, 2, tmp_path / "v2")
    assert (v2 / "data/access/film.mp4").is_file()
    assert not (v2 / "data/access/film-v2.mp4").exists()
    v3 = export(archive / "objects", WORK, 3, tmp_path / "v3")
    assert same_tree(v3, bag)
    for exported in (v2, v3):
        bagit.Bag(str(exported)).validate()
    assert_ocfl_valid(archive / "objects")


def test_a_file_identical_to_an_earlier_one_is_named_not_stored(tmp_path: Path) -> None:
    """Two files of one version with the same bytes, and a file moved: stored once."""
    archive = tmp_path / "archive"
    master = os.urandom(200_000)
    bag = make_bag(
        tmp_path / "bag",
        {"master/a.mkv": master, "master/b.mkv": master},
        {"descriptive.xml": descriptive("A")},
    )
    first = add(archive, bag, "preserved")
    assert first.stored_bytes < len(master) * 2
    rewrite(bag, payload={"master/b.mkv": None, "master/c.mkv": master})
    moved = add(archive, bag, "renamed")
    assert moved.stored_bytes < 10_000
    assert "data/master/c.mkv" in moved.added and moved.removed == ("data/master/b.mkv",)
    assert_ocfl_valid(archive / "objects")


# ---------------------------------------------------------------------------------------------
# (3) Bad inputs: clear errors, nothing changed


def test_an_id_that_is_not_a_work_id_is_refused_before_it_becomes_a_path(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    for bad in ("../escape", "Cifa-0001", "cifa--1", "", "a/b", ".."):
        with pytest.raises(InputError, match="not a work id"):
            add_version(
                archive / "objects", bad, bag, message="m", user=ARCHIVIST,
                staging_dir=archive / "staging",
            )  # fmt: skip
        with pytest.raises(InputError, match="not a work id"):
            StorageRoot(archive / "objects").object_path(bad)
    assert not (tmp_path / "escape").exists()
    assert not (archive / "objects").exists()


def test_a_bag_with_a_wrong_checksum_is_refused_and_the_object_is_unchanged(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    damaged = shutil.copytree(bag, tmp_path / "damaged")
    film = damaged / "data/master/film.mkv"
    data = bytearray(film.read_bytes())
    data[1000] ^= 0xFF  # same size: Payload-Oxum agrees, only the digests can tell
    film.write_bytes(bytes(data))

    with pytest.raises(
        VersionRefused, match=re.escape("data/master/film.mkv: sha256 is")
    ) as refused:
        add(archive, damaged, "first version, damaged")
    assert "sha512 is" in str(refused.value)
    assert not (archive / "objects" / WORK).exists()  # no object made
    assert list((archive / "staging").iterdir()) == []

    add(archive, bag, "preserved")
    before = snapshot(archive / "objects")
    rewrite(damaged, metadata={"descriptive.xml": descriptive("x")})
    data[2000] ^= 0xFF
    film.chmod(0o644)
    film.write_bytes(bytes(data))  # after the manifests were written
    with pytest.raises(VersionRefused, match=re.escape("data/master/film.mkv")):
        add(archive, damaged, "second version, damaged")
    assert snapshot(archive / "objects") == before
    assert list((archive / "staging").iterdir()) == []

    # A tag file changed after the tag manifests were written: refused too.
    (damaged / "metadata/premis.xml").write_bytes(b"<premis>forged</premis>\n")
    with pytest.raises(VersionRefused, match=re.escape("metadata/premis.xml")):
        add(archive, damaged, "tag file changed")
    # Not a bag at all, and a bag missing a payload file.
    with pytest.raises(VersionRefused, match="not a complete, valid bag"):
        add(archive, damaged / "data", "not a bag")
    incomplete = shutil.copytree(bag, tmp_path / "incomplete")
    (incomplete / "data/access/film.mp4").unlink()
    with pytest.raises(VersionRefused, match=re.escape("film.mp4 is missing")):
        add(archive, incomplete, "incomplete")
    assert snapshot(archive / "objects") == before


def test_what_a_version_cannot_keep_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    (bag / "metadata/linked.xml").symlink_to(bag / "metadata/premis.xml")  # a tag file
    with pytest.raises(VersionRefused, match=re.escape("linked.xml: not a plain file")):
        add(archive, bag, "a link")
    (bag / "metadata/linked.xml").unlink()
    (bag / "data/empty-folder").mkdir()
    with pytest.raises(VersionRefused, match="an empty folder"):
        add(archive, bag, "an empty folder")
    (bag / "data/empty-folder").rmdir()
    with pytest.raises(VersionRefused, match="message"):
        add(archive, bag, " ")
    with pytest.raises(VersionRefused, match="time zone"):
        add(archive, bag, "naive time", created=dt.datetime(2026, 1, 1))
    assert not (archive / "objects" / WORK).exists()


def test_the_head_again_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    add(archive, bag, "preserved")
    before = snapshot(archive / "objects")
    with pytest.raises(UnchangedVersion, match="v1, the latest version, file for file") as same:
        add(archive, bag, "again")
    assert same.value.head == 1
    assert snapshot(archive / "objects") == before


def test_exports_and_readings_that_cannot_be_done_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    objects = archive / "objects"
    bag = small_bag(tmp_path / "bag")
    with pytest.raises(NoSuchVersion, match="no versioned works here"):
        versions(objects, WORK)
    assert not objects.exists()  # a reader creates nothing
    add(archive, bag, "preserved")

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ExportRefused, match="not an empty folder"):
        export(objects, WORK, 1, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    with pytest.raises(ExportRefused):
        export(objects, WORK, 1, occupied / "notes.txt")

    for number in (0, 2, -1, 99):
        with pytest.raises(NoSuchVersion, match=f"has no version {number}: its versions are v1"):
            export(objects, WORK, number, tmp_path / "nowhere")
        with pytest.raises(NoSuchVersion):
            logical_state(objects, WORK, number)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(NoSuchVersion, match="no versions of this work"):
        versions(objects, "cifa-9999")
    assert head(objects, "cifa-9999") is None
    with pytest.raises(InputError, match="not a work id"):
        export(objects, "../x", 1, tmp_path / "x")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(objects, WORK, 1, empty) == empty  # an empty folder is a fine target
    assert same_tree(empty, bag)
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []


# ---------------------------------------------------------------------------------------------
# (5) Damage is found: by ocfl-py's validator (it checks digests) and by the export


def test_a_damaged_content_file_is_found_by_ocfl_py_and_by_the_export(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    objects = archive / "objects"
    bag = small_bag(tmp_path / "bag")
    add(archive, bag, "preserved")
    stored = objects / WORK / "v1/content/data/master/film.mkv"
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[12345] ^= 0x01
    stored.write_bytes(bytes(data))

    valid, codes = ocfl_object_report(objects / WORK)
    assert not valid
    assert "E092a" in codes and "v1/content/data/master/film.mkv" in codes["E092a"]

    with pytest.raises(
        ObjectDamaged, match=re.escape("v1/content/data/master/film.mkv")
    ) as damaged:
        export(objects, WORK, 1, tmp_path / "export")
    assert "the bag's data/master/film.mkv" in str(damaged.value)
    assert not (tmp_path / "export").exists()
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []


def test_a_damaged_inventory_is_found_before_anything_is_read_or_written(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    objects = archive / "objects"
    bag = small_bag(tmp_path / "bag")
    add(archive, bag, "preserved")
    rewrite(bag, metadata={"descriptive.xml": descriptive("fixed")})
    add(archive, bag, "fixed")
    inventory = objects / WORK / "v2/inventory.json"
    inventory.chmod(0o644)
    inventory.write_bytes(inventory.read_bytes().replace(b'"fixed"', b'"fixes"'))
    before = snapshot(objects)
    with pytest.raises(ObjectDamaged, match=re.escape("v2/inventory.json: sha512")):
        versions(objects, WORK)
    rewrite(bag, metadata={"descriptive.xml": descriptive("fixed again")})
    with pytest.raises(ObjectDamaged):
        add(archive, bag, "on a damaged object")
    assert snapshot(objects) == before


# ---------------------------------------------------------------------------------------------
# (4) Crashes: an interrupted add is rolled forward or never happened; re-running is safe


class _Crash(BaseException):
    """A crash at a chosen instant (BaseException: nothing on the way catches it)."""


def _interrupted_then_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, after: int
) -> tuple[Path, Path, dict[str, str]]:
    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    add(archive, bag, "preserved")
    rewrite(bag, metadata={"descriptive.xml": descriptive("Beijing Bastards")})
    real = getattr(module, name)
    calls = []

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if len(calls) > after:
            raise _Crash
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, crashing)
    with pytest.raises(_Crash):
        add(archive, bag, "title corrected")
    monkeypatch.setattr(module, name, real)
    return archive, bag, bagit_state(bag)


def bagit_state(bag: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(bag).as_posix(): hashlib.sha512(p.read_bytes()).hexdigest()
        for p in bag.rglob("*")
        if p.is_file()
    }


def test_a_crash_after_the_version_is_placed_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, bag, state = _interrupted_then_recovered(
        tmp_path, monkeypatch, new_version_module, "roll_forward", 0
    )
    objects = archive / "objects"
    assert (objects / WORK / "v2").is_dir()
    assert b'"head": "v1"' in (objects / WORK / "inventory.json").read_bytes()
    valid, _codes = ocfl_object_report(objects / WORK)
    assert not valid  # what ocfl-py sees before the recovery: v2 on disk, not in the inventory
    assert recover(objects, WORK).rolled_forward == 2
    assert logical_state(objects, WORK) == state
    assert_ocfl_valid(objects)
    with pytest.raises(UnchangedVersion):  # re-running: the version is there already
        add(archive, bag, "title corrected")
    assert recover(objects, WORK).rolled_forward is None


def test_a_crash_between_the_inventory_and_its_digest_file_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, _bag, state = _interrupted_then_recovered(
        tmp_path, monkeypatch, recovery_module, "replace_file", 1
    )
    objects = archive / "objects"
    assert b'"head": "v2"' in (objects / WORK / "inventory.json").read_bytes()
    # A reader recovers first: it sees v2, whole.
    assert [v.number for v in versions(objects, WORK)] == [1, 2]
    assert logical_state(objects, WORK) == state
    assert_ocfl_valid(objects)


def test_a_crash_while_the_bag_is_copied_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifa_ingest.versions import content

    archive, bag, state = _interrupted_then_recovered(
        tmp_path, monkeypatch, content, "_copy_hashing", 1
    )
    objects = archive / "objects"
    assert head(objects, WORK) == 1
    assert_ocfl_valid(objects)
    assert add(archive, bag, "title corrected").number == 2
    assert logical_state(objects, WORK) == state
    assert_ocfl_valid(objects)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cifa_ingest.versions import User, add_version
    root, staging, bag = map(Path, sys.argv[1:4])
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    add_version(root, "cifa-0001", bag, message="re-capture",
                user=User("cron", "mailto:cron@example.org"), staging_dir=staging)
    print(time.monotonic() - started, flush=True)
    """
)


def _start_child(archive: Path, bag: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(archive / "objects"), str(archive / "staging"),
         str(bag)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def test_sigkill_at_random_instants_of_an_add_leaves_a_whole_version(tmp_path: Path) -> None:
    """A real process adding a version of a few MB is killed (SIGKILL) at a random instant, 20
    times. After the recovery the object is at v1 or complete at v2, ocfl-py finds it valid,
    and re-running the add brings it to v2."""
    pristine = tmp_path / "pristine"
    bag = make_bag(
        tmp_path / "bag",
        {f"master/reel-{n}.mkv": os.urandom(400_000) for n in range(6)},
        {"descriptive.xml": descriptive("Beijing Bastards")},
    )
    add(pristine, bag, "preserved")
    v1_state = bagit_state(bag)
    rewrite(bag, payload={f"master/reel-{n}.mkv": os.urandom(400_000) for n in range(6)})
    v2_state = bagit_state(bag)

    # How long an add takes in the child, once it has started (imports excluded).
    timing = tmp_path / "timing"
    shutil.copytree(pristine, timing, symlinks=True)
    child = _start_child(timing, bag)
    duration = float(child.communicate("go\n", timeout=60)[0])
    assert head(timing / "objects", WORK) == 2

    rng = random.Random(18)
    outcomes: dict[int, int] = {1: 0, 2: 0}
    for round_ in range(20):
        archive = tmp_path / f"round-{round_}"
        shutil.copytree(pristine, archive, symlinks=True)
        child = _start_child(archive, bag)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        time.sleep(rng.uniform(0, duration * 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close() if child.stdout else None
        child.stdin.close()

        objects = archive / "objects"
        recover(objects, WORK, archive / "staging")
        assert list((archive / "staging").iterdir()) == []
        reached = head(objects, WORK)
        assert reached in (1, 2)
        outcomes[reached] += 1
        assert logical_state(objects, WORK) == (v1_state if reached == 1 else v2_state)
        assert_ocfl_valid(objects)
        try:
            add(archive, bag, "re-capture")
        except UnchangedVersion:
            assert reached == 2
        assert logical_state(objects, WORK) == v2_state
        assert [v.number for v in versions(objects, WORK)] == [1, 2]
        assert_ocfl_valid(objects)
        shutil.rmtree(archive)
    assert outcomes[1] and outcomes[2], outcomes  # killed before the rename, and after it


def test_one_writer_at_a_time_per_object(tmp_path: Path) -> None:
    """A second add waits for the object's lock (held here as another writer would hold it)."""
    import threading

    archive = tmp_path / "archive"
    bag = small_bag(tmp_path / "bag")
    made: list[int] = []
    root = StorageRoot(archive / "objects").ensure()
    with root.locked(WORK):
        writer = threading.Thread(target=lambda: made.append(add(archive, bag, "waits").number))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive() and made == []  # waiting for the lock
        with StorageRoot(archive / "objects").locked("cifa-0002"):
            pass  # another work's object is not locked
    writer.join(timeout=30)
    assert made == [1]


def test_the_storage_root_is_made_once_and_checked(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    assert recover(objects, WORK).rolled_forward is None and not objects.exists()
    root = StorageRoot(objects).ensure()
    made = snapshot(objects)
    assert root.ensure() is root and snapshot(objects) == made  # checked, never rewritten
    assert recover(objects, WORK) == recovery_module.Recovery(None, ())

    other = tmp_path / "other-layout"
    StorageRoot(other).ensure()
    layout = other / "ocfl_layout.json"
    layout.chmod(0o644)
    layout.write_text('{"extension": "0004-hashed-n-tuple-storage-layout", "description": ""}')
    with pytest.raises(ArchiveStateError, match="0004-hashed-n-tuple-storage-layout"):
        StorageRoot(other).ensure()
    older = tmp_path / "ocfl-1.0"
    older.mkdir()
    (older / "0=ocfl_1.0").write_text("ocfl_1.0\n")
    with pytest.raises(ArchiveStateError, match=re.escape("0=ocfl_1.0")):
        StorageRoot(older).ensure()


def test_staging_on_another_file_system_is_refused(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to stage on")
    bag = small_bag(tmp_path / "bag")
    staging = Path(tempfile.mkdtemp(dir=shm))
    try:
        with pytest.raises(ArchiveStateError, match="different file systems"):
            add_version(
                tmp_path / "objects", WORK, bag, message="m", user=ARCHIVIST, staging_dir=staging
            )
    finally:
        shutil.rmtree(staging)
    assert not (tmp_path / "objects" / WORK).exists()
