"""Bad input: exit code 2, a message naming file, entry and field, no traceback, nothing fetched,
nothing written, and Prefect never started. Run as real processes, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO

DATA = Path(__file__).parent / "data" / "catalogues"

_RUN_CLI = (
    "import sys; from cifa_ingest import cli; status = cli.main(sys.argv[1:]);"
    "print('prefect imported' if 'prefect' in sys.modules else 'prefect not imported',"
    " file=sys.stderr); sys.exit(status)"
)


def _cifa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)},
    )


def test_malformed_catalogue_exits_2_naming_the_field(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    result = _cifa(
        "ingest", str(DATA / "invalid" / "granted-without-granted-by.yaml"),
        "--archive", str(archive), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "granted-without-granted-by.yaml: works[0] (cifa-0001): permission" in result.stderr
    assert "granted_by is required" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "prefect not imported" in result.stderr
    assert not archive.exists()


def test_private_source_without_flag_exits_2_before_any_request(
    tmp_path: Path, film_server: LocalFileServer
) -> None:
    catalogue = tmp_path / "c.yaml"
    catalogue.write_text(
        "works:\n- id: cifa-0001\n  title: {en: A}\n"
        f"  source: {{url: '{film_server.base_url}/films/colour-bars.mkv'}}\n"
        "  permission: {status: granted, granted_by: X}\n",
        "utf-8",
    )
    result = _cifa("ingest", str(catalogue), "--archive", str(tmp_path / "a"), cwd=tmp_path)
    assert result.returncode == 2
    assert "c.yaml: works[0] (cifa-0001): source.url: " in result.stderr
    assert "address 127.0.0.1 is not a public address" in result.stderr
    assert film_server.requests == []
    assert not (tmp_path / "a").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert _cifa("ingest", cwd=tmp_path).returncode == 2
    assert _cifa("no-such-command", cwd=tmp_path).returncode == 2
    result = _cifa("ingest", str(DATA / "valid" / "full.yaml"), "--only", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "--only: no such work" in result.stderr


def test_bad_config_exits_2(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "cifa.toml").write_text("[fetch]\nretries = 'many'\n")
    result = _cifa("ingest", str(DATA / "valid" / "minimal.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "fetch.retries" in result.stderr
    assert "Traceback" not in result.stderr


def test_real_catalogue_runs_cleanly_without_internet(tmp_path: Path) -> None:
    """No work of the real catalogue has an address yet: nothing is fetched, each is reported."""
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "ingest", str(REPO / "manifests" / "cifa.yaml"),
         "--archive", str(tmp_path / "archive")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
             "PREFECT_HOME": str(tmp_path / "prefect")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Bumming in Beijing" in result.stdout
    assert "awaiting source address" in result.stdout
    assert "not permitted" in result.stdout
    assert "13 works: 0 preserved" in result.stdout
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Errors that mislead (issue 13): each refused with exit 2 and a message saying what is wrong.


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def _empty_archive(root: Path) -> Path:
    """An archive that holds nothing yet: its ledger, no bag."""
    from cifa_ingest.archive.ledger import Ledger

    root.mkdir()
    Ledger(root / "ledger.sqlite")
    return root


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fixity_full", "0 5 * * 7 *"),  # cronsim took it, then `cifa serve` died on it
        ("nightly_ingest", "61 2 * * *"),
        ("fixity_rolling", "H 4 * * *"),  # croniter's hashed form: Prefect refuses it
        ("timezone", "posixrules"),  # ZoneInfo opens it; Prefect refuses it
    ],
)
def test_a_schedule_prefect_refuses_is_refused_when_the_settings_are_read(
    tmp_path: Path, key: str, value: str
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "cifa.toml").write_text(f'[schedules]\n{key} = "{value}"\n')
    archive = _empty_archive(tmp_path / "archive")
    for command in (["status"], ["audit"], ["events", "cifa-0001"]):
        result = _cifa(*command, "--archive", str(archive), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"config/cifa.toml: schedules.{key}: " in result.stderr
        assert "Prefect's scheduler refuses it" in result.stderr and value in result.stderr
        _no_traceback(result)


def test_a_schedule_prefect_takes_is_taken_without_starting_prefect(tmp_path: Path) -> None:
    """``@weekly`` (which cronsim refused) and a sixth field, seconds, are Prefect's croniter's."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "cifa.toml").write_text(
        '[schedules]\ntimezone = "Asia/Shanghai"\nfixity_full = "@weekly"\n'
        'nightly_ingest = "0 2 * * * 0"\n'
    )
    result = _cifa("status", "--archive", str(_empty_archive(tmp_path / "a")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "prefect not imported" in result.stderr


@pytest.mark.parametrize(
    "cron",
    ["0 5 * * 7 *", "0 5 * * 7", "0 5 * * * *", "0 5 * * 1 2 3", "61 5 * * *", "@daily",
     "H 5 * * *", "0 5 L * *", "0 5 * * 5#2", "*/0 * * * *", "0 5 * * mon-fri", "", "x"],
)  # fmt: skip
def test_the_settings_take_exactly_the_crons_prefect_takes(cron: str) -> None:
    """The settings' quick check (Prefect's croniter, loaded without Prefect) agrees with
    Prefect's own CronSchedule, so that a Prefect upgrade that changes either is seen here."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    from cifa_ingest.config import ScheduleSettings

    def taken(check: Callable[[], object]) -> bool:
        try:
            check()
        except ValidationError:
            return False
        return True

    prefect_takes = taken(lambda: CronSchedule(cron=cron, timezone="Europe/London"))
    assert taken(lambda: ScheduleSettings(fixity_full=cron)) is prefect_takes


READING_COMMANDS = [
    ["status"],
    ["audit"],
    ["ledger", "verify"],
    ["events", "cifa-0001"],
    ["inspect", "cifa-0001"],
    ["watch"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=lambda c: c[0])
def test_every_reading_command_refuses_a_path_that_is_not_an_archive(
    tmp_path: Path, command: list[str]
) -> None:
    nowhere = tmp_path / "no" / "such" / "archive"
    for where in (["--archive", str(nowhere)], ["--archive", str(tmp_path)]):
        result = _cifa(*command, *where, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{where[1]}: no archive here (no ledger.sqlite" in result.stderr
        assert result.stdout == ""
        _no_traceback(result)
    assert not nowhere.parent.parent.exists()
    positional = _cifa("audit", str(nowhere), cwd=tmp_path)
    assert positional.returncode == 2 and "no archive here" in positional.stderr


def test_status_without_its_catalogue_says_so_instead_of_counting_nothing(tmp_path: Path) -> None:
    archive = str(_empty_archive(tmp_path / "archive"))
    looked_for = tmp_path / "manifests" / "cifa.yaml"  # the default, relative to the directory
    result = _cifa("status", "--archive", archive, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"unknown (no catalogue at {looked_for})" in result.stdout
    assert "Awaiting a source address: 0" not in result.stdout
    as_json = json.loads(_cifa("status", "--archive", archive, "--json", cwd=tmp_path).stdout)
    assert as_json["awaiting_source"] is None and as_json["awaiting_permission"] is None
    assert as_json["missing_catalogues"] == [str(looked_for)]
    looked_for.parent.mkdir()
    looked_for.write_text((DATA / "valid" / "minimal.yaml").read_text("utf-8"), "utf-8")
    counted = json.loads(_cifa("status", "--archive", archive, "--json", cwd=tmp_path).stdout)
    assert counted["catalogues"] == [str(looked_for)] and counted["missing_catalogues"] == []
    assert isinstance(counted["awaiting_source"], list)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("Not An Id", "Not An Id: neither a bag directory nor a work id (lowercase letters"),
        ("../../etc", "../../etc: neither a bag directory nor a work id"),
        ("cifa-0404", "cifa-0404: no such bag in the ledger of "),
        (".", ".: not a bag (no bagit.txt)"),
    ],
)
def test_inspect_refuses_what_is_neither_a_bag_nor_a_preserved_work(
    tmp_path: Path, argument: str, message: str
) -> None:
    archive = _empty_archive(tmp_path / "archive")
    result = _cifa("inspect", argument, "--archive", str(archive), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    _no_traceback(result)


def test_events_refuses_an_id_that_is_not_one(tmp_path: Path) -> None:
    archive = _empty_archive(tmp_path / "archive")
    result = _cifa("events", "../bags/x", "--archive", str(archive), cwd=tmp_path)
    assert result.returncode == 2
    assert "'../bags/x': not a work id" in result.stderr
    _no_traceback(result)
