"""The fixity audit, on an archive of real bags made by the pipeline, damaged in every way the
audit must name. An untouched bag is never flagged."""

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

from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.audit.fixity_audit import ProblemKind, audit_archive
from cifa_ingest.bag.write import write_tag_manifests
from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO
from tests.helpers import premis_schema, preserve_films

WORKS = {"cifa-a-0001": "colour-bars.mkv", "cifa-a-0002": "three-days-day-1.mp4"}


@pytest.fixture(scope="module")
def pristine(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of two real bags, made once for this module."""
    root = tmp_path_factory.mktemp("audit") / "archive"
    with LocalFileServer(served_root) as server:
        title = {"en": "Audit test", "zh": "审计测试"}
        preserve_films(root, server.base_url, {i: (title, f) for i, f in WORKS.items()})
    return root


@pytest.fixture
def archive(pristine: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the archive for each test to damage."""
    copy = tmp_path / "archive"
    shutil.copytree(pristine, copy)
    for path in copy.rglob("*"):  # placed bags are read-only: the damage is an insider's
        if path.is_file():
            path.chmod(0o644)
    yield copy


def _bag(archive: Path, work_id: str = "cifa-a-0001") -> Path:
    return archive / "bags" / work_id


def _kinds(archive: Path) -> set[tuple[str, str]]:
    report = audit_archive(Archive(archive))
    return {(p.bag, p.kind) for p in report.problems}


def test_an_untouched_archive_is_intact_and_every_check_is_logged(archive: Path) -> None:
    report = audit_archive(Archive(archive))
    assert report.ok and len(report.bags) == 2
    assert all(bag.bytes_read > 0 for bag in report.bags)
    history = AuditLog(archive / "ledger.sqlite").history("cifa-a-0001")
    assert [check.outcome for check in history] == ["intact"]
    assert history[0].software.startswith("cifa-ingest")


def test_a_flipped_byte_is_found_though_size_and_mtime_are_restored(archive: Path) -> None:
    original = next((_bag(archive) / "data" / "original").glob("*.mkv"))
    stat = original.stat()
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01
    original.write_bytes(bytes(data))
    os.utime(original, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _kinds(archive) == {("cifa-a-0001", "checksum_mismatch")}


def test_a_damaged_master_names_its_damaged_frames(archive: Path) -> None:
    master = _bag(archive) / "data" / "master" / "cifa-a-0001.mkv"
    packets = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pos,size",
         "-of", "json", str(master)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    packet = json.loads(packets)["packets"][30]
    with master.open("r+b") as fh:
        fh.seek(int(packet["pos"]) + int(packet["size"]) // 2)
        fh.write(b"\xde\xad\xbe\xef")
    (problem,) = audit_archive(Archive(archive)).problems
    assert problem.kind == "checksum_mismatch" and problem.damaged_frames == [30]


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        ("delete an access copy", "missing_file"),
        ("add a file to the payload", "unexpected_file"),
        ("edit a metadata file", "tag_checksum_mismatch"),
        ("edit Payload-Oxum and its tag manifests", "oxum_mismatch"),
        ("delete bagit.txt", "invalid_structure"),
        ("forge a file and all its manifests", "ledger_mismatch"),
        ("delete the bag", "missing_bag"),
    ],
)
def test_each_kind_of_damage_is_named(archive: Path, damage: str, kind: str) -> None:
    bag = _bag(archive)
    if damage == "delete an access copy":
        next((bag / "data" / "access").glob("*.mp4")).unlink()
    elif damage == "add a file to the payload":
        (bag / "data" / "original" / "stowaway.bin").write_bytes(b"?")
    elif damage == "edit a metadata file":
        (bag / "metadata" / "descriptive.json").write_text("{}", "utf-8")
    elif damage == "edit Payload-Oxum and its tag manifests":
        info = bag / "bag-info.txt"
        lines = info.read_text("utf-8").splitlines()
        info.write_text(
            "".join(
                ("Payload-Oxum: 1.1" if x.startswith("Payload-Oxum") else x) + "\n" for x in lines
            ),
            "utf-8",
        )
        write_tag_manifests(bag)
    elif damage == "delete bagit.txt":
        (bag / "bagit.txt").unlink()
    elif damage == "forge a file and all its manifests":
        # A consistent forgery: the description rewritten, the tag manifests recomputed.
        (bag / "metadata" / "descriptive.json").write_text('{"title": "forged"}', "utf-8")
        write_tag_manifests(bag)
    elif damage == "delete the bag":
        shutil.rmtree(bag)
    found = _kinds(archive)
    assert ("cifa-a-0001", kind) in found, found
    assert all(bag_id == "cifa-a-0001" for bag_id, _ in found)  # the other bag is intact
    assert {k for _, k in found} <= set(ProblemKind)


def test_an_unregistered_bag_is_named(archive: Path) -> None:
    shutil.copytree(_bag(archive), archive / "bags" / "cifa-stranger")
    assert _kinds(archive) == {("cifa-stranger", "unregistered_bag")}


def test_an_unregistered_object_is_named(archive: Path) -> None:
    """Versions of a work the ledger does not know (an object under objects/, here another
    work's copied under a stranger's id) are named, as a stranger's bag is."""
    objects = archive / "objects"
    [known] = [p for p in sorted(objects.iterdir()) if (p / "0=ocfl_object_1.1").is_file()][:1]
    shutil.copytree(known, objects / "cifa-stranger")
    assert _kinds(archive) == {("cifa-stranger", "unregistered_object")}


def test_the_archive_is_relocatable(archive: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "replica"
    shutil.copytree(archive, moved)
    assert audit_archive(Archive(moved)).ok


def test_rolling_audit_takes_the_oldest_first_within_a_budget(archive: Path) -> None:
    first = audit_archive(Archive(archive), budget_bytes=1)
    assert [bag.bag for bag in first.bags] == ["cifa-a-0001"]  # placed first, never verified
    assert first.not_reached == ["cifa-a-0002"]
    second = audit_archive(Archive(archive), max_age_days=90)
    assert [bag.bag for bag in second.bags] == ["cifa-a-0002"]  # the one never verified
    third = audit_archive(Archive(archive), max_age_days=90)
    assert third.bags == [] and third.ok


def test_the_audit_log_shows_tampering(archive: Path) -> None:
    audit_archive(Archive(archive))
    audit_archive(Archive(archive))
    log = AuditLog(archive / "ledger.sqlite")
    assert log.verify() == []
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        conn.execute("UPDATE fixity_checks SET outcome = 'intact' WHERE id = 2")
        conn.execute("UPDATE fixity_checks SET bytes_read = 0 WHERE id = 3")
    assert any("record 3" in p and "altered" in p for p in log.verify())
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        conn.execute("DELETE FROM fixity_checks WHERE id = 1")
    assert any("record 2" in p and "deleted" in p for p in log.verify())


def test_the_audit_log_shows_records_cut_off_the_end(archive: Path) -> None:
    audit_archive(Archive(archive))
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        conn.execute("DELETE FROM fixity_checks WHERE id = (SELECT MAX(id) FROM fixity_checks)")
    assert any("head" in p for p in AuditLog(archive / "ledger.sqlite").verify())


def _cifa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", *args],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip


def test_cifa_audit_json_and_exit_codes(archive: Path) -> None:
    result = _cifa("audit", str(archive), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["checked"], report["intact"], report["problems"]) == (2, 2, [])
    next((_bag(archive) / "data" / "access").glob("*.mp4")).unlink()
    result = _cifa("audit", str(archive), "--json", "--full")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert {(p["bag"], p["kind"]) for p in problems} == {("cifa-a-0001", "missing_file")}
    assert all(p["path"].startswith("data/access/") for p in problems)
    assert _cifa("audit", str(archive), "--budget", "soon").returncode == 2
    assert _cifa("audit", str(archive.parent / "nowhere")).returncode == 2
    assert _cifa("ledger", "verify", "--archive", str(archive)).returncode == 0


def test_fixity_audit_flow_fails_when_a_bag_is_damaged(archive: Path) -> None:
    from cifa_ingest.pipelines.flows import fixity_audit

    assert fixity_audit(str(archive), return_state=True).is_completed()
    (_bag(archive, "cifa-a-0002") / "metadata" / "permission.json").write_text("{}", "utf-8")
    state = fixity_audit(str(archive), return_state=True)
    assert state.is_failed() and "tag_checksum_mismatch" in (state.message or "")


def test_html_report_puts_problems_first_and_escapes_everything(archive: Path) -> None:
    from cifa_ingest.reports.audit_report import write_reports

    (archive / "bags" / "<img src=x onerror=alert(1)>").mkdir()  # an unregistered "bag"
    next((_bag(archive) / "data" / "access").glob("*.mp4")).unlink()
    report = audit_archive(Archive(archive))
    json_path, html_path = write_reports(report, Archive(archive))
    page = html_path.read_text("utf-8")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.index("Problems") < page.index("Bags and their history")
    assert "missing_file" in page and "poster" in page
    assert json.loads(json_path.read_text("utf-8"))["ok"] is False


def test_cifa_events_exports_premis_events_with_the_fixity_checks(archive: Path) -> None:
    import xml.etree.ElementTree as ET

    audit_archive(Archive(archive))
    next((_bag(archive) / "data" / "access").glob("*.mp4")).unlink()
    audit_archive(Archive(archive))
    result = _cifa("events", "cifa-a-0001", "--archive", str(archive))
    assert result.returncode == 0, result.stderr
    ns = {"p": "http://www.loc.gov/premis/v3"}
    root = ET.fromstring(result.stdout.encode())
    types = [e.findtext("p:eventType", namespaces=ns) for e in root.findall("p:event", ns)]
    assert "capture" in types and types.count("fixity check") == 2
    outcomes = [
        e.findtext("p:eventOutcomeInformation/p:eventOutcome", namespaces=ns)
        for e in root.findall("p:event", ns)
        if e.findtext("p:eventType", namespaces=ns) == "fixity check"
    ]
    assert outcomes == ["pass", "fail"]
    premis_schema().validate(result.stdout)
    assert _cifa("events", "cifa-nobody", "--archive", str(archive)).returncode == 2


def test_a_consistently_forged_payload_file_is_named(archive: Path) -> None:
    """An insider rewrites a film and every manifest to match: the bag is valid on its own, and
    only the ledger, with each file's digests at ingest, names the file."""
    from cifa_ingest.bag.fixity import digest_file
    from cifa_ingest.bag.write import _write_manifest

    bag = _bag(archive)
    forged = next((bag / "data" / "access").glob("*.mp4"))
    forged.write_bytes(forged.read_bytes() + b"forged")
    for algorithm in ("sha256", "sha512"):
        manifest = bag / f"manifest-{algorithm}.txt"
        entries = dict(
            reversed(line.split("  ", 1)) for line in manifest.read_text("utf-8").splitlines()
        )
        entries[forged.relative_to(bag).as_posix()] = digest_file(forged, [algorithm]).digests[
            algorithm
        ]
        _write_manifest(manifest, entries)
    info = bag / "bag-info.txt"
    size = sum(p.stat().st_size for p in (bag / "data").rglob("*") if p.is_file())
    count = sum(1 for p in (bag / "data").rglob("*") if p.is_file())
    info.write_text(
        "".join(
            (f"Payload-Oxum: {size}.{count}" if x.startswith("Payload-Oxum") else x) + "\n"
            for x in info.read_text("utf-8").splitlines()
        ),
        "utf-8",
    )
    write_tag_manifests(bag)
    problems = audit_archive(Archive(archive)).problems
    assert {p.kind for p in problems} == {"ledger_mismatch"}
    assert forged.relative_to(bag).as_posix() in {p.path for p in problems}


def test_an_audit_run_of_a_path_without_an_archive_fails_saying_so(tmp_path: Path) -> None:
    """A scheduled audit of an archive not made yet (or a mistyped path): Failed, its message
    saying there is no archive there, and nothing created."""
    from cifa_ingest.pipelines.flows import fixity_audit

    nowhere = tmp_path / "no-archive"
    state = fixity_audit(str(nowhere), return_state=True)
    assert state.is_failed() and "no archive here" in (state.message or ""), state.message
    assert not nowhere.exists()
