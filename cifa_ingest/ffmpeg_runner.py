"""The one place where ffmpeg and ffprobe are run.

Every call is logged as a copy-pasteable command line (so an archivist can re-run exactly what the
pipeline did), runs without a shell, and raises :class:`FFmpegError` with ffmpeg's own stderr when
it fails. Command lines are built with ffmpeg-python; arguments are always a list, so no title or
file name can become an option or a shell word.
"""

from __future__ import annotations

import json
import logging
import queue
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.errors import FFmpegError

log = logging.getLogger(__name__)

#: Options every ffmpeg run gets: no interactive input, no banner, warnings and errors on stderr.
GLOBAL_ARGS = ["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"]


def executable(name: str) -> str:
    """The path of ffmpeg or ffprobe, or FFmpegError saying how to install it."""
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


def run_ffmpeg(
    stream: Any,
    *,
    timeout: float | None = None,
    input_args: list[str] | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Compile an ffmpeg-python stream graph, run it, and return the command line run.

    ``input_args`` go before the first input (e.g. ``-noautorotate``). With ``progress``, ffmpeg
    reports through ``-progress`` and a run that stops making progress is killed."""
    compiled = ffmpeg.compile(stream, cmd=executable("ffmpeg"))
    args = [compiled[0], *GLOBAL_ARGS, *(input_args or []), *compiled[1:]]
    if progress is None:
        run(args, timeout=timeout)
        return args
    args = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    _run_with_progress(args, progress, timeout)
    return args


class Progress:
    """Follows ffmpeg's ``-progress`` output: logs position, speed and ETA every few seconds,
    and says when ffmpeg has made no progress for ``stall_seconds`` (it is then killed)."""

    def __init__(self, label: str, duration: float | None, stall_seconds: float, interval: float):
        self.label, self.duration = label, duration
        self.stall_seconds, self.interval = stall_seconds, interval
        self.position = 0.0
        self._started = time.monotonic()
        self._last_log = self._started  # the first line after one interval, then at the end

    def update(self, key: str, value: str) -> None:
        if key == "out_time_us" and value.isdigit():
            self.position = int(value) / 1_000_000
        elif key == "progress":
            now = time.monotonic()
            if now - self._last_log >= self.interval or value == "end":
                self._last_log = now
                log.info("%s: %s", self.label, self.describe(now))

    def describe(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        speed = self.position / elapsed
        text = f"{_clock(self.position)}"
        if self.duration:
            text += f" of {_clock(self.duration)} ({100 * self.position / self.duration:.0f}%)"
            if speed > 0 and self.position < self.duration:
                text += f", ETA {_clock((self.duration - self.position) / speed)}"
        return text + f", {speed:.2f}x"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _run_with_progress(args: list[str], progress: Progress, timeout: float | None) -> None:
    command = shlex.join(args)
    log.debug("running: %s", command)
    deadline = time.monotonic() + timeout if timeout else None
    lines: queue.Queue[bytes | None] = queue.Queue()
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        except OSError as exc:
            raise FFmpegError(command, 127, str(exc)) from None

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        problem = None
        while True:
            wait = progress.stall_seconds
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.01))
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                overdue = deadline is not None and time.monotonic() >= deadline
                problem = (
                    f"timed out after {timeout:.0f} s"
                    if overdue
                    else (f"no progress for {progress.stall_seconds:.0f} s")
                )
                process.kill()
                break
            if line is None:
                break
            key, _, value = line.decode("utf-8", "replace").strip().partition("=")
            progress.update(key, value)
        returncode = process.wait()
        reader.join(timeout=5)
        stderr.seek(0)
        text = stderr.read().decode("utf-8", "replace")
    if problem:
        raise FFmpegError(command, returncode, f"ffmpeg killed: {problem}\n{text}")
    if returncode != 0:
        raise FFmpegError(command, returncode, text)


def probe(path: Path, *, timeout: float | None = 300) -> dict[str, Any]:
    """ffprobe's description of a media file (format, streams, chapters) as a dict."""
    args = [
        executable("ffprobe"),
        "-v", "error",
        "-print_format", "json",
        "-show_format", "-show_streams", "-show_chapters",
        "--", str(path),
    ]  # fmt: skip
    completed = run(args, timeout=timeout)
    return json.loads(completed.stdout.decode("utf-8", "replace"))


def ffmpeg_version() -> str:
    """ffmpeg's version line, for the record of what made a file."""
    completed = run([executable("ffmpeg"), "-hide_banner", "-version"])
    return completed.stdout.decode("utf-8", "replace").splitlines()[0].strip()
