"""Which of the sources' streams a master holds, and where: the selections (``-map``) every
output of the one decode is made from, in the master's order (pictures, sounds, subtitles,
attachments), and what Matroska (ffmpeg 5.1's muxer) can hold. Every other module of
normalisation reads the sources' ffprobe descriptions through these, so that the master, its
inventory and its check agree on which stream is which.
"""

from __future__ import annotations

from typing import Any

#: Text subtitle codecs that Matroska cannot hold as they are, and what they become.
SUBTITLE_CONVERSION = {"mov_text": "srt"}

#: Subtitle codecs our ffmpeg's (5.1) Matroska muxer holds as they are (libavformat/matroska.c);
#: with :data:`SUBTITLE_CONVERSION`'s, the subtitles a master can keep.
MATROSKA_SUBTITLES = {
    "subrip", "srt", "text", "ass", "ssa", "webvtt", "dvd_subtitle", "dvb_subtitle",
    "hdmv_pgs_subtitle", "hdmv_text_subtitle",
}  # fmt: skip


def streams_of(probes: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Streams of one kind across the inputs, in the order the outputs hold them (cover art,
    an attached picture, is not a video stream here)."""
    return [
        s
        for probe in probes
        for s in probe.get("streams", [])
        if s.get("codec_type") == kind and not s.get("disposition", {}).get("attached_pic")
    ]


def is_attached_picture(stream: dict[str, Any]) -> bool:
    return bool(stream.get("disposition", {}).get("attached_pic"))


def kept_subtitle(stream: dict[str, Any]) -> bool:
    """Whether a subtitle stream can be in the master (as it is, or converted to SubRip)."""
    codec = stream.get("codec_name", "")
    return codec in MATROSKA_SUBTITLES or codec in SUBTITLE_CONVERSION


def in_master(stream: dict[str, Any]) -> bool:
    """Whether a stream is mapped into the master as a stream: every picture (not an attached
    picture: that becomes an attachment, see
    :class:`~cifa_ingest.normalise.attached_pictures.AttachedPicture`), sound, subtitle Matroska
    holds, and attachment."""
    kind = stream.get("codec_type")
    if kind == "subtitle":
        return kept_subtitle(stream)
    return kind in ("video", "audio", "attachment") and not is_attached_picture(stream)


def master_streams(inputs: list[Any], probes: list[dict[str, Any]]) -> list[Any]:
    """The master's stream selections (``-map``) in the master's order: pictures, sounds,
    subtitles, attachments. Attached pictures come after them, as ``-attach`` files."""
    selected = select(inputs, probes, "Va")
    for kind in ("subtitle", "attachment"):
        for node, probe in zip(inputs, probes, strict=True):
            for stream in probe.get("streams", []):
                if stream.get("codec_type") == kind and in_master(stream):
                    selected.append(node[str(stream["index"])])
    return selected


def select(
    inputs: list[Any], probes: list[dict[str, Any]], kinds: str, first_only: bool = False
) -> list[Any]:
    """Stream selections (``-map``) of the given kinds ('V', 'a', 's') across the inputs."""
    selected = []
    for kind in kinds:
        for node, probe in zip(inputs, probes, strict=True):
            codec_type = {"V": "video", "a": "audio", "s": "subtitle"}[kind]
            if not streams_of([probe], codec_type):
                continue
            selected.append(node[f"{kind}:0" if first_only else kind])
            if first_only:
                break
    return selected


def film_duration(probes: list[dict[str, Any]]) -> float | None:
    durations = [float(p.get("format", {}).get("duration") or 0) for p in probes]
    return max(durations) or None


def display_rotation(stream: dict[str, Any]) -> int:
    """The display matrix's rotation of a video stream (a phone's), as ffprobe reports it:
    degrees counter-clockwise (ffmpeg's convention, as ``-display_rotation`` takes it)."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    return 0
