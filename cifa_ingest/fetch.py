"""Fetching: the film's bytes exactly as the source sends them, with the source's own metadata.

yt-dlp is used as a library (``yt_dlp.YoutubeDL``), never through a shell. Nothing is re-encoded
or remuxed on the way in (``fixup: never``); file names are ours (``<id>.<ext>``), never the
source's title, so untrusted text cannot become a path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.version import __version__ as YTDLP_VERSION

from cifa_ingest.catalogue import Work
from cifa_ingest.config import FetchSettings
from cifa_ingest.errors import FetchError
from cifa_ingest.source_policy import check_source_allowed

log = logging.getLogger(__name__)

_SAFE_EXT = re.compile(r"^[a-z0-9]{1,10}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HASH_CHUNK = 1024 * 1024


@dataclass
class ReceivedFile:
    """One file as received: its place in the bag's ``original/`` folder, size and digests."""

    name: str
    bytes: int
    sha256: str
    sha512: str


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
    format_id: str | None
    files: list[ReceivedFile]
    info_json_name: str

    @property
    def source_key(self) -> str:
        """What identifies the video at its source, whatever URL reached it."""
        return f"{self.extractor}:{self.source_id}"


@dataclass
class Capture:
    """The capture record: what was fetched, from where, when and with what."""

    work_id: str
    started: str
    finished: str = ""
    tool: str = f"yt-dlp {YTDLP_VERSION}"
    options: dict[str, Any] = field(default_factory=dict)
    sources: list[FetchedSource] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def media_names(self) -> list[str]:
        return [f.name for source in self.sources for f in source.files]


class _YtdlpLogger:
    """yt-dlp's messages go to our log, not to the terminal."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp warning: %s", _ANSI.sub("", msg))

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", _ANSI.sub("", msg))


def _digests(path: Path) -> tuple[int, str, str]:
    sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            sha256.update(chunk)
            sha512.update(chunk)
            size += len(chunk)
    return size, sha256.hexdigest(), sha512.hexdigest()


def _stem(work: Work, index: int) -> str:
    return work.id if len(work.sources) == 1 else f"{work.id}-part-{index:02d}"


def ytdlp_params(settings: FetchSettings, directory: Path, stem: str) -> dict[str, Any]:
    """The YoutubeDL options for one source; recorded in the capture record too."""
    return {
        "format": settings.format,
        "outtmpl": {"default": f"{stem}.%(ext)s", "infojson": f"{stem}"},
        "paths": {"home": str(directory), "temp": str(directory)},
        "writeinfojson": True,
        "noplaylist": True,
        "fixup": "never",
        "restrictfilenames": True,
        "updatetime": False,
        "continuedl": True,
        "socket_timeout": settings.socket_timeout_seconds,
        "retries": settings.retries,
        "cachedir": False,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": _YtdlpLogger(),
    }


def _error_text(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    return text.removeprefix("ERROR: ").strip() or type(exc).__name__


def fetch_source(
    url: str, directory: Path, stem: str, settings: FetchSettings
) -> tuple[dict[str, Any], list[Path], Path]:
    """Download one URL into ``directory`` as ``<stem>.<ext>``; returns (info, media, info json)."""
    params = ytdlp_params(settings, directory, stem)
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=True)
            if info is None:
                raise FetchError(f"{url}: yt-dlp returned nothing")
            info = ydl.sanitize_info(info)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise FetchError(f"{url}: {_error_text(exc)}") from None
    if info.get("_type", "video") != "video":
        raise FetchError(f"{url}: is a {info.get('_type')}, not a single video")
    downloads = info.get("requested_downloads") or []
    media = [Path(d["filepath"]) for d in downloads if d.get("filepath")]
    if not media:
        raise FetchError(f"{url}: nothing was downloaded")
    for path in media:
        resolved = path.resolve()
        if resolved.parent != directory.resolve() or not _SAFE_EXT.match(resolved.suffix[1:]):
            raise FetchError(f"{url}: refusing unexpected download name {path.name!r}")
    info_json = directory / f"{stem}.info.json"
    if not info_json.is_file():
        raise FetchError(f"{url}: yt-dlp wrote no info JSON")
    return info, media, info_json


def fetch_work(
    work: Work,
    original_dir: Path,
    metadata_dir: Path,
    settings: FetchSettings,
    *,
    allow_private_sources: bool,
) -> Capture:
    """Fetch every source of ``work``: media into ``original_dir``, info JSON into
    ``metadata_dir``. Permission and address policy are checked before any request."""
    if not work.is_permitted:
        raise FetchError(f"{work.id}: permission is {work.permission.status}, not granted")
    if not work.has_source_address:
        raise FetchError(f"{work.id}: no source address")
    urls = [source.url for source in work.sources if source.url]
    for url in urls:
        check_source_allowed(url, allow_private=allow_private_sources)

    original_dir.mkdir(parents=True, exist_ok=True)
    metadata_dir.mkdir(parents=True, exist_ok=True)
    capture = Capture(work_id=work.id, started=_utc_now())
    for index, source in enumerate(work.sources, start=1):
        stem = _stem(work, index)
        params = ytdlp_params(settings, original_dir, stem)
        capture.options = {k: v for k, v in params.items() if k not in {"logger", "paths"}}
        log.info("%s: fetching %s", work.id, source.url)
        info, media, info_json = fetch_source(source.url, original_dir, stem, settings)
        info_json_name = f"{stem}.info.json"
        info_json.replace(metadata_dir / info_json_name)
        files = []
        for path in media:
            size, sha256, sha512 = _digests(path)
            files.append(ReceivedFile(name=path.name, bytes=size, sha256=sha256, sha512=sha512))
        capture.sources.append(
            FetchedSource(
                index=index,
                url=source.url,
                platform=source.platform,
                label=source.label,
                extractor=str(info.get("extractor_key") or info.get("extractor") or "unknown"),
                source_id=str(info.get("id") or ""),
                title=info.get("title"),
                format_id=info.get("format_id"),
                files=files,
                info_json_name=info_json_name,
            )
        )
    capture.finished = _utc_now()
    return capture


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
