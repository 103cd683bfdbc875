"""Normalisation: a lossless preservation master (FFV1 in Matroska) and an access copy
(H.264 + AAC in MP4) from each original file.

The master changes nothing about the picture or the sound: FFV1 version 3, intra-only, with slice
CRCs (RFC 9043), the source's pixel format and timestamps kept, and audio stored so that the
decoded samples are identical: FLAC only where the source decodes to 16-bit integers, PCM of the
decoded sample format otherwise (FLAC from a float decode would not be lossless).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest import ffmpeg_runner
from cifa_ingest.config import NormaliseSettings
from cifa_ingest.errors import FFmpegError

log = logging.getLogger(__name__)

#: Decoded sample format -> lossless audio codec in the master.
LOSSLESS_AUDIO = {
    "s16": "flac",
    "s16p": "flac",
    "s32": "pcm_s32le",
    "s32p": "pcm_s32le",
    "flt": "pcm_f32le",
    "fltp": "pcm_f32le",
    "dbl": "pcm_f64le",
    "dblp": "pcm_f64le",
    "u8": "pcm_u8",
    "u8p": "pcm_u8",
}
#: Text subtitle codecs that Matroska cannot hold as they are, and what they become.
SUBTITLE_CONVERSION = {"mov_text": "srt"}


@dataclass
class Rendition:
    """One derived file and the command that made it."""

    name: str
    role: str
    source: str
    command: list[str]


@dataclass
class Normalised:
    """What normalisation made from one work's originals."""

    ffmpeg_version: str
    renditions: list[Rendition] = field(default_factory=list)


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
    """Streams of one kind across the inputs, in the order the outputs will hold them."""
    return [s for probe in probes for s in probe.get("streams", []) if s.get("codec_type") == kind]


def master_options(probes: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """The ffmpeg output options of the preservation master for probed inputs."""
    options: dict[str, Any] = {
        "map_metadata": 0,
        "map_chapters": 0,
        "fps_mode": "passthrough",
        "c:v": "ffv1",
        "level": 3,
        "g": 1,
        "slicecrc": 1,
        "threads": threads,
    }
    video = [
        s for s in _streams(probes, "video") if not s.get("disposition", {}).get("attached_pic")
    ]
    if video:
        options["slices"] = ffv1_slices(
            int(video[0].get("width", 0)), int(video[0].get("height", 0))
        )
    for index, stream in enumerate(_streams(probes, "audio")):
        sample_fmt = stream.get("sample_fmt", "")
        codec = LOSSLESS_AUDIO.get(sample_fmt)
        if codec is None:
            raise FFmpegError(
                "ffprobe", 0, f"audio stream {index}: unknown sample format {sample_fmt!r}"
            )
        options[f"c:a:{index}"] = codec
    for index, stream in enumerate(_streams(probes, "subtitle")):
        options[f"c:s:{index}"] = SUBTITLE_CONVERSION.get(stream.get("codec_name", ""), "copy")
    return options


def access_options(probes: list[dict[str, Any]], settings: NormaliseSettings) -> dict[str, Any]:
    """The ffmpeg output options of the access copy: widely playable H.264/AAC in MP4."""
    options: dict[str, Any] = {
        "map_metadata": -1,
        "c:v": "libx264",
        "preset": settings.access_preset,
        "crf": settings.access_crf,
        "pix_fmt": "yuv420p",
        "vf": "scale=trunc(iw/2)*2:trunc(ih/2)*2",
        "movflags": "+faststart",
        "threads": settings.threads,
    }
    if _streams(probes, "audio"):
        options.update({"c:a": "aac", "b:a": settings.access_audio_bitrate})
    return options


def _master_selection(inputs: list[Any], probes: list[dict[str, Any]]) -> list[Any]:
    """Every picture (not cover art), sound and subtitle stream of every input."""
    return [node[spec] for node in inputs for spec in ("V?", "a?", "s?")]


def _access_selection(inputs: list[Any], probes: list[dict[str, Any]]) -> list[Any]:
    """The first picture stream and the first sound stream, from whichever input has them."""
    selected = []
    for kind, spec in (("video", "V:0"), ("audio", "a:0")):
        for node, probe in zip(inputs, probes, strict=True):
            if any(s.get("codec_type") == kind for s in probe.get("streams", [])):
                selected.append(node[spec])
                break
    return selected


def _encode(
    sources: list[Path],
    probes: list[dict[str, Any]],
    target: Path,
    select: Any,
    options: dict[str, Any],
) -> list[str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    inputs = [ffmpeg.input(str(source)) for source in sources]
    stream = ffmpeg.output(*select(inputs, probes), str(target), **options)
    return ffmpeg_runner.run_ffmpeg(stream)


def normalise_work(
    groups: list[tuple[str, list[Path]]], bag_root: Path, settings: NormaliseSettings
) -> Normalised:
    """Make ``master/<stem>.mkv`` and ``access/<stem>.mp4`` under ``bag_root`` for each group.

    A group is one film or one part: its stem (``<id>`` or ``<id>-part-NN``) and its original
    media files: one progressive file, or the separately received video and audio streams."""
    result = Normalised(ffmpeg_version=ffmpeg_runner.ffmpeg_version())
    for stem, originals in groups:
        probes = [ffmpeg_runner.probe(original) for original in originals]
        source_names = ", ".join(o.relative_to(bag_root).as_posix() for o in originals)
        master = bag_root / "master" / f"{stem}.mkv"
        log.info("%s: encoding preservation master (FFV1/Matroska)", stem)
        options = master_options(probes, settings.threads)
        command = _encode(originals, probes, master, _master_selection, options)
        result.renditions.append(
            Rendition(f"master/{master.name}", "preservation master", source_names, command)
        )
        access = bag_root / "access" / f"{stem}.mp4"
        log.info("%s: encoding access copy (H.264/AAC MP4)", stem)
        options = access_options(probes, settings)
        command = _encode(originals, probes, access, _access_selection, options)
        result.renditions.append(
            Rendition(f"access/{access.name}", "access copy", source_names, command)
        )
    return result
