"""The preservation master's ffmpeg options, by the format policy's action: FFV1 version 3 in
Matroska (intra-only, slice CRCs, RFC 9043; the source's pixel format, timestamps, orientation and
colour properties), or a bit-for-bit remux into Matroska; and the FFV1 master's size, estimated
from a short sample before encoding, against the archive's free space.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest import sizes
from cifa_ingest.archive.layout import Archive
from cifa_ingest.config import NormaliseSettings
from cifa_ingest.errors import InsufficientSpace
from cifa_ingest.fetch.resume import Partials
from cifa_ingest.normalise.audio import WAVPACK_BLOCK_SAMPLES, audio_bits, audio_codec, audio_trims
from cifa_ingest.normalise.kept_metadata import kept_as_tags
from cifa_ingest.normalise.proof import FULL_RANGE_FORMATS, KEEP_FULL_RANGE
from cifa_ingest.normalise.streams import (
    SUBTITLE_CONVERSION,
    film_duration,
    kept_subtitle,
    master_streams,
    streams_of,
)
from cifa_ingest.tools import runner


def ffv1_slices(width: int, height: int) -> int:
    """Slices per frame: more for larger frames, so decoding parallelises and a damaged slice
    (caught by its CRC) loses a smaller part of the picture."""
    pixels = width * height
    if pixels <= 720 * 576:
        return 4
    if pixels <= 1280 * 720:
        return 16
    return 24


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
    video = streams_of(probes, "video")
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
    options.update(audio_trims(probes))
    for index, stream in enumerate(streams_of(probes, "audio")):
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
    kept = [s for s in streams_of(probes, "subtitle") if kept_subtitle(s)]
    for index, stream in enumerate(kept):
        options[f"c:s:{index}"] = SUBTITLE_CONVERSION.get(stream.get("codec_name", ""), "copy")
    if any(s.get("codec_type") == "attachment" for p in probes for s in p.get("streams", [])):
        options["c:t"] = "copy"
    tags = [(tag.option, f"{tag.key}={tag.value}") for tag in kept_as_tags(probes)]
    return with_options(options, tags)


def remux_options(probes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A bit-for-bit copy of every stream into Matroska (but an MP4's subtitles, which Matroska
    cannot hold as they are: SubRip)."""
    options: dict[str, Any] = {
        "map_metadata": 0,
        "map_chapters": 0,
        "c": "copy",
        "fps_mode": "passthrough",
    }
    kept = [s for s in streams_of(probes or [], "subtitle") if kept_subtitle(s)]
    for index, stream in enumerate(kept):
        if stream.get("codec_name") in SUBTITLE_CONVERSION:
            options[f"c:s:{index}"] = SUBTITLE_CONVERSION[stream["codec_name"]]
    tags = [(t.option, f"{t.key}={t.value}") for t in kept_as_tags(probes or [], remux=True)]
    return with_options(options, tags)


def with_options(options: dict[str, Any], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``options`` (made by :func:`runner.repeated_options` or not) and more options,
    some perhaps given again."""
    given = [(re.sub(r"@\d{4}$", "", key), value) for key, value in options.items()]
    return runner.repeated_options(given + pairs)


def estimate_master_bytes(
    originals: list[Path], probes: list[dict[str, Any]], scratch: Path, settings: NormaliseSettings
) -> int | None:
    """The FFV1 master's size, estimated by encoding a short sample. None for films shorter than
    twenty samples: the sample would cost more than 5% of the encode, and such a film's master is
    small."""
    duration = film_duration(probes)
    sample_seconds = settings.estimate_sample_seconds
    if not duration or duration < 20 * sample_seconds:
        return None
    sample = scratch / ".sample.mkv"
    inputs = [ffmpeg.input(str(o), t=sample_seconds) for o in originals]
    options = master_options(probes, settings)
    runner.run_ffmpeg(
        ffmpeg.output(*master_streams(inputs, probes), str(sample), **options),
        input_args=["-noautorotate"],
    )
    size = sample.stat().st_size
    sample.unlink()
    return int(size * duration / sample_seconds * 1.05)


def check_space(estimate: int | None, target: Path, settings: NormaliseSettings, stem: str) -> None:
    """Refuse an encode of about ``estimate`` bytes into ``target`` that the disk cannot hold
    with the margin. The partial downloads the archive keeps for later runs
    (:mod:`cifa_ingest.fetch.resume`; found from ``target``, a work's staging folder) count:
    when discarding them, oldest first, makes the room, they are discarded (each logged);
    otherwise the refusal says how much they hold."""
    if estimate is None:
        return
    needed = estimate + settings.free_space_margin_bytes
    free = shutil.disk_usage(target).free
    if needed <= free:
        return
    archive = Archive.of_staged(target)
    partials = Partials(archive.partials_dir, 0) if archive is not None else None
    held = partials.held_bytes() if partials is not None and partials.folder.is_dir() else 0
    if partials is not None and held and needed <= free + held:
        partials.make_room(needed - free)
        free = shutil.disk_usage(target).free
    if needed > free:
        raise InsufficientSpace(
            f"{stem}: the master would take about {estimate / 1e9:.1f} GB and the archive's disk"
            f" has {free / 1e9:.1f} GB free"
            f" (margin {settings.free_space_margin_bytes / 1e9:.1f} GB;"
            f" kept partial downloads hold {sizes.decimal(held)}, {held} bytes)"
        )
