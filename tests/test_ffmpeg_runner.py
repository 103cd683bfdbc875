"""The runner of every external program, with real programs: its pipe between two ffmpegs (the
master's encode and its proof's decode), what it makes, the shell line it logs, and how it fails
when the reading side exits or hangs (an ffmpeg wrapper on PATH makes it do so); and, for any
program, its time limit, a non-zero exit, a program that is not installed, and the optional
programs (MediaConch, MediaInfo) recorded as not run where they are missing or fail."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import ffmpeg
import pytest

from cifa_ingest.config import load_settings, mediaconch_policy_path
from cifa_ingest.errors import FFmpegError, ToolMissing, ToolStalled
from cifa_ingest.normalise import mediaconch
from cifa_ingest.tools import mediainfo, runner
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
    run = runner.run_ffmpeg_piped(_writer(tmp_path), _reader(tmp_path))
    assert _open_fds() == before, "both ends of the pipe are closed"
    read = (tmp_path / "read.framemd5").read_text("utf-8")
    assert read.count("\n0,") == 50
    # The logged line, pasted into bash, does the same (the archivist's reproduction).
    first = read
    (tmp_path / "read.framemd5").unlink()
    subprocess.run(["bash", "-c", run.shell_line + "; wait"], check=True, capture_output=True)
    assert (tmp_path / "read.framemd5").read_text("utf-8") == first
    # The record does not depend on which descriptors this process had open.
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
    try:
        again = runner.run_ffmpeg_piped(_writer(tmp_path), _reader(tmp_path))
    finally:
        for fd in held:
            os.close(fd)
    assert again == run and any("pipe:3" in argument for argument in run.writer)


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
        runner.run_ffmpeg_piped(_writer(tmp_path, seconds=3), _reader(tmp_path))
    assert "-i pipe:0" in str(caught.value)
    assert _open_fds() == before
    assert processes_naming(str(tmp_path)) == []


def test_a_hung_reader_stalls_the_writer_and_both_are_killed(tmp_path: Path, reader_fault) -> None:
    """The pipe fills, the writer waits, makes no progress and is killed; so is the reader."""
    reader_fault("hang")
    progress = runner.Progress("hung reader", 30, stall_seconds=2, interval=60)
    with pytest.raises(FFmpegError, match="ffmpeg killed: no progress for 2 s") as caught:
        runner.run_ffmpeg_piped(_writer(tmp_path, seconds=30), _reader(tmp_path), progress=progress)
    assert isinstance(caught.value, ToolStalled) and caught.value.problem == "no progress for 2 s"
    assert processes_naming(str(tmp_path)) == []


def test_a_reader_still_busy_after_its_writer_is_killed_after_the_grace(
    tmp_path: Path, reader_fault
) -> None:
    """A film small enough to fit in the pipe: the writer ends, the stopped reader does not."""
    reader_fault("hang")
    killed = "ffmpeg killed: not done 1 s after the command"
    with pytest.raises(FFmpegError, match=killed) as caught:
        runner.run_ffmpeg_piped(_writer(tmp_path, seconds=0.2), _reader(tmp_path), reader_grace=1)
    assert isinstance(caught.value, ToolStalled)
    assert caught.value.killed == "ffmpeg killed: not done 1 s after the command it reads"
    assert processes_naming(str(tmp_path)) == []


# Any program: the runner's time limit, exit codes, missing programs, logged command lines.


def test_a_program_past_its_time_limit_is_killed_and_says_so() -> None:
    """The fact (killed by the runner, and why) is carried by the error's type and fields, not
    only its words; the program is gone when the error is raised."""
    started = time.monotonic()
    with pytest.raises(ToolStalled) as caught:
        runner.run([runner.executable("sleep"), "30"], timeout=0.5)
    assert time.monotonic() - started < 10
    stalled = caught.value
    assert (stalled.tool, stalled.problem) == ("sleep", "timed out after 0.5 s")
    assert stalled.killed == "sleep killed: timed out after 0.5 s"
    assert stalled.returncode < 0  # killed, not exited
    assert str(stalled).startswith(f"sleep exited with {stalled.returncode}: ")
    assert "sleep killed: timed out after 0.5 s" in str(stalled)
    assert processes_naming("sleep 30") == []


def test_a_non_zero_exit_is_an_error_with_the_programs_words() -> None:
    script = "echo 'what went wrong' >&2; exit 3"
    with pytest.raises(FFmpegError) as caught:
        runner.run(["sh", "-c", script])
    assert not isinstance(caught.value, ToolStalled | ToolMissing)
    assert (caught.value.tool, caught.value.returncode) == ("sh", 3)
    command = shlex.join(["sh", "-c", script])
    assert str(caught.value) == f"sh exited with 3: {command}\nwhat went wrong"


def test_an_exit_code_that_is_a_finding_is_returned_when_asked() -> None:
    """check=False: the caller reads the exit code (ffmpeg decoding a damaged master)."""
    completed = runner.run([runner.executable("false")], check=False)
    assert completed.returncode == 1


def test_ffmpeg_and_ffprobe_errors_say_ffmpeg_as_they_always_have(tmp_path: Path) -> None:
    with pytest.raises(FFmpegError) as caught:
        runner.probe(tmp_path / "no such film.mkv")
    assert caught.value.tool == "ffprobe"
    assert str(caught.value).startswith("ffmpeg exited with 1: ")
    assert "no such film.mkv" in str(caught.value)


def test_a_missing_program_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing) as caught:
        runner.executable("ffmpeg")
    assert caught.value.returncode == 127 and caught.value.tool == "ffmpeg"
    assert str(caught.value) == (
        "ffmpeg exited with 127: ffmpeg\nffmpeg not found: install ffmpeg (make setup does)"
    )
    with pytest.raises(ToolMissing, match="mkvpropedit not found: install mkvtoolnix"):
        runner.executable("mkvpropedit")
    # A command line naming a program that is not there: the same error, not an OSError.
    with pytest.raises(ToolMissing, match="cifa-no-such-tool not found: install cifa-no-such"):
        runner.run(["cifa-no-such-tool", "--version"])
    assert runner.find("mediaconch") is None


def test_the_logged_command_line_reruns_the_same_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the variables the program was given, quoted: pasted into a shell, it does the same."""
    script = 'test "$CIFA_RUNNER_TEST" = "a b; c"'
    with caplog.at_level(logging.DEBUG, logger="cifa_ingest.tools.runner"):
        runner.run(["sh", "-c", script], env={"CIFA_RUNNER_TEST": "a b; c"})
    logged = [r.getMessage().removeprefix("running: ") for r in caplog.records]
    assert logged == [f"CIFA_RUNNER_TEST='a b; c' sh -c '{script}'"]
    rerun = subprocess.run(["bash", "-c", logged[0]], check=False, env={"PATH": os.environ["PATH"]})
    assert rerun.returncode == 0


def test_missing_optional_programs_are_recorded_as_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MediaConch and MediaInfo are optional: without them, the check is not run (and says why)
    and there is no description, never a pass."""
    master = tmp_path / "film.mkv"
    master.write_bytes(b"not looked at")
    policy = mediaconch_policy_path(load_settings())
    monkeypatch.setenv("PATH", "/nonexistent")
    check = mediaconch.check_master(master, policy)
    assert (check.outcome, check.detail) == ("not-run", "MediaConch is not installed")
    assert mediainfo.describe(master) is None


@pytest.mark.skipif(not shutil.which("mediaconch"), reason="MediaConch is not installed")
def test_a_mediaconch_run_that_fails_is_a_check_not_run(tmp_path: Path) -> None:
    """MediaConch exits non-zero when it cannot read the file: the check is not run, with
    MediaConch's words, never a pass, and the work goes on."""
    check = mediaconch.check_master(tmp_path / "gone.mkv", mediaconch_policy_path(load_settings()))
    assert check.outcome == "not-run"
    assert check.detail is not None and check.detail.startswith("no report: ")
    assert "gone.mkv" in check.detail
