"""Checks shared by the tests: what a preserved bag must be."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import bagit


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


def assert_valid_preserved_bag(bag_dir: Path, work_id: str) -> None:
    """Valid for bagit-python (all checksums recomputed); FFV1/Matroska master; H.264/MP4 copy."""
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
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
    assert "technical.mediainfo.json" in tag_files  # MediaInfo is installed by `make setup`
    assert any(name.endswith(".info.json") for name in tag_files)
    record = json.loads((bag_dir / "metadata" / "normalisation.json").read_text("utf-8"))
    for group in record["groups"]:
        assert group["proof"]["passed"], group["proof"]
        assert (bag_dir / "metadata" / "proof" / group["proof"]["master_hashes"]).is_file()
        if group["action"] == "ffv1":
            assert group["mediaconch"]["outcome"] == "pass", group["mediaconch"]
