"""Normalisation: a preservation master (by the format policy: FFV1 in Matroska, a bit-for-bit
remux, or the original kept), an access copy (H.264 + AAC in MP4, WebVTT subtitles, a poster and a
contact sheet), and the proof that the master is lossless (:mod:`cifa_ingest.normalise.proof`).

One decode of the source feeds every output: the master, the access copy, the poster, the contact
sheet and the source's frame hashes come out of a single ffmpeg run. A second ffmpeg decodes the
FFV1 master for its hashes as it is written, fed by a tee to a pipe, so that the proof uses the
cores the encode leaves idle instead of following it; the file's packets are then bound to the
stream decoded (:func:`_bind`).

The master changes nothing about the picture or the sound: FFV1 version 3,
intra-only, slice CRCs (RFC 9043), the source's pixel format, timestamps (``-fps_mode
passthrough``), orientation (``-noautorotate``) and colour properties; audio in a lossless codec
that declares its channel layout and bit depth (:func:`audio_codec`): FLAC where it holds the
decoded samples (integers of up to 24 bits), else WavPack (float, 32-bit and 8-bit integers: FLAC
from a float decode would not be lossless, and the proof would catch it), PCM only for 64-bit
float.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.config import NormaliseSettings
from cifa_ingest.errors import FFmpegError, InsufficientSpace, ProofFailed, UnknownSampleFormat
from cifa_ingest.normalise import mediaconch as conformance
from cifa_ingest.normalise import proof
from cifa_ingest.normalise.format_policy import Action, Profile
from cifa_ingest.normalise.proof import FULL_RANGE_FORMATS, KEEP_FULL_RANGE, PCM_OF
from cifa_ingest.tools import mediainfo
from cifa_ingest.tools import runner as ffmpeg_runner

log = logging.getLogger(__name__)

#: Decoded sample format -> lossless audio codec in the master (see :func:`audio_codec`): FLAC
#: for 16-bit integers (and 32-bit ones holding at most 24 bits); WavPack for float, 32-bit and
#: 8-bit integers, which FLAC cannot hold; PCM for 64-bit float, which neither holds. Both FLAC
#: and WavPack declare the channel layout and the bit depth, which PCM in Matroska does not.
LOSSLESS_AUDIO = {
    **{sample_fmt: "wavpack" for sample_fmt in PCM_OF},
    "s16": "flac",
    "s16p": "flac",
    "dbl": PCM_OF["dbl"],
    "dblp": PCM_OF["dblp"],
}
#: Where MediaInfo (23.04) reads a Matroska track's channel layout: FLAC's channel mask, not
#: WavPack's (ffprobe reads both).
MEDIAINFO_READS_LAYOUT = {"flac"}
#: Samples per WavPack block in a master (see :func:`master_options`).
WAVPACK_BLOCK_SAMPLES = 4096


def declares_layout(codec: str) -> bool:
    """Whether an audio codec in Matroska declares its channel layout (ffprobe reads it back):
    all but PCM, which Matroska describes by its channel count only."""
    return not codec.startswith("pcm_")


#: Text subtitle codecs that Matroska cannot hold as they are, and what they become.
SUBTITLE_CONVERSION = {"mov_text": "srt"}
#: Subtitle codecs that can become WebVTT (text); bitmap subtitles cannot.
TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
#: Subtitle codecs our ffmpeg's (5.1) Matroska muxer holds as they are (libavformat/matroska.c);
#: with :data:`SUBTITLE_CONVERSION`'s, the subtitles a master can keep.
MATROSKA_SUBTITLES = {
    "subrip", "srt", "text", "ass", "ssa", "webvtt", "dvd_subtitle", "dvb_subtitle",
    "hdmv_pgs_subtitle", "hdmv_text_subtitle",
}  # fmt: skip
#: Attached pictures' (cover art's) codecs and the MIME type of their Matroska attachment.
PICTURE_MIMETYPES = {
    "mjpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "webp": "image/webp",
}


@dataclass
class Rendition:
    """One derived file and the command that made it."""

    name: str
    role: str
    source: str
    command: list[str]


@dataclass(frozen=True)
class AttachedPicture:
    """A cover picture of an original (a video stream with the disposition ``attached_pic``: an
    MP4's cover art, a Matroska image attachment), to become an attachment of the master.
    ffmpeg 5.1's Matroska muxer would write it as a one-frame video track, so its bytes are
    taken out of the original (``-c copy``) and attached (``-attach``)."""

    original: int  # which of the originals
    index: int  # its stream index there
    filename: str
    mimetype: str


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


@dataclass
class GroupResult:
    """What normalisation did with one film (or one part)."""

    stem: str
    action: str
    reason: str
    originals: list[str]
    original_bytes: int
    master_bytes: int = 0
    renditions: list[Rendition] = field(default_factory=list)
    proof: proof.Proof | None = None
    conformance: conformance.PolicyCheck | None = None
    notes: list[str] = field(default_factory=list)
    fidelity: Fidelity = field(default_factory=Fidelity)
    #: Per audio stream whose source declares its length: the samples declared and the samples
    #: the master holds (:func:`audio_samples`); kept in normalisation.json's proof record.
    audio_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def storage_factor(self) -> float | None:
        """Master bytes / original bytes: what this choice of master costs in storage."""
        return self.master_bytes / self.original_bytes if self.master_bytes else None


@dataclass
class Normalised:
    """What normalisation made from one work's originals."""

    ffmpeg_version: str
    profile: str
    groups: list[GroupResult] = field(default_factory=list)

    @property
    def renditions(self) -> list[Rendition]:
        return [r for group in self.groups for r in group.renditions]


def ffv1_slices(width: int, height: int) -> int:
    """Slices per frame: more for larger frames, so decoding parallelises and a damaged slice
    (caught by its CRC) loses a smaller part of the picture."""
    pixels = width * height
    if pixels <= 720 * 576:
        return 4
    if pixels <= 1280 * 720:
        return 16
    return 24


def _streams(probes: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Streams of one kind across the inputs, in the order the outputs hold them (cover art,
    an attached picture, is not a video stream here)."""
    return [
        s
        for probe in probes
        for s in probe.get("streams", [])
        if s.get("codec_type") == kind and not s.get("disposition", {}).get("attached_pic")
    ]


def _attached(stream: dict[str, Any]) -> bool:
    return bool(stream.get("disposition", {}).get("attached_pic"))


def _kept_subtitle(stream: dict[str, Any]) -> bool:
    """Whether a subtitle stream can be in the master (as it is, or converted to SubRip)."""
    codec = stream.get("codec_name", "")
    return codec in MATROSKA_SUBTITLES or codec in SUBTITLE_CONVERSION


def _in_master(stream: dict[str, Any]) -> bool:
    """Whether a stream is mapped into the master as a stream: every picture (not an attached
    picture: that becomes an attachment, see :class:`AttachedPicture`), sound, subtitle Matroska
    holds, and attachment."""
    kind = stream.get("codec_type")
    if kind == "subtitle":
        return _kept_subtitle(stream)
    return kind in ("video", "audio", "attachment") and not _attached(stream)


def _master_streams(inputs: list[Any], probes: list[dict[str, Any]]) -> list[Any]:
    """The master's stream selections (``-map``) in the master's order: pictures, sounds,
    subtitles, attachments. Attached pictures come after them, as ``-attach`` files."""
    selected = _select(inputs, probes, "Va")
    for kind in ("subtitle", "attachment"):
        for node, probe in zip(inputs, probes, strict=True):
            for stream in probe.get("streams", []):
                if stream.get("codec_type") == kind and _in_master(stream):
                    selected.append(node[str(stream["index"])])
    return selected


def _attached_pictures(probes: list[dict[str, Any]]) -> list[AttachedPicture]:
    """Every original's attached pictures, each with a file name (the original's, where it
    names one, else ``cover.jpg``, ``cover-2.png``, ...) unique among the master's attachments."""
    taken = {
        str(s.get("tags", {}).get("filename", ""))
        for probe in probes
        for s in probe.get("streams", [])
        if s.get("codec_type") == "attachment"
    }
    pictures = []
    for number, probe in enumerate(probes):
        for stream in probe.get("streams", []):
            if stream.get("codec_type") != "video" or not _attached(stream):
                continue
            tags = stream.get("tags", {})
            codec = str(stream.get("codec_name", ""))
            mimetype = str(
                tags.get("mimetype") or PICTURE_MIMETYPES.get(codec, "application/octet-stream")
            )
            name = str(tags.get("filename") or "")
            if not name:
                extension = mimetype.rpartition("/")[2].replace("jpeg", "jpg")
                name, count = f"cover.{extension}", 2
                while name in taken:
                    name, count = f"cover-{count}.{extension}", count + 1
            taken.add(name)
            pictures.append(AttachedPicture(number, int(stream["index"]), name, mimetype))
    return pictures


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


def _inventory(
    probes: list[dict[str, Any]], originals: list[str], pictures: list[AttachedPicture]
) -> list[dict[str, Any]]:
    """Every stream of every original, in the originals' order, and where the master has it
    (its stream number, or its attachment), or why it has not."""
    placed: dict[tuple[int, int], str] = {}
    position = 0
    for kind in ("video", "audio", "subtitle"):
        for number, probe in enumerate(probes):
            for stream in probe.get("streams", []):
                if stream.get("codec_type") == kind and _in_master(stream):
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
                "type": "attached picture" if kind == "video" and _attached(stream) else kind,
                "codec": stream.get("codec_name", "unknown"),
            }
            if kind in ("data", "attachment") and stream.get("tags"):
                record["tags"] = stream["tags"]
            record["master"] = placed.get((number, int(stream["index"])))
            if record["master"] is None:
                record["why"] = _not_in_master_why(stream)
            records.append(record)
    return records


def _picture_options(
    pictures: list[AttachedPicture], files: list[Path], first: int
) -> list[tuple[str, Any]]:
    """``-attach`` for each attached picture's file, with its MIME type and file name; ``first``
    is the number of attachments the master has before them (those mapped from the originals)."""
    options: list[tuple[str, Any]] = []
    for offset, (picture, path) in enumerate(zip(pictures, files, strict=True)):
        options += [
            ("attach", str(path)),
            (f"metadata:s:t:{first + offset}", f"mimetype={picture.mimetype}"),
            (f"metadata:s:t:{first + offset}", f"filename={picture.filename}"),
        ]
    return options


def _extract_pictures(
    originals: list[Path], pictures: list[AttachedPicture], scratch: Path
) -> list[Path]:
    """Each attached picture's bytes (its one packet), copied out of its original."""
    files = []
    for number, picture in enumerate(pictures):
        target = scratch / f"picture-{number}"
        ffmpeg_runner.run_ffmpeg(
            ffmpeg.input(str(originals[picture.original]))[str(picture.index)].output(
                str(target), c="copy", f="data"
            )
        )
        files.append(target)
    return files


def _duration(probes: list[dict[str, Any]]) -> float | None:
    durations = [float(p.get("format", {}).get("duration") or 0) for p in probes]
    return max(durations) or None


@functools.cache
def ffv1_pixel_formats() -> frozenset[str]:
    """The pixel formats our ffmpeg's FFV1 encoder takes (``ffmpeg -h encoder=ffv1``)."""
    completed = ffmpeg_runner.run(
        [ffmpeg_runner.executable("ffmpeg"), "-hide_banner", "-h", "encoder=ffv1"]
    )
    for line in completed.stdout.decode("utf-8", "replace").splitlines():
        if "Supported pixel formats:" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def pixel_format_depth(pix_fmt: str) -> int | None:
    """The bits per component of a pixel format (its deepest component, ``ffmpeg -pix_fmts``)."""
    completed = ffmpeg_runner.run([ffmpeg_runner.executable("ffmpeg"), "-hide_banner", "-pix_fmts"])
    for line in completed.stdout.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[1] == pix_fmt:
            return max(int(bits) for bits in fields[4].split("-"))
    return None


def _source_pixel_format(stream: dict[str, Any]) -> tuple[str, int | None] | None:
    """A video stream's pixel format and bit depth where FFV1 (in our ffmpeg) cannot hold that
    format as it is: ffmpeg then stores the same samples in a deeper or differently packed
    format (12-bit 4:4:4 with alpha, ProRes 4444's, as 16 bits), which the proof decodes back
    to the source's format and compares. None where FFV1 holds it (a full-range "JPEG" format
    is its plain twin with full range: the same bytes)."""
    pix_fmt = str(stream.get("pix_fmt") or "")
    if not pix_fmt or FULL_RANGE_FORMATS.get(pix_fmt, pix_fmt) in ffv1_pixel_formats():
        return None
    raw = str(stream.get("bits_per_raw_sample") or "")
    return pix_fmt, int(raw) if raw.isdigit() and int(raw) else pixel_format_depth(pix_fmt)


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
    completed = ffmpeg_runner.run(
        [
            ffmpeg_runner.executable("ffprobe"), "-v", "error", "-select_streams", str(index),
            "-read_intervals", "%+#1", "-show_frames", "-show_entries", "frame=side_data_list",
            "-of", "json", "--", str(path),
        ],
        timeout=300,
    )  # fmt: skip
    frames = json.loads(completed.stdout.decode("utf-8", "replace")).get("frames") or [{}]
    return list(frames[0].get("side_data_list") or [])


def _side_data(originals: list[Path], probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every video stream's side data, as the master's video stream number, where it is (the
    stream's, from its container; or the first frame's, from its codec) and its values."""
    found = []
    number = 0
    for original, probe in zip(originals, probes, strict=True):
        for stream in _streams([probe], "video"):
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
    """mkvpropedit's path and version line, or FFmpegError saying how to install it."""
    found = shutil.which("mkvpropedit")
    if not found:
        raise FFmpegError(
            "mkvpropedit", 127,
            "mkvpropedit not found: install mkvtoolnix (make setup does); it writes the source's"
            " HDR metadata (mastering display, content light level) into the master",
        )  # fmt: skip
    version = ffmpeg_runner.run([found, "--version"]).stdout.decode("utf-8", "replace")
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
    ffmpeg_runner.run(command, timeout=600)
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


def missed_titles(originals: list[Path], probes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Stream titles an MP4 or MOV holds that ffmpeg does not read, as the master's options: its
    muxer writes a track's title (the track's ``udta/name``) but its demuxer (5.1) does not read
    it back, so ffprobe shows none and the master would lose it; MediaInfo reads it. Each is
    given to the master's stream as its title (Matroska's track name)."""
    pairs = []
    numbers = {"video": 0, "audio": 0, "subtitle": 0}
    letters = {"video": "v", "audio": "a", "subtitle": "s"}
    titles: dict[tuple[int, int], str] = {}
    for number, (original, probe) in enumerate(zip(originals, probes, strict=True)):
        if not str(probe.get("format", {}).get("format_name", "")).startswith("mov,mp4"):
            continue
        for track in (mediainfo.describe(original) or {}).get("media", {}).get("track", []):
            order, title = str(track.get("StreamOrder", "")), track.get("Title")
            if order.isdigit() and title:
                titles[number, int(order)] = str(title)
    for kind in ("video", "audio", "subtitle"):
        for number, probe in enumerate(probes):
            for stream in probe.get("streams", []):
                if stream.get("codec_type") != kind or not _in_master(stream):
                    continue
                title = titles.get((number, int(stream["index"])))
                named = any(key.lower() == "title" for key in stream.get("tags", {}))
                if title and not named:
                    pairs.append((f"metadata:s:{letters[kind]}:{numbers[kind]}", f"title={title}"))
                numbers[kind] += 1
    return pairs


def _display_rotation(stream: dict[str, Any]) -> int:
    """The display matrix's rotation of a video stream (a phone's), as ffprobe reports it:
    degrees counter-clockwise (ffmpeg's convention, as ``-display_rotation`` takes it)."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    return 0


def _rotation(stream: dict[str, Any]) -> int:
    """How far to turn the picture clockwise to show it upright: 0, 90, 180 or 270."""
    return -_display_rotation(stream) % 360


def master_options(probes: list[dict[str, Any]], settings: NormaliseSettings) -> dict[str, Any]:
    """The ffmpeg output options of an FFV1 preservation master."""
    options: dict[str, Any] = {
        "map_metadata": 0,
        "map_chapters": 0,
        "fps_mode": "passthrough",
        # The input's time base: a variable frame rate would be rounded to 1/fps otherwise.
        "enc_time_base:v": "-1",
        "c:v": "ffv1",
        "level": 3,
        "g": 1,
        "slicecrc": 1,
        "threads": settings.threads,
    }
    video = _streams(probes, "video")
    if video:
        options["slices"] = ffv1_slices(
            int(video[0].get("width", 0)), int(video[0].get("height", 0))
        )
        if video[0].get("field_order") not in (None, "progressive", "unknown"):
            options["field_order"] = video[0]["field_order"]
        plain = FULL_RANGE_FORMATS.get(video[0].get("pix_fmt", ""))
        if plain:
            options["filter:v"] = KEEP_FULL_RANGE.format(plain)
            options["color_range"] = "pc"
    options.update(_audio_trims(probes))
    for index, stream in enumerate(_streams(probes, "audio")):
        options[f"c:a:{index}"] = audio_codec(stream, index)
        if options[f"c:a:{index}"] == "wavpack":
            # WavPack's encoder makes blocks of one second by default, and the muxer holds every
            # video frame back until the sound beside it has come: a second of 1080p FFV1 (75
            # MB) at a time reached the proof's reader, which waited, then had to catch up.
            # Blocks of 4096 samples, as FLAC's: 20 s of 1080p in 12.9 s instead of 17.8 s.
            options[f"frame_size:a:{index}"] = WAVPACK_BLOCK_SAMPLES
        if options[f"c:a:{index}"] in ("flac", "wavpack") and audio_bits(stream):
            # The codec stores and declares the source's depth (24 bits in 32-bit samples, say),
            # which ffmpeg passes on only when no filter (a trim) stands between.
            options[f"bits_per_raw_sample:a:{index}"] = audio_bits(stream)
    kept = [s for s in _streams(probes, "subtitle") if _kept_subtitle(s)]
    for index, stream in enumerate(kept):
        options[f"c:s:{index}"] = SUBTITLE_CONVERSION.get(stream.get("codec_name", ""), "copy")
    if any(s.get("codec_type") == "attachment" for p in probes for s in p.get("streams", [])):
        options["c:t"] = "copy"
    tags = [(tag.option, f"{tag.key}={tag.value}") for tag in kept_as_tags(probes)]
    return _with_options(options, tags)


def audio_bits(stream: dict[str, Any]) -> int | None:
    """The bit depth an audio stream declares (a lossless codec's: a lossy one has none)."""
    for key in ("bits_per_raw_sample", "bits_per_sample"):
        value = str(stream.get(key) or "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def audio_codec(stream: dict[str, Any], index: int = 0) -> str:
    """The master's codec for an audio stream, by its decoded samples (:data:`LOSSLESS_AUDIO`):
    FLAC where it holds them (16-bit integers; 32-bit integers of at most 24 significant bits,
    a 24-bit source's, which FLAC stores and declares as 24 bits where PCM would say 32; at most
    8 channels), WavPack where FLAC cannot (float, 32 bits, 8 bits, more channels)."""
    sample_fmt = stream.get("sample_fmt", "")
    codec = LOSSLESS_AUDIO.get(sample_fmt)
    if codec is None:
        raise UnknownSampleFormat(index, sample_fmt)
    bits = audio_bits(stream)
    if codec == "wavpack" and sample_fmt in ("s32", "s32p") and bits and 16 < bits <= 24:
        codec = "flac"
    if codec == "flac" and int(stream.get("channels") or 0) > 8:
        codec = "wavpack"
    return codec


def _declared_layout(stream: dict[str, Any]) -> str | None:
    """The channel layout a source declares (ffprobe's name: ``5.1``, ``stereo``,
    ``FL+FR+LFE``), None where it declares none."""
    layout = str(stream.get("channel_layout") or "")
    return None if layout in ("", "unknown") or "channels" in layout else layout


@dataclass(frozen=True)
class KeptTag:
    """Something the master's format cannot carry, kept as a tag of the master's stream
    (``option`` is the ffmpeg option that sets it) and recorded in normalisation.json."""

    option: str
    key: str
    value: str
    stream: int  # the master's stream
    what: str
    why: str

    def record(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "what": self.what,
            "value": self.value,
            "how": f"tag {self.key}={self.value} on the master's stream {self.stream}",
            "why": self.why,
        }


def kept_as_tags(probes: list[dict[str, Any]], remux: bool = False) -> list[KeptTag]:
    """What a master keeps as tags because Matroska or its codec cannot carry it: a phone's
    rotation (our ffmpeg's Matroska muxer has no display matrix; the pixels are never turned),
    and the channel layout of audio that Matroska's PCM (a channel count only) or, for
    MediaInfo, WavPack does not declare (FLAC declares its layout itself, and so do the lossy
    codecs a remux copies)."""
    video = _streams(probes, "video")
    tags = []
    for index, stream in enumerate(video):
        held = None if remux else _source_pixel_format(stream)
        if held is not None:
            pix_fmt, bits = held
            why = f"FFV1 (ffmpeg 5.1) has no {pix_fmt}; the same samples are held in another format"
            tags.append(
                KeptTag(
                    f"metadata:s:v:{index}", "SOURCE_PIX_FMT", pix_fmt, index,
                    f"stream {index} (video): pixel format {pix_fmt}", why,
                )
            )  # fmt: skip
            if bits:
                tags.append(
                    KeptTag(
                        f"metadata:s:v:{index}", "BITS_PER_RAW_SAMPLE", str(bits), index,
                        f"stream {index} (video): {bits} bits per sample", why,
                    )
                )  # fmt: skip
        rotation = _display_rotation(stream)
        if rotation:
            tags.append(
                KeptTag(
                    f"metadata:s:v:{index}", "ROTATION", str(rotation), index,
                    f"stream {index} (video): display rotation {rotation} degrees",
                    "Matroska (ffmpeg 5.1's muxer) has no display matrix; the pixels are not"
                    " turned",
                )
            )  # fmt: skip
    for index, stream in enumerate(_streams(probes, "audio")):
        layout = _declared_layout(stream)
        codec = str(stream.get("codec_name")) if remux else audio_codec(stream, index)
        if (
            layout
            and codec not in MEDIAINFO_READS_LAYOUT
            and not (remux and declares_layout(codec))
        ):
            number = len(video) + index
            why = (
                "WavPack declares it (ffprobe reads it), but MediaInfo does not read WavPack's"
                " channel mask in Matroska"
                if declares_layout(codec)
                else f"{codec} in Matroska declares a channel count only"
            )
            tags.append(
                KeptTag(
                    f"metadata:s:a:{index}", "CHANNEL_LAYOUT", layout, number,
                    f"stream {number} (audio): channel layout {layout}", why,
                )
            )  # fmt: skip
    return tags


def remux_options(probes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A bit-for-bit copy of every stream into Matroska (but an MP4's subtitles, which Matroska
    cannot hold as they are: SubRip)."""
    options: dict[str, Any] = {
        "map_metadata": 0,
        "map_chapters": 0,
        "c": "copy",
        "fps_mode": "passthrough",
    }
    kept = [s for s in _streams(probes or [], "subtitle") if _kept_subtitle(s)]
    for index, stream in enumerate(kept):
        if stream.get("codec_name") in SUBTITLE_CONVERSION:
            options[f"c:s:{index}"] = SUBTITLE_CONVERSION[stream["codec_name"]]
    tags = [(t.option, f"{t.key}={t.value}") for t in kept_as_tags(probes or [], remux=True)]
    return _with_options(options, tags)


def _with_options(options: dict[str, Any], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``options`` (made by :func:`ffmpeg_runner.repeated_options` or not) and more options,
    some perhaps given again."""
    given = [(re.sub(r"@\d{4}$", "", key), value) for key, value in options.items()]
    return ffmpeg_runner.repeated_options(given + pairs)


def access_options(probes: list[dict[str, Any]], settings: NormaliseSettings) -> dict[str, Any]:
    """The access copy: widely playable H.264 (yuv420p, even dimensions, square pixels with the
    right display aspect ratio, deinterlaced, upright) and AAC for every audio track, in MP4."""
    options: dict[str, Any] = {
        "map_metadata": -1,
        "movflags": "+faststart",
        "threads": settings.threads,
    }
    video = _streams(probes, "video")
    if video:
        filters = []
        if video[0].get("field_order") not in (None, "progressive", "unknown"):
            filters.append("yadif")
        filters += {90: ["transpose=1"], 180: ["hflip", "vflip"], 270: ["transpose=2"]}.get(
            _rotation(video[0]), []
        )
        filters += ["scale=trunc(iw*sar/2)*2:trunc(ih/2)*2", "setsar=1"]
        options.update(
            {
                "c:v": "libx264",
                "preset": settings.access_preset,
                "crf": settings.access_crf,
                "pix_fmt": "yuv420p",
                "filter:v": ",".join(filters),
            }
        )
    if _streams(probes, "audio"):
        options.update({"c:a": "aac", "b:a": settings.access_audio_bitrate})
    options.update(_audio_trims(probes))
    return options


def _audio_trims(probes: list[dict[str, Any]]) -> dict[str, str]:
    """Each audio stream cut after the samples its source declares (an MP4's edit list trims
    the encoder's padding, and ffmpeg 5.1's decode does not: :class:`proof.HashPlan`)."""
    return {
        f"filter:a:{index}": f"atrim=end_sample={end}"
        for index, end in enumerate(proof.HashPlan.audio_ends(probes))
        if end is not None
    }


def _select(
    inputs: list[Any], probes: list[dict[str, Any]], kinds: str, first_only: bool = False
) -> list[Any]:
    """Stream selections (``-map``) of the given kinds ('V', 'a', 's') across the inputs."""
    selected = []
    for kind in kinds:
        for node, probe in zip(inputs, probes, strict=True):
            codec_type = {"V": "video", "a": "audio", "s": "subtitle"}[kind]
            if not _streams([probe], codec_type):
                continue
            selected.append(node[f"{kind}:0" if first_only else kind])
            if first_only:
                break
    return selected


def _picture_outputs(
    inputs: list[Any], probes: list[dict[str, Any]], access_dir: Path, stem: str, tiles: int
) -> list[Any]:
    """A poster (a frame a tenth of the way in) and a contact sheet (tiles x tiles frames across
    the whole film), fed by the same decode as everything else."""
    video = _select(inputs, probes, "V", first_only=True)
    if not video:
        return []
    duration = _duration(probes) or 1.0
    poster = ffmpeg.output(
        video[0],
        str(access_dir / f"{stem}.poster.jpg"),
        # Only the first frame past the tenth: "gte(t, T)" alone lets every later frame through to
        # be scaled and then dropped (a second of CPU for a 20 s 1080p film, measured).
        **{
            "filter:v": f"select='isnan(prev_selected_t)*gte(t,{duration / 10:.3f})',"
            "scale=trunc(iw*sar/2)*2:-2,setsar=1"
        },
        frames="1",
        fps_mode="passthrough",
    )
    frames = tiles * tiles
    sheet = ffmpeg.output(
        video[0],
        str(access_dir / f"{stem}.contact-sheet.jpg"),
        **{"filter:v": f"fps={frames}/{duration:.3f},scale=320:-2,tile={tiles}x{tiles}"},
        frames="1",
    )
    return [poster, sheet]


def _subtitle_outputs(
    inputs: list[Any], probes: list[dict[str, Any]], access_dir: Path, stem: str
) -> list[Any]:
    """Every embedded text subtitle stream as WebVTT beside the access copy (``<stem>.sN.vtt``,
    with its language where the source names one). Bitmap subtitles cannot become text."""
    outputs = []
    for node, probe in zip(inputs, probes, strict=True):
        subtitles = [s for s in probe.get("streams", []) if s.get("codec_type") == "subtitle"]
        for index, stream in enumerate(subtitles):
            if stream.get("codec_name") not in TEXT_SUBTITLES:
                continue
            language = str(stream.get("tags", {}).get("language", ""))
            named = language.isalpha() and language != "und"
            suffix = f"s{len(outputs)}" + (f"-{language}" if named else "")
            target = access_dir / f"{stem}.{suffix}.vtt"
            outputs.append(ffmpeg.output(node[f"s:{index}"], str(target), f="webvtt"))
    return outputs


def estimate_master_bytes(
    originals: list[Path], probes: list[dict[str, Any]], scratch: Path, settings: NormaliseSettings
) -> int | None:
    """The FFV1 master's size, estimated by encoding a short sample. None for films shorter than
    twenty samples: the sample would cost more than 5% of the encode, and such a film's master is
    small."""
    duration = _duration(probes)
    sample_seconds = settings.estimate_sample_seconds
    if not duration or duration < 20 * sample_seconds:
        return None
    sample = scratch / ".sample.mkv"
    inputs = [ffmpeg.input(str(o), t=sample_seconds) for o in originals]
    options = master_options(probes, settings)
    ffmpeg_runner.run_ffmpeg(
        ffmpeg.output(*_master_streams(inputs, probes), str(sample), **options),
        input_args=["-noautorotate"],
    )
    size = sample.stat().st_size
    sample.unlink()
    return int(size * duration / sample_seconds * 1.05)


def _check_space(
    estimate: int | None, target: Path, settings: NormaliseSettings, stem: str
) -> None:
    if estimate is None:
        return
    free = shutil.disk_usage(target).free
    if estimate + settings.free_space_margin_bytes > free:
        raise InsufficientSpace(
            f"{stem}: the master would take about {estimate / 1e9:.1f} GB and the archive's disk"
            f" has {free / 1e9:.1f} GB free"
            f" (margin {settings.free_space_margin_bytes / 1e9:.1f} GB)"
        )


def _progress(
    label: str, probes: list[dict[str, Any]], settings: NormaliseSettings
) -> ffmpeg_runner.Progress:
    return ffmpeg_runner.Progress(
        label, _duration(probes), settings.stall_seconds, settings.progress_interval_seconds
    )


def _timeout(probes: list[dict[str, Any]], settings: NormaliseSettings) -> float:
    return settings.timeout_base_seconds + settings.timeout_per_film_second * (
        _duration(probes) or 0
    )


def normalise_group(
    stem: str,
    originals: list[Path],
    bag_root: Path,
    proof_dir: Path,
    settings: NormaliseSettings,
    profile: Profile,
    mediaconch_policy: Path | None = None,
) -> GroupResult:
    """Make the master, the access copy and the proof for one film (or part): ``originals`` is
    one progressive file, or the separately received video and audio streams. An FFV1 master is
    then checked against ``mediaconch_policy`` (not run without one).

    A remux whose proof fails is not the end of the film: the copy is not the source (ffmpeg
    5.1's Matroska muxer moves a WebM's picture 7 ms against its Opus sound, say), but a decode
    to FFV1 is lossless whatever the container did, so the film is normalised again that way,
    and the record says why."""
    probes = [ffmpeg_runner.probe(original) for original in originals]
    action, reason = profile.decide(probes)
    arguments = (stem, originals, bag_root, proof_dir, settings, profile, mediaconch_policy)
    if action is not Action.REMUX:
        return _normalise_as(action, reason, probes, *arguments)
    try:
        return _normalise_as(action, reason, probes, *arguments)
    except ProofFailed as refused:
        log.warning("%s: the remux failed its proof; decoding to FFV1 instead: %s", stem, refused)
        (bag_root / "master" / f"{stem}.mkv").unlink(missing_ok=True)
        instead = f"{reason}; the remux failed its proof ({refused}), so decoded to FFV1 instead"
        result = _normalise_as(Action.FFV1, instead, probes, *arguments)
        result.notes.append(f"remux refused by its proof, decoded to FFV1 instead: {refused}")
        return result


def _normalise_as(
    action: Action,
    reason: str,
    probes: list[dict[str, Any]],
    stem: str,
    originals: list[Path],
    bag_root: Path,
    proof_dir: Path,
    settings: NormaliseSettings,
    profile: Profile,
    mediaconch_policy: Path | None,
) -> GroupResult:
    """:func:`normalise_group` by ``action``, for the reason given."""
    result = GroupResult(
        stem=stem,
        action=str(action),
        reason=reason,
        originals=[o.relative_to(bag_root).as_posix() for o in originals],
        original_bytes=sum(o.stat().st_size for o in originals),
    )
    master = bag_root / "master" / f"{stem}.mkv"
    access_dir = bag_root / "access"
    master.parent.mkdir(parents=True, exist_ok=True)
    access_dir.mkdir(parents=True, exist_ok=True)
    proof_dir.mkdir(parents=True, exist_ok=True)
    if action is Action.FFV1:
        _check_space(
            estimate_master_bytes(originals, probes, master.parent, settings),
            bag_root,
            settings,
            stem,
        )

    inputs = [ffmpeg.input(str(o)) for o in originals]
    hashes = proof.HashPlan.for_action(action, probes)
    source_hashes = proof_dir / f"{stem}.source.framemd5"
    master_hashes = proof_dir / f"{stem}.master.framemd5"
    outputs = []
    if action is not Action.KEEP:
        outputs.append(hashes.output(_select(inputs, probes, "Va"), source_hashes, source=True))
    if profile.access:
        access = access_dir / f"{stem}.mp4"
        outputs.append(
            ffmpeg.output(
                *_select(inputs, probes, "V", first_only=True),
                *_select(inputs, probes, "a"),
                str(access),
                **access_options(probes, settings),
            )
        )
        outputs += _picture_outputs(inputs, probes, access_dir, stem, settings.contact_sheet_tiles)
        outputs += _subtitle_outputs(inputs, probes, access_dir, stem)
    if action is Action.KEEP and not outputs:
        result.notes.append("format policy: keep, and no access copy")
        return result

    options = master_options(probes, settings) if action is Action.FFV1 else remux_options(probes)
    pictures = _attached_pictures(probes) if action is not Action.KEEP else []
    side_data: list[dict[str, Any]] = []
    if action is not Action.KEEP:
        result.fidelity.streams = _inventory(probes, result.originals, pictures)
        kept = kept_as_tags(probes, remux=action is Action.REMUX)
        result.fidelity.kept_as_metadata = [tag.record() for tag in kept]
        side_data = result.fidelity.side_data = _side_data(originals, probes)
        options = _with_options(options, missed_titles(originals, probes))
    # A remux copies the codec's own stream, its side data (SEI) in it.
    edits = hdr_edits(side_data) if action is Action.FFV1 else {}

    def graph(master_target: str | None = None) -> Any:
        """The one decode's outputs; the master's to ``master_target`` (a tee list) if given."""
        if action is Action.KEEP:
            return ffmpeg.merge_outputs(*outputs)
        master_output = ffmpeg.output(
            *_master_streams(inputs, probes),
            master_target or str(master),
            **options,
            **({"f": "tee"} if master_target else {}),
        )
        return ffmpeg.merge_outputs(master_output, *outputs)

    # An edited master is decoded for its proof once edited: its packets then carry the HDR
    # metadata as side data, which the stream decoded beside the encode has not.
    beside = action is Action.FFV1 and proof_beside_the_encode(probes, options) and not edits
    with tempfile.TemporaryDirectory(prefix="proof-", dir=bag_root.parent) as scratch:
        decoded_packets = Path(scratch) / f"{stem}.decoded-packets.framemd5"
        if pictures:
            mapped = sum(
                s.get("codec_type") == "attachment" for p in probes for s in p.get("streams", [])
            )
            files = _extract_pictures(originals, pictures, Path(scratch))
            options = _with_options(options, _picture_options(pictures, files, mapped))
        log.info(
            "%s: %s (%s): one decode for master, access copy and source hashes%s",
            stem,
            action,
            reason,
            "; the master decoded for its proof as it is written" if beside else "",
        )
        if beside:
            piped = ffmpeg_runner.run_ffmpeg_piped(
                lambda url: graph(_tee_list(master, url)),
                _proof_reader(probes, hashes, master_hashes, decoded_packets),
                input_args=["-noautorotate"],
                progress=_progress(stem, probes, settings),
                timeout=_timeout(probes, settings),
                reader_grace=settings.stall_seconds,
            )
            command, hashes_command = piped.writer, piped.reader
            log.debug("%s: as one shell line: %s", stem, piped.shell_line)
        else:
            command = ffmpeg_runner.run_ffmpeg(
                graph(),
                input_args=["-noautorotate"],
                progress=_progress(stem, probes, settings),
                timeout=_timeout(probes, settings),
            )
        sources = ", ".join(result.originals)
        if edits:
            result.fidelity.master_edits = edit_master(master, edits)
        if action is not Action.KEEP:
            result.master_bytes = master.stat().st_size
            result.renditions.append(
                Rendition(
                    f"master/{master.name}", f"preservation master ({action})", sources, command
                )
            )
        for path in sorted(access_dir.glob(f"{stem}.*")):
            result.renditions.append(
                Rendition(f"access/{path.name}", _access_role(path), sources, command)
            )
        if action is Action.KEEP:
            return result
        binding = None
        if beside:
            binding = _bind(master, decoded_packets, Path(scratch) / "file-packets.framemd5")
        if binding is None:
            hashes_command = _decode_master(master, hashes, master_hashes, probes, settings)
    result.proof = proof.compare(source_hashes, master_hashes, hashes.method)
    result.proof.binding = binding
    result.proof.master_hashes_command = hashes_command
    if not result.proof.passed:
        raise ProofFailed(f"{stem}: the master is not lossless: {result.proof.first_difference}")
    result.audio_samples = audio_samples(hashes, master_hashes, probes)
    log.info("%s: proof passed (%s)", stem, result.proof.summary)
    result.fidelity.checked = check_master(
        master, probes, pictures, side_data, copied=action is Action.REMUX
    )
    if action is Action.FFV1:
        result.conformance = conformance.check_master(master, mediaconch_policy)
        if result.conformance.outcome == "fail":
            log.warning("%s: MediaConch policy failed: %s", stem, result.conformance.failed_rules)
    return result


#: Bytes per sample of the PCM the proof hashes audio as.
PCM_BYTES = {"pcm_u8": 1, "pcm_s16le": 2, "pcm_s32le": 4, "pcm_f32le": 4, "pcm_f64le": 8}


def audio_samples(
    hashes: proof.HashPlan, master_hashes: Path, probes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The master's samples, counted in its decode's hash list, against the samples its source
    declares (:meth:`proof.HashPlan.declared`: an MP4's edit list), for each audio stream that
    declares them. ProofFailed if the master holds more: the end trim was not applied. Fewer
    is the source's own shortfall (its decode ends early, and the proof compared the master
    with it), and is recorded."""
    decoded = proof.read_framemd5(master_hashes)
    video = len(_streams(probes, "video"))
    counts = []
    for index, (stream, declared) in enumerate(
        zip(_streams(probes, "audio"), hashes.declared_samples, strict=False)
    ):
        if declared is None:
            continue
        width = int(stream.get("channels") or 1) * PCM_BYTES.get(
            PCM_OF.get(stream.get("sample_fmt", ""), "pcm_f64le"), 8
        )
        held = decoded.get(video + index)
        samples = sum(size for _, size, _ in held.frames) // width if held else 0
        record = {
            "stream": video + index,
            "declared": declared,
            "declared_by": "the source's container (an MP4 or MOV: its edit list, which trims"
            " the encoder's priming and padding)",
            "master": samples,
        }
        if samples > declared:
            raise ProofFailed(
                f"stream {video + index} (audio): the source declares {declared} samples, the"
                f" master holds {samples}"
            )
        if samples < declared:
            record["note"] = "the source decodes to fewer samples than it declares"
        counts.append(record)
    return counts


def _attachments(probe: dict[str, Any]) -> list[tuple[str, str]]:
    """A file's attachments (attached pictures included), as (file name, MIME type)."""
    return [
        (str(s.get("tags", {}).get("filename", "")), str(s.get("tags", {}).get("mimetype", "")))
        for s in probe.get("streams", [])
        if s.get("codec_type") == "attachment" or _attached(s)
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


def _check_side_data(
    found: dict[str, Any], side_data: list[dict[str, Any]], problems: list[str], copied: bool
) -> list[str]:
    """Mark each side data entry of the sources with where the master has it (updating
    ``side_data``, the record), or why not; an HDR entry the master lacks is a problem. In a
    remux (``copied``), what the first frame holds is in the copied stream itself (its SEI)."""
    checked = []
    video = _streams([found], "video")
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


def check_master(
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
    found = ffmpeg_runner.probe(master)
    checked, problems = [], []
    checked += _check_side_data(found, side_data or [], problems, copied)
    for kind in ("video", "audio", "subtitle"):
        expected = [s for s in _streams(probes, kind) if _in_master(s)]
        has = _streams([found], kind)
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
    has_attachments = _attachments(found)
    missing = [a for a in expected_attachments if a not in has_attachments]
    if missing:
        problems.append(f"attachments missing: {missing}")
    elif expected_attachments:
        checked.append(
            "attachments with their file names and MIME types: "
            + ", ".join(f"{name} ({mimetype})" for name, mimetype in expected_attachments)
        )
    for index, (ours, theirs) in enumerate(
        zip(_streams(probes, "video"), _streams([found], "video"), strict=False)
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
        zip(_streams(probes, "audio"), _streams([found], "audio"), strict=False)
    ):
        layout, codec = _declared_layout(ours), str(theirs.get("codec_name"))
        if layout is not None:
            declared = _declared_layout(theirs)
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
        bits = audio_bits(ours)
        if bits is not None:
            if audio_bits(theirs) != bits:
                problems.append(
                    f"audio {index}: {bits} bits in the source, {audio_bits(theirs)} declared by"
                    " the master"
                )
            else:
                depths.append(f"{bits} ({codec})")
    if layouts:
        checked.append("audio channel layouts: " + ", ".join(layouts))
    if depths:
        checked.append("audio bit depths: " + ", ".join(depths))
    if problems:
        raise ProofFailed(
            f"{master.stem}: the master is not what was planned: {'; '.join(problems)}"
        )
    return checked


def _tee_list(master: Path, pipe_url: str) -> str:
    """The tee muxer's outputs: the master file, and the same Matroska stream to the pipe. The
    file name is escaped as the tee list reads it (a backslash before any character but letters,
    digits and ``/._-``), so that no character of a path (``|``, ``[``, a quote, a space) is
    taken for the list's syntax."""
    escaped = re.sub(r"([^A-Za-z0-9/._-])", r"\\\1", str(master.resolve()))
    return f"[f=matroska]{escaped}|[f=matroska]{pipe_url}"


def _proof_reader(
    probes: list[dict[str, Any]], hashes: proof.HashPlan, master_hashes: Path, packets: Path
) -> Any:
    """The graph that reads the master's Matroska stream from the pipe: its frame hashes (the
    proof) and its packets' hashes (to bind them to the file, :func:`_bind`)."""
    piped = ffmpeg.input("pipe:0", f="matroska", threads=proof_decoder_threads(), noautorotate=None)
    # The master holds the source's streams, in the same order: the sources' probes select them.
    streams = {"streams": [s for probe in probes for s in probe.get("streams", [])]}
    return ffmpeg.merge_outputs(
        hashes.output(_select([piped], [streams], "Va"), master_hashes),
        ffmpeg.output(piped, str(packets), f="framemd5", c="copy"),
    )


def proof_beside_the_encode(probes: list[dict[str, Any]], options: dict[str, Any]) -> bool:
    """Whether an FFV1 master can be decoded for its proof as it is written, beside the encode,
    on the cores the encode leaves idle (a tee to a pipe; see the README's benchmark), rather
    than read back and decoded once it is written.

    Only where the master's headers are final from its first byte, so that the stream decoded
    is the file's (:func:`_bind` checks it): not with chapters, which the tee muxer of our
    ffmpeg (5.1) drops; not with FLAC audio, whose header (STREAMINFO: the sample count and the
    MD5 of the sound) the encoder completes at the end, into the file but not into the pipe."""
    if any(probe.get("chapters") for probe in probes):
        return False
    return not any(
        value == "flac" for key, value in options.items() if key.split(":")[0] in ("c", "codec")
    )


def proof_decoder_threads() -> int:
    """Threads for the decode beside the encode: about its share of the work (a quarter of the
    CPU time, measured on 1080p), at least one. More would only take turns from the encode,
    which is the longer path: on 2 cores one thread made the whole run 2% faster than ffmpeg's
    default of one per core (median of 7 runs each, see the README's benchmark)."""
    return max(1, len(os.sched_getaffinity(0)) // 4)


def _bind(master: Path, decoded_packets: Path, file_packets: Path) -> str | None:
    """Tie the proof, taken from the master's packets as the encoder wrote them to the pipe, to
    the master file: the file's packets, read back, must be those same packets, headers and
    all. Hashing packets costs a read of the file, a fraction of its decode. None, with a
    warning, if they differ: the master file is then decoded for the proof after all."""
    ffmpeg_runner.run_ffmpeg(
        ffmpeg.output(ffmpeg.input(str(master)), str(file_packets), f="framemd5", c="copy")
    )
    difference, count = proof.same_packets(decoded_packets, file_packets)
    if difference:
        log.warning(
            "%s: the file's packets differ from the stream decoded beside the encode (%s);"
            " decoding the file for the proof",
            master.name,
            difference,
        )
        return None
    return (
        f"decoded from the encoder's output as it was written; the file's {count} packets,"
        " read back, are identical to those decoded (framemd5 of the packets)"
    )


def _decode_master(
    master: Path,
    hashes: proof.HashPlan,
    master_hashes: Path,
    probes: list[dict[str, Any]],
    settings: NormaliseSettings,
) -> list[str]:
    """The master's frame hashes, from the file once it is written: remuxes, masters not decoded
    beside their encode (:func:`proof_beside_the_encode`), and masters whose file differs from
    the stream decoded beside it (:func:`_bind`)."""
    log.info("%s: decoding the master for the proof", master.stem)
    master_probe = ffmpeg_runner.probe(master)
    master_input = ffmpeg.input(str(master))
    return ffmpeg_runner.run_ffmpeg(
        hashes.output(_select([master_input], [master_probe], "Va"), master_hashes),
        input_args=["-noautorotate"],
        progress=_progress(f"{master.stem} proof", probes, settings),
        timeout=_timeout(probes, settings),
    )


def _access_role(path: Path) -> str:
    if path.name.endswith(".contact-sheet.jpg"):
        return "contact sheet"
    if path.name.endswith(".poster.jpg"):
        return "poster"
    if path.suffix == ".vtt":
        return "subtitles (WebVTT)"
    return "access copy"


def subtitles_to_webvtt(
    subtitle_files: list[tuple[Path, str | None]],
    access_dir: Path,
    stem: str,
    notes: list[str] | None = None,
) -> list[Rendition]:
    """WebVTT beside the access copy for every received subtitle file (the originals stay
    untouched). A file that is not a subtitle (an HTML error page, binary junk) is noted in
    ``notes`` (normalisation.json) and skipped, not fatal: the original is the source's own, kept
    as received, and the film is still preserved. ffmpeg reads an HTML page named ``.vtt`` as a
    WebVTT file without cues: an empty result is dropped and noted too, not offered as subtitles."""
    renditions = []
    for index, (path, language) in enumerate(subtitle_files, start=1):
        label = language if language and language.replace("-", "").isalnum() else f"track{index}"
        target = access_dir / f"{stem}.{label}.vtt"
        reason = None
        try:
            command = ffmpeg_runner.run_ffmpeg(
                ffmpeg.input(str(path)).output(str(target), f="webvtt")
            )
        except FFmpegError as exc:
            reason = str(exc).splitlines()[-1].removeprefix(f"{path}: ")
        else:
            if "-->" not in target.read_text("utf-8", "replace"):
                target.unlink()
                reason = "no subtitle cues in it"
        if reason is not None:
            log.warning("%s: subtitle %s is not usable: %s", stem, path.name, reason)
            if notes is not None:
                notes.append(f"subtitle original/{path.name} not converted to WebVTT: {reason}")
            continue
        renditions.append(
            Rendition(
                f"access/{target.name}", "subtitles (WebVTT)", f"original/{path.name}", command
            )
        )
    return renditions


@dataclass(frozen=True)
class Group:
    """One film or one part to normalise: its stem (``<id>`` or ``<id>-part-NN``), its received
    media (one progressive file, or separate video and audio streams) and subtitle files with
    their languages."""

    stem: str
    media: list[Path]
    subtitles: list[tuple[Path, str | None]] = field(default_factory=list)


def normalise_work(
    groups: list[Group],
    bag_root: Path,
    proof_dir: Path,
    settings: NormaliseSettings,
    profile_name: str,
    profile: Profile,
    mediaconch_policy: Path | None = None,
    encode_slot: Callable[[str], AbstractContextManager[object]] | None = None,
) -> Normalised:
    """Normalise every film or part of a work (see :func:`normalise_group`).

    ``encode_slot(stem)`` is held around each film's or part's encodes and proof (the machine's
    limit of encodes at once, :func:`cifa_ingest.archive.slots.encode_slots`); taken per part, so
    that a
    long work in parts does not keep a slot between its parts' encodes."""
    result = Normalised(ffmpeg_version=ffmpeg_runner.ffmpeg_version(), profile=profile_name)
    for group in groups:
        with encode_slot(group.stem) if encode_slot else nullcontext():
            done = normalise_group(
                group.stem, group.media, bag_root, proof_dir, settings, profile, mediaconch_policy
            )
        if profile.access and group.subtitles:
            done.renditions += subtitles_to_webvtt(
                group.subtitles, bag_root / "access", group.stem, done.notes
            )
        result.groups.append(done)
    return result
