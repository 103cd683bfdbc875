"""The private parts of Prefect that cifa_ingest/prefect_internals.py relies on are still there
and still mean what it assumes. Each failure names the module to update: a Prefect upgrade that
moves or changes them fails here, clearly, rather than making the commands that read the settings
slow (they would import Prefect) or, worse, take a schedule Prefect refuses."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from cifa_ingest import prefect_internals
from tests.conftest import REPO

UPDATE = (
    "Prefect {version}: {what}. Update cifa_ingest/prefect_internals.py (its docstring says what "
    "it relies on and why), or drop its quick check and let CronSchedule decide."
)

#: Expressions on both sides of Prefect's rule: croniter's extensions, a sixth field (seconds),
#: a seventh (year), names, random and hashed fields, out of range, not cron at all.
EXPRESSIONS = [
    "0 2 * * *", "0 5 * * 0", "0 6 * * sun", "0 5 * * mon-fri", "*/15 * * * *", "@daily",
    "@weekly", "0 5 L * *", "0 5 * * 5#2", "0 5 * * 7", "0 5 * * 7 *", "0 5 * * * *",
    "0 2 * * * 0", "0 0 * * * * 2027", "0 5 * * 1 2 3", "61 5 * * *", "0 25 * * *",
    "*/0 * * * *", "R 2 * * *", "H 4 * * *", "0 h * * *", "every sunday", "", "x",
]  # fmt: skip


def _fail(what: str) -> None:
    pytest.fail(UPDATE.format(version=version("prefect"), what=what))


def test_prefects_croniter_is_where_we_load_it_from_and_loads_without_prefect() -> None:
    script = (
        "import sys; from cifa_ingest.prefect_internals import prefect_croniter;"
        "c = prefect_croniter();"
        "print('loaded' if c is not None and callable(getattr(c, 'is_valid', None)) else 'none',"
        " 'prefect imported' if 'prefect' in sys.modules else 'prefect not imported')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    folder = prefect_internals.prefect_folder()
    where = folder / prefect_internals.VENDORED_CRONITER if folder else "(no prefect package)"
    if "loaded" not in result.stdout.split():
        _fail(f"its vendored croniter no longer loads alone from {where}")
    if "prefect not imported" not in result.stdout:
        _fail(f"loading {where} now imports Prefect")


def test_prefects_scheduler_parses_with_that_file() -> None:
    """The server's schedules (what runs at 2 a.m.) and the client's CronSchedule validation
    use the croniter of the file the quick check loads, and the rule it repeats."""
    from prefect._internal.schemas import validators
    from prefect.server.schemas import schedules as server_schedules

    folder = prefect_internals.prefect_folder()
    assert folder is not None
    ours = (folder / prefect_internals.VENDORED_CRONITER).resolve()
    scheduler = getattr(server_schedules, "croniter", None)
    if scheduler is None or Path(inspect.getfile(scheduler)).resolve() != ours:
        _fail(f"its scheduler no longer parses cron with {ours}")
    if not callable(getattr(validators, "validate_cron_string", None)):
        _fail("prefect._internal.schemas.validators.validate_cron_string is gone")
    cron_validator = inspect.getsource(server_schedules.CronSchedule)
    if "validate_cron_string" not in cron_validator:
        _fail("its server's CronSchedule no longer checks cron with validate_cron_string")


@pytest.mark.parametrize("cron", EXPRESSIONS)
def test_the_quick_check_alone_gives_prefects_answer(cron: str) -> None:
    """Not through the settings (which ask CronSchedule whenever the quick check says no): the
    quick check on its own, against Prefect's private rule and its public model."""
    from prefect._internal.schemas.validators import validate_cron_string
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        validate_cron_string(cron)
        rule_takes = True
    except ValueError:
        rule_takes = False
    try:
        CronSchedule(cron=cron, timezone="Europe/London")
        model_takes = True
    except ValidationError:
        model_takes = False
    assert rule_takes is model_takes  # Prefect's public model is its rule
    if prefect_internals.cron_taken_by_prefect(cron) is not model_takes:
        _fail(f"it {'takes' if model_takes else 'refuses'} {cron!r}, and the quick check does not")
