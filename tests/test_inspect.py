"""`cifa inspect`: FFV1's slice CRCs locate damage in a master to the frame."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifa_ingest.audit.damage import inspect_master
from tests.conftest import REPO


def _master(tmp_path: Path) -> Path:
    master = tmp_path / "bag" / "data" / "master" / "film.mkv"
    master.parent.mkdir(parents=True)
    (tmp_path / "bag" / "bagit.txt").write_text("BagIt-Version: 1.0\n")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=320x240:rate=25", "-t", "2", "-c:v", "ffv1", "-level", "3", "-g", "1",
         "-slicecrc", "1", "-slices", "4", str(master)],
        check=True,
    )  # fmt: skip
    return master


def _damage_frame(master: Path, frame: int) -> None:
    """Flip bytes in the middle of one frame's packet, as bit rot would."""
    packets = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "packet=pos,size", "-of", "json", str(master)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    packet = json.loads(packets)["packets"][frame]
    offset = int(packet["pos"]) + int(packet["size"]) // 2
    with master.open("r+b") as fh:
        fh.seek(offset)
        data = fh.read(8)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def _cifa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def test_an_intact_master_is_reported_intact(tmp_path: Path) -> None:
    result = inspect_master(_master(tmp_path))
    assert result.intact and result.frames == 50
    cli = _cifa("inspect", str(tmp_path / "bag"))
    assert cli.returncode == 0 and "every slice CRC matches" in cli.stdout


@pytest.mark.parametrize("frames", [[17], [3, 41]])
def test_damage_is_located_to_the_frame(tmp_path: Path, frames: list[int]) -> None:
    master = _master(tmp_path)
    for frame in frames:
        _damage_frame(master, frame)
    result = inspect_master(master)
    assert [d.frame for d in result.damaged] == frames
    assert all(d.damaged_slices >= 1 for d in result.damaged)
    cli = _cifa("inspect", str(tmp_path / "bag"), "--json")
    assert cli.returncode == 1
    report = json.loads(cli.stdout)["masters"][0]
    assert [d["frame"] for d in report["damaged"]] == frames and not report["intact"]


def test_not_a_bag_is_a_usage_error(tmp_path: Path) -> None:
    cli = _cifa("inspect", str(tmp_path))
    assert cli.returncode == 2 and "not a bag" in cli.stderr
    assert "Traceback" not in cli.stderr
