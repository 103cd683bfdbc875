"""The JavaScript runtime and the challenge solver yt-dlp answers YouTube's challenges with.

YouTube gives its media addresses only to a client that solves the JavaScript challenges of its
player (each address's ``n`` and signature). Without a runtime yt-dlp warns ("No supported
JavaScript runtime could be found") and gets only the formats that need none: not always the
best, and a capture would keep less than the source offers as if it were the best original.

The project installs both (pyproject.toml, pinned in requirements.lock): the Deno runtime (the
``deno`` package, whose binary lands in the virtual environment's ``bin/``) and yt-dlp's solver
scripts (``yt-dlp-ejs``). yt-dlp is pointed at that Deno by its path (:func:`ytdlp_params`): the
environment's ``bin/`` is not on ``PATH`` when someone runs ``.venv/bin/cifa`` or Prefect runs a
flow. No remote component is allowed: yt-dlp fetches no code at capture time (the solver is the
pinned package's), and it runs Deno with its network off (``--no-remote``, ``--no-npm``).

Which runtime and solver yt-dlp would use is asked of yt-dlp itself (:func:`in_use`), for
``cifa doctor`` and for each capture record.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifa_ingest.config import FetchSettings
from cifa_ingest.fetch import ytdlp_internals

log = logging.getLogger(__name__)

#: The runtime yt-dlp is given: the one the project installs.
RUNTIME = "deno"
#: The package of yt-dlp's challenge solver scripts.
SOLVER = "yt-dlp-ejs"
#: What to do when either is missing.
INSTALL = "run `make setup` (it installs the deno and yt-dlp-ejs packages of requirements.lock)"


def deno_path(settings: FetchSettings) -> str | None:
    """The Deno binary yt-dlp is given: ``[fetch] deno`` where set, else the one the ``deno``
    package installed beside this Python (the environment's ``bin/``), else one on ``PATH``;
    None where there is none."""
    if settings.deno:
        return str(Path(settings.deno).expanduser())
    try:
        from deno import find_deno_bin

        return str(find_deno_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which(RUNTIME)


def ytdlp_params(settings: FetchSettings) -> dict[str, Any]:
    """yt-dlp's options for the runtime: Deno by path, and no remote component (no code from
    the web at capture time)."""
    path = deno_path(settings)
    return {
        "js_runtimes": {RUNTIME: {"path": path} if path else {}},
        "remote_components": [],
    }


@dataclass(frozen=True)
class ToolsInUse:
    """What yt-dlp says it would fetch with: its version, the JavaScript runtime it found (None
    where it found none it supports), and the challenge solver it loads."""

    ytdlp: str
    runtime: str | None  # "deno"
    runtime_path: str | None
    runtime_version: str | None
    runtime_supported: bool
    solver_version: str | None  # yt-dlp-ejs's, None where yt-dlp finds no such package
    solver_expected: str  # the solver version this yt-dlp accepts (the same major.minor)

    @property
    def solver_accepted(self) -> bool:
        return self.solver_version is not None and _minor(self.solver_version) == _minor(
            self.solver_expected
        )

    def record(self) -> dict[str, Any]:
        """For the capture record: names and versions (no path: the bag leaves this machine)."""
        return {
            "yt-dlp": self.ytdlp,
            "js_runtime": (
                {"name": self.runtime, "version": self.runtime_version}
                if self.runtime and self.runtime_supported
                else None
            ),
            "challenge_solver": (
                {"name": SOLVER, "version": self.solver_version} if self.solver_accepted else None
            ),
        }


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class _Quiet:
    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug
    warning = debug
    error = debug


def in_use(settings: FetchSettings) -> ToolsInUse:
    """Ask yt-dlp, given our options, which runtime and solver it would use (its own answer:
    it runs ``deno --version`` itself and judges the version)."""
    import yt_dlp
    from yt_dlp.version import __version__

    with yt_dlp.YoutubeDL({**ytdlp_params(settings), "logger": _Quiet(), "quiet": True}) as ydl:
        runtime = ytdlp_internals.js_runtimes(ydl).get(RUNTIME)
        info = runtime.info if runtime is not None else None
    solver, expected = ytdlp_internals.challenge_solver()
    return ToolsInUse(
        ytdlp=__version__,
        runtime=info.name if info else None,
        runtime_path=info.path if info else None,
        runtime_version=info.version if info else None,
        runtime_supported=bool(info and info.supported),
        solver_version=solver,
        solver_expected=expected,
    )
