"""What the master keeps of its sources, and the check of the master file itself: every stream of
every original and where the master has it, or why not (normalisation.json's ``fidelity``); then,
after the proof, the master's own ffprobe against the sources' (streams, attachments, pixel
formats, bit depths, channel layouts, HDR metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.errors import ProofFailed
from cifa_ingest.normalise.attached_pictures import AttachedPicture, attachments_of
from cifa_ingest.normalise.audio import audio_bits, declared_layout, declares_layout
from cifa_ingest.normalise.proof import FULL_RANGE_FORMATS
from cifa_ingest.normalise.side_data import check_side_data
from cifa_ingest.normalise.streams import in_master, is_attached_picture, streams_of
from cifa_ingest.tools import runner


@dataclass
class Fidelity:
    """What the master keeps of its source, and how: normalisation.json's ``fidelity``.

    ``streams``: every stream of every original and where the master has it, or why it has not
    (the original, in the bag, always has it). ``kept_as_metadata``: what the master's format
    cannot carry and the master keeps as a tag (or another element) instead. ``master_edits``:
    changes made to the master after its encode, with their command lines. ``checked``: what was
    checked on the master itself (its ffprobe) against the source's."""

    streams: list[dict[str, Any]] = field(default_factory=list)
    kept_as_metadata: list[dict[str, Any]] = field(default_factory=list)
    side_data: list[dict[str, Any]] = field(default_factory=list)
    master_edits: list[dict[str, Any]] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def statements(self) -> list[str]:
        """A sentence for each stream and side data the master has not, each value it keeps as
        metadata only, and each edit of the master: the note of the normalization event
        (PREMIS)."""
        missing = [
            f"{s['original']} stream {s['index']} ({s['type']}, {s['codec']}) is not in the"
            f" master: {s['why']}"
            for s in self.streams
            if s.get("master") is None
        ]
        missing += [
            f"video stream {d['stream']}: {d['type']} ({d['in']}) is not in the master: {d['why']}"
            for d in self.side_data
            if d.get("master") is None
        ]
        kept = [f"{k['what']}: {k['how']} ({k['why']})" for k in self.kept_as_metadata]
        edits = [f"{e['what']}: {e['tool']} ({e['why']})" for e in self.master_edits]
        return missing + kept + edits


def _not_in_master_why(stream: dict[str, Any]) -> str:
    kind, codec = stream.get("codec_type"), stream.get("codec_name", "unknown")
    if kind == "data":
        return (
            "Matroska holds no data streams (ffmpeg 5.1's muxer takes video, audio, subtitles"
            " and attachments); the original keeps it"
        )
    if kind == "subtitle":
        return f"Matroska cannot hold {codec} subtitles as they are; the original keeps them"
    return f"Matroska cannot hold a {kind} stream; the original keeps it"


def inventory(
    probes: list[dict[str, Any]], originals: list[str], pictures: list[AttachedPicture]
) -> list[dict[str, Any]]:
    """Every stream of every original, in the originals' order, and where the master has it
    (its stream number, or its attachment), or why it has not."""
    placed: dict[tuple[int, int], str] = {}
    position = 0
    for kind in ("video", "audio", "subtitle"):
        for number, probe in enumerate(probes):
            for stream in probe.get("streams", []):
                if stream.get("codec_type") == kind and in_master(stream):
                    placed[number, int(stream["index"])] = f"stream {position} ({kind})"
                    position += 1
    for number, probe in enumerate(probes):
        for stream in probe.get("streams", []):
            if stream.get("codec_type") == "attachment":
                tags = stream.get("tags", {})
                placed[number, int(stream["index"])] = (
                    f"attachment {tags.get('filename', '')!r} ({tags.get('mimetype', '')})"
                )
    for picture in pictures:
        placed[picture.original, picture.index] = (
            f"attachment {picture.filename!r} ({picture.mimetype}), the picture's bytes as in"
            " the original"
        )
    records = []
    for number, probe in enumerate(probes):
        for stream in probe.get("streams", []):
            kind = str(stream.get("codec_type", "unknown"))
            record: dict[str, Any] = {
                "original": originals[number],
                "index": int(stream["index"]),
                "type": "attached picture"
                if kind == "video" and is_attached_picture(stream)
                else kind,
                "codec": stream.get("codec_name", "unknown"),
            }
            if kind in ("data", "attachment") and stream.get("tags"):
                record["tags"] = stream["tags"]
            record["master"] = placed.get((number, int(stream["index"])))
            if record["master"] is None:
                record["why"] = _not_in_master_why(stream)
            records.append(record)
    return records


def check_master_file(
    master: Path,
    probes: list[dict[str, Any]],
    pictures: list[AttachedPicture],
    side_data: list[dict[str, Any]] | None = None,
    copied: bool = False,
) -> list[str]:
    """Check the master file itself (its ffprobe) against its sources: it has every picture,
    sound and subtitle stream the inventory says, every attachment with its file name and MIME
    type, each stream's pixel format, bit depth and channel layout (declared, or kept as
    tags), and the sources' HDR metadata; ``side_data`` (the record) is marked with where the
    master has each entry. Returns what was checked, for the record; ProofFailed if anything
    is missing."""
    found = runner.probe(master)
    checked: list[str] = []
    problems: list[str] = []
    checked += check_side_data(found, side_data or [], problems, copied)
    for kind in ("video", "audio", "subtitle"):
        expected = [s for s in streams_of(probes, kind) if in_master(s)]
        has = streams_of([found], kind)
        if len(has) != len(expected):
            problems.append(f"{len(expected)} {kind} stream(s) expected, {len(has)} found")
        elif expected:
            checked.append(f"{len(has)} {kind} stream(s), as in the source")
    expected_attachments = [
        (str(s.get("tags", {}).get("filename", "")), str(s.get("tags", {}).get("mimetype", "")))
        for probe in probes
        for s in probe.get("streams", [])
        if s.get("codec_type") == "attachment"
    ] + [(p.filename, p.mimetype) for p in pictures]
    has_attachments = attachments_of(found)
    missing = [a for a in expected_attachments if a not in has_attachments]
    if missing:
        problems.append(f"attachments missing: {missing}")
    elif expected_attachments:
        checked.append(
            "attachments with their file names and MIME types: "
            + ", ".join(f"{name} ({mimetype})" for name, mimetype in expected_attachments)
        )
    for index, (ours, theirs) in enumerate(
        zip(streams_of(probes, "video"), streams_of([found], "video"), strict=False)
    ):
        tags = theirs.get("tags", {})
        pix_fmt, held = str(ours.get("pix_fmt")), str(theirs.get("pix_fmt"))
        raw = str(ours.get("bits_per_raw_sample") or "")
        bits = raw if raw.isdigit() and int(raw) else None
        if held == FULL_RANGE_FORMATS.get(pix_fmt, pix_fmt):
            if bits and bits != theirs.get("bits_per_raw_sample"):
                problems.append(
                    f"video {index}: {bits} bits in the source,"
                    f" {theirs.get('bits_per_raw_sample')} declared by the master"
                )
            checked.append(
                f"video {index}: pixel format {held}" + (f", {bits} bits" if bits else "")
            )
        elif tags.get("SOURCE_PIX_FMT") == pix_fmt and (
            not bits or tags.get("BITS_PER_RAW_SAMPLE") == bits
        ):
            checked.append(
                f"video {index}: pixel format {pix_fmt}, held as {held} (tag SOURCE_PIX_FMT"
                + (f", tag BITS_PER_RAW_SAMPLE={bits})" if bits else ")")
            )
        else:
            problems.append(
                f"video {index}: pixel format {pix_fmt} in the source, {held} in the master"
            )
    layouts, depths = [], []
    for index, (ours, theirs) in enumerate(
        zip(streams_of(probes, "audio"), streams_of([found], "audio"), strict=False)
    ):
        layout, codec = declared_layout(ours), str(theirs.get("codec_name"))
        if layout is not None:
            declared = declared_layout(theirs)
            tagged = theirs.get("tags", {}).get("CHANNEL_LAYOUT")
            if layout != (declared if declares_layout(codec) else tagged):
                problems.append(
                    f"audio {index}: channel layout {layout} in the source, {declared or 'none'}"
                    f" in the master{f' (tag {tagged})' if tagged else ''}"
                )
            else:
                layouts.append(
                    f"{layout} (declared by {codec}"
                    + (", and the tag CHANNEL_LAYOUT)" if tagged else ")")
                    if declares_layout(codec)
                    else f"{layout} (tag CHANNEL_LAYOUT)"
                )
        depth = audio_bits(ours)
        if depth is not None:
            if audio_bits(theirs) != depth:
                problems.append(
                    f"audio {index}: {depth} bits in the source, {audio_bits(theirs)} declared by"
                    " the master"
                )
            else:
                depths.append(f"{depth} ({codec})")
    if layouts:
        checked.append("audio channel layouts: " + ", ".join(layouts))
    if depths:
        checked.append("audio bit depths: " + ", ".join(depths))
    if problems:
        raise ProofFailed(
            f"{master.stem}: the master is not what was planned: {'; '.join(problems)}"
        )
    return checked
