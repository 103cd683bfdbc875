"""An independent check that a preservation master holds everything its source holds.

Independent of the pipeline: this module imports nothing of ``cifa_ingest`` and shares none of
its tables. It runs ffprobe, ffmpeg and MediaInfo itself, parses their JSON and ``framemd5``
output, and compares a master with its source:

- **decoded content**: every video frame as raw pixels and every audio sample as PCM, hashed by
  this module's own ffmpeg runs (``-f framemd5``), both sides in the *source's* decoded format
  (a yuvj format as its plain twin: the same bytes; audio in blocks of a tenth of a second);
- **timestamps**: each frame's time after its stream's first, and the offset between streams;
- **durations**: frame and sample counts, and each audio stream's samples against the duration
  the source declares (which accounts for an MP4 edit list's priming and padding trim);
- **properties**: stream counts by type (video, audio, subtitle, attachment), and per stream
  the codec-independent properties ffprobe reports (frame size, pixel format, bit depth, field
  order, aspect ratios, colour, chroma location, rotation, the mastering display and content
  light level of the first frame, sample rate, channels, channel layout, language, title), the
  chapters, the attachments (file name, MIME type, content), and the same from MediaInfo's JSON
  (bit depth, channel positions, scan type and order, HDR format, mastering display, MaxCLL,
  MaxFALL, title, language).

:func:`check` returns a list of :class:`Finding`: what differs, as a :class:`Kind`, the stream,
the property, and the source's and the master's values. An empty list: nothing was lost.

What counts as the same:

- a property the source does not declare (``unknown``, absent) is a finding where the master
  declares it, except where the master may state what the source's silence means or what its
  decoded frames say: field order (the first frame's flags are compared in any case), bit depth,
  channel layout and positions (FLAC's default layout for the channel count), scan type;
- no rotation is rotation 0;
- MediaInfo's MBAFF and PAFF scan types are interlaced (ways of coding fields in H.264);
- a yuvj pixel format is its plain twin with full range (the same bytes);
- 5.1 with side or back surround channels is one layout (ITU-R BS.775's Ls/Rs; decoders label
  the same AAC or FLAC channels either way);
- what ffmpeg 5.1's Matroska cannot declare, a master may state as a stream tag: its rotation
  (no display matrix) as ``ROTATION`` (or ``rotate``), in ffprobe's convention (degrees
  counter-clockwise), and a PCM track's channel layout (a channel count only) as
  ``CHANNEL_LAYOUT``, in ffprobe's names; MediaInfo's channel positions, which it does not read
  from such a tag, are then not compared; and a pixel format or bit depth its codec cannot
  hold (FFV1 in ffmpeg 5.1 has no 12-bit alpha) as ``SOURCE_PIX_FMT`` and
  ``BITS_PER_RAW_SAMPLE`` (the decoded frames, compared in the source's format, must still be
  the source's);
- an audio stream's samples are those a player plays of the source: an MP4 edit list's end
  trims the encoder's padding, which ffmpeg 5.1 decodes all the same;
- a track title ffprobe does not read in the source (ffmpeg 5.1 reads no MP4 track title) is
  compared by MediaInfo's reading of both; MediaInfo's MaxCLL and MaxFALL are compared without
  their unit, which it writes for HEVC's SEI and not for Matroska's Colour element;
- times agree within a millisecond (Matroska's time base), or one tick of the finer of the two
  streams' time bases where that is coarser.

Data streams (an MP4's timecode track) are not compared.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any


class Kind(Enum):
    """What kind of thing a master lost or changed."""

    STREAMS = "number of streams of a type"
    PICTURE = "decoded picture"
    SOUND = "decoded sound"
    TIMESTAMPS = "timestamps within a stream"
    OFFSET = "offset between streams"
    DURATION = "frames, samples or declared duration"
    GEOMETRY = "frame size and aspect ratio"
    PIXEL_FORMAT = "pixel format"
    BIT_DEPTH = "bit depth"
    FIELD_ORDER = "field order and scan type"
    COLOUR = "colour properties"
    ROTATION = "rotation"
    HDR = "HDR metadata"
    SAMPLE_RATE = "sample rate"
    CHANNELS = "channels and their layout"
    TAGS = "language and title"
    CHAPTERS = "chapters"
    ATTACHMENTS = "attachments"


@dataclass(frozen=True)
class Finding:
    """One difference: its kind, where (``video 0``, ``audio 1``, ``file``), which property, and
    the value in the source and in the master."""

    kind: Kind
    stream: str
    property: str
    source: Any
    master: Any

    def __str__(self) -> str:
        return (
            f"{self.kind.name} {self.stream}: {self.property}: source {self.source!r},"
            f" master {self.master!r}"
        )


#: Stream types compared, as ffprobe names them (an attached picture counts as an attachment).
TYPES = ("video", "audio", "subtitle", "attachment")
#: Values that declare nothing.
UNDECLARED = {"", "unknown", "unspecified", "n/a", "und", "0:1", "0", "none"}
#: MediaInfo's scan types that are ways of coding interlaced pictures (H.264's macroblock- and
#: picture-adaptive frame/field coding), not properties of the pictures.
INTERLACED_CODING = {"MBAFF": "Interlaced", "PAFF": "Interlaced"}
#: Containers whose streams declare their own duration in their index (ISO BMFF and QuickTime,
#: where an edit list trims an encoder's priming and padding): elsewhere ffprobe estimates it
#: (MPEG-TS: from timestamps), or has none (Matroska).
DECLARING_FORMATS = ("mov,mp4",)
#: How closely times must agree, at least (Matroska's default time base).
PRECISION = Fraction(1, 1000)
#: Decoded sample format -> the raw PCM codec that holds it unchanged, interleaved.
PCM = {
    "u8": ("pcm_u8", 1),
    "s16": ("pcm_s16le", 2),
    "s32": ("pcm_s32le", 4),
    "s64": ("pcm_s64le", 8),
    "flt": ("pcm_f32le", 4),
    "dbl": ("pcm_f64le", 8),
}
#: Layouts that name the same channels (ITU-R BS.775 surround pair as side or back).
SAME_LAYOUT = {"5.1(side)": "5.1", "5.0(side)": "5.0"}
HDR_SIDE_DATA = ("Mastering display metadata", "Content light level metadata")
MEDIAINFO_HDR = (
    "HDR_Format",
    "MasteringDisplay_ColorPrimaries",
    "MasteringDisplay_Luminance",
    "MaxCLL",
    "MaxFALL",
)
VIDEO_PROPERTIES = {
    "width": Kind.GEOMETRY,
    "height": Kind.GEOMETRY,
    "sample_aspect_ratio": Kind.GEOMETRY,
    "display_aspect_ratio": Kind.GEOMETRY,
    "pix_fmt": Kind.PIXEL_FORMAT,
    "color_range": Kind.COLOUR,
    "color_space": Kind.COLOUR,
    "color_transfer": Kind.COLOUR,
    "color_primaries": Kind.COLOUR,
    "chroma_location": Kind.COLOUR,
}


# Running the tools.


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def ffprobe(path: Path, *args: str) -> dict[str, Any]:
    return json.loads(_run(["ffprobe", "-v", "error", "-of", "json", *args, str(path)]))


def mediainfo(path: Path) -> dict[str, list[dict[str, Any]]]:
    """MediaInfo's tracks by type (``Video``, ``Audio``, ``Text``), in order."""
    media = json.loads(_run(["mediainfo", "--Output=JSON", str(path)])).get("media") or {}
    tracks: dict[str, list[dict[str, Any]]] = {}
    for track in media.get("track", []):
        tracks.setdefault(track.get("@type", ""), []).append(track)
    return tracks


@dataclass
class Description:
    """What ffprobe and MediaInfo say about one file, its streams sorted by type."""

    path: Path
    probe: dict[str, Any]
    streams: dict[str, list[dict[str, Any]]]
    first_frames: dict[int, dict[str, Any]]
    mediainfo: dict[str, list[dict[str, Any]]]


def _type(stream: dict[str, Any]) -> str:
    if stream.get("disposition", {}).get("attached_pic"):
        return "attachment"
    return stream.get("codec_type", "")


def describe(path: Path) -> Description:
    probe = ffprobe(path, "-show_format", "-show_streams", "-show_chapters")
    streams: dict[str, list[dict[str, Any]]] = {kind: [] for kind in TYPES}
    for stream in probe.get("streams", []):
        streams.setdefault(_type(stream), []).append(stream)
    first_frames = {}
    for stream in streams["video"]:
        frames = ffprobe(
            path, "-select_streams", str(stream["index"]), "-read_intervals", "%+#1",
            "-show_frames", "-show_entries",
            "frame=side_data_list,interlaced_frame,top_field_first",
        ).get("frames", [])  # fmt: skip
        first_frames[stream["index"]] = frames[0] if frames else {}
    return Description(path, probe, streams, first_frames, mediainfo(path))


# Normalising values.


def _declared(value: Any) -> Any:
    """The value, or None where it declares nothing."""
    if value is None or str(value).strip().lower() in UNDECLARED:
        return None
    return value


def _tags(stream: dict[str, Any]) -> dict[str, str]:
    return {key.lower(): value for key, value in stream.get("tags", {}).items()}


def _pix_fmt(stream: dict[str, Any]) -> str | None:
    """The pixel format, a yuvj format as its plain twin (the same bytes, full range)."""
    pix_fmt = _declared(stream.get("pix_fmt"))
    if pix_fmt and pix_fmt.startswith("yuvj"):
        return "yuv" + pix_fmt[4:]
    return pix_fmt


def _video_property(stream: dict[str, Any], name: str) -> Any:
    if name == "pix_fmt":
        # A master whose codec cannot hold the source's format (FFV1 in ffmpeg 5.1 has no 12-bit
        # alpha) declares it as a SOURCE_PIX_FMT tag, as a rotation is declared as a tag.
        return _declared(_tags(stream).get("source_pix_fmt")) or _pix_fmt(stream)
    value = _declared(stream.get(name))
    if name == "color_range" and value is None and str(stream.get("pix_fmt")).startswith("yuvj"):
        return "pc"
    return value


def _rotation(stream: dict[str, Any]) -> int:
    """Degrees counter-clockwise, as ffprobe reports a display matrix: from the display matrix,
    else from a rotation tag (Matroska in ffmpeg 5.1 has no display matrix)."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    tags = _tags(stream)
    for key in ("rotation", "rotate"):
        if key in tags:
            try:
                return round(float(tags[key])) % 360
            except ValueError:
                return -1
    return 0


def _hdr_side_data(description: Description, stream: dict[str, Any]) -> dict[str, Any]:
    """The mastering display and content light level of the first frame, else of the stream."""
    found: dict[str, Any] = {}
    for side in (
        *description.first_frames.get(stream["index"], {}).get("side_data_list", []),
        *stream.get("side_data_list", []),
    ):
        kind = side.get("side_data_type")
        if kind in HDR_SIDE_DATA and kind not in found:
            found[kind] = {
                key: _ratio(value) for key, value in side.items() if key != "side_data_type"
            }
    return found


def _ratio(value: Any) -> Any:
    """ffprobe's fractions as numbers to 5 decimals (chromaticities are in units of 1/50000,
    luminances of 1/10000): ``34000/50000`` and ``17/25`` are the same, and a container that
    stores them as floats keeps them."""
    if isinstance(value, str) and "/" in value:
        try:
            return round(float(Fraction(value)), 5)
        except (ValueError, ZeroDivisionError):
            return value
    return value


def _layout(stream: dict[str, Any]) -> str | None:
    """The channel layout a stream declares, else its ``CHANNEL_LAYOUT`` tag (PCM in Matroska
    declares a channel count only)."""
    layout = _declared(stream.get("channel_layout")) or _declared(
        _tags(stream).get("channel_layout")
    )
    return SAME_LAYOUT.get(layout, layout) if layout else None


def _positions(track: dict[str, Any]) -> str | None:
    """MediaInfo's ChannelPositions, a 5.x surround pair as one (side or back)."""
    positions = _declared(track.get("ChannelPositions"))
    if positions and track.get("Channels") in ("5", "6"):
        positions = positions.replace("Side: L R", "Surround: L R")
        positions = positions.replace("Back: L R", "Surround: L R")
    return positions


def _audio_bits(stream: dict[str, Any]) -> int | None:
    """The bit depth ffprobe declares for an audio stream (lossless codecs only: a lossy one
    has none)."""
    for key in ("bits_per_raw_sample", "bits_per_sample"):
        try:
            bits = int(stream.get(key) or 0)
        except ValueError:
            bits = 0
        if bits:
            return bits
    return None


def _language(value: Any) -> str | None:
    value = _declared(value)
    return value.lower() if value else None


# Comparing properties.


@dataclass
class _Findings:
    found: list[Finding] = field(default_factory=list)

    def compare(
        self, kind: Kind, where: str, name: str, source: Any, master: Any, *,
        declared_only: bool = False, both_declared: bool = False,
    ) -> None:  # fmt: skip
        """A finding if the values differ. With ``declared_only``, only where the source
        declares a value (its absence then says nothing the master could contradict); with
        ``both_declared``, only where both do (a tool that cannot tell is no evidence)."""
        if source == master:
            return
        if source is None and (declared_only or both_declared):
            return
        if master is None and both_declared:
            return
        self.found.append(Finding(kind, where, name, source, master))

    def add(self, kind: Kind, where: str, name: str, source: Any, master: Any) -> None:
        self.found.append(Finding(kind, where, name, source, master))


def _compare_video(
    out: _Findings, where: str, src: Description, s: dict[str, Any], mst: Description,
    m: dict[str, Any],
) -> None:  # fmt: skip
    for name, kind in VIDEO_PROPERTIES.items():
        out.compare(kind, where, name, _video_property(s, name), _video_property(m, name))
    # A stream's field order, where the source's container leaves it unsaid, the master may
    # state from the decoded frames (which are compared in any case).
    out.compare(
        Kind.FIELD_ORDER, where, "field_order", _declared(s.get("field_order")),
        _declared(m.get("field_order")), declared_only=True,
    )  # fmt: skip
    frame_s, frame_m = src.first_frames.get(s["index"], {}), mst.first_frames.get(m["index"], {})
    for name in ("interlaced_frame", "top_field_first"):
        out.compare(Kind.FIELD_ORDER, where, f"first frame's {name}", frame_s.get(name),
                    frame_m.get(name))  # fmt: skip
    out.compare(
        Kind.BIT_DEPTH, where, "bits_per_raw_sample",
        _declared(s.get("bits_per_raw_sample")),
        _declared(_tags(m).get("bits_per_raw_sample")) or _declared(m.get("bits_per_raw_sample")),
        declared_only=True,
    )  # fmt: skip
    out.compare(Kind.ROTATION, where, "rotation", _rotation(s), _rotation(m))
    hdr_s, hdr_m = _hdr_side_data(src, s), _hdr_side_data(mst, m)
    for kind in HDR_SIDE_DATA:
        out.compare(Kind.HDR, where, kind, hdr_s.get(kind), hdr_m.get(kind))


def _compare_audio(out: _Findings, where: str, s: dict[str, Any], m: dict[str, Any]) -> None:
    out.compare(
        Kind.SAMPLE_RATE, where, "sample_rate", _declared(s.get("sample_rate")),
        _declared(m.get("sample_rate")),
    )  # fmt: skip
    out.compare(Kind.CHANNELS, where, "channels", s.get("channels"), m.get("channels"))
    # A layout where the source declares none is the master codec's default (FLAC's): no loss.
    out.compare(Kind.CHANNELS, where, "channel_layout", _layout(s), _layout(m), declared_only=True)
    out.compare(
        Kind.BIT_DEPTH, where, "bit depth", _audio_bits(s), _audio_bits(m), declared_only=True
    )


def _compare_tags(out: _Findings, where: str, s: dict[str, Any], m: dict[str, Any]) -> None:
    tags_s, tags_m = _tags(s), _tags(m)
    out.compare(
        Kind.TAGS, where, "language", _language(tags_s.get("language")),
        _language(tags_m.get("language")),
    )  # fmt: skip
    # A title where ffprobe reads none in the source (ffmpeg 5.1 reads no MP4 track title) may
    # be the master's, from the source: MediaInfo, which reads them, compares both.
    out.compare(
        Kind.TAGS,
        where,
        "title",
        _declared(tags_s.get("title")),
        _declared(tags_m.get("title")),
        declared_only=True,
    )


def _compare_mediainfo(out: _Findings, kind: str, src: Description, mst: Description) -> None:
    """The same properties as MediaInfo reads them, track by track of one type."""
    track_type = {"video": "Video", "audio": "Audio", "subtitle": "Text"}[kind]
    pairs = zip(src.mediainfo.get(track_type, []), mst.mediainfo.get(track_type, []), strict=False)
    for number, (s, m) in enumerate(pairs):
        where = f"{kind} {number}"
        out.compare(
            Kind.TAGS, where, "MediaInfo Title", _declared(s.get("Title")),
            _declared(m.get("Title")),
        )  # fmt: skip
        out.compare(
            Kind.TAGS, where, "MediaInfo Language", _language(s.get("Language")),
            _language(m.get("Language")),
        )  # fmt: skip
        if kind == "subtitle":
            continue
        source_bits = _declared(s.get("BitDepth"))
        sources = src.streams["audio"]
        if kind == "audio" and (number >= len(sources) or _audio_bits(sources[number]) is None):
            source_bits = None  # a lossy codec has no bit depth, whatever MediaInfo infers
        out.compare(
            Kind.BIT_DEPTH, where, "MediaInfo BitDepth", source_bits,
            _declared(m.get("BitDepth")), declared_only=True,
        )  # fmt: skip
        if kind == "audio":
            masters = mst.streams["audio"]
            tagged = number < len(masters) and "channel_layout" in _tags(masters[number])
            out.compare(
                Kind.CHANNELS,
                where,
                "MediaInfo ChannelPositions",
                _positions(s),
                _positions(m),
                # MediaInfo reads no positions from a layout tag (compared above, by ffprobe).
                declared_only=True,
                both_declared=tagged,
            )
            continue
        for name in ("ScanType", "ScanOrder"):
            scan_s, scan_m = _declared(s.get(name)), _declared(m.get(name))
            out.compare(
                Kind.FIELD_ORDER, where, f"MediaInfo {name}",
                INTERLACED_CODING.get(scan_s, scan_s), INTERLACED_CODING.get(scan_m, scan_m),
                both_declared=True,
            )  # fmt: skip
        for name in MEDIAINFO_HDR:
            out.compare(
                Kind.HDR, where, f"MediaInfo {name}", _light_level(s.get(name)),
                _light_level(m.get(name)),
            )  # fmt: skip


def _light_level(value: Any) -> Any:
    """A MediaInfo value without its unit of light: MediaInfo 23.04 writes MaxCLL and MaxFALL
    as ``1000 cd/m2`` from HEVC's SEI and as ``1000`` from Matroska's Colour element, the same
    value."""
    declared = _declared(value)
    if isinstance(declared, str) and declared.endswith(" cd/m2") and "," not in declared:
        return declared.removesuffix(" cd/m2")
    return declared


def _chapters(description: Description) -> list[tuple[float, float, str | None]]:
    return [
        (
            float(chapter.get("start_time", 0)),
            float(chapter.get("end_time", 0)),
            _declared(_tags(chapter).get("title")),
        )
        for chapter in description.probe.get("chapters", [])
    ]


def _compare_chapters(out: _Findings, src: Description, mst: Description) -> None:
    ours, theirs = _chapters(src), _chapters(mst)
    same = len(ours) == len(theirs) and all(
        abs(a[0] - b[0]) <= 0.001 and abs(a[1] - b[1]) <= 0.001 and a[2] == b[2]
        for a, b in zip(ours, theirs, strict=True)
    )
    if not same:
        out.add(Kind.CHAPTERS, "file", "chapters (start, end, title)", ours, theirs)


def _attachment(description: Description, stream: dict[str, Any]) -> tuple[Any, ...]:
    """An attachment's file name, MIME type and the MD5 of its content."""
    tags = _tags(stream)
    if stream.get("codec_type") == "attachment":
        data = ffprobe(
            description.path, "-select_streams", str(stream["index"]), "-show_streams",
            "-show_data_hash", "MD5", "-show_entries", "stream=extradata_hash",
        )  # fmt: skip
        digest = (data.get("streams") or [{}])[0].get("extradata_hash", "").removeprefix("MD5:")
    else:  # an attached picture: its one packet
        out = _run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(description.path),
             "-map", f"0:{stream['index']}", "-c", "copy", "-f", "md5", "-"]
        )  # fmt: skip
        digest = out.strip().removeprefix("MD5=")
    return (tags.get("filename"), tags.get("mimetype"), digest)


def _compare_attachments(out: _Findings, src: Description, mst: Description) -> None:
    ours = sorted(_attachment(src, s) for s in src.streams["attachment"])
    theirs = sorted(_attachment(mst, s) for s in mst.streams["attachment"])
    if len(ours) != len(theirs):
        return  # counted already (STREAMS)
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for position, name in enumerate(("filename", "mimetype", "content MD5")):
            out.compare(Kind.ATTACHMENTS, f"attachment {number}", name, a[position], b[position])


# Decoded content.


@dataclass
class _Hashes:
    """One stream's decoded frames or audio blocks: time base, then (pts, size, md5) each."""

    kind: str
    time_base: Fraction
    frames: list[tuple[int, int, str]] = field(default_factory=list)


def _sample_format(stream: dict[str, Any]) -> str:
    return str(stream.get("sample_fmt", "flt")).removesuffix("p")


def _framemd5(
    description: Description, pairs: list[tuple[dict[str, Any], dict[str, Any]]], side: int
) -> list[_Hashes]:
    """Hash the streams of one side (0: source, 1: master) of the pairs, each in the source's
    decoded format: raw video in the source's pixel format (converted only where this file's
    own is another), audio as PCM in the source's sample format, in blocks of 1/10 s."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-noautorotate", "-i", str(description.path)]
    options: list[str] = []
    for number, pair in enumerate(pairs):
        source, stream = pair[0], pair[side]
        command += ["-map", f"0:{stream['index']}"]
        if source["codec_type"] == "video":
            options += [f"-c:{number}", "rawvideo"]
            if _pix_fmt(stream) != _pix_fmt(source):
                options += [f"-pix_fmt:{number}", str(source.get("pix_fmt"))]
        else:
            codec, _ = PCM.get(_sample_format(source), PCM["dbl"])
            block = max(1, int(source.get("sample_rate") or 48000) // 10)
            options += [f"-c:{number}", codec, f"-filter:{number}", f"asetnsamples=n={block}:p=0"]
    command += [*options, "-fps_mode", "passthrough", "-enc_time_base:v", "-1", "-f", "framemd5"]
    streams: dict[int, _Hashes] = {}
    for line in _run([*command, "-"]).splitlines():
        if line.startswith("#tb "):
            index, value = line[4:].split(":", 1)
            streams[int(index)] = _Hashes("", Fraction(value.strip()))
        elif line.startswith("#media_type "):
            index, value = line[12:].split(":", 1)
            streams[int(index)].kind = value.strip()
        elif line and not line.startswith("#"):
            fields = [part.strip() for part in line.split(",")]
            streams[int(fields[0])].frames.append((int(fields[2]), int(fields[4]), fields[5]))
    return [streams.get(n, _Hashes("", Fraction(1))) for n in range(len(pairs))]


def _time_base(stream: dict[str, Any]) -> Fraction:
    try:
        return Fraction(stream.get("time_base") or "1/1000")
    except (ValueError, ZeroDivisionError):
        return Fraction(1, 1000)


def _prefix_md5(path: Path, stream: dict[str, Any], source: dict[str, Any], samples: int) -> str:
    """The MD5 of the first ``samples`` samples of an audio stream, in the source's format."""
    codec, _ = PCM.get(_sample_format(source), PCM["dbl"])
    out = _run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", f"0:{stream['index']}",
         "-af", f"atrim=end_sample={samples}", "-c:a", codec, "-f", "md5", "-"]
    )  # fmt: skip
    return out.strip()


def _samples(hashes: _Hashes, source: dict[str, Any], stream: dict[str, Any]) -> int:
    _, width = PCM.get(_sample_format(source), PCM["dbl"])
    channels = int(stream.get("channels") or 1)
    return sum(size for _, size, _ in hashes.frames) // (width * channels)


def _compare_content(out: _Findings, src: Description, mst: Description) -> None:
    pairs = [
        (s, m)
        for kind in ("video", "audio")
        for s, m in zip(src.streams[kind], mst.streams[kind], strict=False)
    ]
    if not pairs:
        return
    ours, theirs = _framemd5(src, pairs, 0), _framemd5(mst, pairs, 1)
    counters = {"video": 0, "audio": 0}
    starts: list[tuple[str, Fraction | None, Fraction | None, Fraction]] = []
    for (s, m), a, b in zip(pairs, ours, theirs, strict=True):
        kind = s["codec_type"]
        where = f"{kind} {counters[kind]}"
        counters[kind] += 1
        tolerance = max(min(_time_base(s), _time_base(m)), PRECISION)
        unit = "frame" if kind == "video" else "block"
        # Content, frame by frame (or block by block) where both have it.
        common = min(len(a.frames), len(b.frames))
        differing = [
            n for n in range(common)
            if a.frames[n][1:] != b.frames[n][1:]
            # A last, partial block beside a longer one is compared below, by the prefix.
            and not (kind == "audio" and n == common - 1 and a.frames[n][1] != b.frames[n][1])
        ]  # fmt: skip
        content = Kind.PICTURE if kind == "video" else Kind.SOUND
        if differing:
            first = differing[0]
            at = float((a.frames[first][0] - a.frames[0][0]) * a.time_base)
            out.add(
                content, where, f"{unit} {first} at {at:.3f} s ({len(differing)} of {common})",
                a.frames[first][2], b.frames[first][2],
            )  # fmt: skip
        # Counts.
        if kind == "video":
            out.compare(Kind.DURATION, where, "frames", len(a.frames), len(b.frames))
        else:
            count_a, count_b = _samples(a, s, s), _samples(b, s, m)
            # The source's samples as a player plays them: an MP4 edit list's end trims the
            # encoder's padding, which ffmpeg 5.1 decodes all the same.
            out.compare(
                Kind.DURATION, where, "samples", _played(src, s, count_a), _played(mst, m, count_b)
            )
            if not differing and count_a != count_b and common:
                shorter = min(count_a, count_b)
                if _prefix_md5(src.path, s, s, shorter) != _prefix_md5(mst.path, m, s, shorter):
                    out.add(content, where, f"the first {shorter} samples", "", "differ")
            _compare_declared_duration(out, where, src, s, _played(mst, m, count_b))
        # Timestamps after the stream's first.
        for n in range(1, common):
            after_a = (a.frames[n][0] - a.frames[0][0]) * a.time_base
            after_b = (b.frames[n][0] - b.frames[0][0]) * b.time_base
            if abs(after_a - after_b) > tolerance:
                out.add(
                    Kind.TIMESTAMPS, where, f"{unit} {n}: seconds after the first",
                    round(float(after_a), 6), round(float(after_b), 6),
                )  # fmt: skip
                break
        starts.append(
            (
                where,
                a.frames[0][0] * a.time_base if a.frames else None,
                b.frames[0][0] * b.time_base if b.frames else None,
                tolerance,
            )
        )
    # Each stream's start, after the first stream's.
    reference = starts[0]
    for where, start_a, start_b, tolerance in starts[1:]:
        if None in (start_a, start_b, reference[1], reference[2]):
            continue
        offset_a, offset_b = start_a - reference[1], start_b - reference[2]
        if abs(offset_a - offset_b) > max(tolerance, reference[3]):
            out.add(
                Kind.OFFSET, where, f"start after {reference[0]}'s (s)",
                round(float(offset_a), 6), round(float(offset_b), 6),
            )  # fmt: skip


def _declared_samples(description: Description, stream: dict[str, Any]) -> int | None:
    """The samples an audio stream declares it plays (its duration in a container whose
    streams declare one), or None."""
    format_name = description.probe.get("format", {}).get("format_name", "")
    declared = _declared(stream.get("duration"))
    rate = int(stream.get("sample_rate") or 0)
    if declared is None or not rate or not format_name.startswith(DECLARING_FORMATS):
        return None
    return round(Fraction(declared) * rate)


def _played(description: Description, stream: dict[str, Any], decoded: int) -> int:
    """The samples a player plays of a stream ffmpeg decodes to ``decoded`` samples: no more
    than the stream declares, where it declares (ffmpeg 5.1 applies an MP4 edit list's start,
    not its end: a copy of the source decodes to its padding too)."""
    declared = _declared_samples(description, stream)
    return decoded if declared is None else min(decoded, declared)


def _compare_declared_duration(
    out: _Findings, where: str, src: Description, source: dict[str, Any], master_samples: int
) -> None:
    """The samples a player plays of the master against the duration the source declares for
    the stream (an MP4 edit list's, which trims the encoder's priming and padding), within one
    tick of the source's time base."""
    expected = _declared_samples(src, source)
    if expected is None:
        return
    declared = source.get("duration")
    tolerance = max(1, math.ceil(_time_base(source) * int(source["sample_rate"])))
    if abs(master_samples - expected) > tolerance:
        out.add(
            Kind.DURATION, where, f"samples against the source's declared {declared} s",
            expected, master_samples,
        )  # fmt: skip


def check(source: Path, master: Path) -> list[Finding]:
    """Everything in which ``master`` differs from ``source`` (empty: nothing was lost)."""
    src, mst = describe(source), describe(master)
    out = _Findings()
    for kind in TYPES:
        out.compare(
            Kind.STREAMS, "file", f"{kind} streams", len(src.streams[kind]),
            len(mst.streams[kind]),
        )  # fmt: skip
        for number, (s, m) in enumerate(zip(src.streams[kind], mst.streams[kind], strict=False)):
            where = f"{kind} {number}"
            if kind == "video":
                _compare_video(out, where, src, s, mst, m)
            elif kind == "audio":
                _compare_audio(out, where, s, m)
            if kind != "attachment":
                _compare_tags(out, where, s, m)
        if kind != "attachment":
            _compare_mediainfo(out, kind, src, mst)
    _compare_chapters(out, src, mst)
    _compare_attachments(out, src, mst)
    _compare_content(out, src, mst)
    return out.found
