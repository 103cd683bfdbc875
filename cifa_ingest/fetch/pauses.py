"""A host that blocked us is paused for the rest of the run (issue 17: blocks are not verdicts).

When a work's fetch ends ``blocked`` (a bot wall, 429 after every retry, the media host's
401/403 after the metadata; :class:`~cifa_ingest.fetch.failures.FetchErrorKind`), asking the same
host for the run's other works would only fail them one by one and reinforce the block. So the
block is written down for the run, and every later work of the run with a source on that host is
not tried: it is ``deferred`` (:class:`~cifa_ingest.archive.ledger.Outcome`), not failed, and the
next run tries it again. Works on other hosts go on.

A run's works may run in threads, processes or on Dask workers on other machines: the pauses are
files in the archive's ``locks/`` folder (``paused/<run id>/<site>.json``), as shared as the
download slots (:mod:`cifa_ingest.archive.slots`). The first block of a site in a run is kept.

A *site* is the allow-list entry the host falls under (``www.youtube.com`` and ``m.youtube.com``
are ``youtube.com``), or the host itself when none does (a test's 127.0.0.1).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cifa_ingest.fetch.source_policy import host_allowed

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^a-z0-9.-]")


@dataclass(frozen=True)
class HostPause:
    """A site that blocked this run: why, when (UTC), and by which work's fetch."""

    site: str
    reason: str
    at: str
    work_id: str

    @property
    def sentence(self) -> str:
        """How the run report says it (with the number of works deferred added)."""
        return f"host {self.site} blocked us ({self.reason}) at {self.at} UTC"


def site_of(url: str, allowed_hosts: Iterable[str]) -> str:
    """The site of ``url``: the allow-list entry its host falls under, or the host."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    entries = sorted(allowed_hosts, key=len, reverse=True)
    return next((entry for entry in entries if host_allowed(host, [entry])), host)


def _folder(locks: Path, run_id: str) -> Path:
    return locks / "paused" / _SAFE.sub("_", run_id.lower())


def pause(locks: Path, run_id: str, site: str, reason: str, work_id: str) -> HostPause:
    """Pause ``site`` for the rest of the run ``run_id``; the first pause of a site is kept
    (and returned)."""
    folder = _folder(locks, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    at = dt.datetime.now(dt.UTC).strftime("%H:%M")
    record = HostPause(site=site, reason=reason, at=at, work_id=work_id)
    path = folder / f"{_SAFE.sub('_', site)}.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return paused(locks, run_id, site) or record
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record.__dict__, handle)
    log.warning("%s; its other works in this run are deferred", record.sentence)
    return record


def paused(locks: Path, run_id: str, site: str) -> HostPause | None:
    """The pause of ``site`` in the run ``run_id``, or None."""
    path = _folder(locks, run_id) / f"{_SAFE.sub('_', site)}.json"
    try:
        data = json.loads(path.read_text("utf-8"))
        return HostPause(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # being written this instant: paused all the same
        return HostPause(site=site, reason="blocked", at="?", work_id="?")


def forget(locks: Path, run_id: str) -> None:
    """Remove the run's pauses (at its end: the next run tries every host again)."""
    shutil.rmtree(_folder(locks, run_id), ignore_errors=True)
