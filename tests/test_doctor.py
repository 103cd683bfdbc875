"""The JavaScript runtime and the challenge solver YouTube needs, installed by the project and
found by yt-dlp with no user step (issue 17), and ``cifa doctor``, which says what the pipeline
would run with and names what is missing.

yt-dlp is asked itself, with the options a capture gives it, which runtime and solver it uses:
no mock. The environment's ``bin/`` is taken off ``PATH`` first, as it is when someone runs
``.venv/bin/cifa`` or Prefect runs a flow.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yt_dlp
from yt_dlp.extractor.youtube.jsc._builtin.deno import DenoJCP
from yt_dlp.extractor.youtube.jsc._builtin.ejs import ScriptSource
from yt_dlp.extractor.youtube.jsc.provider import JsChallengeProviderError

from cifa_ingest import cli
from cifa_ingest.config import FetchSettings
from cifa_ingest.fetch import js_runtime
from cifa_ingest.fetch.ytdlp import ytdlp_params
from cifa_ingest.tools import runner
from tests.conftest import REPO, TEST_CONFIG
from tests.test_docs import _assert_documented

#: The deno the project installs: in the environment's bin/, beside this Python.
PROJECT_DENO = Path(sys.executable).parent / "deno"
NAMES = [
    "python", "cifa-ingest", "yt-dlp", "deno", "yt-dlp-ejs", "ffmpeg", "ffprobe", "mkvpropedit",
    "mediaconch", "mediainfo", "prefect", "boto3",
]  # fmt: skip


@pytest.fixture
def path_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH without the virtual environment's bin/ (nor any other deno)."""
    kept = [
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "deno").exists()
    ]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    assert shutil.which("deno") is None


class _Log:
    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


@pytest.mark.usefixtures("path_without_the_environment")
def test_ytdlp_uses_the_project_deno_and_solver_with_our_options(tmp_path: Path) -> None:
    """Given a capture's options, yt-dlp finds the project's Deno (by path, not PATH) and the
    yt-dlp-ejs package's solver scripts (not its own copy, nor the web's), and Deno runs them."""
    assert PROJECT_DENO.is_file()
    params = ytdlp_params(FetchSettings(), tmp_path, "cifa-0001")
    assert params["remote_components"] == []
    with yt_dlp.YoutubeDL(params) as ydl:
        info = ydl._js_runtimes["deno"].info  # yt-dlp's own finding
        assert info is not None and info.supported
        assert Path(info.path) == PROJECT_DENO
        solver = DenoJCP(ydl.get_info_extractor("Youtube"), _Log(), {})
        assert solver.is_available()
        assert solver._lib_script.source is ScriptSource.PYPACKAGE
        assert solver._core_script.source is ScriptSource.PYPACKAGE
        # Deno runs the solver on a player that is not YouTube's: the solver's own refusal,
        # thrown in JavaScript, not a runtime that cannot start.
        with pytest.raises(JsChallengeProviderError, match="Uncaught"):
            solver._run_js_runtime(solver._construct_stdin("var player = 1;", False, []))
    # Through the one runner, as cifa doctor runs it.
    answer = runner.run([info.path, "--version"], timeout=60).stdout.decode()
    assert answer.startswith(f"deno {info.version} ")
    tools = js_runtime.in_use(FetchSettings())
    assert tools.record() == {
        "yt-dlp": yt_dlp.version.__version__,
        "js_runtime": {"name": "deno", "version": info.version},
        "challenge_solver": {"name": "yt-dlp-ejs", "version": tools.solver_version},
    }


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["doctor", "--quiet", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("path_without_the_environment")
def test_doctor_names_everything_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _doctor(capsys)
    assert code == 0, err
    lines = out.splitlines()
    for name in NAMES:
        [line] = [line for line in lines if line.split()[1] == name]
        assert line.startswith("ok "), line
    assert f"{PROJECT_DENO}" in out
    code, out, _ = _doctor(capsys, "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"]
    assert [tool["name"] for tool in document["tools"]] == NAMES
    assert all(tool["ok"] and tool["version"] for tool in document["tools"])
    _assert_documented("## `cifa doctor`", document)


def test_doctor_names_a_missing_program(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATH with every program but ffmpeg: exit 1, ffmpeg named with how to install it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("ffprobe", "mkvpropedit", "mediaconch", "mediainfo"):
        found = shutil.which(name)
        assert found, name
        (folder / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(folder))
    code, out, err = _doctor(capsys, "--json")
    assert code == 1
    document = json.loads(out)
    assert not document["ok"]
    assert [tool["name"] for tool in document["tools"] if not tool["ok"]] == ["ffmpeg"]
    assert "cifa doctor: ffmpeg: not found on PATH: install ffmpeg (make setup does)" in err
    assert "Traceback" not in err


def test_doctor_names_a_deno_that_is_not_there(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cifa.toml"
    nowhere = tmp_path / "no-such" / "deno"
    config.write_text(
        TEST_CONFIG.read_text("utf-8").replace("[fetch]\n", f'[fetch]\ndeno = "{nowhere}"\n', 1),
        "utf-8",
    )
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    code, out, err = _doctor(capsys)
    assert code == 1
    [line] = [line for line in out.splitlines() if line.split()[1:2] == ["deno"]]
    assert line.startswith("MISSING "), line
    assert f"cifa doctor: deno: yt-dlp finds no deno at {nowhere} ([fetch] deno)" in err
    assert "make setup" in err and "Traceback" not in err
    # yt-dlp-ejs is still there; only the runtime is missing.
    assert [line for line in out.splitlines() if line.startswith("MISSING")] == [line]


def test_the_lock_pins_the_runtime_and_the_solver() -> None:
    """CI installs from a fresh clone: the lock, not this environment, must hold them."""
    lock = (REPO / "requirements.lock").read_text("utf-8").splitlines()
    assert any(line.startswith("deno==") for line in lock)
    assert any(line.startswith("yt-dlp-ejs==") for line in lock)
