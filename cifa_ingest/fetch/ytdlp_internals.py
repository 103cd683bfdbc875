"""The one place cifa_ingest reaches into yt-dlp's private code, and why.

The source policy must judge every request yt-dlp makes, and every redirect hop, before a
connection is made (:mod:`cifa_ingest.fetch.request_policy`). yt-dlp's public networking API
(``yt_dlp.networking.RequestHandler``, ``register_rh``, ``register_preference``) lets a program
add a request handler, but offers nothing to police the ones it has:

- its urllib handler, ``UrllibRH``, is exported only by the private module
  ``yt_dlp.networking._urllib``;
- that handler follows redirects inside a urllib opener it builds in its own
  ``_create_instance``, so a redirect's target never passes a handler's ``_send``: the policy can
  only see it as a urllib handler added to that opener;
- ``register_rh`` and ``register_preference`` act on the whole process, while a policy belongs to
  one fetch (``--allow-private-sources`` is per run).

So the policy's handler subclasses ``UrllibRH`` and overrides ``_send`` (the method
``RequestHandler`` tells its subclasses to implement) and ``_create_instance``. An upgrade of
yt-dlp may move or change either: :func:`urllib_handler` then refuses to fetch with a message
saying so, and ``tests/test_fetch.py`` fails on the upgrade (``make lock`` runs the suite) rather
than a fetch going unpoliced.
"""

from __future__ import annotations

import inspect
from typing import Any

from yt_dlp.version import __version__ as YTDLP_VERSION

#: The methods of UrllibRH the policy's handler overrides, with the parameters it relies on.
OVERRIDDEN = {
    "_send": ("request",),
    "_create_instance": ("proxies", "cookiejar"),
}


class YtdlpInternalsChanged(ImportError):
    """This yt-dlp no longer has the private urllib handler the source policy is built on."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"yt-dlp {YTDLP_VERSION}: {what}. cifa_ingest's source policy"
            " (cifa_ingest/fetch/ytdlp_internals.py) is built on yt-dlp's urllib request handler"
            " and cannot police requests without it; nothing is fetched. Use the yt-dlp version"
            " of the lock file, or adapt ytdlp_internals.py to this one."
        )


def urllib_handler() -> Any:
    """yt-dlp's urllib request handler class (``UrllibRH``), checked to still have the methods,
    with the parameters, that the policy's handler overrides; YtdlpInternalsChanged if not."""
    try:
        from yt_dlp.networking._urllib import UrllibRH
    except ImportError as exc:
        raise YtdlpInternalsChanged(f"no yt_dlp.networking._urllib.UrllibRH ({exc})") from None
    for name, parameters in OVERRIDDEN.items():
        method = getattr(UrllibRH, name, None)
        if not callable(method):
            raise YtdlpInternalsChanged(f"UrllibRH has no method {name}")
        has = list(inspect.signature(method).parameters)[1:]  # after self
        if has[: len(parameters)] != list(parameters):
            raise YtdlpInternalsChanged(
                f"UrllibRH.{name} takes ({', '.join(has)}), not ({', '.join(parameters)}, …)"
            )
    return UrllibRH
