"""Crash consistency: `cifa ingest` killed with SIGKILL at random moments, then run again.

A harness runs the real `cifa ingest` (Prefect, yt-dlp, ffmpeg) as a subprocess in its own
process group over three small demo works served on 127.0.0.1 (a file, a work in two parts, an HLS
stream), and kills the whole group (ffmpeg included) with SIGKILL. Where it kills is seeded-random
and spread over the phases: each trial picks a phase and a work, watches the archive's staging
folder for the sign that the phase has begun (the work's originals arriving, its master being
written, its bag being built, its bag being sealed, its bag in bags/), waits a random fraction of
the phase's usual length, and kills. What the kill actually interrupted is then read from what it
left (see :func:`phase_at_kill`) and reported: a phase that was missed is never claimed as hit.

After every kill, no process of the killed run (ffmpeg, Prefect's server) lives on; and, before
anything recovers, every folder in bags/ is a complete bag that passes full validation and that
the ledger knows (registered, or recorded by the placement journal with the same manifest
digests); every bag the ledger registers is in bags/; nothing else is in bags/.
The next run (the next trial's, or the final one) must recover: the final run completes every work,
leaves staging empty and the journal empty, and the ledger's bags are exactly the bag folders, each
valid for bagit-python, with its source keys (even for a bag registered by recovery). While the
final run places bags, fixity audits run beside it and must find nothing wrong.

5 kills in the normal suite, 20 (with a final run after every 5) behind ``slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, Ledger
from cifa_ingest.audit import fixity_audit as audit
from cifa_ingest.bag import package
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo import films as demo
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.preserve import Outcome, preserve_work
from tests.conftest import REPO, TEST_CONFIG
from tests.helpers import assert_valid_preserved_bag

#: A progressive file (Matroska, FLAC sound), a work in two parts, an HLS stream (fragments).
WORKS = ("cifa-demo-0002", "cifa-demo-0003", "cifa-demo-0007")
#: The phases a trial aims at, in the order a work goes through them; "anytime" kills at a random
#: moment of the run once the first work has started.
TARGETS = ("download", "encoding", "packaging", "placement", "ledger-write", "anytime")
#: How long after a phase's first sign the kill may come (seconds, drawn uniformly).
DELAYS = {
    "download": 0.05,
    "encoding": 1.5,
    "packaging": 0.3,
    "placement": 0.0,
    "ledger-write": 0.0,
    "anytime": 8.0,
}


def _command() -> list[str]:
    """The venv's `cifa`, else the module (the same entry point)."""
    cifa = Path(sys.executable).with_name("cifa")
    return [str(cifa)] if cifa.is_file() else [sys.executable, "-m", "cifa_ingest.cli"]


@dataclass
class Harness:
    catalogue: Path
    prefect_home: Path
    root: Path
    rng: random.Random
    log: list[dict[str, object]] = field(default_factory=list)
    archives: int = 0
    archive: Path = Path()

    def fresh_archive(self) -> None:
        self.archives += 1
        self.archive = self.root / f"archive-{self.archives}"

    def start(self, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        self.stderr = self.root / "stderr.txt"
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.prefect_home),
            "CIFA_CONFIG": str(TEST_CONFIG),
        }
        args = [*_command(), "ingest", str(self.catalogue), "--archive", str(self.archive)]
        return subprocess.Popen(
            [*args, "--allow-private-sources", "--json", "--quiet"],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=self.stderr.open("wb"),
            start_new_session=True,  # its own process group: the kill reaches ffmpeg too
        )

    def kill_trial(self, trial: int) -> dict[str, object] | None:
        """One run killed at a seeded-random moment of a chosen phase; None if the run ended
        before the moment came (it is then a complete run, checked as one)."""
        done_before = registered(self.archive)
        todo = [w for w in WORKS if w not in done_before]
        target = TARGETS[trial % len(TARGETS)]
        work = self.rng.choice(todo)
        delay = self.rng.uniform(0, DELAYS[target])
        existed = {w for w in WORKS if (self.archive / "bags" / w).exists()}
        process = self.start()
        fired_at = None
        try:
            while process.poll() is None:
                now = time.monotonic()
                if fired_at is None and began(self.archive, work, target, existed):
                    fired_at = now
                if fired_at is not None and now - fired_at >= delay:
                    os.killpg(process.pid, signal.SIGKILL)
                    break
                time.sleep(0.002)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.returncode != -signal.SIGKILL:
            assert process.returncode == 0, self.stderr.read_text("utf-8", "replace")[-3000:]
            return None
        assert self.survivors() == [], "a process of the killed ingest lives on"
        hit = phase_at_kill(self.archive)
        entry = {
            "trial": trial,
            "archive": self.archive.name,
            "target": f"{target} of {work}",
            "delay": round(delay, 3),
            "hit": hit,
        }
        self.log.append(entry)
        return entry

    def survivors(self, wait: float = 10.0) -> list[str]:
        """Processes of the killed run still alive (ffmpeg, Prefect's server, …), found by the
        Prefect home in their environment, which every child inherits, whatever its group."""
        marker = f"PREFECT_HOME={self.prefect_home}".encode()
        deadline = time.monotonic() + wait
        while True:
            alive = []
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if marker in (proc / "environ").read_bytes().split(b"\0"):
                        status = (proc / "status").read_text()
                        if "\nState:\tZ" not in status:  # a zombie is dead, awaiting its reaper
                            alive.append((proc / "cmdline").read_bytes().decode(errors="replace"))
                except OSError:
                    continue
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.1)

    def complete_run(self) -> None:
        """Run to the end, with fixity audits beside it, and check that everything is done."""
        auditor = _Auditor(self.archive)
        auditor.start()
        process = self.start(stdout=subprocess.PIPE)
        out, _ = process.communicate(timeout=600)
        auditor.stop()
        assert process.returncode == 0, self.stderr.read_text("utf-8", "replace")[-3000:]
        report = json.loads(out)
        outcomes = {w["id"]: w["outcome"] for w in report["works"]}
        assert set(outcomes) == set(WORKS)
        assert set(outcomes.values()) <= {"preserved", "already-preserved"}, outcomes
        assert auditor.problems == [], auditor.problems
        assert auditor.audits > 0
        self.assert_complete()

    def assert_complete(self) -> None:
        """Every work preserved, valid, known; no journal entry, no staging debris."""
        assert_consistent(self.archive)
        bags = sorted(p.name for p in (self.archive / "bags").iterdir())
        assert bags == sorted(WORKS)
        assert registered(self.archive) == set(WORKS)
        assert pending(self.archive) == {}
        assert list((self.archive / "staging").iterdir()) == []
        for work_id in WORKS:
            assert_valid_preserved_bag(self.archive / "bags" / work_id, work_id)
        with sqlite3.connect(self.archive / "ledger.sqlite") as conn:
            keys = dict(conn.execute("SELECT work_id, COUNT(*) FROM source_keys GROUP BY 1"))
        assert keys == {"cifa-demo-0002": 1, "cifa-demo-0003": 2, "cifa-demo-0007": 1}


class _Auditor(threading.Thread):
    """Fixity audits, one after another, of an archive an ingest is writing to."""

    def __init__(self, archive: Path) -> None:
        super().__init__(daemon=True)
        self.archive, self.audits, self.problems = archive, 0, []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if (self.archive / "ledger.sqlite").exists():
                report = audit.audit_archive(Archive(self.archive))
                self.audits += 1
                self.problems += [(p.bag, p.kind, p.path) for p in report.problems]
            self._stop_event.wait(0.2)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=120)


def began(archive: Path, work: str, target: str, existed: set[str]) -> bool:
    """Whether ``work`` has visibly entered ``target`` (read from the file system only)."""
    bag = archive / "staging" / work / "bag"
    if target == "anytime":
        return (archive / "staging").is_dir() and any((archive / "staging").iterdir())
    if target == "download":
        return (bag / "original").is_dir() and any((bag / "original").iterdir())
    if target == "encoding":
        return (bag / "master").is_dir()
    if target == "packaging":
        return (bag / "data").is_dir()
    if target == "placement":
        return _sealed(bag)
    return work not in existed and (archive / "bags" / work).is_dir()  # ledger-write


def _sealed(bag: Path) -> bool:
    try:
        return not stat.S_IMODE((bag / "bagit.txt").stat().st_mode) & 0o222
    except OSError:
        return False


def phase_at_kill(archive: Path) -> list[str]:
    """The phase each unfinished work was in when the kill came, read from what it left:
    ``ledger-write`` (in bags/, registration not committed), ``placement`` (journal written, not
    renamed yet), ``packaging`` (the bag being made, hashed, validated), ``encoding`` (master
    and access copy being made and proved), ``download`` (originals arriving or being
    recorded), ``start`` (staging made, nothing received yet), ``clean-up`` (staging being
    cleared after registration)."""
    done, journal = registered(archive), pending(archive)
    phases = []
    for work in WORKS:
        staging, bag = archive / "staging" / work, archive / "staging" / work / "bag"
        if work in journal:
            in_bags = (archive / "bags" / work).is_dir()
            phases.append(f"{'ledger-write' if in_bags else 'placement'}:{work}")
        elif not staging.exists():
            continue
        elif work in done:
            phases.append(f"clean-up:{work}")
        elif (bag / "bagit.txt").exists() or (bag / "data").exists():
            phases.append(f"packaging:{work}")
        elif (bag / "master").exists():
            phases.append(f"encoding:{work}")
        elif (bag / "original").is_dir() and any((bag / "original").iterdir()):
            phases.append(f"download:{work}")
        else:
            phases.append(f"start:{work}")
    return phases or ["between works"]


def registered(archive: Path) -> set[str]:
    if not (archive / "ledger.sqlite").exists():
        return set()
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        return {row[0] for row in conn.execute("SELECT work_id FROM bags")}


def pending(archive: Path) -> dict[str, dict[str, str]]:
    """The placement journal: work -> manifest digests of the bag being placed."""
    if not (archive / "ledger.sqlite").exists():
        return {}
    with sqlite3.connect(archive / "ledger.sqlite") as conn:
        try:
            rows = conn.execute("SELECT work_id, record FROM placements").fetchall()
        except sqlite3.OperationalError:  # no placement ever began
            return {}
    return {work: json.loads(record)["manifest_digests"] for work, record in rows}


def assert_consistent(archive: Path, works: tuple[str, ...] = WORKS) -> None:
    """The archive as a crash may leave it: only complete, valid bags, each known to the ledger,
    and every bag the ledger registers present."""
    bags_dir = archive / "bags"
    entries = sorted(bags_dir.iterdir()) if bags_dir.is_dir() else []
    with (
        sqlite3.connect(archive / "ledger.sqlite")
        if (archive / "ledger.sqlite").exists()
        else sqlite3.connect(":memory:")
    ) as conn:
        try:
            rows = dict(conn.execute("SELECT work_id, manifest_digests FROM bags"))
        except sqlite3.OperationalError:
            rows = {}
    registered_digests = {work: json.loads(digests) for work, digests in rows.items()}
    journal = pending(archive)
    for entry in entries:
        assert entry.is_dir() and entry.name in works, f"unexpected {entry} in bags/"
        package.validate_bag(entry)  # every checksum, RFC 8493 rules
        digests = package.summarise_bag(entry).manifest_digests
        known = registered_digests.get(entry.name) or journal.get(entry.name)
        assert known == digests, f"{entry.name}: in bags/, unknown to the ledger"
        assert not (entry.name in registered_digests and entry.name in journal)
    for work in registered_digests:
        assert (bags_dir / work).is_dir(), f"the ledger registers {work}, bags/ lacks it"
    leftovers = [p for p in bags_dir.glob(".*")] if bags_dir.is_dir() else []
    assert leftovers == [], leftovers


def _served_catalogue(path: Path, base_url: str) -> Path:
    catalogue = demo.demo_catalogue(base_url)
    catalogue["works"] = [w for w in catalogue["works"] if w["id"] in WORKS]  # type: ignore[index,union-attr]
    path.write_text(yaml.safe_dump(catalogue, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def run_trials(tmp_path: Path, base_url: str, kills: int, complete_every: int, seed: int) -> list:
    harness = Harness(
        catalogue=_served_catalogue(tmp_path / "catalogue.yaml", base_url),
        prefect_home=tmp_path / "prefect-home",
        root=tmp_path,
        rng=random.Random(seed),
    )
    harness.fresh_archive()
    trial, since_complete = 0, 0
    while len(harness.log) < kills:
        assert trial < kills * 3, f"too many runs ended before their kill: {harness.log}"
        if registered(harness.archive) == set(WORKS):  # nothing left to interrupt
            harness.complete_run()
            harness.fresh_archive()
        entry = harness.kill_trial(trial)
        trial += 1
        if entry is None:  # the run ended before its moment came: it was a complete run
            harness.assert_complete()
            harness.fresh_archive()
            since_complete = 0
            continue
        print(f"kill {len(harness.log)}: {entry}")
        assert_consistent(harness.archive)
        since_complete += 1
        if since_complete == complete_every:
            harness.complete_run()
            harness.fresh_archive()
            since_complete = 0
    if since_complete:
        harness.complete_run()
    return harness.log


def _hit(log: list[dict[str, object]]) -> set[str]:
    return {str(h).split(":")[0] for entry in log for h in entry["hit"]}  # type: ignore[attr-defined]


# 40–100 s: with the slow tests (CI runs them), keeping `make test` within its 20 minutes.
@pytest.mark.slow
def test_killed_ingests_leave_only_complete_known_bags_and_the_next_run_finishes(
    tmp_path: Path, film_server: LocalFileServer
) -> None:
    log = run_trials(tmp_path, film_server.base_url, kills=5, complete_every=5, seed=8)
    hit = _hit(log)
    print("phases hit:", sorted(hit))
    assert {"download", "encoding"} <= hit, log


@pytest.mark.slow
@pytest.mark.soak
def test_twenty_killed_ingests(tmp_path: Path, film_server: LocalFileServer) -> None:
    log = run_trials(tmp_path, film_server.base_url, kills=20, complete_every=5, seed=2026)
    hit = _hit(log)
    print("phases hit:", sorted(hit))
    assert {"download", "encoding"} <= hit, log
    assert hit & {"placement", "ledger-write"}, log


# The recovery paths the kills reach by chance, each set up deterministically: the state a kill
# leaves at that instant, made with the ledger's own API, then the next run of the work.


def _library_work(base_url: str) -> Work:
    return Work.model_validate(
        {
            "id": "cifa-crash-0001",
            "title": {"en": "Recovery test"},
            "source": {"url": f"{base_url}/films/colour-bars.mkv"},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )


def test_killed_after_the_rename_the_next_run_registers_the_bag_from_the_journal(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    archive, work = Archive(archive_dir), _library_work(film_server.base_url)
    settings = load_settings()
    assert preserve_work(work, archive, settings, allow_private_sources=True).outcome is (
        Outcome.PRESERVED
    )
    ledger = Ledger(archive.ledger_path)
    record, files = ledger.bag(work.id), ledger.bag_files(work.id)
    assert record is not None and record.source_keys
    with sqlite3.connect(archive.ledger_path) as conn:  # back to: renamed, not yet registered
        for table in ("bag_files", "source_keys", "bags"):
            conn.execute(f"DELETE FROM {table}")
    ledger.begin_placement(record, files)
    (archive.staging_dir / work.id).mkdir()  # staging not cleared yet either
    assert_consistent(archive_dir, (work.id,))
    requests = len(film_server.requests)

    report = preserve_work(work, archive, settings, allow_private_sources=True)
    assert report.outcome is Outcome.ALREADY_PRESERVED
    assert len(film_server.requests) == requests  # nothing fetched again
    assert ledger.pending_placements() == []
    assert ledger.bag(work.id).source_keys == record.source_keys  # type: ignore[union-attr]
    assert ledger.bag_files(work.id) == files
    assert list(archive.staging_dir.iterdir()) == []


def test_killed_before_the_rename_the_next_run_drops_the_journal_entry_and_preserves(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    archive, work = Archive(archive_dir), _library_work(film_server.base_url)
    archive.ensure()
    ledger = Ledger(archive.ledger_path)
    never_placed = BagRecord(work.id, f"bags/{work.id}", "2026-01-01T00:00:00+00:00", "1.1",
                             {"manifest-sha256.txt": "0" * 64}, ["Generic:x"], "test")  # fmt: skip
    ledger.begin_placement(never_placed, [("data/original/x", 1, None, None)])
    sealed = archive.staging_dir / work.id / "bag"
    sealed.mkdir(parents=True)
    (sealed / "bagit.txt").write_text("BagIt-Version: 1.0\n")
    (sealed / "bagit.txt").chmod(0o444)
    assert_consistent(archive_dir, (work.id,))

    report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    assert ledger.pending_placements() == []
    assert ledger.bag(work.id).manifest_digests != never_placed.manifest_digests  # type: ignore[union-attr]
    assert_consistent(archive_dir, (work.id,))
    assert list(archive.staging_dir.iterdir()) == []
