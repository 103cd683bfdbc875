"""Checks shared by the tests: what a preserved bag must be."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import bagit
import bagit_profile
import pytest
import xmlschema

from cifa_ingest.bag.check import validate
from cifa_ingest.bag.package import PROFILE_IDENTIFIER

REPO = Path(__file__).resolve().parent.parent
#: Public standards the tests check against, kept in the repository byte for byte (see its README).
STANDARDS = REPO / "tests" / "data" / "standards"
#: The Library of Congress BagIt conformance suite.
BAGIT_SUITE = STANDARDS / "bagit-conformance-suite"
#: The official PREMIS 3.0 schema (no imports: it loads offline).
PREMIS_XSD = STANDARDS / "premis" / "premis-v3-0.xsd"
BAGIT_PROFILE = REPO / "cifa_ingest" / "policies" / "cifa-bagit-profile.json"
DC_NS = "{http://purl.org/dc/elements/1.1/}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(out)


@functools.cache
def premis_schema() -> xmlschema.XMLSchema:
    """The PREMIS 3.0 schema, loaded offline: ``allow="local"`` refuses any remote resource."""
    return xmlschema.XMLSchema(str(PREMIS_XSD), allow="local")


def assert_premis_valid(bag_dir: Path) -> None:
    """metadata/premis.xml validates against the PREMIS 3.0 schema."""
    premis_schema().validate(str(bag_dir / "metadata" / "premis.xml"))


def assert_follows_profile(bag_dir: Path) -> None:
    """The bag follows the CIFA BagIt profile, checked with the bagit-profile library."""
    profile = bagit_profile.Profile(PROFILE_IDENTIFIER, profile=BAGIT_PROFILE.read_text("utf-8"))
    assert profile.validate_serialization(str(bag_dir))
    assert profile.validate(bagit.Bag(str(bag_dir))), str(profile.report)


def dublin_core(bag_dir: Path) -> dict[tuple[str, str | None], list[str]]:
    """metadata/descriptive.xml as {(element, xml:lang): [values]}."""
    root = ET.parse(bag_dir / "metadata" / "descriptive.xml").getroot()
    found: dict[tuple[str, str | None], list[str]] = {}
    for element in root:
        key = (element.tag.removeprefix(DC_NS), element.get(XML_LANG))
        found.setdefault(key, []).append(element.text or "")
    return found


def assert_valid_preserved_bag(bag_dir: Path, work_id: str) -> None:
    """Valid for bagit-python (all checksums recomputed); FFV1/Matroska master; H.264/MP4 copy."""
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    ours = validate(bag_dir)  # our validator agrees with the reference
    assert ours.valid, ours.errors
    assert bag.version_info == (1, 0)
    assert bag.info["External-Identifier"] == work_id
    assert set(bag.algorithms) == {"sha256", "sha512"}
    masters = sorted((bag_dir / "data" / "master").glob("*.mkv"))
    accesses = sorted((bag_dir / "data" / "access").glob("*.mp4"))
    assert masters and len(masters) == len(accesses)
    for master in masters:
        probe = ffprobe(master)
        assert "matroska" in probe["format"]["format_name"]
        video = [s for s in probe["streams"] if s["codec_type"] == "video"]
        assert [s["codec_name"] for s in video] == ["ffv1"]
    for access in accesses:
        probe = ffprobe(access)
        assert "mp4" in probe["format"]["format_name"]
        codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}
        assert codecs["video"] == "h264"
        assert codecs.get("audio") == "aac"
    tag_files = {p.name for p in (bag_dir / "metadata").iterdir()}
    assert {"descriptive.json", "permission.json", "capture.json", "technical.json"} <= tag_files
    assert {"descriptive.xml", "premis.xml"} <= tag_files
    assert_premis_valid(bag_dir)
    assert_follows_profile(bag_dir)
    assert dublin_core(bag_dir)[("identifier", None)] == [work_id]
    assert "technical.mediainfo.json" in tag_files  # MediaInfo is installed by `make setup`
    assert any(name.endswith(".info.json") for name in tag_files)
    record = json.loads((bag_dir / "metadata" / "normalisation.json").read_text("utf-8"))
    for group in record["groups"]:
        assert group["proof"]["passed"], group["proof"]
        assert (bag_dir / "metadata" / "proof" / group["proof"]["master_hashes"]).is_file()
        if group["action"] == "ffv1":
            assert group["mediaconch"]["outcome"] == "pass", group["mediaconch"]


def processes_naming(text: str) -> list[str]:
    """The command lines of running processes that contain ``text`` (a work's id, a test's
    folder): what a failed or killed run must not leave behind."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def preserve_films(root: Path, base_url: str, films: dict[str, tuple[dict[str, str], str]]) -> None:
    """Preserve each film (work id -> title, file name under ``films/`` at ``base_url``) into
    the archive at ``root`` by the real pipeline, granted; each must come out preserved."""
    from cifa_ingest.archive.layout import Archive
    from cifa_ingest.catalogue.model import Work
    from cifa_ingest.config import load_settings
    from cifa_ingest.preserve import Outcome, preserve_work

    for work_id, (title, film) in films.items():
        work = Work.model_validate(
            {
                "id": work_id,
                "title": title,
                "source": {"url": f"{base_url}/films/{film}"},
                "permission": {"status": "granted", "granted_by": "Test"},
            }
        )
        report = preserve_work(work, Archive(root), load_settings(), allow_private_sources=True)
        assert report.outcome is Outcome.PRESERVED, report.error


def archive_of_films(
    folder: Path, served_root: Path, title: dict[str, str], films: dict[str, str]
) -> Path:
    """An archive at ``folder/archive`` holding each film (work id -> file name under
    ``films/`` of the demo site at ``served_root``), preserved by the real pipeline from a real
    HTTP server: what the storage tests make once per module and copy per test."""
    from cifa_ingest.demo.http_server import LocalFileServer

    root = folder / "archive"
    with LocalFileServer(served_root) as server:
        preserve_films(root, server.base_url, {i: (title, f) for i, f in films.items()})
    return root


def fresh_copy(archive: Path, folder: Path) -> Path:
    """A copy of ``archive`` at ``folder/archive`` for one test (read-only files stay
    read-only), so that each test damages its own."""
    import shutil

    copy = folder / "archive"
    shutil.copytree(archive, copy)
    return copy


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``cifa ARGS --quiet`` in this process, as a user runs it: its exit code, standard output
    and standard error; never a traceback."""
    from cifa_ingest import cli

    capsys.readouterr()
    code = cli.main([*args, "--quiet"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err
