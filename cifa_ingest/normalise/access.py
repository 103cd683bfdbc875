"""The access copy, widely playable H.264 and AAC in MP4 (upright, square pixels, deinterlaced),
and the poster and contact sheet beside it: outputs of the one decode that also makes the master.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.config import NormaliseSettings
from cifa_ingest.normalise.audio import audio_trims
from cifa_ingest.normalise.streams import display_rotation, film_duration, select, streams_of


def access_options(probes: list[dict[str, Any]], settings: NormaliseSettings) -> dict[str, Any]:
    """The access copy: widely playable H.264 (yuv420p, even dimensions, square pixels with the
    right display aspect ratio, deinterlaced, upright) and AAC for every audio track, in MP4."""
    options: dict[str, Any] = {
        "map_metadata": -1,
        "movflags": "+faststart",
        "threads": settings.threads,
    }
    video = streams_of(probes, "video")
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
    if streams_of(probes, "audio"):
        options.update({"c:a": "aac", "b:a": settings.access_audio_bitrate})
    options.update(audio_trims(probes))
    return options


def _rotation(stream: dict[str, Any]) -> int:
    """How far to turn the picture clockwise to show it upright: 0, 90, 180 or 270."""
    return -display_rotation(stream) % 360


def picture_outputs(
    inputs: list[Any], probes: list[dict[str, Any]], access_dir: Path, stem: str, tiles: int
) -> list[Any]:
    """A poster (a frame a tenth of the way in) and a contact sheet (tiles x tiles frames across
    the whole film), fed by the same decode as everything else."""
    video = select(inputs, probes, "V", first_only=True)
    if not video:
        return []
    duration = film_duration(probes) or 1.0
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


def access_role(path: Path) -> str:
    if path.name.endswith(".contact-sheet.jpg"):
        return "contact sheet"
    if path.name.endswith(".poster.jpg"):
        return "poster"
    if path.suffix == ".vtt":
        return "subtitles (WebVTT)"
    return "access copy"
