"""No shell anywhere, and no untrusted string can become an ffmpeg or yt-dlp option.

Read from the code's syntax tree (a grep would miss ``shell = True`` written across lines, and
would flag the words in docstrings): every process the library and the flows start is started
from an argument list, without a shell; yt-dlp is only ever a library (its options are a Python
dict: a URL or a title cannot be parsed as a command-line option). File names given to ffmpeg
come from the work's id, which cannot begin with ``-``, inside an absolute archive path (checked
on real commands in tests/test_hostile_remote_data.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from cifa_ingest.catalogue.model import Work
from tests.conftest import REPO

SOURCES = sorted((REPO / "cifa_ingest").rglob("*.py")) + sorted((REPO / "pipelines").rglob("*.py"))
#: Calls that start a process from a list (a string is refused below).
PROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec"}
#: Calls that always go through a shell, or run a command line as one string.
SHELL_CALLS = {
    "os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell", "pty.spawn", "commands.getoutput",
}  # fmt: skip
#: yt-dlp's command-line entry points: options parsed from strings.
YTDLP_CLI = {"main", "_real_main", "parse_options"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_string_command(node: ast.AST) -> bool:
    """A command written as one string: a literal, an f-string, a concatenation, a format or a
    join (a list is the only safe form)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr | ast.BinOp):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in {"format", "join"} and not _dotted(node.func).startswith("os.path")
    return False


def _problems(source: str, where: str) -> list[str]:
    """Every forbidden call in ``source``, as ``where:line: what``."""
    tree = ast.parse(source, filename=where)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{where}:{node.lineno}: {name}(shell=…) not False")
            if name in SHELL_CALLS or name.startswith("os.exec") or name.startswith("os.spawn"):
                found.append(f"{where}:{node.lineno}: {name} runs a command line")
            last = name.rsplit(".", 1)[-1]
            starts_process = last in PROCESS_CALLS and ("subprocess" in name or "asyncio" in name)
            if starts_process and node.args and _is_string_command(node.args[0]):
                found.append(f"{where}:{node.lineno}: {name} with a string command")
            if name.startswith("yt_dlp.") and last in YTDLP_CLI:
                found.append(f"{where}:{node.lineno}: yt-dlp's command-line parser ({name})")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yt_dlp"):
            for alias in node.names:
                if alias.name in YTDLP_CLI:
                    found.append(f"{where}:{node.lineno}: imports yt-dlp's {alias.name}")
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value in {"yt-dlp", "youtube-dl", "sh"}:
                found.append(f"{where}:{node.lineno}: runs {first.value} as a program")
    return found


def test_the_check_finds_what_it_looks_for() -> None:
    """The checker itself, on code that does every forbidden thing once."""
    bad = (
        "import os, subprocess\nfrom yt_dlp import main\n"
        "subprocess.run('ffmpeg -i ' + name, shell=True)\n"
        "subprocess.Popen(f'ffmpeg -i {name}')\n"
        "subprocess.check_output(' '.join(args))\n"
        "os.system('ls')\nos.execvp('sh', ['sh'])\n"
        "subprocess.run(['yt-dlp', url])\n"
        "subprocess.run(args, shell=flag)\n"
    )
    found = _problems(bad, "probe.py")
    # line 3 twice (shell and a string), line 7 twice (exec, and sh as a program)
    assert sorted(int(f.split(":")[1]) for f in found) == [2, 3, 3, 4, 5, 6, 7, 7, 8, 9], found
    assert _problems("subprocess.run(['ffmpeg', '-i', path], shell=False)\n", "ok.py") == []


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_no_shell_and_no_string_command(path: Path) -> None:
    assert _problems(path.read_text("utf-8"), str(path.relative_to(REPO))) == []


def test_processes_are_started_in_the_one_runner_and_all_from_lists() -> None:
    """The check is not vacuous: the code does start processes, each call's command is a list or
    a name bound to one, and every external tool (ffmpeg, ffprobe, mkvpropedit, MediaConch,
    MediaInfo) is started by the one runner, which logs, times and checks it. The only other
    process is the Prefect server ``cifa serve`` keeps for its lifetime, a service, not a tool."""
    places = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func) in {
                "subprocess.run",
                "subprocess.Popen",
                "subprocess.call",
                "subprocess.check_call",
                "subprocess.check_output",
                "os.system",
                "os.popen",
            }:
                places.append(str(path.relative_to(REPO)))
                assert isinstance(node.args[0], ast.List | ast.Name), ast.unparse(node)
    assert sorted(set(places)) == ["cifa_ingest/tools/runner.py", "pipelines/local_server.py"]


@pytest.mark.parametrize("work_id", ["-i", "-rf", "--help", "-y", "-cifa-0001"])
def test_no_work_id_can_begin_with_a_hyphen(work_id: str) -> None:
    """Every file the pipeline names is ``<id>…`` (originals, masters, access copies): an id
    cannot start with ``-``, so no file name can be read by ffmpeg as an option, even where a
    path were relative."""
    with pytest.raises(ValidationError, match="id"):
        Work.model_validate(
            {
                "id": work_id,
                "title": {"en": "A film"},
                "source": {"url": None},
                "permission": {"status": "pending"},
            }
        )
