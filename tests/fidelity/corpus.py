"""Odd sources of the kinds a film archive receives, generated with ffmpeg (lavfi test patterns
and tones, one to two seconds, small frames), each one :class:`SourceKind`.

The default set (``slow=False``) is a handful that runs in ``make test``; the rest are marked
slow (``make test-slow``). A kind whose encoder this ffmpeg lacks (libx265, libvpx-vp9, libopus)
says so in :func:`missing_encoders`, and its test is skipped.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SECONDS = "1.5"

#: The mastering display and content light level of a typical HDR10 grade (P3-D65 in a BT.2020
#: container, 0.0001 to 1000 cd/m2, MaxCLL 1000, MaxFALL 400), as x265 takes them.
HDR10_X265 = (
    "log-level=error:hdr-opt=1:repeat-headers=1:colorprim=bt2020:transfer=smpte2084"
    ":colormatrix=bt2020nc:master-display=G(13250,34500)B(7500,3000)R(34000,16000)"
    "WP(15635,16450)L(10000000,1):max-cll=1000,400"
)


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail with its message."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{subprocess.list2cmdline(command)}: {done.stderr.strip()}")


def pattern(size: str = "320x240", rate: str = "25") -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]


def tone(rate: int = 48000, frequency: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={rate}"]


@functools.cache
def encoders() -> frozenset[str]:
    """The encoders this ffmpeg has (``ffmpeg -encoders``)."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and len(fields[0]) == 6 and fields[0][0] in "VAS":
            names.add(fields[1])
    return frozenset(names)


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: how to make it, whether it is slow, which encoders it needs."""

    name: str
    filename: str
    make: Callable[[Path], None]
    slow: bool = False
    needs: tuple[str, ...] = ()

    def missing_encoders(self) -> list[str]:
        return [name for name in self.needs if name not in encoders()]

    def generate(self, directory: Path) -> Path:
        """Write this source into ``directory`` (scratch files beside it) and return its path."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / self.filename
        self.make(target)
        return target


# The sources. Each function writes its film at ``target``.


def _interlaced_1080i(target: Path) -> None:
    """1080i as broadcast sends it, in a small frame: top field first, BT.709, 25 frames of
    two fields each, coded as interlaced H.264."""
    ffmpeg(
        *pattern("320x180", "50"), *tone(),
        "-vf", "tinterlace=mode=interleave_top,setfield=tff,"
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709",
        "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264opts", "tff=1",
        "-c:a", "aac", "-t", SECONDS, str(target),
    )  # fmt: skip


def _prores(profile: str, pix_fmt: str) -> Callable[[Path], None]:
    def make(target: Path) -> None:
        ffmpeg(
            *pattern(), *tone(),
            "-c:v", "prores_ks", "-profile:v", profile, "-pix_fmt", pix_fmt,
            "-c:a", "pcm_s16le", "-t", SECONDS, str(target),
        )  # fmt: skip

    return make


def _dv(size: str, rate: str, pix_fmt: str) -> Callable[[Path], None]:
    """DV as a camcorder writes it (the raw DV stream, 4:3), with 16-bit stereo at 48 kHz."""

    def make(target: Path) -> None:
        ffmpeg(
            *pattern(size, rate), "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
            "-c:v", "dvvideo", "-pix_fmt", pix_fmt, "-aspect", "4:3",
            "-c:a", "pcm_s16le", "-t", "1", str(target),
        )  # fmt: skip

    return make


def _mpeg2_ts(target: Path) -> None:
    ffmpeg(
        *pattern("352x288"), *tone(),
        "-c:v", "mpeg2video", "-b:v", "2M", "-c:a", "mp2", "-b:a", "192k",
        "-t", SECONDS, str(target),
    )  # fmt: skip


def _vp9_opus(target: Path) -> None:
    ffmpeg(
        *pattern(), *tone(),
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k",
        "-c:a", "libopus", "-t", SECONDS, str(target),
    )  # fmt: skip


def _hevc_10bit(target: Path) -> None:
    ffmpeg(
        *pattern(), *tone(),
        "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error",
        "-c:a", "aac", "-t", SECONDS, str(target),
    )  # fmt: skip


def _hdr10(target: Path) -> None:
    """HDR10: 10-bit HEVC, BT.2020 primaries, PQ transfer, with the mastering display and
    content light level in the stream (SEI), as a grade leaves the colourist."""
    ffmpeg(
        *pattern(), *tone(),
        "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", HDR10_X265,
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
        "-c:a", "aac", "-t", SECONDS, str(target),
    )  # fmt: skip


def _mjpeg_full_range(target: Path) -> None:
    ffmpeg(
        *pattern(), *tone(),
        "-c:v", "mjpeg", "-pix_fmt", "yuvj422p", "-q:v", "3", "-c:a", "pcm_s16le",
        "-t", SECONDS, str(target),
    )  # fmt: skip


def _pcm_u8(target: Path) -> None:
    """8-bit unsigned sound at 22.05 kHz, as old digitisations hold it."""
    ffmpeg(*tone(22050), "-c:a", "pcm_u8", "-t", SECONDS, str(target))


def _pcm_s24(target: Path) -> None:
    """24-bit PCM beside the picture, as a production's deliverable holds it."""
    ffmpeg(
        *pattern(), "-f", "lavfi", "-i",
        "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
        "-c:v", "libx264", "-c:a", "pcm_s24le", "-t", SECONDS, str(target),
    )  # fmt: skip


def _aac_51_two_languages(target: Path) -> None:
    """A 5.1 mix in Mandarin and a stereo commentary in English, each with a title."""
    ffmpeg(
        *pattern(),
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000",
        "-filter_complex",
        "[1]pan=5.1|c0=c0|c1=c0|c2=c0|c3=0.5*c0|c4=c0|c5=c0[mix];"
        "[2]aformat=channel_layouts=stereo[commentary]",
        "-map", "0:v", "-map", "[mix]", "-map", "[commentary]",
        "-c:v", "libx264", "-c:a", "aac",
        "-metadata:s:a:0", "language=chi", "-metadata:s:a:0", "title=普通话 5.1",
        "-metadata:s:a:1", "language=eng", "-metadata:s:a:1", "title=Director's commentary",
        "-t", SECONDS, str(target),
    )  # fmt: skip


def _chapters_and_attachments(target: Path) -> None:
    """Matroska as a festival screener comes: chapters, a cover picture and a text file."""
    scratch = target.parent
    chapters = scratch / "chapters.ffmeta"
    chapters.write_text(
        ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=700\ntitle=开场\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=700\nEND=1500\ntitle=Reel 2\n",
        "utf-8",
    )
    cover = scratch / "cover.jpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=120x160", "-frames:v", "1", str(cover))
    notes = scratch / "notes.txt"
    notes.write_text("Screener, reel notes: 2 reels.\n", "utf-8")
    ffmpeg(
        *pattern(), *tone(), "-i", str(chapters),
        "-map", "0", "-map", "1", "-map_chapters", "2",
        "-c:v", "libx264", "-c:a", "aac",
        "-attach", str(cover), "-metadata:s:t:0", "mimetype=image/jpeg",
        "-attach", str(notes), "-metadata:s:t:1", "mimetype=text/plain",
        "-t", SECONDS, str(target),
    )  # fmt: skip


def _odd_size(target: Path) -> None:
    """321x241: odd in both directions (4:4:4, where H.264 allows it), square pixels."""
    ffmpeg(
        *pattern(), *tone(), "-vf", "scale=321:241,setsar=1,format=yuv444p", "-c:v", "libx264",
        "-c:a", "aac", "-t", SECONDS, str(target),
    )  # fmt: skip


def _variable_frame_rate(target: Path) -> None:
    """Ten frames at 25 fps, then 10 fps: a phone or a screen recording."""
    ffmpeg(
        *pattern(), *tone(),
        "-vf", "settb=1/1000,setpts='if(lt(N,10),N*0.04/TB,0.4/TB+(N-10)*0.1/TB)'",
        "-fps_mode", "vfr", "-enc_time_base:v", "1:1000", "-c:v", "libx264",
        "-c:a", "aac", "-t", "2", str(target),
    )  # fmt: skip


def _rotated(target: Path) -> None:
    """A phone's video: landscape pixels and a display matrix saying "turn 90 degrees"."""
    shot = target.parent / "shot.mp4"
    ffmpeg(*pattern("320x180"), *tone(), "-c:v", "libx264", "-c:a", "aac", "-t", SECONDS, str(shot))
    ffmpeg("-i", str(shot), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(target))


def _aac_priming(target: Path) -> None:
    """The commonest web source: H.264 and AAC in MP4, whose edit list trims the AAC encoder's
    priming (1024 samples) and the last frame's padding (written by ffmpeg's own encoder)."""
    ffmpeg(*pattern(), *tone(), "-c:v", "libx264", "-c:a", "aac", "-t", SECONDS, str(target))


KINDS: list[SourceKind] = [
    # The default set: what `make test` runs.
    SourceKind("aac-priming-mp4", "aac-priming.mp4", _aac_priming),
    SourceKind("interlaced-1080i", "interlaced.mp4", _interlaced_1080i),
    SourceKind("mjpeg-full-range", "mjpeg.avi", _mjpeg_full_range),
    SourceKind("pcm-24-bit", "pcm24.mov", _pcm_s24),
    SourceKind("chapters-and-attachments", "screener.mkv", _chapters_and_attachments),
    SourceKind("rotated", "rotated.mp4", _rotated),
    SourceKind("hdr10", "hdr10.mp4", _hdr10, needs=("libx265",)),
    SourceKind("aac-5.1-two-languages", "two-languages.mp4", _aac_51_two_languages),
    # The rest: `make test-slow`.
    SourceKind("prores-422", "prores422.mov", _prores("2", "yuv422p10le"), slow=True),
    SourceKind("prores-4444", "prores4444.mov", _prores("4", "yuva444p10le"), slow=True),
    SourceKind("dv-pal", "pal.dv", _dv("720x576", "25", "yuv420p"), slow=True),
    SourceKind("dv-ntsc", "ntsc.dv", _dv("720x480", "30000/1001", "yuv411p"), slow=True),
    SourceKind("mpeg2-ts", "mpeg2.ts", _mpeg2_ts, slow=True),
    SourceKind("vp9-opus-webm", "vp9.webm", _vp9_opus, slow=True, needs=("libvpx-vp9", "libopus")),
    SourceKind("hevc-10-bit", "hevc10.mp4", _hevc_10bit, slow=True, needs=("libx265",)),
    SourceKind("pcm-8-bit", "pcm8.wav", _pcm_u8, slow=True),
    SourceKind("odd-size", "odd.mp4", _odd_size, slow=True),
    SourceKind("variable-frame-rate", "vfr.mkv", _variable_frame_rate, slow=True),
]
