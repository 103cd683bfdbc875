"""Fetching: the film's bytes exactly as the source sends them, with everything the source says
about it (info JSON, description, chapters, thumbnails, every subtitle track).

yt-dlp is used as a library, never through a shell, in two phases: first the metadata only
(no media byte is requested), so that the archive can refuse a source it already holds under
another URL and rename anything remote before it could become a file name; then the download of
the chosen formats, each as received: a progressive file as downloaded, separate video and audio
streams (DASH) each kept unmerged, an HLS stream as the received MPEG-TS (``fixup: never``).

Every request, redirects included, passes the archive's source policy
(:class:`cifa_ingest.fetch.source_policy.SourcePolicy`, applied by
:mod:`cifa_ingest.fetch.request_policy`) before a connection is made, and is logged in the
capture record (:mod:`cifa_ingest.fetch.capture`) with the server's ``Date``. Transient failures
(connection reset, 5xx, 429 with Retry-After) are retried with bounded backoff; permanent ones
are classified (:class:`cifa_ingest.fetch.failures.FetchErrorKind`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yt_dlp
from yt_dlp.networking import Request
from yt_dlp.networking.exceptions import HTTPError, RequestError

from cifa_ingest import sizes
from cifa_ingest.archive import slots
from cifa_ingest.bag import fixity
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import FetchSettings
from cifa_ingest.errors import FetchError, SourcePolicyError
from cifa_ingest.fetch import js_runtime, signin
from cifa_ingest.fetch.capture import Capture, FetchedSource, HttpExchange, ReceivedFile, SourceKey
from cifa_ingest.fetch.completeness import ATTEMPTS as INCOMPLETE_ATTEMPTS
from cifa_ingest.fetch.completeness import Verdict
from cifa_ingest.fetch.completeness import check as check_completeness
from cifa_ingest.fetch.degraded import MAX_WARNINGS, assess, kept_warnings
from cifa_ingest.fetch.failures import (
    FetchErrorKind,
    classify,
    error_text,
    media_refused,
    uncoloured,
)
from cifa_ingest.fetch.request_policy import limit_document, policy_handler
from cifa_ingest.fetch.resume import Partials, SourceResume
from cifa_ingest.fetch.source_policy import SourcePolicy
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)

_SAFE_EXT = re.compile(r"^[a-z0-9]{1,10}$")
_SAFE_LANG = re.compile(r"^[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8}){0,3}$")
_MAX_LOGGED_EXCHANGES = 200


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
    """yt-dlp's messages go to our log, not to the terminal; ``scrub`` takes the secrets of a
    signed-in fetch out of them (:meth:`cifa_ingest.fetch.signin.SignIn.scrub`). Its warnings,
    uncoloured and scrubbed, are also kept in ``warnings`` when given (capture.json's)."""

    def __init__(
        self, scrub: Callable[[str], str] | None = None, warnings: list[str] | None = None
    ) -> None:
        self.scrub = scrub or signin.SignIn().scrub
        self.warnings = warnings

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", self.scrub(msg))

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", self.scrub(msg))

    def warning(self, msg: str) -> None:
        text = self.scrub(uncoloured(msg))
        # Expected for filmmakers' own sites, which have no extractor of their own.
        level = (
            logging.DEBUG
            if "Falling back on generic information extractor" in text
            else logging.INFO
        )
        log.log(level, "yt-dlp warning: %s", text)
        if self.warnings is not None and len(self.warnings) < 10 * MAX_WARNINGS:
            self.warnings.append(text.removeprefix("WARNING: "))

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", self.scrub(uncoloured(msg)))


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


class _FragmentTally:
    """A progress hook that counts the fragments of each fragmented download (HLS, DASH): the
    ones received and the ones the playlist lists, by the file yt-dlp writes."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}  # file: (received, listed)
        self.finished: set[str] = set()

    def __call__(self, status: dict[str, Any]) -> None:
        name = str(status.get("filename") or "")
        if status.get("status") == "finished":
            self.finished.add(name)
            return
        listed, index = status.get("fragment_count"), status.get("fragment_index")
        if isinstance(listed, int) and isinstance(index, int):
            received = max(index, self.counts.get(name, (0, 0))[0])
            self.counts[name] = (received, listed)

    def unfinished(self) -> tuple[int, int] | None:
        """(fragments received, listed) of a fragmented download that stopped short."""
        for name, (received, listed) in self.counts.items():
            if name not in self.finished and received < listed:
                return received, listed
        return None


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
        # YouTube's JavaScript challenges: the project's Deno, by path, and no remote code.
        **js_runtime.ytdlp_params(settings),
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
    kinds = {s.get("codec_type") for s in runner.probe(path).get("streams", [])}
    if "video" in kinds and "audio" in kinds:
        return "video+audio"
    if "video" in kinds:
        return "video"
    if "audio" in kinds:
        return "audio"
    raise FetchError(f"{path.name}: the received file holds neither picture nor sound")


def ytdlp_client(info: dict[str, Any]) -> str | None:
    """The YouTube client whose answer gave the media downloaded, as far as yt-dlp's info says:
    yt-dlp's own name of it where a format carries one (``_client``), else the client name
    YouTube wrote into the media's address (its ``c`` parameter, e.g. ``ANDROID_VR``). Several,
    joined by ", ", when the streams came from different clients; None for every other
    extractor (a filmmaker's site, a plain file), which has no clients, and wherever neither
    says: never guessed."""
    if str(info.get("extractor_key") or "") != "Youtube":
        return None
    found: list[str] = []
    downloads = info.get("requested_downloads") or []
    for download in downloads:
        name = download.get("_client")
        if not name:
            # One format: yt-dlp's record of the download has no address; the info's is it.
            url = download.get("url") or (info.get("url") if len(downloads) == 1 else None)
            query = dict(parse_qsl(urlsplit(str(url or "")).query))
            name = query.get("c")
        if name and str(name) not in found:
            found.append(str(name))
    return ", ".join(found) or None


def _picture_height(directory: Path, files: list[ReceivedFile]) -> int | None:
    """The height of the tallest picture received (ffprobe), or None."""
    heights = [
        int(stream["height"])
        for received in files
        if received.role in {"video+audio", "video"}
        for stream in runner.probe(directory / received.name).get("streams", [])
        if stream.get("codec_type") == "video"
        and isinstance(stream.get("height"), int)
        and not (stream.get("disposition") or {}).get("attached_pic")  # cover art
    ]
    return max(heights, default=None)


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


class _ArchivalYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL whose only network path is the policy-checked handler, and which logs every
    HTTP exchange for the capture record. ``resume``: a source's resume across runs, which adds
    ``If-Range`` to the Range requests of a kept partial put back and reads every response's
    validators (:class:`cifa_ingest.fetch.resume.SourceResume`)."""

    def __init__(
        self, params: dict[str, Any], policy: SourcePolicy, resume: SourceResume | None = None
    ) -> None:
        self._cifa_policy = policy
        self._cifa_resume = resume
        self.exchanges: list[HttpExchange] = []
        self.requests_made = 0
        super().__init__(params)

    def sanitize_info(self, info_dict: Any, remove_private_keys: bool = False) -> Any:
        # The info JSON yt-dlp writes, and the info it gives us, without the cookies it sent.
        return signin.without_cookies(super().sanitize_info(info_dict, remove_private_keys))

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        # Only our handler: yt-dlp would otherwise prefer `requests`, which we do not police.
        return super().build_request_director([policy_handler(self._cifa_policy)], None)

    def urlopen(self, req: Any) -> Any:
        self.requests_made += 1
        resume = self._cifa_resume if isinstance(req, Request) else None
        if resume is not None:
            resume.before(req.url, req.method, req.headers)
        try:
            response = super().urlopen(req)
        except HTTPError as exc:
            self._log_exchange(req, exc.response)
            if resume is not None:
                resume.after(req.url, req.method, req.headers, exc.status, exc.response.headers)
            raise
        self._log_exchange(req, response)
        if resume is not None:
            status = int(getattr(response, "status", 0) or 0)
            resume.after(req.url, req.method, req.headers, status, response.headers)
        return limit_document(response)

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
                etag=headers.get("ETag"),
                content_range=headers.get("Content-Range"),
            )
        )


def _download_once(
    url: str,
    directory: Path,
    stem: str,
    settings: FetchSettings,
    policy: SourcePolicy,
    check_source: Callable[[SourceKey], None],
    label: str,
    tally: _FragmentTally,
    sign: signin.SignIn,
    warnings: list[str] | None = None,
    resume: SourceResume | None = None,
) -> tuple[
    dict[str, Any],
    list[ReceivedFile],
    list[HttpExchange],
    int,
    dict[str, dict[str, Any]],
    dict[str, tuple[int, int]],
]:
    """One attempt at ``url``. ``tally`` counts the fragments of fragmented downloads over the
    attempts (a second attempt resumes where the first stopped). ``resume``: the source's resume
    across runs (:mod:`cifa_ingest.fetch.resume`): after the formats are chosen and before any
    media byte is requested, a kept partial of a chosen format is put back as its ``.part``.
    Returns (info, files, HTTP log, requests, yt-dlp's record of each media file by its name,
    its fragments received and listed).
    """
    directory = directory.absolute()
    resume = resume or SourceResume(None, "", stem)
    params = ytdlp_params(settings, directory, stem)
    params["progress_hooks"] = [
        _Progress(label, settings.progress_interval_seconds),
        tally,
        resume.progress,
    ]
    params.update(_signed(settings, sign, warnings))
    ydl = _ArchivalYoutubeDL(params, policy, resume)
    with ydl:
        info = ydl.extract_info(url, download=False)  # metadata only: no media byte yet
        if info is None or info.get("_type", "video") != "video":
            kind = (info or {}).get("_type", "nothing")
            raise FetchError(
                f"{url}: is a {kind}, not a single video", kind=FetchErrorKind.UNSUPPORTED
            )
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
        if resume.partials is not None and not resume.tried:
            resume.put_back(
                _parts(ydl, info, chosen, directory),
                {str(f.get("format_id")) for f in info.get("formats") or []},
            )
        try:
            info = ydl.process_ie_result(info, download=True)
        except (yt_dlp.utils.YoutubeDLError, RequestError, OSError) as exc:
            # The metadata phase succeeded: a 401/403 of the media is a block, not a verdict.
            refused = media_refused(exc, url)
            if refused is not None:
                raise refused from exc
            # A fragment the playlist lists and the host does not give (404, …): never skipped
            # (skip_unavailable_fragments is off), and the capture is incomplete.
            short = tally.unfinished()
            if short is None or classify(exc).transient:
                raise
            received, listed = short
            raise FetchError(
                f"{url}: fragment {received + 1} of {listed} could not be fetched"
                f" ({error_text(exc).removeprefix('[download] ').removeprefix('Got error: ')})",
                kind=FetchErrorKind.INCOMPLETE,
            ) from exc
        info = ydl.sanitize_info(info)
    downloads = info.get("requested_downloads") or []
    if joined := resume.joined_versions():
        # A server that ignored If-Range appended bytes of another version: never kept.
        for download in downloads:
            if str(download.get("format_id") or info.get("format_id")) in joined:
                _inside(Path(download["filepath"]), directory).unlink(missing_ok=True)
        raise FetchError(
            f"{url}: format {', '.join(joined)} was resumed from a kept partial, but the server"
            " sent the rest with other validators (it ignored If-Range): the two would not be"
            " one file; fetched again whole",
            kind=FetchErrorKind.INCOMPLETE,
        )
    files: list[ReceivedFile] = []
    received_as: dict[str, dict[str, Any]] = {}  # yt-dlp's record of each file, by our name
    fragments: dict[str, tuple[int, int]] = {}
    for number, download in enumerate(downloads, start=1):
        path = _inside(Path(download["filepath"]), directory)
        # Named by content: HLS received as MPEG-TS is kept, and named, as .ts.
        ext = "ts" if _is_mpeg_ts(path) else path.suffix[1:]
        if not _SAFE_EXT.match(ext):
            raise FetchError(f"{url}: refusing unexpected file type {ext!r}")
        name = f"{stem}.{ext}" if len(downloads) == 1 else f"{stem}.stream-{number}.{ext}"
        target = directory / name
        if str(download["filepath"]) in tally.counts:
            fragments[name] = tally.counts[str(download["filepath"])]
        # One download: its format's address, protocol and size are the info's own.
        received_as[name] = {
            **(
                {k: info.get(k) for k in ("url", "protocol", "filesize")}
                if len(downloads) == 1
                else {}
            ),
            **{k: v for k, v in download.items() if v is not None},
        }
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
    return info, files, ydl.exchanges, ydl.requests_made, received_as, fragments


def _parts(
    ydl: yt_dlp.YoutubeDL, info: dict[str, Any], chosen: list[dict[str, Any]], directory: Path
) -> list[tuple[dict[str, Any], Path]]:
    """Each chosen format and the ``.part`` file yt-dlp will write it to (its own naming, from
    our template), checked to be a plain file of ``directory``: the format's details come from
    the source, and never make a path unchecked."""
    parts = []
    for fmt in chosen:
        name = Path(ydl.prepare_filename(info if len(chosen) == 1 else {**info, **fmt}))
        ext = name.suffix[1:]
        if not _SAFE_EXT.match(ext):
            log.info("format %s is not resumed: file type %r", fmt.get("format_id"), ext)
            continue
        parts.append((fmt, _inside(name.with_name(name.name + ".part"), directory)))
    return parts


def _signed(
    settings: FetchSettings, sign: signin.SignIn, warnings: list[str] | None = None
) -> dict[str, Any]:
    """Signed-in access in yt-dlp's options: the host's jar, the extractor arguments (a PO
    token provider's; the PO token), the logger that scrubs their secrets (and keeps yt-dlp's
    warnings in ``warnings``). Never recorded."""
    params: dict[str, Any] = {"logger": _YtdlpLogger(sign.scrub, warnings)}
    if sign.cookiefile is not None:
        params["cookiefile"] = str(sign.cookiefile)
    if args := signin.extractor_args(settings):
        params["extractor_args"] = args
    return params


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
            message = exc.message if isinstance(exc, FetchError) else f"{url}: {error_text(exc)}"
            attempts = settings.transient_attempts
            if problem.kind is FetchErrorKind.INCOMPLETE:
                attempts = min(attempts, INCOMPLETE_ATTEMPTS)  # once more, not again and again
            if not problem.transient or problem.hold_off or attempt >= attempts:
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
    private_dir: Path | None = None,
    warnings: list[str] | None = None,
    resume: SourceResume | None = None,
) -> tuple[dict[str, Any], list[ReceivedFile], list[HttpExchange], int, int, Verdict]:
    """Fetch one URL into ``directory``: media, subtitles and thumbnails named ``<stem>…``.

    ``check_source(key)`` runs after the metadata is known and before any media byte is
    requested, with the video's :class:`SourceKey`; it raises to refuse the source.
    ``locks_dir`` holds the host's download slot (:func:`host_slot`). The received media are
    proved complete (:mod:`cifa_ingest.fetch.completeness`), outside the host's slot; an
    incomplete capture is fetched once more, and if still short raises ``incomplete``.
    ``private_dir``: where a signed-in fetch's jar is kept while it lasts
    (:func:`cifa_ingest.fetch.signin.signed_in`). yt-dlp's warnings are appended to
    ``warnings``, if given. ``resume``: the source's resume across runs
    (:mod:`cifa_ingest.fetch.resume`): a kept partial is put back before the first attempt's
    download, and when every attempt has failed the source is listed in its partials'
    ``failed``, whose partial downloads the caller keeps aside (:meth:`Partials.keep_failed`).
    Returns (info, files, HTTP log, requests, attempts, the completeness verdict).
    """
    tally = _FragmentTally()
    resume = resume or SourceResume(None, "", stem)

    def attempt_once() -> tuple[
        dict[str, Any], list[ReceivedFile], list[HttpExchange], int, Verdict
    ]:
        with host_slot(url, settings, locks_dir, label or stem):
            info, files, exchanges, requests, received_as, fragments = _download_once(
                url,
                directory,
                stem,
                settings,
                policy,
                check_source,
                label or stem,
                tally,
                sign,
                warnings,
                resume,
            )
        verdict = check_completeness(
            directory,
            files,
            received_as,
            exchanges,
            _seconds(info.get("duration")),
            settings.duration_tolerance_seconds,
            fragments,
        )
        if not verdict.complete:
            for received in files:  # a second attempt fetches them anew, not "already there"
                (directory / received.name).unlink(missing_ok=True)
            raise FetchError(
                f"{url}: the capture is incomplete: {verdict.summary}",
                kind=FetchErrorKind.INCOMPLETE,
            )
        log.info("%s: complete (every stream decodes to its declared end)", label or stem)
        return info, files, exchanges, requests, verdict

    with signin.signed_in(url, settings, private_dir) as sign:
        try:
            (info, files, exchanges, requests, verdict), attempts = _with_retries(
                url, label or stem, settings, attempt_once
            )
        except Exception:
            if resume.partials is not None:  # kept by the caller, who knows why it failed
                resume.partials.failed.append(resume)
            raise
    return info, files, exchanges, requests, attempts, verdict


def _seconds(value: object) -> float | None:
    """A duration the source declared, in seconds, if it is one."""
    return float(value) if isinstance(value, int | float) and value > 0 else None


def probe_source(url: str, settings: FetchSettings, policy: SourcePolicy) -> dict[str, Any]:
    """What the source says about ``url`` now, metadata only: no media byte is requested and
    nothing is written. Raises a classified FetchError (gone, private, geo-blocked, …)."""
    params = ytdlp_params(settings, Path("."), "probe")
    for key in ("writeinfojson", "writedescription", "writesubtitles", "write_all_thumbnails"):
        params[key] = False

    def attempt_once() -> dict[str, Any]:
        with (
            signin.signed_in(url, settings, None) as sign,
            _ArchivalYoutubeDL({**params, **_signed(settings, sign)}, policy) as ydl,
        ):
            info = ydl.extract_info(url, download=False)
            if info is None or info.get("_type", "video") != "video":
                raise FetchError(
                    f"{url}: no single video here any more", kind=FetchErrorKind.UNSUPPORTED
                )
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
    private_dir: Path | None = None,
    earlier: Callable[[SourceKey], dict[str, Any] | None] = lambda key: None,
    partials: Partials | None = None,
) -> Capture:
    """Fetch every source of ``work``, in order: media, subtitles and thumbnails into
    ``original_dir``, the info JSON and description into ``metadata_dir``. Permission and the
    source policy are checked before any request. ``locks_dir``: where the download slots of the
    hosts are held (the archive's ``locks/``); ``private_dir``: where a signed-in fetch's cookies
    are kept while it lasts (the work's staging folder, outside its bag). ``earlier(key)``: the
    chosen video format of an earlier capture of the source ``key`` ({format_id, height, tbr}),
    or None; each source's degradation verdict (:mod:`cifa_ingest.fetch.degraded`) compares
    with it, and with the best format the source lists. ``partials``: the archive's kept partial
    downloads (:mod:`cifa_ingest.fetch.resume`): expired ones are removed first, this work's are
    resumed, a failed source is listed in ``partials.failed`` for the caller to keep its partial
    downloads (:meth:`Partials.keep_failed`: not after a full disk), and a successful capture
    removes its work's."""
    if not work.may_be_fetched:
        raise FetchError(
            f"{work.id}: permission does not allow fetching", kind=FetchErrorKind.REFUSED
        )
    policy = SourcePolicy.of(settings, allow_private_sources)
    urls = [source.url for source in work.sources if source.url]
    for url in urls:
        try:
            policy.check(url)
        except SourcePolicyError as exc:
            raise FetchError(str(exc), kind=FetchErrorKind.REFUSED) from None

    original_dir.mkdir(parents=True, exist_ok=True)
    metadata_dir.mkdir(parents=True, exist_ok=True)
    if partials is not None:
        partials.tidy(own_work=work.id)
    capture = Capture(work_id=work.id, started=_utc_now())
    tools = js_runtime.in_use(settings)
    capture.tools = tools.record()
    if capture.tools["js_runtime"] is None or capture.tools["challenge_solver"] is None:
        log.warning(
            "%s: yt-dlp has no JavaScript runtime or challenge solver: YouTube formats may be"
            " missing (cifa doctor says which; %s)",
            work.id,
            js_runtime.INSTALL,
        )
    seen: dict[str, int] = {}
    for index, source in enumerate(work.sources, start=1):
        assert source.url is not None
        stem = work.id if len(work.sources) == 1 else f"{work.id}-part-{index:02d}"

        def check(key: SourceKey, index: int = index) -> None:
            if seen.get(key.key, index) != index:  # the same part again: a retry
                raise FetchError(
                    f"{work.id}: part {index} is the same video as part {seen[key.key]} ({key})",
                    kind=FetchErrorKind.DUPLICATE,
                )
            check_source(key)
            seen[key.key] = index

        capture.options = {
            k: v
            for k, v in ytdlp_params(settings, original_dir, stem).items()
            if k not in {"logger", "paths", "js_runtimes"}  # this machine's: capture.tools
        }
        if settings.extractor_args:  # the settings' own: never a PO token (signin.extractor_args)
            capture.options["extractor_args"] = settings.extractor_args
        log.info("%s: fetching %s", work.id, source.url)
        warnings: list[str] = []
        info, files, exchanges, requests, attempts, verdict = fetch_source(
            source.url,
            original_dir,
            stem,
            settings,
            policy,
            check,
            label=stem,
            locks_dir=locks_dir,
            private_dir=private_dir,
            warnings=warnings,
            resume=SourceResume(partials, work.id, stem),
        )
        signed = signin.entry_for(source.url, settings)
        identity = SourceKey.of_info(info, source.url)
        formats_chosen = [f.format_id for f in files if f.format_id]
        formats_available = _available_formats(info)
        degradation = assess(
            formats_available,
            formats_chosen,
            settings.degraded_below,
            earlier(identity),
            _picture_height(original_dir, files),
        )
        if degradation.degraded:
            log.warning("%s: degraded capture: %s", stem, "; ".join(degradation.reasons))
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
                formats_chosen=formats_chosen,
                formats_available=formats_available,
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
                completeness=verdict.as_dict(),
                ytdlp_client=ytdlp_client(info),
                signed_in=signed is not None,
                account=signed.account if signed else None,
                warnings=kept_warnings(warnings),
                degraded=degradation.as_dict(),
            )
        )
    capture.finished = _utc_now()
    if partials is not None:
        partials.forget(work.id)
    return capture


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
