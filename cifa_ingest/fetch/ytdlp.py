"""Fetching: the film's bytes exactly as the source sends them, with everything the source says
about it (info JSON, description, chapters, thumbnails, every subtitle track).

yt-dlp is used as a library, never through a shell, in two phases: first the metadata only
(no media byte is requested), so that the archive can refuse a source it already holds under
another URL and rename anything remote before it could become a file name; then the download of
the chosen formats, each as received: a progressive file as downloaded, separate video and audio
streams (DASH) each kept unmerged, an HLS stream as the received MPEG-TS (``fixup: never``).

Every request, redirects included, passes the archive's source policy
(:class:`cifa_ingest.fetch.source_policy.SourcePolicy`) before a connection is made, and is logged
in
the capture record with the server's ``Date``. Transient failures (connection reset, 5xx, 429 with
Retry-After) are retried with bounded backoff; permanent ones are classified (:data:`KINDS`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import yt_dlp
from yt_dlp.networking._urllib import UrllibRH
from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError
from yt_dlp.utils import GeoRestrictedError, UnsupportedError
from yt_dlp.version import __version__ as YTDLP_VERSION

from cifa_ingest import sizes
from cifa_ingest.archive import slots
from cifa_ingest.bag import fixity
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import FetchSettings
from cifa_ingest.errors import FetchError, SourcePolicyError
from cifa_ingest.fetch.source_policy import SourcePolicy
from cifa_ingest.tools import runner as ffmpeg_runner

log = logging.getLogger(__name__)

_SAFE_EXT = re.compile(r"^[a-z0-9]{1,10}$")
_SAFE_LANG = re.compile(r"^[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8}){0,3}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MAX_LOGGED_EXCHANGES = 200
#: The largest page or metadata document (HTML, JSON, XML, a playlist) read from a source. yt-dlp
#: reads such a document whole into memory (an 8 MB page took 7 s and 200 MB); a film's page is
#: kilobytes, and what it says (title, description) is kept whole in the info JSON and the capture
#: record up to this size. Media, subtitles and images are streamed to disk: not limited.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_DOCUMENT_TYPE = re.compile(
    r"^\s*(?:text/(?:html|xml|json)|application/(?:xhtml\+xml|json|xml|ld\+json"
    r"|vnd\.apple\.mpegurl|x-mpegurl|dash\+xml)|[\w.-]+/[\w.-]+\+(?:json|xml))\s*(?:;|$)",
    re.IGNORECASE,
)

#: How a failed fetch is classified (stored in the ledger with the outcome).
KINDS = {
    "not-found": "the source answers 404: no such page or file",
    "gone": "the source answers 410, or says the video was removed",
    "private": "the video is private or needs a login",
    "forbidden": "the source answers 401/403",
    "geo-blocked": "not available from the archive's country",
    "unsupported": "yt-dlp finds no film at this address",
    "refused": "the archive's source policy refused an address (host, scheme, private range)",
    "duplicate": "the same source video is already preserved under another work",
    "too-large": f"the source's page or metadata is over {MAX_DOCUMENT_BYTES // 2**20} MiB",
    "rate-limited": "429 Too Many Requests, still after every retry",
    "server-error": "5xx, still after every retry",
    "network": "connection failures, still after every retry",
    "error": "anything else",
}


# ---------------------------------------------------------------------------------------------
# The records


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
    http_date: str | None = None  # the server's Date when the media was sent: the capture date
    stem: str = ""  # the name of this film's (or part's) files: ours, never the source's
    #: The address in the key, for extractors whose ids are the address's last part (SourceKey).
    address: str | None = None

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


# ---------------------------------------------------------------------------------------------
# The policy on every request, redirects included


class SourceRefused(RequestError):
    """A request the source policy refused; raised before any connection is made."""


class _RedirectGuard(urllib.request.BaseHandler):
    """Checks a redirect's target against the policy before yt-dlp's redirect handler follows
    it (a lower handler_order runs first; returning None hands the redirect on)."""

    handler_order = 400

    def __init__(self, policy: SourcePolicy) -> None:
        self.policy = policy

    def _check(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> None:
        location = headers.get("Location") or headers.get("URI")
        if location:
            target = urljoin(req.full_url, location)
            try:
                self.policy.check(target)
            except SourcePolicyError as exc:
                raise SourceRefused(f"redirect from {req.full_url} refused: {exc}") from None

    http_error_301 = http_error_302 = http_error_303 = http_error_307 = http_error_308 = _check


def _policy_handler(policy: SourcePolicy) -> type[UrllibRH]:
    """yt-dlp's urllib request handler, with the policy applied to each request and redirect."""

    class CifaPolicyRH(UrllibRH):
        def _send(self, request: Any) -> Any:
            try:
                policy.check(request.url)
            except SourcePolicyError as exc:
                raise SourceRefused(str(exc)) from None
            return super()._send(request)

        def _create_instance(self, *args: Any, **kwargs: Any) -> Any:
            opener = super()._create_instance(*args, **kwargs)
            opener.add_handler(_RedirectGuard(policy))
            return opener

    return CifaPolicyRH


def _limit_document(response: Any) -> Any:
    """Make reading more than :data:`MAX_DOCUMENT_BYTES` of a page or metadata document raise a
    FetchError (kind ``too-large``) instead of filling memory. Other responses are untouched."""
    if not _DOCUMENT_TYPE.match(response.headers.get("Content-Type") or ""):
        return response
    url = getattr(response, "url", "")
    too_large = FetchError(
        f"{url}: the source's page is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB;"
        " refused (a film's page is kilobytes)",
        kind="too-large",
    )
    length = response.headers.get("Content-Length") or ""
    if length.isdigit() and int(length) > MAX_DOCUMENT_BYTES:
        response.close()
        raise too_large
    read = response.read
    taken = 0

    def limited(amt: int | None = None) -> bytes:
        nonlocal taken
        if amt is not None and amt >= 0:
            data = read(amt)
            taken += len(data)
        else:
            parts = []
            while taken <= MAX_DOCUMENT_BYTES and (chunk := read(1 << 20)):
                parts.append(chunk)
                taken += len(chunk)
            data = b"".join(parts)
        if taken > MAX_DOCUMENT_BYTES:
            response.close()
            raise too_large
        return data

    response.read = limited
    return response


class _ArchivalYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL whose only network path is the policy-checked handler, and which logs every
    HTTP exchange for the capture record."""

    def __init__(self, params: dict[str, Any], policy: SourcePolicy) -> None:
        self._cifa_policy = policy
        self.exchanges: list[HttpExchange] = []
        self.requests_made = 0
        super().__init__(params)

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        # Only our handler: yt-dlp would otherwise prefer `requests`, which we do not police.
        return super().build_request_director([_policy_handler(self._cifa_policy)], None)

    def urlopen(self, req: Any) -> Any:
        self.requests_made += 1
        try:
            response = super().urlopen(req)
        except HTTPError as exc:
            self._log_exchange(req, exc.response)
            raise
        self._log_exchange(req, response)
        return _limit_document(response)

    def _log_exchange(self, req: Any, response: Any) -> None:
        if len(self.exchanges) >= _MAX_LOGGED_EXCHANGES:
            return
        url = req if isinstance(req, str) else getattr(req, "url", str(req))
        headers = response.headers
        final = getattr(response, "url", None)
        self.exchanges.append(
            HttpExchange(
                url=url,
                status=int(getattr(response, "status", 0) or 0),
                date=headers.get("Date"),
                last_modified=headers.get("Last-Modified"),
                content_type=headers.get("Content-Type"),
                content_length=headers.get("Content-Length"),
                final_url=final if final and final != url else None,
            )
        )


# ---------------------------------------------------------------------------------------------
# Failures


@dataclass(frozen=True)
class Problem:
    kind: str
    transient: bool
    retry_after: float | None = None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (yt-dlp nests errors several levels deep)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            stack.append(exc_info[1])
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException):
            stack.append(cause)
        stack.extend([current.__cause__, current.__context__])


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


_MESSAGE_KINDS = [
    (re.compile(r"private video|sign in to confirm|members-only|login required", re.I), "private"),
    (re.compile(r"not available in your country|geo.?restrict|geo.?block", re.I), "geo-blocked"),
    (
        re.compile(
            r"has been removed|video unavailable|account .* terminated|no longer available", re.I
        ),
        "gone",
    ),
    (re.compile(r"unsupported url", re.I), "unsupported"),
]


def classify(exc: BaseException) -> Problem:
    """Which kind of failure ``exc`` is, and whether trying again may help."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, SourceRefused | SourcePolicyError):
            return Problem("refused", transient=False)
        if isinstance(cause, FetchError) and cause.kind != "error":
            return Problem(cause.kind, transient=False)
    for cause in causes:
        if isinstance(cause, HTTPError):
            status = cause.status
            if status == 404:
                return Problem("not-found", transient=False)
            if status == 410:
                return Problem("gone", transient=False)
            if status in (401, 403):
                return Problem("forbidden", transient=False)
            if status == 429:
                retry_after = _retry_after(cause.response.headers.get("Retry-After"))
                return Problem("rate-limited", transient=True, retry_after=retry_after)
            if 500 <= status < 600:
                retry_after = _retry_after(cause.response.headers.get("Retry-After"))
                return Problem("server-error", transient=True, retry_after=retry_after)
    for cause in causes:
        if isinstance(cause, GeoRestrictedError):
            return Problem("geo-blocked", transient=False)
        if isinstance(cause, UnsupportedError):
            return Problem("unsupported", transient=False)
    text = " ".join(str(cause) for cause in causes)
    for pattern, kind in _MESSAGE_KINDS:
        if pattern.search(text):
            return Problem(kind, transient=False)
    for cause in causes:
        if isinstance(cause, TransportError | ConnectionError | TimeoutError):
            return Problem("network", transient=True)
    return Problem("error", transient=False)


def _error_text(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    text = re.sub(r" \(caused by .*\)$", "", text)
    return text.removeprefix("ERROR: ").strip() or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Politeness: one download per host at a time, a pause between downloads


def host_slot(
    url: str, settings: FetchSettings, locks_dir: Path | None, holder: str
) -> contextlib.AbstractContextManager[object]:
    """The download slot of ``url``'s host: one download at a time from one host, and
    ``pause_seconds`` between two, over every thread, process and machine sharing ``locks_dir``
    (the archive's ``locks/``; without an archive, this user's on this machine). See
    :mod:`cifa_ingest.archive.slots`."""
    host = urlsplit(url).hostname or ""
    return slots.download_slot(
        locks_dir or slots.default_locks_dir(), host, settings.pause_seconds, holder
    )


# ---------------------------------------------------------------------------------------------
# yt-dlp, in two phases


class _YtdlpLogger:
    """yt-dlp's messages go to our log, not to the terminal."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        text = _ANSI.sub("", msg)
        # Expected for filmmakers' own sites, which have no extractor of their own.
        level = (
            logging.DEBUG
            if "Falling back on generic information extractor" in text
            else logging.INFO
        )
        log.log(level, "yt-dlp warning: %s", text)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", _ANSI.sub("", msg))


class _Progress:
    """A progress hook that shows bytes, speed and ETA every few seconds."""

    def __init__(self, label: str, interval: float) -> None:
        self.label, self.interval, self._last = label, interval, 0.0

    def __call__(self, status: dict[str, Any]) -> None:
        now = time.monotonic()
        if status.get("status") == "finished":
            log.info("%s: received %s", self.label, _human(status.get("total_bytes")))
            return
        if status.get("status") != "downloading" or now - self._last < self.interval:
            return
        self._last = now
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        speed, eta = status.get("speed"), status.get("eta")
        parts = [_human(done) + (f" of {_human(total)}" if total else "")]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        if speed:
            parts.append(f"{_human(speed)}/s")
        if eta is not None:
            parts.append(f"ETA {dt.timedelta(seconds=int(eta))}")
        log.info("%s: %s", self.label, ", ".join(parts))


def _human(count: float | None) -> str:
    return sizes.decimal(count) if count else "0 B"


def ytdlp_params(settings: FetchSettings, directory: Path, stem: str) -> dict[str, Any]:
    """The YoutubeDL options for one source; recorded in the capture record too."""
    params: dict[str, Any] = {
        "format": settings.format,
        "format_sort": list(settings.format_sort),
        "outtmpl": {
            "default": f"{stem}.%(ext)s",
            "infojson": stem,
            "description": stem,
            "subtitle": f"{stem}.%(ext)s",
            "thumbnail": f"{stem}.%(ext)s",
        },
        "paths": {"home": str(directory), "temp": str(directory)},
        "writeinfojson": True,
        "writedescription": True,
        "writesubtitles": settings.subtitles,
        "writeautomaticsub": settings.auto_subtitles,
        "subtitleslangs": ["all"],
        "write_all_thumbnails": settings.thumbnails,
        "noplaylist": True,
        "fixup": "never",
        "restrictfilenames": True,
        "updatetime": False,
        "continuedl": True,
        "nopart": False,
        "socket_timeout": settings.socket_timeout_seconds,
        "retries": settings.retries,
        "fragment_retries": settings.fragment_retries,
        "skip_unavailable_fragments": False,
        "cachedir": False,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": _YtdlpLogger(),
    }
    if settings.rate_limit:
        from yt_dlp.utils import parse_bytes

        params["ratelimit"] = parse_bytes(settings.rate_limit)
    return params


def _make_remote_names_safe(info: dict[str, Any]) -> dict[str, str]:
    """Rename subtitle languages and thumbnail ids that are not plain codes, since yt-dlp puts
    them into file names; returns {name used: name the source gave}."""
    renamed: dict[str, str] = {}
    for key in ("subtitles", "automatic_captions"):
        tracks = info.get(key) or {}
        safe: dict[str, Any] = {}
        for index, (lang, formats) in enumerate(tracks.items()):
            name = lang if _SAFE_LANG.match(str(lang)) else f"lang{index:02d}"
            renamed[name] = str(lang)
            for fmt in formats:
                if not _SAFE_EXT.match(str(fmt.get("ext", ""))):
                    fmt["ext"] = "sub"
            safe[name] = formats
        info[key] = safe
    for index, thumbnail in enumerate(info.get("thumbnails") or []):
        thumbnail["id"] = str(index)
    return renamed


def _media_role(path: Path) -> str:
    """What a received media file holds, read from the file itself (a source's own labels of
    its formats are often wrong: an HLS variant lists the codecs of its audio group too)."""
    kinds = {s.get("codec_type") for s in ffmpeg_runner.probe(path).get("streams", [])}
    if "video" in kinds and "audio" in kinds:
        return "video+audio"
    if "video" in kinds:
        return "video"
    if "audio" in kinds:
        return "audio"
    raise FetchError(f"{path.name}: the received file holds neither picture nor sound")


def _available_formats(info: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("format_id", "ext", "protocol", "vcodec", "acodec", "width", "height", "fps", "tbr")
    return [
        {k: fmt.get(k) for k in keys if fmt.get(k) is not None} for fmt in info.get("formats") or []
    ]


def _is_mpeg_ts(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(188 * 2 + 1)
    return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47


def _received(path: Path, role: str, **extra: Any) -> ReceivedFile:
    found = fixity.digest_file(path, ["sha256", "sha512"])
    return ReceivedFile(
        name=path.name,
        role=role,
        bytes=found.size,
        sha256=found.digests["sha256"],
        sha512=found.digests["sha512"],
        **extra,
    )


def _inside(path: Path, directory: Path) -> Path:
    resolved = path.resolve()
    if resolved.parent != directory.resolve():
        raise FetchError(f"refusing unexpected download path {path.name!r}")
    return resolved


def _download_once(
    url: str,
    directory: Path,
    stem: str,
    settings: FetchSettings,
    policy: SourcePolicy,
    check_source: Callable[[SourceKey], None],
    label: str,
) -> tuple[dict[str, Any], list[ReceivedFile], list[HttpExchange], int]:
    directory = directory.absolute()
    params = ytdlp_params(settings, directory, stem)
    params["progress_hooks"] = [_Progress(label, settings.progress_interval_seconds)]
    ydl = _ArchivalYoutubeDL(params, policy)
    with ydl:
        info = ydl.extract_info(url, download=False)  # metadata only: no media byte yet
        if info is None or info.get("_type", "video") != "video":
            kind = (info or {}).get("_type", "nothing")
            raise FetchError(f"{url}: is a {kind}, not a single video", kind="unsupported")
        check_source(SourceKey.of_info(info, url))
        renamed_languages = _make_remote_names_safe(info)
        chosen = info.get("requested_formats") or [info]
        if len(chosen) > 1:
            # Download each stream as its own file, as received; merging is a derived step.
            ydl.params["format"] = ",".join(str(f["format_id"]) for f in chosen)
            ydl.format_selector = ydl.build_format_selector(ydl.params["format"])
            ydl.params["outtmpl"]["default"] = f"{stem}.f%(format_id)s.%(ext)s"
            for key in ("requested_formats", "format_id", "requested_downloads"):
                info.pop(key, None)
        info = ydl.process_ie_result(info, download=True)
        info = ydl.sanitize_info(info)
    files: list[ReceivedFile] = []
    downloads = info.get("requested_downloads") or []
    for number, download in enumerate(downloads, start=1):
        path = _inside(Path(download["filepath"]), directory)
        # Named by content: HLS received as MPEG-TS is kept, and named, as .ts.
        ext = "ts" if _is_mpeg_ts(path) else path.suffix[1:]
        if not _SAFE_EXT.match(ext):
            raise FetchError(f"{url}: refusing unexpected file type {ext!r}")
        name = f"{stem}.{ext}" if len(downloads) == 1 else f"{stem}.stream-{number}.{ext}"
        target = directory / name
        path.rename(target)
        files.append(
            _received(
                target,
                _media_role(target),
                format_id=download.get("format_id") or info.get("format_id"),
                source_url=download.get("url"),
            )
        )
    for lang, track in (info.get("requested_subtitles") or {}).items():
        if track.get("filepath"):
            path = _inside(Path(track["filepath"]), directory)
            files.append(
                _received(
                    path,
                    "subtitle",
                    language=renamed_languages.get(lang, lang),
                    source_url=track.get("url"),
                )
            )
    for thumbnail in info.get("thumbnails") or []:
        if thumbnail.get("filepath"):
            path = _inside(Path(thumbnail["filepath"]), directory)
            files.append(_received(path, "thumbnail", source_url=thumbnail.get("url")))
    if not any(f.role in {"video+audio", "video", "audio"} for f in files):
        raise FetchError(f"{url}: nothing was downloaded")
    return info, files, ydl.exchanges, ydl.requests_made


def _with_retries(
    url: str, label: str, settings: FetchSettings, attempt_once: Callable[[], Any]
) -> tuple[Any, int]:
    """Run ``attempt_once`` until it succeeds, retrying transient failures with bounded
    backoff (or the server's Retry-After); permanent failures raise a classified FetchError.
    Returns (result, attempts)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return attempt_once(), attempt
        except (yt_dlp.utils.YoutubeDLError, RequestError, FetchError, OSError) as exc:
            problem = classify(exc)
            message = exc.message if isinstance(exc, FetchError) else f"{url}: {_error_text(exc)}"
            if not problem.transient or attempt >= settings.transient_attempts:
                raise FetchError(message, kind=problem.kind) from None
            wait = settings.backoff_seconds * 2 ** (attempt - 1)
            if problem.retry_after is not None:
                wait = problem.retry_after
            wait = min(wait, settings.max_wait_seconds)
            log.info("%s: %s (%s); trying again in %.0f s", label, problem.kind, message, wait)
            time.sleep(wait)


def fetch_source(
    url: str,
    directory: Path,
    stem: str,
    settings: FetchSettings,
    policy: SourcePolicy,
    check_source: Callable[[SourceKey], None] = lambda key: None,
    label: str = "",
    locks_dir: Path | None = None,
) -> tuple[dict[str, Any], list[ReceivedFile], list[HttpExchange], int, int]:
    """Fetch one URL into ``directory``: media, subtitles and thumbnails named ``<stem>…``.

    ``check_source(key)`` runs after the metadata is known and before any media byte is
    requested, with the video's :class:`SourceKey`; it raises to refuse the source.
    ``locks_dir`` holds the host's download slot (:func:`host_slot`). Returns (info, files,
    HTTP log, requests, attempts).
    """

    def attempt_once() -> tuple[dict[str, Any], list[ReceivedFile], list[HttpExchange], int]:
        with host_slot(url, settings, locks_dir, label or stem):
            return _download_once(
                url, directory, stem, settings, policy, check_source, label or stem
            )

    (info, files, exchanges, requests), attempts = _with_retries(
        url, label or stem, settings, attempt_once
    )
    return info, files, exchanges, requests, attempts


def probe_source(url: str, settings: FetchSettings, policy: SourcePolicy) -> dict[str, Any]:
    """What the source says about ``url`` now, metadata only: no media byte is requested and
    nothing is written. Raises a classified FetchError (gone, private, geo-blocked, …)."""
    params = ytdlp_params(settings, Path("."), "probe")
    for key in ("writeinfojson", "writedescription", "writesubtitles", "write_all_thumbnails"):
        params[key] = False

    def attempt_once() -> dict[str, Any]:
        with _ArchivalYoutubeDL(params, policy) as ydl:
            info = ydl.extract_info(url, download=False)
            if info is None or info.get("_type", "video") != "video":
                raise FetchError(f"{url}: no single video here any more", kind="unsupported")
            return ydl.sanitize_info(info)

    info, _attempts = _with_retries(url, url, settings, attempt_once)
    return info


def fetch_work(
    work: Work,
    original_dir: Path,
    metadata_dir: Path,
    settings: FetchSettings,
    *,
    allow_private_sources: bool,
    check_source: Callable[[SourceKey], None] = lambda key: None,
    locks_dir: Path | None = None,
) -> Capture:
    """Fetch every source of ``work``, in order: media, subtitles and thumbnails into
    ``original_dir``, the info JSON and description into ``metadata_dir``. Permission and the
    source policy are checked before any request. ``locks_dir``: where the download slots of the
    hosts are held (the archive's ``locks/``)."""
    if not work.may_be_fetched:
        raise FetchError(f"{work.id}: permission does not allow fetching", kind="refused")
    policy = SourcePolicy.of(settings, allow_private_sources)
    urls = [source.url for source in work.sources if source.url]
    for url in urls:
        try:
            policy.check(url)
        except SourcePolicyError as exc:
            raise FetchError(str(exc), kind="refused") from None

    original_dir.mkdir(parents=True, exist_ok=True)
    metadata_dir.mkdir(parents=True, exist_ok=True)
    capture = Capture(work_id=work.id, started=_utc_now())
    seen: dict[str, int] = {}
    for index, source in enumerate(work.sources, start=1):
        assert source.url is not None
        stem = work.id if len(work.sources) == 1 else f"{work.id}-part-{index:02d}"

        def check(key: SourceKey, index: int = index) -> None:
            if key.key in seen:
                raise FetchError(
                    f"{work.id}: part {index} is the same video as part {seen[key.key]} ({key})",
                    kind="duplicate",
                )
            check_source(key)
            seen[key.key] = index

        capture.options = {
            k: v
            for k, v in ytdlp_params(settings, original_dir, stem).items()
            if k not in {"logger", "paths"}
        }
        log.info("%s: fetching %s", work.id, source.url)
        info, files, exchanges, requests, attempts = fetch_source(
            source.url, original_dir, stem, settings, policy, check, label=stem, locks_dir=locks_dir
        )
        identity = SourceKey.of_info(info, source.url)
        metadata_files = []
        for suffix in (".info.json", ".description"):
            written = original_dir / f"{stem}{suffix}"
            if written.is_file():
                written.replace(metadata_dir / written.name)
                metadata_files.append(written.name)
        capture.sources.append(
            FetchedSource(
                index=index,
                url=source.url,
                platform=source.platform,
                label=source.label,
                extractor=identity.extractor,
                source_id=identity.source_id,
                title=info.get("title"),
                duration=info.get("duration"),
                formats_chosen=[f.format_id for f in files if f.format_id],
                formats_available=_available_formats(info),
                files=files,
                metadata_files=metadata_files,
                http=exchanges,
                requests_made=requests,
                attempts=attempts,
                http_date=next(
                    (x.date for x in reversed(exchanges) if x.date and x.status < 400), None
                ),
                stem=stem,
                address=identity.address,
            )
        )
    capture.finished = _utc_now()
    return capture


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
