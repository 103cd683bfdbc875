"""The one place CIFA Ingest relies on a private part of Prefect (checked with Prefect 3.9.1).

What: Prefect's scheduler parses cron expressions with its own copy of croniter, vendored at
``prefect/_vendor/croniter/croniter.py`` (``prefect._vendor.croniter``, imported by
``prefect.server.schemas.schedules``), and takes an expression when
``prefect._internal.schemas.validators.validate_cron_string`` does: croniter's ``is_valid``, and
no random (``R``) or hashed (``H``) field. :func:`cron_taken_by_prefect` loads that file by its
path and applies that rule.

Why: the settings check every ``[schedules]`` expression when they are read, so that one Prefect
would refuse stops ``cifa status`` or ``cifa audit`` with exit 2, not ``cifa serve`` at 2 a.m.
Prefect's public way to ask, ``prefect.client.schemas.schedules.CronSchedule`` (``prefect.schedules
.Cron`` and ``construct_schedule`` build the same model), gives the same answers but imports
Prefect: about 0.8 s on this project's machine, and the commands that read the settings must not
import Prefect at all (``tests/test_cli_input_errors.py``, ``test_status.py``, ``test_watch.py``
and ``test_preserve.py`` check it). ``import prefect._vendor.croniter`` is no cheaper: it runs
``prefect/__init__.py`` first. Loading the one file costs a few hundredths of a second.

The public model keeps the last word: the settings ask ``CronSchedule`` whenever this quick check
does not take an expression (for Prefect's own message), so this module only ever saves time.
If a Prefect upgrade moves or rewrites the file, :func:`prefect_croniter` returns None and every
expression goes to ``CronSchedule`` (still right, but slow, and Prefect imported by commands that
should not import it); ``tests/test_prefect_internals.py`` then fails, naming this module.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

#: Where Prefect 3 keeps its croniter, relative to the ``prefect`` package's folder.
VENDORED_CRONITER = Path("_vendor", "croniter", "croniter.py")


def prefect_folder() -> Path | None:
    """The installed ``prefect`` package's folder, found without importing Prefect."""
    spec = importlib.util.find_spec("prefect")  # finds the package without running it
    folders = spec.submodule_search_locations if spec else None
    return Path(folders[0]) if folders else None


@functools.cache
def prefect_croniter() -> Any:
    """The croniter class Prefect's scheduler parses cron expressions with (its vendored copy),
    loaded from Prefect's own file without importing Prefect; None when that file is not where
    Prefect 3.9 keeps it, or no longer loads on its own."""
    folder = prefect_folder()
    if folder is None:
        return None
    source = folder / VENDORED_CRONITER
    module_spec = importlib.util.spec_from_file_location("_cifa_prefect_croniter", source)
    if not source.is_file() or module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        return module.croniter
    except Exception:  # a Prefect whose copy no longer loads alone: ask Prefect itself
        return None


def cron_taken_by_prefect(value: str) -> bool:
    """True when Prefect's scheduler takes ``value``, by Prefect's own rule
    (``validate_cron_string``: its croniter's ``is_valid``, and no ``R`` or ``H`` field). False
    when it refuses it, or when its croniter cannot be loaded: ask ``CronSchedule`` then."""
    croniter = prefect_croniter()
    return bool(
        croniter is not None
        and croniter.is_valid(value)
        and not any(field.casefold() in ("r", "h") for field in value.split())
    )
