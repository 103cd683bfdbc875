"""The built-in demo: a small web site of generated films, served from 127.0.0.1, and a
catalogue for it.

It exercises every part of the pipeline without the internet, with the cases real sources
present: a direct MP4 (1280x720), a Matroska file with 16-bit FLAC sound, a film in two parts, a
web page with a ``<video>``, a poster and subtitle tracks in Chinese and English, an HLS stream, an
HLS stream whose video and audio are separate (as DASH sources are), a download cut off half way
(resumed), a host that answers 429 first (retried), a work whose permission is pending (its file
is served, and must never be requested) and a work whose address is not known yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import yaml

from cifa_ingest.tools import runner


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
    DemoFilm("subtitled.mp4", "testsrc2", "480x270", 3, 392),
)

#: Subtitle tracks of the subtitled film: language code, label, the cue's text.
SUBTITLES = (
    ("zh-Hans", "简体中文", "北京，一九九〇年。"),
    ("zh-Hant", "繁體中文", "北京，一九九〇年。"),
    ("en", "English", "Beijing, 1990."),
)

PAGE = """<!DOCTYPE html>
<html lang="zh">
<head>
<meta charset="utf-8">
<title>A Subtitled Test Film / 字幕测试片</title>
<meta name="description" content="A demo film with subtitles in three languages.">
<meta property="og:title" content="A Subtitled Test Film / 字幕测试片">
</head>
<body>
<video controls poster="{poster}">
<source src="{video}" type="video/mp4">
{tracks}
</video>
</body>
</html>
"""


def _lavfi(spec: str, seconds: float) -> ffmpeg.nodes.FilterableStream:
    return ffmpeg.input(spec, f="lavfi", t=seconds)


def make_film(film: DemoFilm, target: Path) -> None:
    """Generate one demo film with ffmpeg (written aside, then renamed into place)."""
    video = _lavfi(f"{film.pattern}=size={film.size}:rate=25", film.seconds)
    audio = _lavfi(f"sine=frequency={film.frequency}:sample_rate=48000", film.seconds)
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
    runner.run_ffmpeg(stream)
    partial.replace(target)


def _make_hls(target_dir: Path, split: bool) -> None:
    """An HLS stream made by ffmpeg: one muxed variant, or (``split``) separate video and audio
    renditions with a master playlist, the way streaming sites serve separate streams."""
    partial = target_dir.with_name(f".{target_dir.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    pattern, tone = ("testsrc2", 700) if split else ("testsrc", 500)
    video = _lavfi(f"{pattern}=size=320x240:rate=25", 4)
    audio = _lavfi(f"sine=frequency={tone}:sample_rate=48000", 4)
    options = {
        "vcodec": "libx264",
        "preset": "veryfast",
        "pix_fmt": "yuv420p",
        "g": 25,
        "acodec": "aac",
        "f": "hls",
        "hls_time": 1,
        "hls_playlist_type": "vod",
    }
    if split:
        options |= {
            "var_stream_map": "v:0,agroup:aud a:0,agroup:aud,default:yes",
            "master_pl_name": "master.m3u8",
            "hls_segment_filename": str(partial / "s%v-%03d.ts"),
        }
        target = partial / "stream-%v.m3u8"
    else:
        options["hls_segment_filename"] = str(partial / "seg-%03d.ts")
        target = partial / "stream.m3u8"
    runner.run_ffmpeg(ffmpeg.output(video, audio, str(target), **options))
    partial.replace(target_dir)


def _make_subtitled_page(root: Path) -> None:
    films = root / "films"
    poster = films / "subtitled-poster.jpg"
    if not poster.is_file():
        frame = _lavfi("testsrc2=size=480x270:rate=1", 1)
        runner.run_ffmpeg(ffmpeg.output(frame, str(poster), vframes=1))
    for code, _label, text in SUBTITLES:
        cue = f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{text}\n"
        (films / f"subtitled.{code}.vtt").write_text(cue, encoding="utf-8")
    tracks = "\n".join(
        f'<track kind="subtitles" srclang="{code}" label="{label}"'
        f' src="/films/subtitled.{code}.vtt">'
        for code, label, _text in SUBTITLES
    )
    pages = root / "pages"
    pages.mkdir(exist_ok=True)
    # The flaky page's film is cut off half way the first time it is requested (see localserver).
    for name, video, page_tracks in (
        ("subtitled", "/films/subtitled.mp4", tracks),
        ("flaky", "/drop-once/films/test-card-beijing.mp4", ""),
        ("busy", "/films/subtitled.mp4", ""),
    ):
        page = PAGE.format(poster="/films/subtitled-poster.jpg", video=video, tracks=page_tracks)
        (pages / f"{name}.html").write_text(page, encoding="utf-8")


def make_site(root: Path) -> Path:
    """Generate what is missing of the demo site under ``root`` (films/, pages/); returns root.

    Generated once: a second demo run reuses the films, so the server sends the same bytes."""
    films = root / "films"
    films.mkdir(parents=True, exist_ok=True)
    for film in DEMO_FILMS:
        if not (films / film.name).is_file():
            make_film(film, films / film.name)
    for name, split in (("hls", False), ("hls-split", True)):
        if not (films / name).is_dir():
            _make_hls(films / name, split)
    _make_subtitled_page(root)
    return root


def _granted(by: str = "CIFA Ingest (demo)") -> dict[str, str]:
    return {"status": "granted", "granted_by": by, "basis": "Demo film, made by CIFA Ingest."}


def _work(work_id: str, en: str, zh: str, url: str, **extra: object) -> dict[str, object]:
    return {
        "id": work_id,
        "title": {"en": en, "zh": zh},
        "year": 2026,
        "kind": "test film",
        "source": {"url": url, "platform": "demo server"},
        "permission": _granted(),
        **extra,
    }


def demo_catalogue(base_url: str) -> dict[str, object]:
    """A catalogue whose sources are the demo site served at ``base_url``."""
    films, pages = f"{base_url}/films", f"{base_url}/pages"
    two_days = _work("cifa-demo-0003", "Two Days of Test Patterns", "测试图两日", "")
    del two_days["source"]
    two_days["parts"] = [
        {"url": f"{films}/three-days-day-1.mp4", "label": "Day One"},
        {"url": f"{films}/three-days-day-2.mp4", "label": "Day Two"},
    ]
    pending = _work("cifa-demo-0004", "A Film Awaiting Permission", "等待许可", "")
    pending["source"] = {"url": f"{films}/pending-film.mp4", "platform": "demo server"}
    pending["permission"] = {"status": "pending", "basis": "Asked; no answer yet."}
    lost = _work("cifa-demo-0005", "A Film Whose Address Was Lost", "地址遗失", "")
    lost["source"] = {"url": None, "platform": "demo server"}
    return {
        "collection": {"name": "CIFA demo", "description": "Generated films for the demo."},
        "works": [
            _work(
                "cifa-demo-0001",
                "Test Card in Beijing",
                "北京测试卡",
                f"{films}/test-card-beijing.mp4",
                director={"en": "CIFA Ingest demo"},
            ),
            _work("cifa-demo-0002", "Colour Bars", "彩条", f"{films}/colour-bars.mkv"),
            two_days,
            pending,
            lost,
            _work(
                "cifa-demo-0006", "A Subtitled Test Film", "字幕测试片", f"{pages}/subtitled.html"
            ),
            _work(
                "cifa-demo-0007", "A Streamed Test Film", "流媒体测试片", f"{films}/hls/stream.m3u8"
            ),
            _work(
                "cifa-demo-0008",
                "Separate Picture and Sound",
                "音画分离",
                f"{films}/hls-split/master.m3u8",
            ),
            _work(
                "cifa-demo-0009",
                "A Download Cut Off Half Way",
                "中途断线",
                f"{pages}/flaky.html",
            ),
            _work(
                "cifa-demo-0010",
                "A Busy Host",
                "繁忙的服务器",
                f"{base_url}/busy-once/pages/busy.html",
            ),
        ],
    }


def write_catalogue(path: Path, base_url: str) -> Path:
    """Write the demo catalogue for a server at ``base_url``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(demo_catalogue(base_url), allow_unicode=True, sort_keys=False)
    path.write_text("# Written by `cifa demo`; the port changes every run.\n" + text, "utf-8")
    return path
