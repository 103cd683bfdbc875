"""The source policy on every request yt-dlp makes, redirects included, and the limit on the size
of a page or metadata document read from a source.

yt-dlp is given one request handler only, :func:`policy_handler`'s: every request is checked
against the :class:`~cifa_ingest.fetch.source_policy.SourcePolicy` before a connection is made,
and every redirect's target before it is followed. Which addresses are allowed is
:mod:`cifa_ingest.fetch.source_policy`'s to say; how that reaches into yt-dlp,
:mod:`cifa_ingest.fetch.ytdlp_internals`'.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any
from urllib.parse import urljoin

from cifa_ingest.errors import FetchError, SourcePolicyError
from cifa_ingest.fetch import ytdlp_internals
from cifa_ingest.fetch.failures import FetchErrorKind, SourceRefused
from cifa_ingest.fetch.source_policy import SourcePolicy

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


def policy_handler(policy: SourcePolicy) -> Any:
    """yt-dlp's urllib request handler, with the policy applied to each request and redirect
    (a RequestHandler class, for ``YoutubeDL.build_request_director``)."""
    urllib_handler = ytdlp_internals.urllib_handler()

    # A class known only when a fetch begins (ytdlp_internals checks it then): mypy cannot
    # take a variable for a base class.
    class CifaPolicyRH(urllib_handler):  # type: ignore[misc, valid-type]
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


def limit_document(response: Any) -> Any:
    """Make reading more than :data:`MAX_DOCUMENT_BYTES` of a page or metadata document raise a
    FetchError (kind ``too-large``) instead of filling memory. Other responses are untouched."""
    if not _DOCUMENT_TYPE.match(response.headers.get("Content-Type") or ""):
        return response
    url = getattr(response, "url", "")
    too_large = FetchError(
        f"{url}: the source's page is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB;"
        " refused (a film's page is kilobytes)",
        kind=FetchErrorKind.TOO_LARGE,
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
