"""The one place where external programs are run: ffmpeg and ffprobe, and mkvpropedit,
MediaConch and MediaInfo (and each of them, and Deno, once for its version in ``cifa doctor``).

Every call is logged as a copy-pasteable command line (so an archivist can re-run exactly what the
pipeline did), runs without a shell, has a time limit where one is given (the program is killed
past it: :class:`ToolStalled`), and raises :class:`FFmpegError` with the program's own stderr when
it exits non-zero. A program that is not installed is :class:`ToolMissing`, saying how to install
it. ffmpeg's command lines are built with ffmpeg-python; arguments are always a list, so no title
or file name can become an option or a shell word.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.errors import FFmpegError, ToolMissing, ToolStalled

log = logging.getLogger(__name__)

#: Options every ffmpeg run gets: no interactive input, no banner, warnings and errors on stderr.
GLOBAL_ARGS = ["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"]


#: How to install each program the pipeline runs, for the error when one is missing.
INSTALL = {
    "ffmpeg": "install ffmpeg (make setup does)",
    "ffprobe": "install ffmpeg (make setup does)",
    "mkvpropedit": "install mkvtoolnix (make setup does); it writes the source's HDR metadata"
    " (mastering display, content light level) into the master",
    "mediaconch": "install mediaconch (make setup does); it checks masters against the archive's"
    " policy",
    "mediainfo": "install mediainfo (make setup does); it describes every file of a bag",
    "deno": "run make setup (it installs the deno package); yt-dlp solves YouTube's challenges"
    " with it",
}


def executable(name: str) -> str:
    """The path of a program the pipeline cannot do without, or :class:`ToolMissing` saying how
    to install it."""
    found = shutil.which(name)
    if not found:
        raise ToolMissing(name, INSTALL.get(name, f"install {name}"))
    return found


def find(name: str) -> str | None:
    """The path of an optional program (MediaConch, MediaInfo), None where it is not installed:
    its caller records its check as not run, never as passed."""
    return shutil.which(name)


def tool_name(args: list[str]) -> str:
    """The program's name (``ffprobe``), for messages, from its command line's first word."""
    return Path(args[0]).name


def command_line(args: list[str], env: dict[str, str] | None = None) -> str:
    """``args`` as one shell line to re-run by hand, the variables in ``env`` set before it."""
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (env or {}).items()]
    return " ".join([*assignments, shlex.join(args)])


def run(
    args: list[str],
    *,
    timeout: float | None = None,
    hand_over_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` (program first) and log it; FFmpegError, with the program's stderr, on a
    non-zero exit; :class:`ToolStalled` if it runs past ``timeout`` seconds (it is killed).

    ``env`` is added to this process's environment for the program (and to the logged line).
    ``check=False`` is for a program whose exit code is itself a finding, not a failure of the
    run (ffmpeg decoding a damaged master): the caller reads ``returncode``.
    ``hand_over_fds`` are given to the program and closed here once it has them (see
    :func:`_spawn`)."""
    command = command_line(args, env)
    log.debug("running: %s", command)
    process = _spawn(
        args,
        hand_over_fds,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env} if env else None,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, late = process.communicate()
        text = late.decode("utf-8", "replace")
        raise ToolStalled(
            command, process.returncode, f"timed out after {timeout} s", text, tool_name(args)
        ) from None
    if process.returncode != 0:
        if check:
            raise FFmpegError(
                command, process.returncode, stderr.decode("utf-8", "replace"), tool_name(args)
            )
        log.debug("exited with %d (for the caller to read): %s", process.returncode, command)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def _spawn(
    args: list[str], hand_over_fds: tuple[int, ...], **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``args`` with ``hand_over_fds`` open in it, and close them here whatever happens: a
    pipe's reader sees its end only once no process but the writer holds the writing end."""
    tool = tool_name(args)
    try:
        return subprocess.Popen(args, pass_fds=hand_over_fds, **popen)
    except FileNotFoundError as exc:
        if exc.filename != args[0]:
            raise FFmpegError(shlex.join(args), 127, str(exc), tool) from None
        raise ToolMissing(tool, INSTALL.get(tool, f"install {tool}")) from None
    except OSError as exc:
        raise FFmpegError(shlex.join(args), 127, str(exc), tool) from None
    finally:
        for fd in hand_over_fds:
            os.close(fd)


def run_ffmpeg(
    stream: Any,
    *,
    timeout: float | None = None,
    input_args: list[str] | None = None,
    progress: Progress | None = None,
    hand_over_fds: tuple[int, ...] = (),
) -> list[str]:
    """Compile an ffmpeg-python stream graph, run it, and return the command line run.

    ``input_args`` go before the first input (e.g. ``-noautorotate``). With ``progress``, ffmpeg
    reports through ``-progress`` and a run that stops making progress is killed.
    ``hand_over_fds`` (an output ``pipe:N``) are given to ffmpeg and closed here."""
    try:
        args = _command(stream, input_args)
    except BaseException:
        for fd in hand_over_fds:
            os.close(fd)
        raise
    if progress is None:
        run(args, timeout=timeout, hand_over_fds=hand_over_fds)
        return args
    args = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    _run_with_progress(args, progress, timeout, hand_over_fds)
    return args


#: ffmpeg-python takes an output's options as a dict, one value per key; an option given more than
#: once (``-metadata:s:a:0`` for two tags of one stream, ``-attach`` for two files) needs a key per
#: occurrence. :func:`repeated_options` suffixes the later keys (``metadata:s:a:0@0001``), and the
#: command line is built without the suffix.
_REPEATED = re.compile(r"^(-[A-Za-z_][A-Za-z0-9_:]*)@\d{4}$")


def repeated_options(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Output options for ffmpeg-python, from ``(option, value)`` pairs in which an option may
    come more than once: each occurrence is given, in order (ffmpeg-python sorts the keys, and
    the suffixes sort as the occurrences do)."""
    options: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for option, value in pairs:
        count = seen.get(option, 0)
        options[option if count == 0 else f"{option}@{count:04d}"] = value
        seen[option] = count + 1
    return options


def _command(stream: Any, input_args: list[str] | None = None) -> list[str]:
    compiled = [
        _REPEATED.sub(r"\1", arg) for arg in ffmpeg.compile(stream, cmd=executable("ffmpeg"))
    ]
    return [compiled[0], *GLOBAL_ARGS, *(input_args or []), *compiled[1:]]


#: How much of the writer's output a pipe holds before the writer waits for its reader: about
#: six FFV1 frames of 1080p. A larger pipe lets the two share the cores more evenly; Linux's
#: default (64 KiB) holds less than one frame. 1 MiB is what an unprivileged process may ask.
PIPE_BYTES = 1 << 20


#: The descriptor the record of a piped run names for its pipe (the first a shell gives after
#: stdin, stdout and stderr): ``… pipe:3 3> >(reader)`` reproduces it in bash.
RECORDED_PIPE_FD = 3


@dataclass(frozen=True)
class PipedRun:
    """The two command lines of :func:`run_ffmpeg_piped` as recorded (the pipe numbered
    :data:`RECORDED_PIPE_FD`), and the shell line that reproduces them (bash's process
    substitution gives the reader the writer's ``pipe:N``)."""

    writer: list[str]
    reader: list[str]
    fd: int

    @property
    def shell_line(self) -> str:
        return f"{shlex.join(self.writer)} {self.fd}> >({shlex.join(self.reader)})"


def run_ffmpeg_piped(
    writer: Callable[[str], Any],
    reader: Any,
    *,
    timeout: float | None = None,
    input_args: list[str] | None = None,
    progress: Progress | None = None,
    reader_grace: float = 600,
) -> PipedRun:
    """Run two ffmpegs side by side, joined by a pipe: ``writer(url)`` is the graph of the first,
    which writes one of its outputs to ``url`` (``pipe:N``); ``reader`` is the graph of the
    second, whose input is ``pipe:0``, so it reads that output while it is being made.

    Why: the second's work (decoding a master for its proof) then runs beside the first's
    (encoding it), where it would otherwise follow it, on cores the first leaves idle.

    Failures stay clear: when the writer fails (or stalls, and is killed) the reader sees the end
    of its input and is reaped; the error is the writer's, with the reader's last words where it
    failed too (a reader that dies first makes the writer fail on a broken pipe). When the writer
    succeeds, the reader gets ``reader_grace`` seconds to finish the little the pipe still holds.
    """
    reader_args = _command(reader)
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # a smaller pipe only costs speed
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    log.debug(
        "running, reading pipe:%d of the next command: %s", write_end, shlex.join(reader_args)
    )
    with tempfile.TemporaryFile() as reader_stderr:
        try:
            reading = _spawn(
                reader_args, (), stdin=read_end, stdout=subprocess.DEVNULL, stderr=reader_stderr
            )
        except FFmpegError:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        try:
            try:
                writer_args = run_ffmpeg(
                    writer(f"pipe:{write_end}"),
                    timeout=timeout,
                    input_args=input_args,
                    progress=progress,
                    hand_over_fds=(write_end,),
                )
            except FFmpegError as exc:
                _end(reading, grace=3)  # it sees the end of its input: only for its last words
                if reading.returncode:
                    words = (
                        f"the command reading its pipe exited with {reading.returncode}:"
                        f" {_read_back(reader_stderr)}"
                    )
                    if isinstance(exc, ToolStalled):  # it stays what it was, with more words
                        raise ToolStalled(
                            exc.command,
                            exc.returncode,
                            exc.problem,
                            f"{exc.output}\n{words}",
                            exc.tool,
                        ) from None
                    raise FFmpegError(
                        exc.command, exc.returncode, f"{exc.stderr}\n{words}"
                    ) from None
                raise
            if not _end(reading, grace=reader_grace):
                raise ToolStalled(
                    shlex.join(reader_args),
                    -9,
                    f"not done {reader_grace:.0f} s after the command it reads",
                    "",
                )
            if reading.returncode != 0:
                raise FFmpegError(
                    shlex.join(reader_args), reading.returncode, _read_back(reader_stderr)
                )
        finally:
            _end(reading, grace=0)
    # The record names the pipe as a shell would number it, not as this process happened to:
    # the descriptor os.pipe() returned depends on what else was open (a logging handler, a
    # server's socket), and the bag's normalisation record must not vary with that.
    # (The url may stand inside another argument: a tee muxer's ``[f=matroska]pipe:N``.)
    ours = re.compile(rf"\bpipe:{write_end}(?!\d)")
    recorded = [ours.sub(f"pipe:{RECORDED_PIPE_FD}", argument) for argument in writer_args]
    return PipedRun(recorded, reader_args, RECORDED_PIPE_FD)


def _end(process: subprocess.Popen[bytes], grace: float) -> bool:
    """Wait up to ``grace`` seconds for ``process`` to end, then kill it. True if it ended
    by itself."""
    try:
        process.wait(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def _read_back(stderr: Any) -> str:
    """All a process wrote to ``stderr`` (a temporary file); FFmpegError keeps its tail."""
    stderr.seek(0)
    return stderr.read().decode("utf-8", "replace")


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


def _run_with_progress(
    args: list[str], progress: Progress, timeout: float | None, hand_over_fds: tuple[int, ...]
) -> None:
    command = shlex.join(args)
    log.debug("running: %s", command)
    deadline = time.monotonic() + timeout if timeout else None
    lines: queue.Queue[bytes | None] = queue.Queue()
    with tempfile.TemporaryFile() as stderr:
        process = _spawn(args, hand_over_fds, stdout=subprocess.PIPE, stderr=stderr)

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
        raise ToolStalled(command, returncode, problem, text)
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
