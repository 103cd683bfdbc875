"""A version being made, killed with SIGKILL at random moments (issue 18): the work stays at its
previous version or has the new one complete, never in between; the next run finishes.

A child process runs the ingest's own path (``preserve_work``, as ``cifa ingest`` and the flows
call it) on a preserved work whose catalogue entry was corrected, and is killed at a moment drawn
from the length of an uninterrupted run of the same (measured first, in the same test). After
each kill, before anything recovers: ``bags/<id>`` is a complete bag bagit-python validates,
whole version 1 or whole version 2 (or, killed between the two renames where names cannot be
exchanged at once, absent with the bag it was in ``staging/<id>.replaced``); the ledger vouches
for version 1 or version 2; the versions store's newest version is 1 or 2. Then the next run
leaves version 2 complete: ``bags/<id>`` and the ledger agree with it, ocfl-py's validator is
content, the fixity audit finds nothing, staging is empty.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import bagit
import pytest
from pydantic_core import to_jsonable_python

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.bag import package
from cifa_ingest.catalogue.model import Work
from cifa_ingest.demo import films as demo
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.metadata.versions_record import read_versions
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.versions import head
from tests.test_ingest_versions import WORK_ID, _settings, _work
from tests.test_revision import _changed
from tests.test_versions import assert_ocfl_valid

#: Kills per test run, and the seed that places them (printed, so a failure can be replayed).
TRIALS = 30
SEED = int(os.environ.get("CIFA_CRASH_SEED", "18"))

CHILD = """
import json, sys, time
from pathlib import Path
from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.demo import films as demo
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.config import load_settings
from cifa_ingest.preserve import preserve_work
work = Work.model_validate(json.loads(Path(sys.argv[2]).read_text("utf-8")))
settings = load_settings()
organisation = settings.organisation.model_copy(update={"contact_email": "ops@example.org"})
settings = settings.model_copy(update={"organisation": organisation})
print("ready", flush=True)
started = time.monotonic()
report = preserve_work(work, Archive(sys.argv[1]), settings)
print(json.dumps({"outcome": str(report.outcome), "seconds": time.monotonic() - started}))
"""


def _start(archive: Path, work_file: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(archive), str(work_file)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def _state_after_kill(archive: Archive) -> str:
    """Which version the work is at, proved whole; fails on anything in between."""
    bag = archive.bag_path(WORK_ID)
    newest = head(archive.objects_dir, WORK_ID)
    assert newest in (1, 2)
    record = Ledger(archive.ledger_path).bag(WORK_ID)
    assert record is not None
    if not bag.exists():
        assert (archive.staging_dir / f"{WORK_ID}.replaced").is_dir(), "bags/<id> lost"
        return "between the renames"
    bagit.Bag(str(bag)).validate()
    number = read_versions(bag)[-1].number
    assert number <= newest
    vouched = record.manifest_digests == package.summarise_bag(bag).manifest_digests
    if not vouched:  # killed after the exchange, before the ledger: the next run proves it
        assert number == 2
        return "exchanged, ledger not yet"
    return f"at version {number}" + (" (store at 2)" if newest == 2 and number == 1 else "")


@pytest.mark.slow
def test_a_version_killed_at_random_moments_is_never_half_made(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    template = tmp_path / "template"
    archive = Archive(template)
    # One work, preserved by the real ingest.
    served = tmp_path / "served"
    demo.make_site(served)
    with LocalFileServer(served) as server:
        work = _work(f"{server.base_url}/films/colour-bars.mkv")
        report = preserve_work(work, archive, _settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    corrected: Work = _changed(work, title={"en": "Versions test", "zh": "版本測試"})
    work_file = tmp_path / "work.json"
    work_file.write_text(
        json.dumps(to_jsonable_python(corrected.model_dump(mode="python"))), "utf-8"
    )

    # How long an uninterrupted run takes, from the child's "ready".
    measured = tmp_path / "measured"
    subprocess.run(["cp", "-a", str(template), str(measured)], check=True)
    child = _start(measured, work_file)
    begun = time.monotonic()
    out, _ = child.communicate(timeout=120)
    length = time.monotonic() - begun
    assert json.loads(out.strip().splitlines()[-1])["outcome"] == "new-version"

    seen: dict[str, int] = {}
    for trial in range(TRIALS):
        copy = tmp_path / f"trial-{trial}"
        subprocess.run(["cp", "-a", str(template), str(copy)], check=True)
        delay = rng.uniform(0.0, length)
        child = _start(copy, work_file)
        time.sleep(delay)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        where = _state_after_kill(Archive(copy))
        seen[where] = seen.get(where, 0) + 1
        # The next run finishes: version 2, whole, everywhere.
        again = preserve_work(corrected, Archive(copy), _settings())
        assert again.outcome in (Outcome.NEW_VERSION, Outcome.ALREADY_PRESERVED), again.error
        assert again.version == 2
        bag = Archive(copy).bag_path(WORK_ID)
        assert read_versions(bag)[-1].number == 2
        bagit.Bag(str(bag)).validate()
        record = Ledger(Archive(copy).ledger_path).bag(WORK_ID)
        assert record is not None
        assert record.manifest_digests == package.summarise_bag(bag).manifest_digests
        assert_ocfl_valid(Archive(copy).objects_dir)
        assert audit_archive(Archive(copy)).ok
        assert not list(Archive(copy).staging_dir.iterdir())
    print(f"run length {length:.2f} s; where the kills left the work: {seen}")
    # The kills were spread: some before the version existed, some after.
    assert len(seen) >= 2, seen
