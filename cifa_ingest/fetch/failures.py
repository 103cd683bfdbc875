"""How a failed fetch is classified: its kind (:class:`FetchErrorKind`), whether trying again may
help, and how long the server asked us to wait.

The kinds are published: stored in the ledger with a work's outcome
(``work_outcomes.error_kind``), printed by ``--json``, shown in the reports and read by the watch
(:mod:`cifa_ingest.audit.watch`). One enumeration holds them so that a misspelt kind is an error
where it is written, not a new kind in the ledger.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError
from yt_dlp.utils import ContentTooShortError, GeoRestrictedError, UnsupportedError

from cifa_ingest.errors import FetchError, SourcePolicyError


class FetchErrorKind(StrEnum):
    """Why a fetch failed (``FetchError.kind``). The values are the spellings the ledger, the
    ``--json`` output and the reports have always carried: never change one."""

    NOT_FOUND = "not-found"
    GONE = "gone"
    PRIVATE = "private"
    FORBIDDEN = "forbidden"
    GEO_BLOCKED = "geo-blocked"
    UNSUPPORTED = "unsupported"
    REFUSED = "refused"
    DUPLICATE = "duplicate"
    TOO_LARGE = "too-large"
    RATE_LIMITED = "rate-limited"
    SERVER_ERROR = "server-error"
    NETWORK = "network"
    ERROR = "error"
    BLOCKED = "blocked"
    LOGIN_REQUIRED = "login-required"
    AGE_RESTRICTED = "age-restricted"
    INCOMPLETE = "incomplete"
    DEGRADED = "degraded"

    @property
    def description(self) -> str:
        """What the kind means, for people (docs/reference/kinds.md says the same)."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    FetchErrorKind.NOT_FOUND: "the source answers 404: no such page or file",
    FetchErrorKind.GONE: "the source answers 410, or says the video was removed",
    FetchErrorKind.PRIVATE: "the video is private",
    FetchErrorKind.FORBIDDEN: "the source answers 401/403 to the page or metadata",
    FetchErrorKind.GEO_BLOCKED: "not available from the archive's country",
    FetchErrorKind.UNSUPPORTED: "yt-dlp finds no film at this address",
    FetchErrorKind.REFUSED: (
        "the archive's source policy refused an address (host, scheme, private range)"
    ),
    FetchErrorKind.DUPLICATE: "the same source video is already preserved under another work",
    # The limit is request_policy.MAX_DOCUMENT_BYTES, which imports this module; a test holds
    # the two to the same number.
    FetchErrorKind.TOO_LARGE: "the source's page or metadata is over 16 MiB",
    FetchErrorKind.RATE_LIMITED: (
        "429 Too Many Requests, still after every retry (no longer produced: that is now "
        "blocked; kept for the ledger's older rows)"
    ),
    FetchErrorKind.SERVER_ERROR: "5xx, still after every retry",
    FetchErrorKind.NETWORK: "connection failures or transfers cut short, still after every retry",
    FetchErrorKind.ERROR: "anything else",
    FetchErrorKind.BLOCKED: (
        "the host blocked the archive, not the film: a bot wall, 429 still after every retry, "
        "or the media host's 401/403 after the metadata was given; the host is paused for the "
        "rest of the run and the next run tries again"
    ),
    FetchErrorKind.LOGIN_REQUIRED: (
        "the video exists but only for a signed-in account (members-only, a login wall)"
    ),
    FetchErrorKind.AGE_RESTRICTED: (
        "the video exists but asks a signed-in account to confirm its age"
    ),
    FetchErrorKind.INCOMPLETE: (
        "the capture is short, still after a second attempt: a stream ends before its declared "
        "duration or before the other streams, a size or a fragment count disagrees with what "
        "was declared, or a fragment could not be fetched; the message says what is missing"
    ),
    FetchErrorKind.DEGRADED: (
        "the capture is degraded (its chosen format far below the best the source lists, or "
        "below an earlier capture of the same source) and [fetch] refuse_degraded is set: not "
        "bagged; a later run tries again"
    ),
}


class SourceRefused(RequestError):
    """A request the source policy refused (:mod:`cifa_ingest.fetch.request_policy`); raised
    before any connection is made. A yt-dlp RequestError, since yt-dlp expects its request
    handlers to raise nothing else; classified as ``refused`` however deep yt-dlp wraps it."""


@dataclass(frozen=True)
class Problem:
    """A classified failure: its kind, whether trying again may help, and the wait the server
    asked for (Retry-After), if it did. A block (``hold_off``) is transient but not retried at
    once: asking again would only reinforce it; the host is paused for the rest of the run
    and the next run tries again."""

    kind: FetchErrorKind
    transient: bool
    retry_after: float | None = None
    hold_off: bool = False


#: The problem of a kind already decided (a FetchError raised with it).
_DECIDED = {
    FetchErrorKind.BLOCKED: Problem(FetchErrorKind.BLOCKED, transient=True, hold_off=True),
    # Fetched once more (completeness.ATTEMPTS): a cut-off transfer may come whole next time.
    FetchErrorKind.INCOMPLETE: Problem(FetchErrorKind.INCOMPLETE, transient=True),
    # YouTube's experiments take formats away for a while: another night may have them back.
    FetchErrorKind.DEGRADED: Problem(FetchErrorKind.DEGRADED, transient=True),
}


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
    """The seconds a Retry-After header asks for (a number, or an HTTP date), or None."""
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


#: What a source's own words say, where no status code does (platforms answer 200 with a
#: message): read in this order. YouTube's messages are matched as its extractor words them
#: (a reason, its subreason, then yt-dlp's hint to pass cookies). A block comes first: the bot
#: wall ("Sign in to confirm you're not a bot", either apostrophe) says nothing of the film.
_MESSAGE_KINDS = [
    (re.compile(r"not a bot|confirm (that )?you.re a human", re.I), FetchErrorKind.BLOCKED),
    (
        re.compile(r"confirm your age|age.restricted|inappropriate for some users", re.I),
        FetchErrorKind.AGE_RESTRICTED,
    ),
    (re.compile(r"private video|video is private", re.I), FetchErrorKind.PRIVATE),
    (
        re.compile(r"not available in your country|geo.?restrict|geo.?block", re.I),
        FetchErrorKind.GEO_BLOCKED,
    ),
    (
        re.compile(
            r"has been removed|video unavailable|account .* terminated|no longer available", re.I
        ),
        FetchErrorKind.GONE,
    ),
    (
        re.compile(
            r"members.only|join this channel|login required|log ?in details are needed"
            r"|only available (to|for) registered users|requires? (a )?(login|sign.?in)"
            r"|sign in to (view|watch)",
            re.I,
        ),
        FetchErrorKind.LOGIN_REQUIRED,
    ),
    (re.compile(r"unsupported url", re.I), FetchErrorKind.UNSUPPORTED),
]

#: The blocks' reasons as the run report names them, read from the failure's message.
_BLOCK_REASONS = [
    (re.compile(r"not a bot|you.re a human", re.I), "bot wall"),
    (re.compile(r"\b429\b|too many requests", re.I), "429 Too Many Requests"),
    (re.compile(r"\b40[13]\b", re.I), "the media host's 401/403"),
]


def block_reason(message: str) -> str:
    """What a ``blocked`` failure's message says blocked us, in a few words for the report."""
    for pattern, reason in _BLOCK_REASONS:
        if pattern.search(message):
            return reason
    return "blocked"


def classify(exc: BaseException) -> Problem:
    """Which kind of failure ``exc`` is, and whether trying again may help."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, SourceRefused | SourcePolicyError):
            return Problem(FetchErrorKind.REFUSED, transient=False)
        if isinstance(cause, FetchError) and cause.kind != FetchErrorKind.ERROR:
            return _DECIDED.get(cause.kind, Problem(cause.kind, transient=False))
    for cause in causes:
        if isinstance(cause, HTTPError):
            status = cause.status
            if status == 404:
                return Problem(FetchErrorKind.NOT_FOUND, transient=False)
            if status == 410:
                return Problem(FetchErrorKind.GONE, transient=False)
            if status in (401, 403):
                return Problem(FetchErrorKind.FORBIDDEN, transient=False)
            if status == 429:
                # Retried (after Retry-After); still there after every retry, a block.
                wait = _retry_after(cause.response.headers.get("Retry-After"))
                return Problem(FetchErrorKind.BLOCKED, transient=True, retry_after=wait)
            if 500 <= status < 600:
                wait = _retry_after(cause.response.headers.get("Retry-After"))
                return Problem(FetchErrorKind.SERVER_ERROR, transient=True, retry_after=wait)
    for cause in causes:
        if isinstance(cause, GeoRestrictedError):
            return Problem(FetchErrorKind.GEO_BLOCKED, transient=False)
        if isinstance(cause, UnsupportedError):
            return Problem(FetchErrorKind.UNSUPPORTED, transient=False)
    text = " ".join(str(cause) for cause in causes)
    for pattern, kind in _MESSAGE_KINDS:
        if pattern.search(text):
            return _DECIDED.get(kind, Problem(kind, transient=False))
    for cause in causes:
        if isinstance(cause, TransportError | ConnectionError | TimeoutError):
            return Problem(FetchErrorKind.NETWORK, transient=True)
        # A transfer that ended before the length its server announced, or before its first
        # byte: the connection broke (yt-dlp says so in these words, or by this class).
        if isinstance(cause, ContentTooShortError):
            return Problem(FetchErrorKind.NETWORK, transient=True)
    if _CUT_SHORT.search(text):
        return Problem(FetchErrorKind.NETWORK, transient=True)
    return Problem(FetchErrorKind.ERROR, transient=False)


#: yt-dlp's words for a transfer cut short (its HTTP downloader's, and ContentTooShortError's).
_CUT_SHORT = re.compile(r"Did not get any data blocks|Downloaded \d+ bytes, expected \d+ bytes")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def media_refused(exc: BaseException, url: str) -> FetchError | None:
    """A failure of the download after the metadata phase succeeded, as a block when the media
    host answered 401/403: the page gave the film's formats, so the refusal of their bytes is the
    host's verdict on us (a throttled session, a signature it no longer accepts), not on the
    film. None for any other failure."""
    if classify(exc).kind is not FetchErrorKind.FORBIDDEN:
        return None
    return FetchError(
        f"{url}: the media host refused the download after the metadata was given "
        f"({error_text(exc)})",
        kind=FetchErrorKind.BLOCKED,
    )


def uncoloured(text: str) -> str:
    """``text`` without the terminal colour codes yt-dlp puts into its messages: the log, the
    ledger and the reports want the words."""
    return _ANSI.sub("", text)


def error_text(exc: BaseException) -> str:
    """The message of a yt-dlp error as the ledger keeps it: uncoloured, without yt-dlp's
    ``ERROR:`` prefix and its trailing ``(caused by …)``, which repeats the cause."""
    text = uncoloured(str(exc)).strip()
    text = re.sub(r" \(caused by .*\)$", "", text)
    return text.removeprefix("ERROR: ").strip() or type(exc).__name__
