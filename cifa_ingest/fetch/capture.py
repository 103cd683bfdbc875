"""The records of a capture: each file as received (:class:`ReceivedFile`), each HTTP exchange
(:class:`HttpExchange`), each source as fetched (:class:`FetchedSource`), the whole capture
(:class:`Capture`, the bag's ``capture.json``), and what identifies a source video whatever URL
reached it (:class:`SourceKey`, :func:`source_address`: the ledger's ``source_keys``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import yt_dlp
from yt_dlp.version import __version__ as YTDLP_VERSION


@dataclass
class ReceivedFile:
    """One file as received: its name in the bag's ``original/`` folder, role, size, digests."""

    name: str
    role: str  # video+audio | video | audio | subtitle | thumbnail
    bytes: int
    sha256: str
    sha512: str
    format_id: str | None = None
    language: str | None = None
    source_url: str | None = None


#: A 206's Content-Range (RFC 9110 14.4): ``bytes 4000-9999/10000``, the whole length ``*`` where
#: the server knows none.
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$", re.IGNORECASE)


@dataclass(frozen=True)
class ContentRange:
    """The bytes a partial answer (206) carries, and the whole file's length where given."""

    start: int
    end: int
    length: int | None

    @classmethod
    def of(cls, value: str | None) -> ContentRange | None:
        """``value`` (a Content-Range header) read, or None where it is not one."""
        match = _CONTENT_RANGE.match((value or "").strip())
        if match is None:
            return None
        whole = match.group(3)
        return cls(int(match.group(1)), int(match.group(2)), None if whole == "*" else int(whole))


@dataclass
class HttpExchange:
    """One HTTP request of the capture and what the server said (its Date is the capture date)."""

    url: str
    status: int
    date: str | None
    last_modified: str | None
    content_type: str | None
    content_length: str | None
    final_url: str | None = None
    #: The server's ETag and Content-Range (None where it sent none, and in records made before
    #: they were kept): a download resumed in a later run has a 206 and no 200, and its
    #: Content-Range names the whole file's length.
    etag: str | None = None
    content_range: str | None = None


#: Extractors whose "id" is not an identity the source gives the video but the last part of its
#: address (yt-dlp's generic extractor: ``https://a.example/x/film.mp4`` is "film"), so that two
#: films of one name at two addresses would have one id. A fixed list, not a test of the id
#: against the URL: a platform's own id often is the URL's last part too (``youtu.be/<id>``,
#: ``vimeo.com/<id>``), and those keys must not change.
ADDRESS_NAMED_EXTRACTORS = frozenset({"Generic"})
#: File name extensions by which a path names a file (yt-dlp's media, manifest and subtitle
#: extensions, and pages): beside one, a query does not say which file, and is left out.
_NAMED_BY_PATH = frozenset(yt_dlp.utils.KNOWN_EXTENSIONS) | {
    "html", "htm", "xhtml", "ts", "m2ts", "mts", "mxf", "dv", "vob", "rm", "rmvb", "ogm",
}  # fmt: skip
#: Query parameters that never say which file: trackers' and click ids.
_TRACKING = re.compile(
    r"^(?:utm_\w*|fbclid|gclid|dclid|gbraid|wbraid|msclkid|yclid|igshid|mc_cid|mc_eid|_ga|_gl"
    r"|ref_src|ref_url)$",
    re.IGNORECASE,
)


def source_address(url: str) -> str:
    """A URL as the key of the file it reaches: host (lower case, without the scheme's default
    port) and path, no scheme (``http``/``https`` serve one file) and no fragment. The query is
    kept only where the path names no file of its own (``get.php?id=7``, ``watch?v=…``), without
    trackers' parameters and in a fixed order; beside a file's name (``film.mp4?from=playlist``)
    it is a playlist's, a cache's or a tracker's, and is left out."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".")
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != default:
        host = f"{host}:{port}"
    path = parts.path or "/"
    name = path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    query = ""
    if extension not in _NAMED_BY_PATH:
        kept = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING.match(k)
        ]
        query = urlencode(sorted(kept))
    return f"{host}{path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class SourceKey:
    """What identifies a source video, whatever URL reached it: the archive preserves a video
    once, and refuses a second work of the same video as a ``duplicate`` (the ledger's
    ``source_keys``), before any of its media is requested.

    The key is ``<extractor>:<id>`` where the extractor has ids of its own, as a platform does
    (``Youtube:dQw4w9WgXcQ`` from youtube.com, youtu.be or a playlist alike): those keys are the
    ones archives already hold, and stay as they are. Where the "id" is only the last part of the
    address (:data:`ADDRESS_NAMED_EXTRACTORS`: a film on its maker's own site, a direct file), the
    key is the address instead (``Generic:films.example.org/a/film.mp4``, see
    :func:`source_address`), since two different films both called ``film.mp4`` would otherwise
    be one key and the second refused. Such a source was keyed ``Generic:film`` before: that
    ``former`` key may still be in a ledger, and matches only if the work holding it was captured
    from the same address (:func:`cifa_ingest.preserve.holder_of_source`).
    """

    extractor: str
    source_id: str
    address: str | None = None  # for the address-named extractors only

    @classmethod
    def of(cls, extractor: str, source_id: str, url: str) -> SourceKey:
        """The key of the video the extractor named ``source_id``, reached at ``url``."""
        if extractor in ADDRESS_NAMED_EXTRACTORS:
            return cls(extractor, source_id, source_address(url))
        return cls(extractor, source_id)

    @classmethod
    def of_info(cls, info: dict[str, Any], url: str) -> SourceKey:
        """The key of the video yt-dlp describes in ``info`` (its page's address, else ``url``)."""
        return cls.of(
            str(info.get("extractor_key") or info.get("extractor") or "unknown"),
            str(info.get("id") or ""),
            str(info.get("webpage_url") or url),
        )

    @property
    def key(self) -> str:
        return f"{self.extractor}:{self.address if self.address else self.source_id}"

    @property
    def former(self) -> str | None:
        """The key this source had before keys held addresses (None if it is the same)."""
        return f"{self.extractor}:{self.source_id}" if self.address else None

    def __str__(self) -> str:
        return self.key


@dataclass
class FetchedSource:
    """One source (a film, or one part of a film) as fetched."""

    index: int
    url: str
    platform: str | None
    label: str | None
    extractor: str
    source_id: str
    title: str | None
    duration: float | None
    formats_chosen: list[str]
    formats_available: list[dict[str, Any]]
    files: list[ReceivedFile]
    metadata_files: list[str]
    http: list[HttpExchange]
    requests_made: int = 0
    attempts: int = 1
    #: The proof that the capture is complete: the verdict and its evidence
    #: (:class:`cifa_ingest.fetch.completeness.Verdict`); None in records made before it.
    completeness: dict[str, Any] | None = None
    http_date: str | None = None  # the server's Date when the media was sent: the capture date
    stem: str = ""  # the name of this film's (or part's) files: ours, never the source's
    #: The address in the key, for extractors whose ids are the address's last part (SourceKey).
    address: str | None = None
    #: The YouTube client the media came as (:func:`cifa_ingest.fetch.ytdlp.ytdlp_client`);
    #: None for other extractors, which have none.
    ytdlp_client: str | None = None
    #: Whether the source was fetched signed in (an operator's recorded choice: the cookies of
    #: ``[[fetch.cookies]]``), and the label of the account; never the cookies themselves.
    signed_in: bool = False
    account: str | None = None
    #: yt-dlp's warnings during this source's capture: uncoloured, scrubbed of any secret,
    #: each once, at most 50 of at most 500 characters (:func:`~.degraded.kept_warnings`).
    warnings: list[str] = field(default_factory=list)
    #: Whether the capture is degraded, and why (:class:`~.degraded.Degradation`); None in
    #: records made before it.
    degraded: dict[str, Any] | None = None

    @property
    def is_degraded(self) -> bool:
        return bool(self.degraded and self.degraded.get("degraded"))

    @property
    def identity(self) -> SourceKey:
        return SourceKey(self.extractor, self.source_id, self.address)

    @property
    def source_key(self) -> str:
        """What identifies the video at its source, whatever URL reached it (:class:`SourceKey`)."""
        return self.identity.key

    @property
    def media(self) -> list[ReceivedFile]:
        return [f for f in self.files if f.role in {"video+audio", "video", "audio"}]


@dataclass
class Capture:
    """The capture record: what was fetched, from where, when, with what, and the event."""

    work_id: str
    started: str
    finished: str = ""
    tool: str = f"yt-dlp {YTDLP_VERSION}"
    #: What yt-dlp fetched with: its version, the JavaScript runtime and the challenge solver it
    #: found (None where it found none), as yt-dlp itself says (cifa_ingest.fetch.js_runtime).
    tools: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    sources: list[FetchedSource] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["event"] = {
            "type": "capture",
            "date_time": self.finished,
            "outcome": "success",
            "detail": f"{len(self.sources)} source(s) fetched with {self.tool}, kept as received",
            "agent": self.tool,
        }
        return record

    @property
    def source_keys(self) -> list[str]:
        return [source.source_key for source in self.sources]


def captured_sources(bag_dir: Path) -> list[SourceKey]:
    """The source keys a bag's capture record names. Records made before keys held addresses
    have none: the key is then made from the source's URL, as it is for a new capture."""
    try:
        capture = json.loads((bag_dir / "metadata" / "capture.json").read_text("utf-8"))
        keys = []
        for source in capture.get("sources", []):
            extractor, source_id = str(source["extractor"]), str(source["source_id"])
            key = SourceKey.of(extractor, source_id, str(source.get("url") or ""))
            if source.get("address"):
                key = SourceKey(extractor, source_id, str(source["address"]))
            keys.append(key)
        return keys
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def captured_source_keys(bag_dir: Path) -> list[str]:
    """The source keys (:class:`SourceKey`) a bag's capture record names, so that a bag
    registered after a crash still refuses a second copy of the same video under another URL,
    and a re-capture's new source is known as the work's."""
    return [key.key for key in captured_sources(bag_dir)]
