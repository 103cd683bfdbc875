"""The ffmpeg runner's pipe between two ffmpegs (the master's encode and its proof's decode),
with the real ffmpeg: what it makes, the shell line it logs, and how it fails when the reading
side exits or hangs (an ffmpeg wrapper on PATH makes it do so)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import ffmpeg
import pytest

from cifa_ingest.errors import FFmpegError
from cifa_ingest.tools import runner as ffmpeg_runner
from tests.helpers import processes_naming


def _writer(tmp_path: Path, seconds: float = 2) -> Callable[[str], object]:
    """A graph writing FFV1 to a file and, through tee, to ``url``."""
    source = ffmpeg.input(f"testsrc2=size=320x240:rate=25:duration={seconds}", f="lavfi")
    target = tmp_path / "out.mkv"
    return lambda url: ffmpeg.output(
        source, f"[f=matroska]{target}|[f=matroska]{url}", f="tee", c="ffv1", map="0"
    )


def _reader(tmp_path: Path) -> object:
    return ffmpeg.output(
        ffmpeg.input("pipe:0", f="matroska"), str(tmp_path / "read.framemd5"), f="framemd5"
    )


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_reader_reads_what_the_writer_writes_and_the_shell_line_does_the_same(
    tmp_path: Path,
) -> None:
    before = _open_fds()
    run = ffmpeg_runner.run_ffmpeg_piped(_writer(tmp_path), _reader(tmp_path))
    assert _open_fds() == before, "both ends of the pipe are closed"
    read = (tmp_path / "read.framemd5").read_text("utf-8")
    assert read.count("\n0,") == 50
    # The logged line, pasted into bash, does the same (the archivist's reproduction).
    first = read
    (tmp_path / "read.framemd5").unlink()
    subprocess.run(["bash", "-c", run.shell_line + "; wait"], check=True, capture_output=True)
    assert (tmp_path / "read.framemd5").read_text("utf-8") == first


@pytest.fixture
def reader_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Sets how the ffmpeg reading the pipe misbehaves: 'exit' at once, or 'hang' (stopped)."""
    real = shutil.which("ffmpeg")
    assert real
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def make(fault: str) -> None:
        action = {"exit": "exit 3", "hang": "kill -STOP $$"}[fault]
        wrapper = bin_dir / "ffmpeg"
        wrapper.write_text(
            f'#!/bin/sh\ncase "$*" in *"-i pipe:0"*) {action} ;; esac\nexec {real} "$@"\n', "utf-8"
        )
        wrapper.chmod(0o755)

    return make


def test_a_reader_that_exits_is_named_in_the_error(tmp_path: Path, reader_fault) -> None:
    """ffmpeg 5.1 may finish writing to a pipe nobody reads (it ignores SIGPIPE, and the tee
    muxer does not always see the write fail): the reader's exit is what tells."""
    reader_fault("exit")
    before = _open_fds()
    with pytest.raises(FFmpegError, match="exited with 3") as caught:
        ffmpeg_runner.run_ffmpeg_piped(_writer(tmp_path, seconds=3), _reader(tmp_path))
    assert "-i pipe:0" in str(caught.value)
    assert _open_fds() == before
    assert processes_naming(str(tmp_path)) == []


def test_a_hung_reader_stalls_the_writer_and_both_are_killed(tmp_path: Path, reader_fault) -> None:
    """The pipe fills, the writer waits, makes no progress and is killed; so is the reader."""
    reader_fault("hang")
    progress = ffmpeg_runner.Progress("hung reader", 30, stall_seconds=2, interval=60)
    with pytest.raises(FFmpegError, match="ffmpeg killed: no progress for 2 s"):
        ffmpeg_runner.run_ffmpeg_piped(
            _writer(tmp_path, seconds=30), _reader(tmp_path), progress=progress
        )
    assert processes_naming(str(tmp_path)) == []


def test_a_reader_still_busy_after_its_writer_is_killed_after_the_grace(
    tmp_path: Path, reader_fault
) -> None:
    """A film small enough to fit in the pipe: the writer ends, the stopped reader does not."""
    reader_fault("hang")
    with pytest.raises(FFmpegError, match="ffmpeg killed: not done 1 s after the command"):
        ffmpeg_runner.run_ffmpeg_piped(
            _writer(tmp_path, seconds=0.2), _reader(tmp_path), reader_grace=1
        )
    assert processes_naming(str(tmp_path)) == []
