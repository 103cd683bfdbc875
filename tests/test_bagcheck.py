"""Bag validation: the whole Library of Congress BagIt conformance suite, our own bags, and
fixtures named after the problem they must trigger."""

from __future__ import annotations

from pathlib import Path

import bagit
import pytest

from cifa_ingest.bagcheck import CODES, validate
from tests.conftest import REPO

SUITE = REPO.parent / "shared" / "conformance" / "bagit-conformance-suite"
CASES = sorted(
    (kind, bag)
    for kind in ("valid", "invalid", "warning", "linux-only")
    for bag in SUITE.glob(f"v*/{kind}/*")
    if bag.is_dir()
)


def test_the_suite_has_all_54_linux_cases() -> None:
    if not SUITE.is_dir():
        pytest.skip(f"the conformance suite is not on this machine ({SUITE})")
    assert len(CASES) == 54


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
    if not SUITE.is_dir():
        pytest.skip("no conformance suite here")
    assert [f.code for f in report.errors] == ["E010"]
    assert "RFC 8493 §3" in report.errors[0].message


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
        from cifa_ingest.bagwrite import write_tag_manifests

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
