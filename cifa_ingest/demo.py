"""The built-in demo: short generated films, served from 127.0.0.1, and a catalogue for them.

It exercises every part of the pipeline without the internet: a 1280x720 film, a film in
Matroska with 16-bit FLAC sound, a film in two parts, a work whose permission is pending (its
file is served, and must never be requested) and a work whose address is not known yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import yaml

from cifa_ingest import ffmpeg_runner


@dataclass(frozen=True)
class DemoFilm:
    """A generated film: a test pattern and a tone, a few seconds long."""

    name: str
    pattern: str
    size: str
    seconds: float
    frequency: int
    audio_codec: str = "aac"


DEMO_FILMS = (
    DemoFilm("test-card-beijing.mp4", "testsrc2", "1280x720", 4, 440),
    DemoFilm("colour-bars.mkv", "smptehdbars", "640x360", 3, 880, audio_codec="flac"),
    DemoFilm("three-days-day-1.mp4", "testsrc", "320x240", 2, 330),
    DemoFilm("three-days-day-2.mp4", "rgbtestsrc", "320x240", 2, 550),
    DemoFilm("pending-film.mp4", "testsrc", "320x240", 2, 660),
)


def make_film(film: DemoFilm, target: Path) -> None:
    """Generate one demo film with ffmpeg (written aside, then renamed into place)."""
    rate = 25
    video = ffmpeg.input(f"{film.pattern}=size={film.size}:rate={rate}", f="lavfi", t=film.seconds)
    audio = ffmpeg.input(
        f"sine=frequency={film.frequency}:sample_rate=48000", f="lavfi", t=film.seconds
    )
    partial = target.with_name(f".{target.name}.partial{target.suffix}")
    stream = ffmpeg.output(
        video,
        audio,
        str(partial),
        vcodec="libx264",
        preset="veryfast",
        pix_fmt="yuv420p",
        acodec=film.audio_codec,
        **({"sample_fmt": "s16"} if film.audio_codec == "flac" else {}),
    )
    ffmpeg_runner.run_ffmpeg(stream)
    partial.replace(target)


def make_films(films_dir: Path) -> list[Path]:
    """Generate the demo films that are not there yet; returns their paths."""
    films_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for film in DEMO_FILMS:
        path = films_dir / film.name
        if not path.is_file():
            make_film(film, path)
        paths.append(path)
    return paths


def _granted(by: str) -> dict[str, str]:
    return {"status": "granted", "granted_by": by, "basis": "Demo film, made by CIFA Ingest."}


def demo_catalogue(base_url: str) -> dict[str, object]:
    """A catalogue whose sources are the demo films served at ``base_url``."""
    films = f"{base_url}/films"
    return {
        "collection": {"name": "CIFA demo", "description": "Generated films for the demo."},
        "works": [
            {
                "id": "cifa-demo-0001",
                "title": {"en": "Test Card in Beijing", "zh": "北京测试卡"},
                "director": {"en": "CIFA Ingest demo"},
                "year": 2026,
                "kind": "test film",
                "source": {"url": f"{films}/test-card-beijing.mp4", "platform": "demo server"},
                "permission": _granted("CIFA Ingest (demo)"),
            },
            {
                "id": "cifa-demo-0002",
                "title": {"en": "Colour Bars", "zh": "彩条"},
                "year": 2026,
                "kind": "test film",
                "source": {"url": f"{films}/colour-bars.mkv", "platform": "demo server"},
                "permission": _granted("CIFA Ingest (demo)"),
            },
            {
                "id": "cifa-demo-0003",
                "title": {"en": "Two Days of Test Patterns", "zh": "测试图两日"},
                "year": 2026,
                "kind": "test film in two parts",
                "parts": [
                    {"url": f"{films}/three-days-day-1.mp4", "label": "Day One"},
                    {"url": f"{films}/three-days-day-2.mp4", "label": "Day Two"},
                ],
                "permission": _granted("CIFA Ingest (demo)"),
            },
            {
                "id": "cifa-demo-0004",
                "title": {"en": "A Film Awaiting Permission", "zh": "等待许可"},
                "source": {"url": f"{films}/pending-film.mp4", "platform": "demo server"},
                "permission": {"status": "pending", "basis": "Asked; no answer yet."},
            },
            {
                "id": "cifa-demo-0005",
                "title": {"en": "A Film Whose Address Was Lost", "zh": "地址遗失"},
                "source": {"url": None, "platform": "demo server"},
                "permission": _granted("CIFA Ingest (demo)"),
            },
        ],
    }


def write_catalogue(path: Path, base_url: str) -> Path:
    """Write the demo catalogue for a server at ``base_url``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(demo_catalogue(base_url), allow_unicode=True, sort_keys=False)
    path.write_text("# Written by `cifa demo`; the port changes every run.\n" + text, "utf-8")
    return path
