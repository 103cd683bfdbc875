"""The proof that a master is lossless: frame-by-frame hashes of the decoded source and of the
decoded master, video and audio, compared in full.

ffmpeg's ``framemd5`` muxer writes one line per frame: stream, dts, pts, duration, size, MD5 of the
frame's bytes. Video is hashed as raw frames in the source's pixel format; audio as PCM in the
source's decoded sample format, re-chunked into blocks of 1024 samples (``asetnsamples``), since a
decoder's frame sizes depend on the codec, not on the sound. For a remux the packets themselves are
hashed. The whole lists are compared, lengths included: comparing with ``zip()`` would miss frames
lost at the end. Both lists are stored in the bag as the certificate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.errors import ProofFailed
from cifa_ingest.normalise.format_policy import Action

#: "JPEG" pixel formats (full range, common in phones' videos), which FFV1 does not take: the same
#: bytes as the plain format with full range. Without care ffmpeg converts them to limited range,
#: changing every pixel (the proof caught that); normalise keeps them, and hashes see the same.
FULL_RANGE_FORMATS = {
    "yuvj420p": "yuv420p",
    "yuvj422p": "yuv422p",
    "yuvj444p": "yuv444p",
    "yuvj440p": "yuv440p",
    "yuvj411p": "yuv411p",
}
#: Reinterpret a full-range "JPEG" format as its plain twin, without touching a value.
KEEP_FULL_RANGE = "scale=in_range=pc:out_range=pc,format={}"

__all__ = ["HashPlan", "Proof", "ProofFailed", "compare", "same_packets"]

#: Decoded sample format -> the PCM codec that holds those samples unchanged.
PCM_OF = {
    "s16": "pcm_s16le",
    "s16p": "pcm_s16le",
    "s32": "pcm_s32le",
    "s32p": "pcm_s32le",
    "flt": "pcm_f32le",
    "fltp": "pcm_f32le",
    "dbl": "pcm_f64le",
    "dblp": "pcm_f64le",
    "u8": "pcm_u8",
    "u8p": "pcm_u8",
}
AUDIO_BLOCK = 1024


@dataclass(frozen=True)
class HashPlan:
    """How both sides are hashed, fixed by the *source*, so that the master's decode is turned
    into exactly the representation the source's was.

    ``declared_samples``, per audio stream, is the number of samples the source declares it
    plays, where its container declares one (:meth:`declared`): an MP4's edit list trims the
    encoder's priming and padding, and ffmpeg 5.1 applies the trim's start but not its end, so
    the source's decode is cut there (``atrim``) as the master's encode is. Only the source's:
    the master's decode is hashed whole, so that a master holding more is caught."""

    method: str
    options: dict[str, Any]
    declared_samples: tuple[int | None, ...] = ()

    #: Containers whose streams declare their own duration in their index (ISO BMFF and
    #: QuickTime, where an edit list gives it); elsewhere ffprobe estimates a duration, or has
    #: none (Matroska, whose decoders apply its DiscardPadding themselves).
    DECLARING_FORMATS = ("mov,mp4",)

    @classmethod
    def declared(cls, probe: dict[str, Any], stream: dict[str, Any]) -> int | None:
        """The samples an audio stream of ``probe`` declares it plays (its duration in its
        container's index, in samples), or None where its container declares none."""
        format_name = str(probe.get("format", {}).get("format_name", ""))
        duration, time_base = stream.get("duration_ts"), stream.get("time_base")
        rate = int(stream.get("sample_rate") or 0)
        if not format_name.startswith(cls.DECLARING_FORMATS) or not duration or not time_base:
            return None
        if not rate or int(duration) <= 0:
            return None
        return round(int(duration) * Fraction(str(time_base)) * rate)

    @classmethod
    def audio_ends(cls, probes: list[dict[str, Any]]) -> list[int | None]:
        """:meth:`declared` for every audio stream across the inputs, in their order."""
        return [
            cls.declared(probe, stream)
            for probe in probes
            for stream in probe.get("streams", [])
            if stream.get("codec_type") == "audio"
        ]

    @classmethod
    def for_action(cls, action: Action, probes: list[dict[str, Any]]) -> HashPlan:
        if action is Action.REMUX:
            return cls("packets (framemd5 of the copied streams)", {"c": "copy"})
        streams = [s for p in probes for s in p.get("streams", [])]
        video = [
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ]
        audio = [s for s in streams if s.get("codec_type") == "audio"]
        # The input's time base, not 1/frame rate: variable frame rates stay exact in the lists.
        options: dict[str, Any] = {"fps_mode": "passthrough", "enc_time_base:v": "-1"}
        for index, stream in enumerate(video):
            options[f"c:v:{index}"] = "rawvideo"
            options[f"pix_fmt:v:{index}"] = stream.get("pix_fmt")
            plain = FULL_RANGE_FORMATS.get(stream.get("pix_fmt", ""))
            if plain:  # the same bytes, named as the master names them (see normalise)
                options[f"pix_fmt:v:{index}"] = plain
                options[f"filter:v:{index}"] = KEEP_FULL_RANGE.format(plain)
        for index, stream in enumerate(audio):
            options[f"c:a:{index}"] = PCM_OF.get(stream.get("sample_fmt", ""), "pcm_f64le")
            options[f"filter:a:{index}"] = f"asetnsamples=n={AUDIO_BLOCK}:p=0"
        return cls(
            "decoded frames (framemd5: raw video, PCM audio in 1024-sample blocks)",
            options,
            tuple(cls.audio_ends(probes)),
        )

    def output(self, streams: list[Any], target: Path, *, source: bool = False) -> Any:
        """The hashes of ``streams``: the source's (``source``), each audio stream cut where
        the source declares its end, or the master's, whole."""
        options = dict(self.options)
        if source:
            for index, end in enumerate(self.declared_samples):
                if end is not None:
                    options[f"filter:a:{index}"] = (
                        f"atrim=end_sample={end},{options[f'filter:a:{index}']}"
                    )
        return ffmpeg.output(*streams, str(target), f="framemd5", **options)


@dataclass
class StreamHashes:
    kind: str
    time_base: Fraction
    frames: list[tuple[int, int, str]] = field(default_factory=list)  # pts, size, md5


def read_framemd5(path: Path) -> dict[int, StreamHashes]:
    """Parse a framemd5 file into its streams."""
    streams: dict[int, StreamHashes] = {}
    kinds: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#tb "):
            index, value = line[4:].split(":", 1)
            streams[int(index)] = StreamHashes("", Fraction(value.strip()))
        elif line.startswith("#media_type "):
            index, value = line[12:].split(":", 1)
            kinds[int(index)] = value.strip()
        elif line and not line.startswith("#"):
            fields = [part.strip() for part in line.split(",")]
            streams[int(fields[0])].frames.append((int(fields[2]), int(fields[4]), fields[5]))
    for number, kind in kinds.items():
        streams[number].kind = kind
    return streams


@dataclass
class Proof:
    """The outcome of a comparison, stored in the bag's normalisation record."""

    method: str
    passed: bool
    streams: list[dict[str, Any]]
    first_difference: str | None
    source_hashes: str
    master_hashes: str
    #: How the master's hashes are tied to the master file, where they were taken from the
    #: encoder's output as it was written (:func:`same_packets`), not from the file read back.
    binding: str | None = None
    #: The ffmpeg command line that made the master's hashes (the source's are made by the
    #: command of the master itself, in the renditions).
    master_hashes_command: list[str] | None = None

    @property
    def summary(self) -> str:
        counts = ", ".join(f"{s['kind']} {s['source_frames']}" for s in self.streams)
        return f"{counts} frames identical" if self.passed else str(self.first_difference)


def _unit(kind: str) -> str:
    return "block" if kind == "audio" else "frame"


def _tolerance(source: StreamHashes, master: StreamHashes) -> Fraction:
    """How far two presentation times may differ and still be the same time: the coarser time
    base (a Matroska master counts in milliseconds), and never less than 1.5 ms."""
    return max(Fraction(3, 2000), source.time_base, master.time_base)


def _start(stream: StreamHashes) -> Fraction:
    """The stream's first presentation time, in seconds from its file's container start (the
    earliest, not the first listed: packets are listed in decoding order). 0 for no frame."""
    return min((pts for pts, _, _ in stream.frames), default=0) * stream.time_base


def _difference(index: int, source: StreamHashes, master: StreamHashes) -> str | None:
    """The first frame at which two streams differ, described for a conservator.

    Presentation times are compared *relative to each stream's first frame*: where a file's
    timestamps count from is the container's business, not the film's. Opus's pre-skip moves a
    WebM's start to -7 ms, which its Matroska master starts at 0; Matroska's muxer moves a stream
    that starts before zero (B-frames) so that it starts at zero. Neither changes a picture or a
    sound, or when one comes after another. Whether picture and sound still start together is
    :func:`_misaligned`'s question. The times named in a failure are from each file's own
    container start, as a player shows them.
    """
    unit = _unit(source.kind)
    tolerance = _tolerance(source, master)
    source_start, master_start = _start(source), _start(master)
    for number, (ours, theirs) in enumerate(zip(source.frames, master.frames, strict=False)):
        at = float(ours[0] * source.time_base)
        if ours[1:] != theirs[1:]:
            return f"stream {index} ({source.kind}) {unit} {number} at {at:.3f} s: content differs"
        ours_after = ours[0] * source.time_base - source_start
        theirs_after = theirs[0] * master.time_base - master_start
        if abs(ours_after - theirs_after) > tolerance:
            later = float(theirs[0] * master.time_base)
            return (
                f"stream {index} ({source.kind}) {unit} {number}:"
                f" at {at:.3f} s in the source, {later:.3f} s in the master"
                f" ({float(ours_after):.3f} s and {float(theirs_after):.3f} s after the"
                f" stream's first {unit})"
            )
    if len(source.frames) != len(master.frames):
        first_missing = min(len(source.frames), len(master.frames))
        return (
            f"stream {index} ({source.kind}): the source has {len(source.frames)} {unit}s, the"
            f" master {len(master.frames)}; they differ from {unit} {first_missing}"
        )
    return None


def _misaligned(source: dict[int, StreamHashes], master: dict[int, StreamHashes]) -> str | None:
    """Whether the streams start at the same distance from each other in source and master.

    Each stream's first presentation time, relative to the earliest first time of all the file's
    streams, must be the same in source and master, within the tolerance. Put pairwise, as it is
    checked: every stream's start moves from source to master by the same amount, give or take
    the tolerance. A container's start offset moves every stream alike and passes; sound delayed
    against the picture (or the picture against the sound) fails, naming the two streams moved
    furthest apart.
    """
    indices = [i for i in sorted(source) if i in master and source[i].frames and master[i].frames]
    if len(indices) < 2:
        return None
    starts = {i: (_start(source[i]), _start(master[i])) for i in indices}
    moved = {i: theirs - ours for i, (ours, theirs) in starts.items()}
    least = min(indices, key=lambda i: (moved[i], i))
    most = max(indices, key=lambda i: (moved[i], -i))
    tolerance = max(_tolerance(source[i], master[i]) for i in (least, most))
    if moved[most] - moved[least] <= tolerance:
        return None
    kind, other_kind = source[most].kind, source[least].kind
    (at, later), (other_at, other_later) = starts[most], starts[least]
    return (
        f"stream {most} ({kind}) is shifted by {float(moved[most] - moved[least]):+.3f} s against"
        f" stream {least} ({other_kind}): its {_unit(kind)} 0 is at {float(at):.3f} s in the"
        f" source, {float(later):.3f} s in the master; stream {least}'s {_unit(other_kind)} 0"
        f" at {float(other_at):.3f} s and {float(other_later):.3f} s"
    )


def same_packets(decoded: Path, stored: Path) -> tuple[str | None, int]:
    """Compare two packet lists (framemd5 of ``-c copy``): the packets whose decode was hashed
    for the proof, and the packets read back from the master file. The difference is None when
    they are the same packets, headers included (time bases, codecs, extradata), and every
    packet's timestamps, size and MD5; otherwise the first difference. Then the proof, taken from
    the first, holds for the file. Also returns the number of packets.

    Read line by line, side by side: a nine-hour film's lists hold millions of lines."""
    packets = 0
    with decoded.open(encoding="utf-8") as ours, stored.open(encoding="utf-8") as theirs:
        for number, (line, other) in enumerate(itertools.zip_longest(ours, theirs), start=1):
            if line is None or other is None:
                longer = "as decoded" if other is None else "in the file"
                return f"line {number} and after only {longer}", packets
            if line != other:
                return (
                    f"line {number}: {line.rstrip()!r} as decoded, {other.rstrip()!r} in the file",
                    packets,
                )
            if line.strip() and not line.startswith("#"):
                packets += 1
    return (None if packets else "no packet was hashed"), packets


def compare(source_path: Path, master_path: Path, method: str) -> Proof:
    """Compare the full hash lists of source and master, stream by stream, lengths included:
    every frame's content, and its presentation time relative to its stream's first frame; then
    whether the streams start at the same distance from each other (:func:`_misaligned`).
    A remux's streams may start at another time than the source's (Matroska moves a stream
    that starts before zero) as any master's may: only their distance from each other counts."""
    source, master = read_framemd5(source_path), read_framemd5(master_path)
    first = None
    if sorted(source) != sorted(master):
        first = f"the source has {len(source)} streams, the master {len(master)}"
    streams = []
    for index in sorted(source):
        ours = source[index]
        theirs = master.get(index, StreamHashes(ours.kind, ours.time_base))
        streams.append(
            {
                "index": index,
                "kind": ours.kind,
                "source_frames": len(ours.frames),
                "master_frames": len(theirs.frames),
            }
        )
        if first is None:
            first = _difference(index, ours, theirs)
    if first is None:
        first = _misaligned(source, master)
    if first is None and not any(s["source_frames"] for s in streams):
        first = "no frame was hashed"
    return Proof(
        method=method,
        passed=first is None,
        streams=streams,
        first_difference=first,
        source_hashes=source_path.name,
        master_hashes=master_path.name,
    )
