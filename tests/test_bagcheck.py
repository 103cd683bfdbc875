"""Bag validation: the whole Library of Congress BagIt conformance suite, our own bags, and
every validation code tied to a fixture that triggers it, and only it (as ocfl-py's tests do)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import bagit
import pytest

from cifa_ingest.bag.check import CODES, validate
from cifa_ingest.bag.write import write_tag_manifests
from tests.conftest import REPO
from tests.helpers import BAGIT_SUITE

SUITE = BAGIT_SUITE
CASES = sorted(
    (kind, bag)
    for kind in ("valid", "invalid", "warning", "linux-only")
    for bag in SUITE.glob(f"v*/{kind}/*")
    if bag.is_dir()
)
#: The suite's files (paths and bytes) as the Library of Congress publishes them: see _tree_digest.
SUITE_DIGEST = "dd8b92fc0d33116466d50f3445c47ba5fa0e40120c8ca9287aab46d9f035aa8f"


def _tree_digest(root: Path) -> tuple[int, str]:
    """How many files under ``root``, and one sha256 over every file's path and bytes."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    tree = hashlib.sha256()
    for path in files:
        tree.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        tree.update(hashlib.sha256(path.read_bytes()).digest())
    return len(files), tree.hexdigest()


def test_the_suite_is_whole_and_byte_for_byte() -> None:
    """The copy in tests/data/standards/ is the published suite to the byte: a file lost, or a
    line end converted by git (see .gitattributes), changes this digest. The suite has no empty
    directory, so nothing git cannot hold is missing."""
    assert len(CASES) == 54  # every case that applies on Linux
    assert _tree_digest(SUITE) == (440, SUITE_DIGEST)
    assert not [d for d in SUITE.rglob("*") if d.is_dir() and not any(d.iterdir())]


@pytest.mark.parametrize(
    ("kind", "bag"), CASES, ids=[f"{b.parent.parent.name}/{k}/{b.name}" for k, b in CASES]
)
def test_conformance_suite(kind: str, bag: Path) -> None:
    report = validate(bag)
    if kind == "valid":
        assert report.valid, report.errors
    elif kind == "warning":
        assert report.valid, report.errors
        assert report.warnings, "a warning bag must produce a warning"
    else:
        assert not report.valid, f"{bag.name} must be invalid"
        assert all(f.message and f.code in CODES for f in report.errors)


def test_every_message_cites_rfc_8493() -> None:
    report = validate(SUITE / "v1.0" / "invalid" / "notAllManifestsListAllFiles")
    assert [f.code for f in report.errors] == ["E010"]
    assert "RFC 8493 §3" in report.errors[0].message


# Every code of cifa_ingest.bag.check, with a fixture that triggers it and no other code: a bag of
# the conformance suite where one does, otherwise a small bag built below and damaged one way.


def _suite(case: str) -> Callable[[Path], Path]:
    def fixture(_tmp: Path) -> Path:
        return SUITE / case

    fixture.__name__ = f"suite: {case}"
    return fixture


def _clean_bag(tmp: Path) -> Path:
    """A small bag by bagit-python, sha256 only: valid, without a single finding."""
    root = tmp / "bag"
    (root / "sub").mkdir(parents=True)
    (root / "film.mkv").write_bytes(b"\x1a\x45\xdf\xa3" * 256)
    (root / "sub" / "notes.txt").write_text("北京\n", "utf-8")
    bagit.make_bag(str(root), checksums=["sha256"])
    return root


def _append(path: Path, text: bytes | str) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(path.read_bytes() + data)


def _built(damage: Callable[[Path], object], *, reseal: bool = True) -> Callable[[Path], Path]:
    """A clean bag damaged by ``damage``; with ``reseal``, its tag manifest rewritten after, so
    that only the damage itself is found."""

    def fixture(tmp: Path) -> Path:
        bag = _clean_bag(tmp)
        damage(bag)
        if reseal:
            write_tag_manifests(bag, ("sha256",))
        return bag

    return fixture


def _not_a_directory(tmp: Path) -> Path:
    (tmp / "bag.zip").write_bytes(b"PK\x03\x04")
    return tmp / "bag.zip"


def _flip_first_byte(bag: Path) -> None:
    film = bag / "data" / "film.mkv"
    data = film.read_bytes()
    film.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size: Payload-Oxum still holds


def _set_oxum(bag: Path, value: str | None) -> None:
    info = bag / "bag-info.txt"
    lines = info.read_text("utf-8").splitlines()
    info.write_text(
        "".join(
            (f"Payload-Oxum: {value}\n" if value else "")
            if line.startswith("Payload-Oxum:")
            else line + "\n"
            for line in lines
        ),
        "utf-8",
    )


def _star_paths(bag: Path) -> None:
    manifest = bag / "manifest-sha256.txt"
    manifest.write_text(manifest.read_text("utf-8").replace("  data/", " *data/"), "utf-8")


def _holey(bag: Path) -> None:
    (bag / "data" / "sub" / "notes.txt").unlink()
    (bag / "fetch.txt").write_text("https://example.org/notes.txt - data/sub/notes.txt\n", "utf-8")
    _set_oxum(bag, None)  # optional; a holey bag's Payload-Oxum would count the absent file


CODE_FIXTURES: dict[str, Callable[[Path], Path]] = {
    "E000": _not_a_directory,
    "E001": _suite("v0.97/invalid/missing-bagit.txt"),
    "E002": _suite("v0.97/invalid/baginfo-missing-encoding"),
    "E003": _suite("v0.97/invalid/bom-in-bagit.txt"),
    "E004": _built(
        lambda b: (b / "bagit.txt").write_text(
            "BagIt-Version: 2.0\nTag-File-Character-Encoding: UTF-8\n", "utf-8"
        )
    ),
    "E005": _built(lambda b: shutil.rmtree(b / "data"), reseal=False),
    "E006": _built(lambda b: (b / "manifest-sha256.txt").unlink()),
    "E007": _built(lambda b: _append(b / "manifest-sha256.txt", "not a manifest line\n")),
    "E008": _built(lambda b: _append(b / "manifest-sha256.txt", f"{'0' * 64}  ../outside\n")),
    "E009": _built(lambda b: _append(b / "manifest-sha256.txt", f"{'0' * 64}  data/gone.txt\n")),
    "E010": _suite("v1.0/invalid/notAllManifestsListAllFiles"),
    "E011": _built(_flip_first_byte, reseal=False),
    "E012": _suite("v0.97/invalid/same-filename-listed-twice-with-different-hashes"),
    "E013": _built(lambda b: _append(b / "bag-info.txt", "Forged: yes\n"), reseal=False),
    "E014": _built(lambda b: _set_oxum(b, "1.1")),
    "E015": _built(lambda b: (b / "fetch.txt").write_text("https://example.org/f\n", "utf-8")),
    "E016": _built(lambda b: _append(b / "bag-info.txt", b"Note: \xff\n")),
    "E017": _built(lambda b: _append(b / "bag-info.txt", "a line with no label\n")),
    "E018": _built(lambda b: (b / "manifest-crc32.txt").write_text("", "utf-8"), reseal=False),
    "W101": _built(_star_paths),
    "W102": _suite("v0.97/warning/relative-path"),
    "W103": _suite("v0.97/warning/duplicate-file-with-different-case"),
    "W104": _suite("v0.97/warning/same-filename-listed-twice-with-different-normalization"),
    "W105": _suite("v0.97/warning/same-filename-listed-twice-with-the-same-hash"),
    "W106": _suite("v0.97/warning/special-system-files"),
    "W107": _built(_holey),
    "W108": _suite("v0.97/valid/minimal-bag"),
}


def test_the_clean_bag_has_no_finding(tmp_path: Path) -> None:
    report = validate(_clean_bag(tmp_path))
    assert report.findings == []


@pytest.mark.parametrize("code", sorted(CODES))
def test_each_code_has_a_fixture_that_triggers_it_alone(tmp_path: Path, code: str) -> None:
    """A code no fixture triggers fails here: every rule the validator states is exercised."""
    if code not in CODE_FIXTURES:
        pytest.fail(f"no fixture triggers {code} ({CODES[code][2]}): add one to CODE_FIXTURES")
    report = validate(CODE_FIXTURES[code](tmp_path))
    assert {f.code for f in report.findings} == {code}, report.findings
    assert report.valid is (CODES[code][0] == "warning")
    assert all(f"[{code}: RFC 8493 §{CODES[code][1]}: " in f.message for f in report.findings)


def test_every_fixture_names_a_known_code() -> None:
    assert set(CODE_FIXTURES) <= set(CODES)


def test_bags_bagit_python_writes_validate_with_ours(tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "film.mkv").write_bytes(b"\x1a\x45\xdf\xa3" * 1000)
    (tmp_path / "bag" / "流浪北京.txt").write_text("北京", "utf-8")
    bagit.make_bag(str(tmp_path / "bag"), checksums=["sha256", "sha512"])
    report = validate(tmp_path / "bag")
    assert report.valid, report.errors
    assert report.files_checked == 2 + 4  # payload; bagit.txt, bag-info.txt, two manifests


def _our_bag(tmp_path: Path, percent: bool = True) -> Path:
    """A bag made by `cifa bag`, with names that need RFC 8493's percent-encoding."""
    import subprocess
    import sys

    root = tmp_path / "bag"
    (root / "sub").mkdir(parents=True)
    (root / "film.mkv").write_bytes(bytes(range(256)) * 4096)
    (root / "sub" / f"{'100% ' if percent else ''}流浪北京.txt").write_text("北京", "utf-8")
    (root / "line\nbreak.txt").write_text("x", "utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "bag", str(root)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root


def test_bags_we_write_validate_with_ours(tmp_path: Path) -> None:
    bag = _our_bag(tmp_path)
    assert validate(bag).valid, validate(bag).errors
    manifest = (bag / "manifest-sha256.txt").read_text("utf-8")
    assert "data/line%0Abreak.txt" in manifest and "data/sub/100%25 流浪北京.txt" in manifest


def test_bags_we_write_validate_with_bagit_python(tmp_path: Path) -> None:
    """bagit-python 1.9 decodes %0A and %0D in manifest paths but not %25 (RFC 8493 §2.1.3 asks
    for all three), so this cross-check uses names without a percent sign."""
    bag = _our_bag(tmp_path, percent=False)
    reference = bagit.Bag(str(bag))
    reference.validate()
    assert reference.version_info == (1, 0)


@pytest.mark.parametrize(
    ("problem", "code"),
    [
        ("checksum-mismatch", "E011"),
        ("missing-file", "E009"),
        ("unexpected-file", "E010"),
        ("tag-file-changed", "E013"),
        ("payload-oxum-mismatch", "E014"),
        ("bagit-txt-missing", "E001"),
        ("path-outside-the-bag", "E008"),
    ],
)
def test_each_problem_has_its_code(tmp_path: Path, problem: str, code: str) -> None:
    bag = _our_bag(tmp_path)
    film = bag / "data" / "film.mkv"
    if problem == "checksum-mismatch":
        film.write_bytes(b"\xff" + film.read_bytes()[1:])
    elif problem == "missing-file":
        film.unlink()
    elif problem == "unexpected-file":
        (bag / "data" / "intruder.bin").write_bytes(b"?")
    elif problem == "tag-file-changed":
        info = bag / "bag-info.txt"
        info.write_text(info.read_text("utf-8") + "Forged: yes\n", "utf-8")
    elif problem == "payload-oxum-mismatch":
        from cifa_ingest.bag.write import write_tag_manifests

        info = bag / "bag-info.txt"
        info.write_text(
            "".join(
                "Payload-Oxum: 1.1\n" if line.startswith("Payload-Oxum") else line + "\n"
                for line in info.read_text("utf-8").splitlines()
            ),
            "utf-8",
        )
        write_tag_manifests(bag)
    elif problem == "bagit-txt-missing":
        (bag / "bagit.txt").unlink()
    elif problem == "path-outside-the-bag":
        manifest = bag / "manifest-sha256.txt"
        manifest.write_text(manifest.read_text("utf-8") + f"{'0' * 64}  ../outside\n", "utf-8")
    report = validate(bag)
    assert not report.valid
    assert code in {f.code for f in report.errors}, report.errors


def test_cifa_validate_exit_codes(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    bag = _our_bag(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cifa_ingest.cli", "validate", *args],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip

    assert run(str(bag)).returncode == 0
    (bag / "data" / "film.mkv").write_bytes(b"rot")
    result = run(str(bag), "--json")
    assert result.returncode == 1
    codes = {e["code"] for e in json.loads(result.stdout)["errors"]}
    assert {"E011", "E014"} <= codes
    assert run(str(tmp_path / "nothing")).returncode == 2
