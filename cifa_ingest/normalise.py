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


def master_options(probe: dict[str, Any], threads: int) -> dict[str, Any]:
    """The ffmpeg output options of the preservation master for a probed source."""
    streams = probe.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video"]
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
    if video:
        options["slices"] = ffv1_slices(
            int(video[0].get("width", 0)), int(video[0].get("height", 0))
        )
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    for index, stream in enumerate(audio):
        sample_fmt = stream.get("sample_fmt", "")
        codec = LOSSLESS_AUDIO.get(sample_fmt)
        if codec is None:
            raise FFmpegError(
                "ffprobe", 0, f"audio stream {index}: unknown sample format {sample_fmt!r}"
            )
        options[f"c:a:{index}"] = codec
    subtitles = [s for s in streams if s.get("codec_type") == "subtitle"]
    for index, stream in enumerate(subtitles):
        options[f"c:s:{index}"] = SUBTITLE_CONVERSION.get(stream.get("codec_name", ""), "copy")
    return options


def access_options(probe: dict[str, Any], settings: NormaliseSettings) -> dict[str, Any]:
    """The ffmpeg output options of the access copy: widely playable H.264/AAC in MP4."""
    has_audio = any(s.get("codec_type") == "audio" for s in probe.get("streams", []))
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
    if has_audio:
        options.update({"c:a": "aac", "b:a": settings.access_audio_bitrate})
    return options


#: Streams of the source each output keeps (``-map``): the master every picture (not cover
#: art), sound and subtitle stream; the access copy the first picture and sound streams.
MASTER_STREAMS = ("V?", "a?", "s?")
ACCESS_STREAMS = ("V:0?", "a:0?")


def _encode(
    source: Path, target: Path, streams: tuple[str, ...], options: dict[str, Any]
) -> list[str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    source_node = ffmpeg.input(str(source))
    selected = [source_node[specifier] for specifier in streams]
    return ffmpeg_runner.run_ffmpeg(ffmpeg.output(*selected, str(target), **options))


def normalise_work(
    originals: list[Path], bag_root: Path, stems: list[str], settings: NormaliseSettings
) -> Normalised:
    """Make ``master/<stem>.mkv`` and ``access/<stem>.mp4`` under ``bag_root`` for each original.

    ``stems`` names the outputs, one per original, in order (``<id>`` or ``<id>-part-NN``)."""
    result = Normalised(ffmpeg_version=ffmpeg_runner.ffmpeg_version())
    for original, stem in zip(originals, stems, strict=True):
        probe = ffmpeg_runner.probe(original)
        source_name = original.relative_to(bag_root).as_posix()
        master = bag_root / "master" / f"{stem}.mkv"
        log.info("%s: encoding preservation master (FFV1/Matroska)", stem)
        command = _encode(original, master, MASTER_STREAMS, master_options(probe, settings.threads))
        result.renditions.append(
            Rendition(f"master/{master.name}", "preservation master", source_name, command)
        )
        access = bag_root / "access" / f"{stem}.mp4"
        log.info("%s: encoding access copy (H.264/AAC MP4)", stem)
        command = _encode(original, access, ACCESS_STREAMS, access_options(probe, settings))
        result.renditions.append(
            Rendition(f"access/{access.name}", "access copy", source_name, command)
        )
    return result
