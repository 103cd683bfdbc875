"""Signed-in access, an operator's recorded choice: a host's cookies, and YouTube's PO token.

A cookies file is named per host (``[[fetch.cookies]]`` or ``CIFA_COOKIES_*``, checked when the
settings are read: :func:`cifa_ingest.config.load_settings`). A fetch from a host that has one,
and that the source policy let through, gets a jar holding only the cookies of that host (and its
subdomains): yt-dlp would otherwise send every cookie of the file wherever their domains match,
and it writes its jar back when it ends, so it is never given the operator's file. The jar is a
file of the run's private folder (mode 0600), removed when the fetch ends, never inside a bag. A
redirect to another host gets none of them (yt-dlp's jar sends a cookie only to its domain), and
a host off the allow-list is never asked at all.

The secrets never reach a log, a record or Prefect: capture.json keeps whether the fetch was
signed in and the account's label (:class:`SignIn`), yt-dlp's messages are scrubbed of every
cookie value and the PO token before they are logged (:meth:`SignIn.scrub`), and the ``cookies``
field yt-dlp puts in its info (the cookies sent with each format) is taken out of every info it
gives us and of the info JSON it writes (:func:`without_cookies`).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cifa_ingest.config import CookiesSettings, FetchSettings
from cifa_ingest.fetch.source_policy import host_allowed

#: The PO token (a secret) comes only from the environment: yt-dlp's ``youtube:po_token``,
#: ``CLIENT.CONTEXT+TOKEN`` items separated by commas (e.g. ``web.gvs+XXX``).
PO_TOKEN_ENV = "CIFA_YOUTUBE_PO_TOKEN"
#: A Cookie header, wherever a message would show one.
_COOKIE_HEADER = re.compile(r"(?i)(cookie:\s*)[^\r\n'\"]+")
REDACTED = "[redacted]"


@dataclass(frozen=True)
class SignIn:
    """How one source is fetched: signed in (the account's label) or not, the jar yt-dlp is
    given (None: no cookies) and the values no message may show."""

    account: str | None = None
    cookiefile: Path | None = None
    secret_values: tuple[str, ...] = field(default=(), repr=False)

    @property
    def signed_in(self) -> bool:
        return self.account is not None

    def scrub(self, text: str) -> str:
        """``text`` without a Cookie header's value or any of the secrets."""
        text = _COOKIE_HEADER.sub(r"\1" + REDACTED, text)
        for value in self.secret_values:
            text = text.replace(value, REDACTED)
        return text


def entry_for(url: str, settings: FetchSettings) -> CookiesSettings | None:
    """The cookies entry of ``url``'s host (the most specific one), or None."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    matching = [e for e in settings.cookies if host_allowed(host, [e.host])]
    return max(matching, key=lambda e: len(e.host), default=None)


def po_token() -> str | None:
    """The PO token of the environment (:data:`PO_TOKEN_ENV`), if set."""
    return os.environ.get(PO_TOKEN_ENV, "").strip() or None


def extractor_args(settings: FetchSettings) -> dict[str, dict[str, list[str]]]:
    """yt-dlp's ``extractor_args``: the settings' (a PO token provider's, …) and the PO token of
    the environment. Given to yt-dlp at each fetch, never recorded: capture.options has only
    the settings' own, which hold no secret (the settings refuse a ``po_token``)."""
    args = {extractor: dict(values) for extractor, values in settings.extractor_args.items()}
    token = po_token()
    if token:
        args.setdefault("youtube", {})["po_token"] = [token]
    return args


@contextlib.contextmanager
def signed_in(url: str, settings: FetchSettings, private_dir: Path | None) -> Iterator[SignIn]:
    """How to fetch ``url`` (which passed the source policy): with a jar of its host's cookies
    when the settings name a cookies file for that host, in ``private_dir`` (a temporary folder
    of this user's when None), removed when the fetch ends."""
    token = po_token()
    token_values = tuple(t.partition("+")[2] or t for t in token.split(",")) if token else ()
    entry = entry_for(url, settings)
    if entry is None:
        yield SignIn(secret_values=token_values + ((token,) if token else ()))
        return
    source = http.cookiejar.MozillaCookieJar()
    source.load(entry.file, ignore_discard=True, ignore_expires=True)
    jar = http.cookiejar.MozillaCookieJar()
    for cookie in source:
        if host_allowed(cookie.domain.lstrip(".").lower(), [entry.host]):
            jar.set_cookie(cookie)
    values = tuple(c.value for c in jar if c.value and len(c.value) >= 4)
    with contextlib.ExitStack() as stack:
        folder = private_dir
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cifa-")))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".cookies-{secrets.token_hex(8)}.txt"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        stack.callback(path.unlink, missing_ok=True)
        jar.save(str(path), ignore_discard=True, ignore_expires=True)
        yield SignIn(
            account=entry.account,
            cookiefile=path,
            secret_values=values + token_values + ((token,) if token else ()),
        )


def without_cookies(value: Any) -> Any:
    """``value`` (yt-dlp's info, or a part of it) without the ``cookies`` yt-dlp adds to each
    format and download (the cookies it would send there) or a ``Cookie`` request header."""
    if isinstance(value, dict):
        return {
            k: without_cookies(v)
            for k, v in value.items()
            if k != "cookies" and str(k).lower() != "cookie"
        }
    if isinstance(value, list):
        return [without_cookies(v) for v in value]
    return value
