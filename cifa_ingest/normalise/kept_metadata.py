"""What a master keeps as metadata because Matroska or its codec cannot carry it as the source
does: a phone's rotation, a pixel format FFV1 holds in another, a channel layout PCM (or, for
MediaInfo, WavPack) does not declare, as tags of the master's streams; and an MP4 track's title,
which ffmpeg does not read (MediaInfo does), as the master's track name. Each is recorded in
normalisation.json (``fidelity.kept_as_metadata``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifa_ingest.normalise.audio import (
    MEDIAINFO_READS_LAYOUT,
    audio_codec,
    declared_layout,
    declares_layout,
)
from cifa_ingest.normalise.pixel_formats import source_pixel_format
from cifa_ingest.normalise.streams import display_rotation, in_master, streams_of
from cifa_ingest.tools import mediainfo


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
    video = streams_of(probes, "video")
    tags = []
    for index, stream in enumerate(video):
        held = None if remux else source_pixel_format(stream)
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
        rotation = display_rotation(stream)
        if rotation:
            tags.append(
                KeptTag(
                    f"metadata:s:v:{index}", "ROTATION", str(rotation), index,
                    f"stream {index} (video): display rotation {rotation} degrees",
                    "Matroska (ffmpeg 5.1's muxer) has no display matrix; the pixels are not"
                    " turned",
                )
            )  # fmt: skip
    for index, stream in enumerate(streams_of(probes, "audio")):
        layout = declared_layout(stream)
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
                if stream.get("codec_type") != kind or not in_master(stream):
                    continue
                title = titles.get((number, int(stream["index"])))
                named = any(key.lower() == "title" for key in stream.get("tags", {}))
                if title and not named:
                    pairs.append((f"metadata:s:{letters[kind]}:{numbers[kind]}", f"title={title}"))
                numbers[kind] += 1
    return pairs
