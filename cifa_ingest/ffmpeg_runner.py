"""The one place where ffmpeg and ffprobe are run.

Every call is logged as a copy-pasteable command line (so an archivist can re-run exactly what the
pipeline did), runs without a shell, and raises :class:`FFmpegError` with ffmpeg's own stderr when
it fails. Command lines are built with ffmpeg-python; arguments are always a list, so no title or
file name can become an option or a shell word.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.errors import FFmpegError

log = logging.getLogger(__name__)

#: Options every ffmpeg run gets: no interactive input, no banner, warnings and errors on stderr.
GLOBAL_ARGS = ["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"]


def _executable(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FFmpegError(name, 127, f"{name} not found: install ffmpeg (make setup does)")
    return found


def run(args: list[str], *, timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` (program first), log it, and raise FFmpegError on a non-zero exit."""
    command = shlex.join(args)
    log.debug("running: %s", command)
    try:
        completed = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode("utf-8", "replace")
        raise FFmpegError(command, -1, f"timed out after {timeout} s\n{stderr}") from None
    except OSError as exc:
        raise FFmpegError(command, 127, str(exc)) from None
    if completed.returncode != 0:
        raise FFmpegError(
            command, completed.returncode, completed.stderr.decode("utf-8", "replace")
        )
    return completed


def run_ffmpeg(stream: Any, *, timeout: float | None = None) -> list[str]:
    """Compile an ffmpeg-python stream graph, run it, and return the command line run."""
    compiled = ffmpeg.compile(stream, cmd=_executable("ffmpeg"))
    args = [compiled[0], *GLOBAL_ARGS, *compiled[1:]]
    run(args, timeout=timeout)
    return args


def probe(path: Path, *, timeout: float | None = 300) -> dict[str, Any]:
    """ffprobe's description of a media file (format, streams, chapters) as a dict."""
    args = [
        _executable("ffprobe"),
        "-v", "error",
        "-print_format", "json",
        "-show_format", "-show_streams", "-show_chapters",
        "--", str(path),
    ]  # fmt: skip
    completed = run(args, timeout=timeout)
    return json.loads(completed.stdout.decode("utf-8", "replace"))


def ffmpeg_version() -> str:
    """ffmpeg's version line, for the record of what made a file."""
    completed = run([_executable("ffmpeg"), "-hide_banner", "-version"])
    return completed.stdout.decode("utf-8", "replace").splitlines()[0].strip()
