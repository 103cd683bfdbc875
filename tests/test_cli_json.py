"""`--json` prints one JSON document on stdout, for every command that has the flag: run as real
processes over an archive the demo made (its films' server is gone by then, as a source can be).
Also what needs a real bag: `cifa events ID --json` and `cifa inspect ID`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifa_ingest import cli
from tests.conftest import REPO, TEST_CONFIG

WORK = "cifa-demo-0001"
#: The work the deaccession case removes.
GONE = "cifa-demo-0002"


def _cifa(*args: str, cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, with the test suite's Prefect home and settings (or
    ``config``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if config is not None:
        env["CIFA_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A demo run (8 bags) with --json: its folder (archive/, demo/) and the run itself."""
    root = tmp_path_factory.mktemp("json")
    run = _cifa(
        "demo", "--archive", str(root / "archive"), "--workdir", str(root / "demo"),
        "--port", "0", "--json", "--quiet", cwd=root,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return root, run


def _commands_with_json() -> set[str]:
    commands = next(
        action
        for action in cli._parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return {
        name
        for name, parser in commands.choices.items()
        if any("--json" in action.option_strings for action in parser._actions)
    }


#: Each command with --json, its arguments (ROOT: the demo's folder) and the exit codes it may
#: end with here (watch: 1, the demo's sources are gone).
CASES = {
    "demo": None,  # the fixture's own run
    "ingest": (["ingest", "ROOT/demo/demo-catalogue.yaml", "--only", WORK,
                "--allow-private-sources"], {0}),
    "preserve": (["preserve", "http://127.0.0.1:9/films/x.mkv", "--id", WORK, "--title", "X",
                  "--granted-by", "T", "--allow-private-sources"], {0}),
    "watch": (["watch", "--only", WORK, "--allow-private-sources"], {1}),
    "audit": (["audit"], {0}),
    "ledger": (["ledger", "verify"], {0}),
    "status": (["status"], {0}),
    "events": (["events", WORK], {0}),
    "validate": (["validate", f"ROOT/archive/bags/{WORK}", "--fast"], {0}),
    "bag": (["bag", "ROOT/to-bag"], {0}),
    "inspect": (["inspect", WORK], {0}),
    "replicate": (["replicate"], {0}),  # to ROOT/disk2, the one location of its settings
    "repair": (["repair", WORK], {0}),  # the primary alone: no location in the settings
    "restore": (["restore", WORK, "--to", "ROOT/restored"], {0}),
    # From the second copy the demo made (ROOT/demo/replica), declared in its settings; no
    # --archive: the archive it makes is --to.
    "recover": (["recover", "--from", "demo-replica", "--to", "ROOT/recovered"], {0}),
    "doctor": (["doctor"], {0}),  # no --archive: it reads none
    # Over the work's versions (its first, made here if the demo's ingest did not record it).
    "history": (["history", WORK], {0}),
    "export": (["export", WORK, "--to", "ROOT/exported"], {0}),
    # The demo's work is at the current policy's master already: refused, exit 1, said in JSON.
    "renormalise": (["renormalise", WORK], {1}),
    # The demo's films are no longer served: the fetch fails, exit 1, said in JSON.
    "recapture": (["recapture", WORK, "ROOT/demo/demo-catalogue.yaml", "--allow-private-sources"],
                  {1}),
    # Another work than WORK (the cases after it still need WORK whole); no location here.
    "deaccession": (["deaccession", GONE, "--reason", "a test of the JSON"], {0}),
}  # fmt: skip


def test_the_cases_are_every_command_with_json() -> None:
    assert set(CASES) == _commands_with_json()


def _with_a_version(archive: Path, work: str = WORK) -> None:
    """The work's bag as its first version in ARCHIVE/objects/, unless it has one already."""
    from cifa_ingest.versions import User, add_version, head

    if head(archive / "objects", work) is None:
        add_version(
            archive / "objects", work, archive / "bags" / work, message="preserved",
            user=User("tests"), staging_dir=archive / "staging",
        )  # fmt: skip


@pytest.mark.parametrize("command", sorted(CASES))
def test_json_is_json(demo: tuple[Path, subprocess.CompletedProcess[str]], command: str) -> None:
    root, run = demo
    case = CASES[command]
    if case is not None:
        args, codes = case
        config = None
        if command == "bag":
            (root / "to-bag").mkdir()
            (root / "to-bag" / "notes.txt").write_text("a film's notes\n", "utf-8")
        if command == "replicate":
            (root / "disk2").mkdir()
            config = root / "replicate.toml"
            config.write_text(
                TEST_CONFIG.read_text("utf-8") + '\n[[storage.locations]]\nname = "disk2"\n'
                f'kind = "filesystem"\npath = "{root / "disk2"}"\nzone = "here"\n',
                "utf-8",
            )
        if command == "recover":
            config = root / "recover.toml"
            config.write_text(
                TEST_CONFIG.read_text("utf-8") + '\n[[storage.locations]]\nname = "demo-replica"\n'
                f'kind = "filesystem"\npath = "{root / "demo" / "replica"}"\nzone = "here"\n',
                "utf-8",
            )
        if command in ("history", "export", "renormalise", "recapture"):
            _with_a_version(root / "archive")
        if command == "deaccession":
            _with_a_version(root / "archive", GONE)
        args = [a.replace("ROOT", str(root)) for a in args]
        if command not in ("recover", "doctor"):
            args += ["--archive", str(root / "archive")]
        run = _cifa(*args, "--json", "--quiet", cwd=root, config=config)
        assert run.returncode in codes, run.stderr
    assert "Traceback" not in run.stderr
    document = json.loads(run.stdout)
    assert isinstance(document, dict) and document


def test_events_json_are_the_premis_events_as_objects(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, _run = demo
    archive = ["--archive", str(root / "archive")]
    assert _cifa("audit", *archive, "--quiet", cwd=root).returncode == 0  # a fixity check event
    xml = _cifa("events", WORK, *archive, cwd=root)
    assert xml.returncode == 0 and xml.stdout.startswith("<?xml")
    result = _cifa("events", WORK, *archive, "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["id"] == WORK and found["bag"] == f"bags/{WORK}"
    events = found["events"]
    assert len(events) == xml.stdout.count("<premis:event>")
    capture = events[0]
    assert capture["type"] == "capture" and capture["outcome"] == "success"
    assert capture["date_time"] and capture["detail"] and capture["identifier"]
    assert {"executing program"} <= {role for a in capture["agents"] for role in a["roles"]}
    assert all(a["name"] for e in events for a in e["agents"])
    assert {"fixity check", "ingestion"} <= {e["type"] for e in events}


def test_inspect_takes_a_work_id_as_it_takes_its_bag(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, _run = demo
    archive = ["--archive", str(root / "archive")]
    by_id = _cifa("inspect", WORK, *archive, cwd=root)
    assert by_id.returncode == 0, by_id.stderr
    assert f"data/master/{WORK}.mkv: " in by_id.stdout and "every slice CRC matches" in by_id.stdout
    by_path = _cifa("inspect", str(root / "archive" / "bags" / WORK), cwd=root)
    assert by_path.returncode == 0 and by_path.stdout == by_id.stdout
    unknown = _cifa("inspect", "cifa-demo-0404", *archive, cwd=root)
    assert unknown.returncode == 2 and "cifa-demo-0404: no such bag in the ledger" in unknown.stderr
    assert "Traceback" not in unknown.stderr
