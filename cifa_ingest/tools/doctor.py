"""``cifa doctor``: which programs and packages the pipeline would run with, and what is missing.

Each is looked for where the pipeline looks for it: the Python packages in this environment, the
JavaScript runtime and the challenge solver as yt-dlp itself finds them given the archive's
options (:mod:`cifa_ingest.fetch.js_runtime`), the programs as the one runner finds them
(:mod:`cifa_ingest.tools.runner`, on ``PATH``), each run once through it for its version. Every
one is needed: a missing one is named with how to install it (``make setup`` installs them all).
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any

from cifa_ingest.config import FetchSettings
from cifa_ingest.errors import FFmpegError
from cifa_ingest.fetch import js_runtime
from cifa_ingest.tools import runner

#: Seconds a program may take to say its version.
VERSION_TIMEOUT = 60
#: A version in a program's answer: ``5.1.9-0+deb12u1``, ``v74.0.0``, ``23.04``.
_VERSION = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)*[^\s,()]*)")
#: What to do about a missing Python package.
REINSTALL = "run `make setup` (it installs requirements.lock)"


@dataclass
class Found:
    """One program or package: what it is for, its version and path where found, and the
    problem (with how to fix it) where it is missing or unusable."""

    name: str
    role: str
    version: str | None = None
    path: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class Diagnosis:
    found: list[Found]

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.found)

    @property
    def missing(self) -> list[Found]:
        return [item for item in self.found if not item.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tools": [{**asdict(item), "ok": item.ok} for item in self.found],
        }


def _package(name: str, role: str) -> Found:
    try:
        return Found(name, role, version=importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return Found(name, role, problem=f"not installed: {REINSTALL}")


def version_of(answer: str) -> str | None:
    """The first version number in a program's answer to ``--version``."""
    found = _VERSION.search(answer)
    return found.group(1) if found else None


def _run_for_version(item: Found, args: list[str]) -> Found:
    """``item`` with the version its program gives when run (through the one runner), or the
    problem where it cannot be run."""
    try:
        completed = runner.run(args, timeout=VERSION_TIMEOUT)
    except FFmpegError as exc:
        item.problem = f"{args[0]} does not run: {exc}"
        return item
    answer = (completed.stdout or completed.stderr).decode("utf-8", "replace")
    item.version = version_of(answer)
    if item.version is None:
        item.problem = f"{args[0]} --version said no version: {answer.strip()[:200]!r}"
    return item


def _program(name: str, role: str, version_args: list[str]) -> Found:
    item = Found(name, role, path=runner.find(name))
    if item.path is None:
        item.problem = f"not found on PATH: {runner.INSTALL.get(name, f'install {name}')}"
        return item
    return _run_for_version(item, [item.path, *version_args])


def _runtime_and_solver(settings: FetchSettings) -> list[Found]:
    """The JavaScript runtime and the challenge solver, as yt-dlp finds them with our options;
    the runtime run once more through the one runner, to show that it runs."""
    tools = js_runtime.in_use(settings)
    runtime = Found(js_runtime.RUNTIME, "yt-dlp's JavaScript runtime, for YouTube's challenges")
    given = js_runtime.deno_path(settings)
    where = "[fetch] deno" if settings.deno else "the deno package"
    if tools.runtime_path is None:
        runtime.path = given
        runtime.problem = (
            f"yt-dlp finds no deno at {given} ({where})" if given else "yt-dlp finds no deno"
        ) + f": {js_runtime.INSTALL}"
    elif not tools.runtime_supported:
        runtime.path, runtime.version = tools.runtime_path, tools.runtime_version
        runtime.problem = (
            f"deno {tools.runtime_version} at {tools.runtime_path} is older than yt-dlp"
            f" {tools.ytdlp} supports: {js_runtime.INSTALL}"
        )
    else:
        runtime.path = tools.runtime_path
        _run_for_version(runtime, [tools.runtime_path, "--version"])
    solver = Found(js_runtime.SOLVER, "yt-dlp's challenge solver scripts")
    solver.version = tools.solver_version
    if tools.solver_version is None:
        solver.problem = f"yt-dlp finds no yt_dlp_ejs package: {js_runtime.INSTALL}"
    elif not tools.solver_accepted:
        solver.problem = (
            f"yt-dlp {tools.ytdlp} takes solver {tools.solver_expected} (the same minor version),"
            f" not {tools.solver_version}: {js_runtime.INSTALL}"
        )
    return [runtime, solver]


def diagnose(settings: FetchSettings) -> Diagnosis:
    """Every program and package the pipeline runs with, each found (or not) as it finds it."""
    found = [
        Found("python", "the interpreter", platform.python_version(), sys.executable),
        _package("cifa-ingest", "this program"),
        _package("yt-dlp", "fetching"),
        *_runtime_and_solver(settings),
        _program("ffmpeg", "decoding, encoding masters and access copies", ["-version"]),
        _program("ffprobe", "describing every file", ["-version"]),
        _program("mkvpropedit", "HDR metadata in masters, from mkvtoolnix", ["--version"]),
        _program("mediaconch", "checking masters against the MediaConch policy", ["--version"]),
        _program("mediainfo", "technical descriptions of files", ["--version"]),
        _package("prefect", "orchestration"),
        _package("boto3", "copies in S3-compatible storage"),
    ]
    return Diagnosis(found)


def table(diagnosis: Diagnosis) -> str:
    """The diagnosis as aligned columns (name, version, what for, path), a missing one marked
    and followed by what to do."""
    found = diagnosis.found
    name_width = max(len(item.name) for item in found)
    version_width = max(len(item.version or "-") for item in found)
    role_width = max(len(item.role) for item in found)
    lines = []
    for item in found:
        mark = "ok     " if item.ok else "MISSING"
        line = (
            f"{mark}  {item.name:<{name_width}}  {item.version or '-':<{version_width}}"
            f"  {item.role:<{role_width}}  {item.path or ''}"
        )
        lines.append(line.rstrip())
        if item.problem:
            lines.append(f"{' ' * 9}{item.problem}")
    return "\n".join(lines)
