"""Masters damaged on purpose, each in one way, to show that the checker catches every kind of
loss: a good master is remuxed or re-encoded losslessly (FFV1, FLAC, PCM) with exactly one thing
changed, by ffmpeg alone.

:data:`DAMAGES` lists them with the kinds of finding each must produce, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.fidelity.checker import Kind
from tests.fidelity.corpus import HDR10_X265, ffmpeg, pattern, tone

#: Lossless re-encoding of everything, as a master is made.
LOSSLESS = ["-c:v", "ffv1", "-level", "3", "-g", "1", "-c:a", "flac", "-c:t", "copy"]
KEEP = ["-map_metadata", "0", "-map_chapters", "0"]


def make_film(directory: Path) -> tuple[Path, Path]:
    """A source rich in what a master must keep, and a good master of it (every stream decoded
    and re-encoded losslessly): 10-bit BT.709 picture, a 5.1 mix (Mandarin, titled) and a
    stereo track (English), chapters and a text attachment."""
    chapters = directory / "chapters.ffmeta"
    chapters.write_text(
        ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=第一\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=Two\n",
        "utf-8",
    )
    notes = directory / "notes.txt"
    notes.write_text("Reel notes.\n", "utf-8")
    source = directory / "source.mkv"
    ffmpeg(
        *pattern(), *tone(), *tone(frequency=660), "-i", str(chapters),
        "-filter_complex",
        "[0]format=yuv420p10le,setparams=color_primaries=bt709:color_trc=bt709"
        ":colorspace=bt709:range=tv[v];"
        "[1]pan=5.1|c0=c0|c1=c0|c2=c0|c3=0.5*c0|c4=c0|c5=c0,aformat=s16[mix];"
        "[2]aformat=s16:channel_layouts=stereo[commentary]",
        "-map", "[v]", "-map", "[mix]", "-map", "[commentary]", "-map_chapters", "3",
        "-c:v", "ffv1", "-c:a", "flac",
        "-metadata:s:a:0", "language=chi", "-metadata:s:a:0", "title=Mix 5.1",
        "-metadata:s:a:1", "language=eng",
        "-attach", str(notes), "-metadata:s:t:0", "mimetype=text/plain",
        "-t", "1", str(source),
    )  # fmt: skip
    good = directory / "good.mkv"
    ffmpeg("-i", str(source), "-map", "0", *KEEP, *LOSSLESS, "-slices", "4", str(good))
    return source, good


def make_hdr10(directory: Path) -> tuple[Path, Path]:
    """An HDR10 source (HEVC with its mastering display and content light level), and a good
    master: the same HEVC stream remuxed into Matroska."""
    source = directory / "hdr10.mp4"
    ffmpeg(
        *pattern(), "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", HDR10_X265,
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
        "-t", "1", str(source),
    )  # fmt: skip
    good = directory / "hdr10.mkv"
    ffmpeg("-i", str(source), "-c", "copy", str(good))
    return source, good


def make_rotated(directory: Path) -> tuple[Path, Path]:
    """A phone's video turned 90 degrees by its display matrix, and a good master: the same
    streams remuxed (the display matrix kept, MP4 to MP4)."""
    shot = directory / "shot.mp4"
    ffmpeg(*pattern("320x180"), "-c:v", "libx264", "-t", "1", str(shot))
    source = directory / "rotated.mp4"
    ffmpeg("-i", str(shot), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(source))
    good = directory / "rotated-master.mp4"
    ffmpeg("-i", str(source), "-c", "copy", str(good))
    return source, good


def _reencode(*extra: str) -> Callable[[Path, Path], None]:
    """The good master decoded and re-encoded losslessly, with ``extra`` options (a filter)."""

    def damage(good: Path, target: Path) -> None:
        ffmpeg("-i", str(good), "-map", "0", *KEEP, *LOSSLESS, *extra, str(target))

    return damage


def _remux(*extra: str) -> Callable[[Path, Path], None]:
    def damage(good: Path, target: Path) -> None:
        ffmpeg("-i", str(good), *extra, "-c", "copy", str(target))

    return damage


def _shift_audio(good: Path, target: Path) -> None:
    """Every audio stream 100 ms later than the picture."""
    ffmpeg(
        "-i", str(good), "-itsoffset", "0.1", "-i", str(good),
        "-map", "0:v", "-map", "1:a", "-map", "0:t", *KEEP, "-c", "copy", str(target),
    )  # fmt: skip


def _strip_hdr(good: Path, target: Path) -> None:
    """The HDR10 picture without its mastering display and content light level: their side
    data deleted from every frame, then re-encoded with x265 in its lossless mode, the colour
    tags (BT.2020, PQ) kept."""
    ffmpeg(
        "-i", str(good),
        "-vf", "sidedata=mode=delete:type=MASTERING_DISPLAY_METADATA,"
        "sidedata=mode=delete:type=CONTENT_LIGHT_LEVEL",
        "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "lossless=1:log-level=error",
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
        "-color_range", "tv", str(target),
    )  # fmt: skip


@dataclass(frozen=True)
class Damage:
    name: str
    film: str  # which source and good master: "film", "hdr10", "rotated"
    apply: Callable[[Path, Path], None]
    expected: frozenset[Kind]
    suffix: str = ".mkv"


DAMAGES = [
    Damage("second audio dropped", "film", _remux("-map", "0", "-map", "-0:a:1", *KEEP),
           frozenset({Kind.STREAMS})),
    Damage("attachment dropped", "film", _remux("-map", "0:v", "-map", "0:a", *KEEP),
           frozenset({Kind.STREAMS})),
    Damage("one frame changed", "film",
           _reencode("-vf", "lutyuv=y=negval:enable='eq(n,5)'"),
           frozenset({Kind.PICTURE})),
    Damage("samples changed", "film",
           _reencode("-filter:a:0", "aeval=exprs='if(between(t,0.5,0.51),val(ch)/2,val(ch))'"
                     ":channel_layout=same,aformat=sample_fmts=s16"),
           frozenset({Kind.SOUND})),
    Damage("audio 100 ms late", "film", _shift_audio, frozenset({Kind.OFFSET})),
    Damage("timestamps stretched", "film", _reencode("-vf", "setpts=1.1*PTS"),
           frozenset({Kind.TIMESTAMPS})),
    # 10-bit samples in 16-bit words: every value kept (converting back gives the same
    # picture), but the pixel format and the bit depth it declares are not the source's.
    Damage("pixel format relabelled", "film", _reencode("-pix_fmt", "yuv420p16le"),
           frozenset({Kind.PIXEL_FORMAT, Kind.BIT_DEPTH})),
    Damage("channel layout dropped", "film", _reencode("-c:a:0", "pcm_s16le"),
           frozenset({Kind.CHANNELS})),
    Damage("colour tags stripped", "film",
           _reencode("-vf", "setparams=color_primaries=unknown:color_trc=unknown"
                     ":colorspace=unknown"),
           frozenset({Kind.COLOUR})),
    Damage("field order changed", "film", _reencode("-field_order", "bb"),
           frozenset({Kind.FIELD_ORDER})),
    Damage("chapters lost", "film", _remux("-map", "0", "-map_metadata", "0",
                                           "-map_chapters", "-1"),
           frozenset({Kind.CHAPTERS})),
    Damage("language and title lost", "film",
           _remux("-map", "0", *KEEP, "-metadata:s:a:0", "language=",
                  "-metadata:s:a:0", "title="),
           frozenset({Kind.TAGS})),
    Damage("samples padded", "film", _reencode("-filter:a:1", "apad=pad_dur=0.5"),
           frozenset({Kind.DURATION})),
    Damage("last frame dropped", "film", _reencode("-vf", "trim=end_frame=24"),
           frozenset({Kind.DURATION})),
    Damage("aspect ratio changed", "film", _reencode("-vf", "setsar=4/3"),
           frozenset({Kind.GEOMETRY})),
    # The same samples said to be at 44.1 kHz: each block's time after the first changes too.
    Damage("sample rate relabelled", "film", _reencode("-filter:a:1", "asetrate=44100"),
           frozenset({Kind.SAMPLE_RATE, Kind.TIMESTAMPS})),
    Damage("attachment renamed", "film",
           _remux("-map", "0", *KEEP, "-metadata:s:t:0", "filename=other.txt"),
           frozenset({Kind.ATTACHMENTS})),
    Damage("HDR side data stripped", "hdr10", _strip_hdr, frozenset({Kind.HDR})),
    Damage("rotation dropped", "rotated", _remux("-map", "0", "-metadata:s:v:0", "rotate=0"),
           frozenset({Kind.ROTATION}), suffix=".mp4"),
]  # fmt: skip
