"""Where is a damaged master damaged? FFV1's slice CRCs (RFC 9043) say which frames.

When a master's checksum fails, a conservator needs to know whether three frames or the whole film
are lost. Decoding the master with CRC checks on (``-err_detect crccheck``) makes FFV1's decoder
report every slice whose CRC does not match, with the time of its frame; the packets' timestamps
turn times into frame numbers. Used by ``cifa inspect BAG`` and by the audit.

Both programs run through the one runner (:mod:`cifa_ingest.tools.runner`): logged, with a time
limit. The decode's exit code is a finding, not a failure of the inspection: a master too damaged
to decode to its end makes ffmpeg exit non-zero, and the inspection says so.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.tools import runner

#: The decode's time limit: a fixed allowance, and one second per frame (FFV1 decodes hundreds of
#: standard-definition frames a second on one core, dozens of 1080p ones): a hung decode ends,
#: a feature-length master of any size is inspected.
DECODE_BASE_SECONDS = 600
DECODE_SECONDS_PER_FRAME = 1.0

_CRC = re.compile(r"slice CRC mismatch [0-9A-Fa-f]+!\s*at (\d+(?:\.\d+)?) seconds")


@dataclass
class DamagedFrame:
    frame: int
    time: float
    damaged_slices: int


@dataclass
class Inspection:
    """What the decoder found in one master."""

    master: str
    frames: int
    damaged: list[DamagedFrame] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.damaged and not self.other_errors

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "intact": self.intact}

    def summary(self) -> str:
        if self.intact:
            return f"{self.master}: {self.frames} frames, every slice CRC matches"
        parts = []
        if self.damaged:
            frames = ", ".join(str(d.frame) for d in self.damaged[:20])
            more = f" and {len(self.damaged) - 20} more" if len(self.damaged) > 20 else ""
            parts.append(f"{len(self.damaged)} of {self.frames} frames damaged: {frames}{more}")
        if self.other_errors:
            parts.append(f"{len(self.other_errors)} other decoding errors")
        return f"{self.master}: " + "; ".join(parts)


def _frame_times(master: Path) -> list[float]:
    """The presentation time of every video packet (FFV1 is intra-only: a packet is a frame)."""
    completed = runner.run(
        [runner.executable("ffprobe"), "-v", "error", "-select_streams", "v:0",
         "-show_entries", "packet=pts_time", "-of", "csv=p=0", "--", str(master)]
    )  # fmt: skip
    times = []
    for line in completed.stdout.decode().splitlines():
        try:
            times.append(float(line.strip().strip(",")))
        except ValueError:
            continue
    return sorted(times)


def _frame_at(times: list[float], time: float) -> int:
    index = bisect_left(times, time - 0.0005)
    return min(index, max(len(times) - 1, 0))


def inspect_master(master: Path, name: str | None = None) -> Inspection:
    """Decode ``master`` with slice CRC checks and say which frames are damaged."""
    times = _frame_times(master)
    completed = runner.run(
        [runner.executable("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
         "-err_detect", "crccheck", "-i", str(master), "-map", "0:v", "-f", "null", "-"],
        timeout=DECODE_BASE_SECONDS + DECODE_SECONDS_PER_FRAME * len(times),
        check=False,
    )  # fmt: skip
    result = Inspection(master=name or master.name, frames=len(times))
    by_frame: dict[int, DamagedFrame] = {}
    for line in completed.stderr.decode("utf-8", "replace").splitlines():
        for match in _CRC.finditer(line):
            time = float(match.group(1))
            frame = _frame_at(times, time)
            entry = by_frame.setdefault(frame, DamagedFrame(frame, time, 0))
            entry.damaged_slices += 1
        if not _CRC.search(line) and line.strip():
            result.other_errors.append(line.strip())
    result.damaged = [by_frame[k] for k in sorted(by_frame)]
    if completed.returncode != 0:
        result.other_errors.append(f"ffmpeg exited with {completed.returncode}")
    return result


def inspect_bag(bag: Path) -> list[Inspection]:
    """Inspect every FFV1 master of a bag (``data/master/*.mkv``)."""
    masters = sorted((bag / "data" / "master").glob("*.mkv"))
    return [inspect_master(m, m.relative_to(bag).as_posix()) for m in masters]
