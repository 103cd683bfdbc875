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

Which JavaScript runtime and challenge solver yt-dlp would run YouTube's challenges with is asked
of yt-dlp too (``cifa doctor``, the capture record): it decides, from our ``js_runtimes`` option,
and says so only in a debug line. Its answer is in ``YoutubeDL._js_runtimes`` (each runtime's
``info``: name, path, version, supported), the solver it loads in ``yt_dlp.dependencies`` and the
solver version it accepts in its vendored scripts' ``VERSION`` (a solver of another minor version
is refused): :func:`js_runtimes` and :func:`challenge_solver` read them, and refuse as above when
they move.
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


def js_runtimes(ydl: Any) -> dict[str, Any]:
    """The JavaScript runtimes ``ydl`` (a YoutubeDL) would use, by name, each with yt-dlp's own
    ``info`` of it (None where it found no such program): yt-dlp's answer, not ours."""
    runtimes = getattr(ydl, "_js_runtimes", None)
    if not isinstance(runtimes, dict):
        raise YtdlpInternalsChanged("YoutubeDL has no _js_runtimes to say which runtime it uses")
    return runtimes


def challenge_solver() -> tuple[str | None, str]:
    """The version of the challenge solver package yt-dlp loads (``yt-dlp-ejs``; None where yt-dlp
    finds none), and the solver version this yt-dlp accepts (its vendored scripts' version)."""
    try:
        from yt_dlp import dependencies
        from yt_dlp.extractor.youtube.jsc._builtin import vendor
    except ImportError as exc:
        raise YtdlpInternalsChanged(f"no challenge solver module ({exc})") from None
    found = getattr(dependencies, "yt_dlp_ejs", None)
    expected = getattr(vendor, "VERSION", None)
    if not isinstance(expected, str):
        raise YtdlpInternalsChanged("its challenge solver scripts have no VERSION")
    return (str(found.version) if found is not None else None), expected
