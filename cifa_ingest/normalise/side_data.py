"""The side data of the sources' video streams, and the HDR10 metadata among it (mastering
display, content light level): found in the stream (its container's) or in the first frame (the
codec's SEI), written into the master's Matroska Colour element with mkvpropedit where the
encode does not carry it (ffmpeg 5.1's encoder passes no frame side data to the muxer), and
checked in the master afterwards.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from cifa_ingest.normalise.streams import streams_of
from cifa_ingest.tools import runner

#: The HDR10 side data: SMPTE ST 2086's mastering display and CTA-861.3's content light level.
HDR_SIDE_DATA = ("Mastering display metadata", "Content light level metadata")

#: ffprobe's names of the HDR side data's values -> mkvpropedit's properties of Matroska's
#: Colour element (MasteringMetadata, MaxCLL, MaxFALL).
MATROSKA_COLOUR = {
    "red_x": "chromaticity-coordinates-red-x",
    "red_y": "chromaticity-coordinates-red-y",
    "green_x": "chromaticity-coordinates-green-x",
    "green_y": "chromaticity-coordinates-green-y",
    "blue_x": "chromaticity-coordinates-blue-x",
    "blue_y": "chromaticity-coordinates-blue-y",
    "white_point_x": "white-coordinates-x",
    "white_point_y": "white-coordinates-y",
    "max_luminance": "max-luminance",
    "min_luminance": "min-luminance",
    "max_content": "max-content-light",
    "max_average": "max-frame-light",
}


def first_frame_side_data(path: Path, index: int) -> list[dict[str, Any]]:
    """The side data of a video stream's first decoded frame (ffprobe), where decoders put what
    a codec carries inside its stream: HEVC's and H.264's SEI (mastering display, content light
    level, display orientation, stereo 3D, an encoder's own messages)."""
    completed = runner.run(
        [
            runner.executable("ffprobe"), "-v", "error", "-select_streams", str(index),
            "-read_intervals", "%+#1", "-show_frames", "-show_entries", "frame=side_data_list",
            "-of", "json", "--", str(path),
        ],
        timeout=300,
    )  # fmt: skip
    frames = json.loads(completed.stdout.decode("utf-8", "replace")).get("frames") or [{}]
    return list(frames[0].get("side_data_list") or [])


def sources_side_data(originals: list[Path], probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every video stream's side data, as the master's video stream number, where it is (the
    stream's, from its container; or the first frame's, from its codec) and its values."""
    found = []
    number = 0
    for original, probe in zip(originals, probes, strict=True):
        for stream in streams_of([probe], "video"):
            seen = set()
            for where, entries in (
                ("stream", stream.get("side_data_list") or []),
                ("first frame", first_frame_side_data(original, int(stream["index"]))),
            ):
                for entry in entries:
                    kind = str(entry.get("side_data_type", "unknown"))
                    if kind not in seen:
                        seen.add(kind)
                        values = {k: v for k, v in entry.items() if k != "side_data_type"}
                        found.append({"stream": number, "type": kind, "in": where, **values})
            number += 1
    return found


def _decimal(value: Any) -> str:
    """ffprobe's ``34000/50000`` as mkvpropedit takes it: ``0.68``."""
    return format(float(Fraction(str(value))), ".10g")


def hdr_edits(side_data: list[dict[str, Any]]) -> dict[int, list[str]]:
    """The mkvpropedit properties that carry the HDR metadata of each video stream's first
    frame into the master's Matroska Colour element, where the source's container does not
    declare it (what it declares, ffmpeg copies into the master itself): ffmpeg 5.1's encoder
    passes no frame side data to the muxer."""
    declared = {(d["stream"], d["type"]) for d in side_data if d["in"] == "stream"}
    edits: dict[int, list[str]] = {}
    for entry in side_data:
        if entry["type"] in HDR_SIDE_DATA and (entry["stream"], entry["type"]) not in declared:
            edits.setdefault(entry["stream"], []).extend(
                f"{MATROSKA_COLOUR[key]}={_decimal(value)}"
                for key, value in entry.items()
                if key in MATROSKA_COLOUR
            )
    return edits


def _mkvpropedit() -> tuple[str, str]:
    """mkvpropedit's path and version line, or ToolMissing saying how to install it."""
    found = runner.executable("mkvpropedit")
    version = runner.run([found, "--version"], timeout=60).stdout.decode("utf-8", "replace")
    return found, (version.splitlines() or ["mkvpropedit"])[0].strip()


def edit_master(master: Path, edits: dict[int, list[str]]) -> list[dict[str, Any]]:
    """Write the HDR metadata into the master's video tracks (Matroska Colour), with
    mkvpropedit, before the master is proved (the proof then holds for the edited file: the
    edit changes the track headers, not a frame). Returns the record of the edit."""
    program, version = _mkvpropedit()
    command = [program, "--quiet", str(master)]
    for number, properties in sorted(edits.items()):
        command += ["--edit", f"track:v{number + 1}"]
        for value in properties:
            command += ["--set", value]
    runner.run(command, timeout=600)
    return [
        {
            "what": "the first frame's mastering display and content light level written into"
            " the master's Matroska Colour element",
            "tool": version,
            "command": command,
            "why": "the source carries them in its frames (SEI); ffmpeg 5.1's encoder does not"
            " pass frame side data to the muxer",
        }
    ]


def _same_values(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Whether two side data entries hold the same values, fractions compared as numbers to 5
    decimals (Matroska stores HDR values as floats)."""
    keys = [k for k in ours if k in MATROSKA_COLOUR]
    return all(
        k in theirs
        and round(float(Fraction(str(ours[k]))), 5) == round(float(Fraction(str(theirs[k]))), 5)
        for k in keys
    )


def check_side_data(
    found: dict[str, Any], side_data: list[dict[str, Any]], problems: list[str], copied: bool
) -> list[str]:
    """Mark each side data entry of the sources with where the master has it (updating
    ``side_data``, the record), or why not; an HDR entry the master lacks is a problem. In a
    remux (``copied``), what the first frame holds is in the copied stream itself (its SEI)."""
    checked = []
    video = streams_of([found], "video")
    for entry in side_data:
        if copied and entry["in"] == "first frame":
            entry["master"] = "the copied stream (the codec's own, as in the source)"
            continue
        number = entry["stream"]
        has = {
            str(d.get("side_data_type")): d
            for d in (video[number].get("side_data_list") if number < len(video) else None) or []
        }
        kind = entry["type"]
        if kind in has and _same_values(entry, has[kind]):
            entry["master"] = "the master's stream side data (its Matroska track header)"
            if kind in HDR_SIDE_DATA:
                checked.append(f"video {number}: {kind}, as in the source's {entry['in']}")
        elif kind in HDR_SIDE_DATA:
            problems.append(
                f"video {number}: {kind} of the source's {entry['in']} not in the master"
            )
        elif kind == "Display Matrix" and "rotation" in entry and entry["in"] == "stream":
            entry["master"] = "the ROTATION tag"
        else:
            entry["master"] = None
            entry["why"] = (
                "Matroska (ffmpeg 5.1's muxer) has no place for it; the original keeps it"
                if copied
                else "FFV1 in Matroska (ffmpeg 5.1) has no place for it; the original keeps it"
            )
    return checked
