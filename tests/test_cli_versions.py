"""`cifa history` and `cifa export`: the versions of a work as people read them, and a version
given back as a plain bag, run through ``cifa_ingest.cli.main`` as a user runs them.

The works' objects are made as the archive makes them (``versions.add_version``) from real bags
(bagit-python's, the helpers of tests/test_versions.py): v1, then a title fix as v2. Every export
is held to bagit-python's validation and compared byte for byte with the bag that made the
version; the JSON to the keys docs/reference/json.md shows.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import bagit
import pytest

from cifa_ingest import cli
from cifa_ingest.archive.ledger import BagRecord, Ledger
from tests.helpers import run_cli
from tests.test_docs import _assert_documented
from tests.test_versions import WORK, add, descriptive, rewrite, same_tree, small_bag, snapshot

V1_AT = dt.datetime(2026, 11, 1, 9, 0, 0, tzinfo=dt.UTC)
#: A version made in Beijing's evening: the history says it in UTC.
V2_AT = dt.datetime(2026, 11, 27, 22, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
FIX = "title corrected: Beijing Bastards"
OLD = "cifa-0002"  # preserved before versions: a bag in the ledger, no object


def _register(archive: Path, work_id: str) -> None:
    Ledger(archive / "ledger.sqlite").register_bag(
        BagRecord(
            work_id=work_id,
            bag_path=f"bags/{work_id}",
            placed_at="2026-01-01T00:00:00+00:00",
            payload_oxum="0.0",
            manifest_digests={},
            source_keys=[],
            software="cifa-ingest",
        )
    )


@pytest.fixture
def versioned(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An archive (its ledger, OLD preserved before versions) whose work WORK has two versions:
    v1, then a title fix; and the two bags that made them."""
    archive = tmp_path / "archive"
    archive.mkdir()
    _register(archive, OLD)
    bag = small_bag(tmp_path / "bag")
    add(archive, bag, "preserved", created=V1_AT)
    first = shutil.copytree(bag, tmp_path / "bag-v1")
    rewrite(bag, metadata={"descriptive.xml": descriptive("Beijing Bastards")})
    add(archive, bag, FIX, created=V2_AT)
    return archive, first, bag


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_history_lists_the_versions_for_people(
    versioned: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    archive, _first, _bag = versioned
    code, out, err = run_cli(capsys, "history", WORK, "--archive", str(archive))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{WORK}: 2 versions, the newest v2 ({archive / 'objects' / WORK})"
    assert lines[2].split() == ["version", "when", "(UTC)", "who", "files", "stored", "why"]
    v1 = next(line for line in lines if line.startswith("v1 "))
    v2 = next(line for line in lines if line.startswith("v2 "))
    assert "2026-11-01 09:00:00  Li Wei" in v1 and v1.endswith("preserved")
    assert "2026-11-27 14:30:05  Li Wei" in v2 and v2.endswith(FIX)  # 22:30:05 in UTC+8
    assert " KB " in v1 and " KB " in v2  # v1 stored the films; v2 a few kilobytes
    after_v2 = lines[lines.index(v2) + 1].strip()
    assert after_v2 == (
        "changed: metadata/descriptive.xml, tagmanifest-sha256.txt, tagmanifest-sha512.txt"
    )
    assert lines[lines.index(v1) + 1].strip() == "the first version: 12 files"


def test_history_as_json_has_the_documented_keys(
    versioned: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    archive, _first, _bag = versioned
    document = _json(capsys, "history", WORK, "--archive", str(archive))
    _assert_documented("## `cifa history`", document)
    assert document["id"] == WORK and document["head"] == 2
    assert document["object"] == str(archive / "objects" / WORK)
    first, second = document["versions"]
    assert (first["version"], first["message"]) == (1, "preserved")
    assert first["created"] == "2026-11-01T09:00:00+00:00"
    assert second["created"] == "2026-11-27T14:30:05+00:00"
    assert second["user"] == {"name": "Li Wei", "address": "mailto:li.wei@example.org"}
    assert first["files"] == second["files"] == 12 == len(first["added"])
    assert second["changed"] == [
        "metadata/descriptive.xml",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha512.txt",
    ]
    assert second["added"] == second["removed"] == []
    assert second["stored_files"] == 3 and 0 < second["stored_bytes"] < 10_000
    assert first["stored_bytes"] > 600_000


def test_export_gives_the_newest_version_or_the_one_asked_for_as_its_bag(
    versioned: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, first, bag = versioned
    where = ["--archive", str(archive)]
    newest = tmp_path / "out" / "newest"  # its parent made too
    code, out, err = run_cli(capsys, "export", WORK, "--to", str(newest), *where)
    assert code == 0, err
    assert out.startswith(f"{WORK} v2 (the newest) exported to {newest}: a BagIt bag of 12 files")
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is a fine target
    code, out, err = run_cli(capsys, "export", WORK, "--version", "1", "--to", str(empty), *where)
    assert code == 0, err
    assert out.startswith(f"{WORK} v1 (the newest is v2) exported to {empty}")
    for exported, made_it in ((newest, bag), (empty, first)):
        bagit.Bag(str(exported)).validate()  # bagit-python: every digest of every manifest
        assert same_tree(exported, made_it), f"{exported} is not the bag that made its version"

    as_json = _json(capsys, "export", WORK, "--version", "1", "--to", str(tmp_path / "j"), *where)
    _assert_documented("## `cifa export`", as_json)
    assert as_json == {
        "id": WORK,
        "version": 1,
        "head": 2,
        "to": str(tmp_path / "j"),
        "files": 12,
        "bytes": sum(p.stat().st_size for p in first.rglob("*") if p.is_file()),
        "ok": True,
    }


def test_export_writes_nothing_over_and_names_a_version_that_is_not_there(
    versioned: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, _first, _bag = versioned
    where = ["--archive", str(archive)]
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, "export", WORK, "--to", str(occupied), *where)
    assert code == 2 and out == ""
    assert f"{occupied}: exists and is not an empty folder; nothing written over" in err
    assert snapshot(occupied) == {"notes.txt": b"mine"}
    code, _out, err = run_cli(capsys, "export", WORK, "--to", str(occupied / "notes.txt"), *where)
    assert code == 2 and "not an empty folder" in err

    for number in ("3", "0"):
        code, out, err = run_cli(capsys, "export", WORK, "--version", number,
                              "--to", str(tmp_path / "x"), *where)  # fmt: skip
        assert code == 2 and out == ""
        assert f"{WORK} has no version {number}: its versions are v1 to v2" in err
    with pytest.raises(SystemExit) as usage:  # argparse: not a number
        cli.main(["export", WORK, "--version", "two", "--to", str(tmp_path / "x"), *where])
    assert usage.value.code == 2 and "invalid int value: 'two'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []


@pytest.mark.parametrize("command", ["history", "export"])
def test_a_work_without_versions_or_not_a_work_is_said_clearly(
    versioned: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    archive, _first, _bag = versioned
    before = snapshot(archive / "objects")
    to = ["--to", str(tmp_path / "x")] if command == "export" else []
    code, out, err = run_cli(capsys, command, OLD, *to, "--archive", str(archive))
    assert code == 2 and out == ""
    assert f"no versions recorded for {OLD} yet: it was preserved before the archive kept" in err
    assert "the next ingest records its first" in err
    code, out, err = run_cli(capsys, command, "cifa-0404", *to, "--archive", str(archive))
    assert code == 2 and out == ""
    assert f"cifa-0404: no such work in {archive} (no bag, no versions)" in err
    for bad in ("../bags/x", "Cifa-0001", "cifa-0001/v1"):
        code, out, err = run_cli(capsys, command, bad, *to, "--archive", str(archive))
        assert code == 2 and out == ""
        assert f"{bad!r}: not a work id (" in err
    code, out, err = run_cli(capsys, command, WORK, *to, "--archive", str(tmp_path / "nowhere"))
    assert code == 2 and "no archive here (no ledger.sqlite" in err
    assert snapshot(archive / "objects") == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "nowhere").exists()


def test_an_archive_with_no_versions_at_all_says_so_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    _register(archive, OLD)
    code, out, err = run_cli(capsys, "history", OLD, "--archive", str(archive), "--json")
    assert code == 2 and out == ""
    assert f"no versions recorded for {OLD} yet" in err
    assert not (archive / "objects").exists()  # a reader makes nothing


def test_a_damaged_object_is_refused_naming_the_file(
    versioned: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, _first, _bag = versioned
    stored = archive / "objects" / WORK / "v1/content/data/master/film.mkv"
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[12345] ^= 0x01
    stored.write_bytes(bytes(data))
    where = ["--archive", str(archive)]
    for version in ("1", "2"):  # v2 names the same master: stored once, damaged for both
        target = tmp_path / f"export-v{version}"
        code, out, err = run_cli(capsys, "export", WORK, "--version", version,
                              "--to", str(target), *where)  # fmt: skip
        assert code == 1 and out == ""
        assert err.startswith(f"cifa: export refused: {WORK} v{version}: ")
        assert "v1/content/data/master/film.mkv (the bag's data/master/film.mkv)" in err
        assert "nothing exported" in err
        assert not target.exists()
    code, out, _err = run_cli(capsys, "export", WORK, "--to", str(tmp_path / "j"), *where, "--json")
    failed = json.loads(out)
    assert code == 1 and failed["ok"] is False and failed["version"] == 2
    assert "v1/content/data/master/film.mkv" in failed["error"]
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []

    # The history reads the inventory, never the content: v2's copy of it altered is found.
    inventory = archive / "objects" / WORK / "v2/inventory.json"
    inventory.chmod(0o644)
    inventory.write_bytes(inventory.read_bytes().replace(b"title corrected", b"title correctex"))
    code, out, err = run_cli(capsys, "history", WORK, *where)
    assert code == 1 and out == ""
    assert err.startswith(f"cifa: history: {WORK}") and "v2/inventory.json: sha512" in err
