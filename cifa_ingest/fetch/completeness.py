"""Proof that a capture is complete: the verdict on the received files of one source, with its
evidence, for ``capture.json``.

yt-dlp's exit says little: it does not check durations, and a host can send a file whose end is
missing with a Content-Length that agrees (an MP4 cut in its media data, its header promising the
whole film), or one stream of two much shorter than the other. So every received media file is
decoded, each stream to its end (ffmpeg, through :mod:`cifa_ingest.tools.runner`), and:

- each stream's decoded end must reach the duration declared for it: by its container (ffprobe),
  by the source (yt-dlp's info ``duration``) and by the other streams of the same source (the
  longest one decoded), within ``[fetch] duration_tolerance_seconds``;
- each file's size must be the size declared for it: the format's ``filesize`` or the server's
  ``Content-Length`` of a whole-file answer;
- each fragmented download (HLS, DASH) must have received the fragments its playlist lists.

A source that fails is fetched once more (:data:`ATTEMPTS`); one still short fails its work as
``incomplete``, naming what is missing ("audio ends at 0:41:07 of 1:32:10"), and nothing is
bagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.fetch.capture import ContentRange, HttpExchange, ReceivedFile
from cifa_ingest.tools import runner

#: Attempts at a source whose capture is incomplete: the first, and one more.
ATTEMPTS = 2
#: Decoding errors kept in the evidence, per file (their count is kept whole).
MAX_DECODE_ERRORS = 20
#: A full decode may take this long, plus :data:`DECODE_SECONDS_PER_SECOND` per second of film.
DECODE_BASE_SECONDS = 600.0
DECODE_SECONDS_PER_SECOND = 5.0

_MEDIA_ROLES = frozenset({"video+audio", "video", "audio"})


@dataclass
class StreamEvidence:
    """One picture or sound stream of a received file, decoded to its end."""

    index: int  # the stream's index in the file (ffprobe's)
    kind: str  # video | audio
    codec: str | None
    #: Where the container says the stream ends (seconds from the file's start), if it says.
    declared_end: float | None
    #: Where the decoded stream ends: its last frame's time and duration (None: nothing decoded).
    decoded_end: float | None
    frames: int
    #: What it should reach: the longest of its declared end, the source's declared duration and
    #: the other streams' decoded ends of the same source (set by :func:`judge`).
    expected_end: float | None = None


@dataclass
class FileEvidence:
    """One received media file: its size against the size declared, its fragments against the
    playlist's, and its streams as decoded."""

    name: str
    role: str
    bytes_received: int
    bytes_declared: int | None = None
    bytes_declared_by: str | None = (
        None  # "filesize" (the format's) | "Content-Length" | "Content-Range"
    )
    fragments_expected: int | None = None
    fragments_received: int | None = None
    decode_errors: list[str] = field(default_factory=list)
    decode_error_count: int = 0
    streams: list[StreamEvidence] = field(default_factory=list)


@dataclass
class Verdict:
    """Whether a source's capture is complete, and why: ``missing`` says, in words, what is not
    there; the files carry the evidence."""

    complete: bool
    tolerance_seconds: float
    #: The duration the source declared (yt-dlp's info ``duration``), if it did.
    source_duration: float | None
    files: list[FileEvidence]
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        del record["complete"]
        return {"verdict": "complete" if self.complete else "incomplete", **record}

    @property
    def summary(self) -> str:
        return "; ".join(self.missing) if self.missing else "complete"


def clock(seconds: float) -> str:
    """``seconds`` as H:MM:SS (0:41:07)."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


# ---------------------------------------------------------------------------------------------
# Decoding


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _declared_ends(probe: Mapping[str, Any]) -> dict[int, float | None]:
    """Per stream index, where its container says it ends, from the file's start."""
    fmt = probe.get("format") or {}
    file_start = _float(fmt.get("start_time")) or 0.0
    file_duration = _float(fmt.get("duration"))
    ends: dict[int, float | None] = {}
    for stream in probe.get("streams") or []:
        duration = _float(stream.get("duration"))
        start = _float(stream.get("start_time"))
        if duration is not None:
            begins = start if start is not None else file_start
            ends[int(stream["index"])] = begins - file_start + duration
        else:
            ends[int(stream["index"])] = file_duration
    return ends


def _decodable(probe: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The picture and sound streams of a file (a cover picture is not a stream of the film)."""
    return [
        s
        for s in probe.get("streams") or []
        if s.get("codec_type") in {"video", "audio"}
        and not (s.get("disposition") or {}).get("attached_pic")
    ]


def decode(path: Path, name: str | None = None) -> FileEvidence:
    """Decode every picture and sound stream of ``path`` to its end: where each stream ends,
    and the decoding errors. ffmpeg's ``framecrc`` lists every decoded frame's time and
    duration; a picture is passed on as a reference (``wrapped_avframe``, as ``-f null`` does),
    not copied, so a long 4K film costs its decoding and no more."""
    probe = runner.probe(path)
    streams = _decodable(probe)
    declared = _declared_ends(probe)
    evidence = FileEvidence(name=name or path.name, role="", bytes_received=path.stat().st_size)
    if not streams:
        return evidence
    longest = max((end for end in declared.values() if end is not None), default=0.0)
    maps = [arg for s in streams for arg in ("-map", f"0:{s['index']}")]
    completed = runner.run(
        [runner.executable("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
         *maps, "-fps_mode", "passthrough", "-c:v", "wrapped_avframe", "-f", "framecrc", "-"],
        timeout=DECODE_BASE_SECONDS + DECODE_SECONDS_PER_SECOND * longest,
        check=False,
    )  # fmt: skip
    time_base: dict[int, float] = {}
    ends: dict[int, float] = {}
    frames: dict[int, int] = {}
    for line in completed.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("#tb "):
            number, _, fraction = line[4:].partition(":")
            num, _, den = fraction.strip().partition("/")
            time_base[int(number)] = int(num) / int(den or 1)
            continue
        if line.startswith("#"):
            continue
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 4:
            continue
        try:
            out, pts, duration = int(fields[0]), int(fields[2]), int(fields[3])
        except ValueError:
            continue
        end = (pts + duration) * time_base.get(out, 0.0)
        ends[out] = max(ends.get(out, 0.0), end)
        frames[out] = frames.get(out, 0) + 1
    errors = [line.strip() for line in completed.stderr.decode("utf-8", "replace").splitlines()]
    errors = [line for line in errors if line]
    if completed.returncode != 0:
        errors.append(f"ffmpeg exited with {completed.returncode}")
    evidence.decode_errors = errors[:MAX_DECODE_ERRORS]
    evidence.decode_error_count = len(errors)
    for out, stream in enumerate(streams):
        index = int(stream["index"])
        evidence.streams.append(
            StreamEvidence(
                index=index,
                kind=str(stream["codec_type"]),
                codec=stream.get("codec_name"),
                declared_end=_rounded(declared.get(index)),
                decoded_end=_rounded(ends.get(out)),
                frames=frames.get(out, 0),
            )
        )
    return evidence


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---------------------------------------------------------------------------------------------
# The verdict


def declared_size(
    received: ReceivedFile, download: Mapping[str, Any] | None, exchanges: Iterable[HttpExchange]
) -> tuple[int | None, str | None]:
    """The size declared for a received file: its format's ``filesize`` (yt-dlp's, exact where
    given), else the ``Content-Length`` of the last whole-file answer (200) for its address, else
    the whole length a partial answer (206) names in its ``Content-Range`` (``bytes 4000-9999/
    10000``: a download resumed from an earlier run, :mod:`cifa_ingest.fetch.resume`, or fetched
    in chunks). A fragmented download (HLS, DASH) has no size of its own: its fragments are
    counted instead."""
    if download is None or str(download.get("protocol") or "") not in {"http", "https"}:
        return None, None
    size = download.get("filesize")
    if isinstance(size, int) and size > 0:
        return size, "filesize"
    address = download.get("url") or received.source_url
    if not address:
        return None, None
    answers = [x for x in exchanges if address in (x.url, x.final_url)]
    for exchange in reversed(answers):
        if exchange.status == 200:
            try:
                return int(exchange.content_length or ""), "Content-Length"
            except ValueError:
                return None, None
    for exchange in reversed(answers):
        if exchange.status != 206:
            continue
        sent = ContentRange.of(exchange.content_range)
        if sent is not None and sent.length is not None:
            return sent.length, "Content-Range"
    return None, None


def judge(files: list[FileEvidence], source_duration: float | None, tolerance: float) -> Verdict:
    """The verdict on the decoded files of one source."""
    verdict = Verdict(
        complete=True, tolerance_seconds=tolerance, source_duration=source_duration, files=files
    )
    for evidence in files:
        if (
            evidence.bytes_declared is not None
            and evidence.bytes_declared != evidence.bytes_received
        ):
            verdict.missing.append(
                f"{evidence.name}: {evidence.bytes_received} bytes received of"
                f" {evidence.bytes_declared} declared by the {evidence.bytes_declared_by}"
            )
        expected, received = evidence.fragments_expected, evidence.fragments_received
        if expected is not None and received is not None and received < expected:
            verdict.missing.append(
                f"{evidence.name}: {received} fragments received of the {expected} listed"
            )
        if not evidence.streams:
            verdict.missing.append(f"{evidence.name}: no picture or sound stream decodes")
        for stream in evidence.streams:
            others = [s.decoded_end or 0.0 for f in files for s in f.streams if s is not stream]
            candidates = [stream.declared_end, source_duration, max(others, default=None)]
            stream.expected_end = _rounded(max((c for c in candidates if c), default=None))
            end = stream.decoded_end or 0.0
            if stream.expected_end is not None and end < stream.expected_end - tolerance:
                verdict.missing.append(
                    f"{stream.kind} ends at {clock(end)} of {clock(round(stream.expected_end))}"
                    f" ({evidence.name})"
                )
    verdict.complete = not verdict.missing
    return verdict


def check(
    directory: Path,
    files: list[ReceivedFile],
    downloads: Mapping[str, Mapping[str, Any]],
    exchanges: Iterable[HttpExchange],
    source_duration: float | None,
    tolerance: float,
    fragments: Mapping[str, tuple[int, int]] | None = None,
) -> Verdict:
    """The verdict on the media files received for one source, in ``directory``.

    ``downloads``: yt-dlp's download record of each file, by the file's name (its ``filesize``);
    ``exchanges``: the source's HTTP log (Content-Length); ``fragments``: by name, (fragments
    received, fragments listed) of a fragmented download."""
    exchanges = list(exchanges)
    evidence = []
    for received in files:
        if received.role not in _MEDIA_ROLES:
            continue
        found = decode(directory / received.name)
        found.role = received.role
        found.bytes_declared, found.bytes_declared_by = declared_size(
            received, downloads.get(received.name), exchanges
        )
        if fragments and received.name in fragments:
            found.fragments_received, found.fragments_expected = fragments[received.name]
        evidence.append(found)
    return judge(evidence, source_duration, tolerance)
