"""The pipeline's limits hold across processes: separate Python processes contend for real slot
files (flock), and the times each one held a slot never overlap beyond the limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cifa_ingest.archive import slots
from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO

#: One contender: takes a slot of the limit `size` at `locks` N times, holds it `hold` seconds,
#: and prints a JSON line per holding with its start and end (wall clock, comparable across
#: processes) on stdout; the library's log goes to stderr.
CONTENDER = textwrap.dedent(
    """
    import json, logging, sys, time
    from pathlib import Path
    from cifa_ingest.archive import slots
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    locks, size, name, rounds, hold = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], \
        int(sys.argv[4]), float(sys.argv[5])
    limit = slots.encode_slots(locks, size)
    for n in range(rounds):
        with limit.hold(f"{name}-{n}"):
            start = time.time()
            time.sleep(hold)
            end = time.time()
        print(json.dumps({"name": name, "start": start, "end": end}), flush=True)
    """
)


def _contenders(
    tmp_path: Path, count: int, size: int, rounds: int, hold: float
) -> tuple[list[dict], str]:
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CONTENDER,
                str(tmp_path / "locks"),
                str(size),
                f"p{i}",
                str(rounds),
                str(hold),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    holdings, logs = [], ""
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        holdings += [json.loads(line) for line in out.splitlines()]
        logs += err
    assert len(holdings) == count * rounds
    return holdings, logs


def _most_at_once(holdings: list[dict]) -> int:
    edges = sorted([(h["start"], 1) for h in holdings] + [(h["end"], -1) for h in holdings])
    most = current = 0
    for _time, change in edges:  # at equal times an end (-1) sorts before a start
        current += change
        most = max(most, current)
    return most


def test_two_processes_never_hold_a_one_slot_limit_at_once(tmp_path: Path) -> None:
    holdings, logs = _contenders(tmp_path, count=2, size=1, rounds=3, hold=0.3)
    assert _most_at_once(holdings) == 1, holdings
    # Both really contended (the holdings interleave in time), and the waiting was said, naming
    # what held the slot.
    assert {h["name"] for h in holdings} == {"p0", "p1"}
    assert "waiting for an encode slot (1 in use: p" in logs, logs
    assert "got an encode slot after" in logs


def test_a_two_slot_limit_lets_two_run_and_never_three(tmp_path: Path) -> None:
    holdings, _logs = _contenders(tmp_path, count=3, size=2, rounds=2, hold=0.4)
    assert _most_at_once(holdings) == 2, holdings


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    """A holder killed with SIGKILL (no cleanup of any kind) leaves its slot free."""
    holder = subprocess.Popen(
        [sys.executable, "-c", CONTENDER, str(tmp_path / "locks"), "1", "victim", "1", "60"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    limit = slots.encode_slots(tmp_path / "locks", 1)
    deadline = time.monotonic() + 30
    while not limit.holders() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limit.holders() and limit.holders()[0].startswith("victim-0 on ")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with limit.hold("survivor"):
        assert time.monotonic() - started < 5


def test_the_pause_between_downloads_from_one_host_holds_across_holders(tmp_path: Path) -> None:
    with slots.download_slot(tmp_path, "films.example.org", 0.5, "first"):
        pass
    started = time.monotonic()
    with slots.download_slot(tmp_path, "films.example.org", 0.5, "second"):
        waited = time.monotonic() - started
    assert 0.3 < waited < 2
    started = time.monotonic()
    with slots.download_slot(tmp_path, "other.example.org", 0.5, "elsewhere"):
        assert time.monotonic() - started < 0.3  # another host is not made to wait


def test_a_host_name_never_becomes_a_path(tmp_path: Path) -> None:
    for host in ("../../etc", "..", ".", "a/b", "ex\x00ample", "例子.中国", ""):
        limit = slots.download_slots(tmp_path / "locks", host)
        assert limit.directory.parent == tmp_path / "locks" / "downloads"
        assert limit.directory.name not in {"", ".", ".."} and "/" not in limit.directory.name
        with limit.hold("x"):
            pass
    assert slots.safe_name("Example.org") != slots.safe_name("example.org")


def test_the_default_encode_limit_is_half_the_cores() -> None:
    assert [slots.default_max_encodes(n) for n in (1, 2, 3, 8, 64)] == [1, 1, 1, 4, 32]


def test_parallel_works_wait_for_an_encode_slot_and_one_video_is_placed_once(
    tmp_path: Path, film_server: LocalFileServer, archive_dir: Path
) -> None:
    """A nightly run with two works side by side (``max_parallel_works = 2``) and one encode at a
    time. Both works are the same video under two ids (a catalogue mistake). While another holder
    (this test) has the machine's only encode slot, both works wait for it, at the same time, and
    say so: both have passed the fetch's duplicate check, as neither is registered yet. Released,
    the first to be placed is preserved, and the other is refused as a duplicate at placement."""
    import logging
    import threading

    import yaml

    from cifa_ingest.config import Settings, load_settings
    from cifa_ingest.demo import films as demo
    from cifa_ingest.pipelines.flows import nightly_ingest, reports_of_state
    from cifa_ingest.preserve import Outcome
    from tests.helpers import assert_valid_preserved_bag

    catalogue = demo.demo_catalogue(film_server.base_url)
    original = next(w for w in catalogue["works"] if w["id"] == "cifa-demo-0002")  # type: ignore[index]
    again = {**json.loads(json.dumps(original)), "id": "cifa-demo-0098"}  # no YAML alias
    catalogue["works"] = [original, again]
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue, allow_unicode=True), "utf-8")
    base = load_settings()
    settings = Settings.model_validate(
        {**base.model_dump(), "execution": {"max_parallel_works": 2, "max_encodes": 1}}
    )
    messages: list[str] = []

    class Remember(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("cifa_ingest.archive.slots")
    handler, level = Remember(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    held, both_waiting, finished = threading.Event(), threading.Event(), threading.Event()

    def hold_until_both_wait() -> None:
        with slots.encode_slots(archive_dir / "locks", 1).hold("test-holder"):
            held.set()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not finished.is_set():
                waiting = {m.split(":")[0] for m in messages if "waiting for an encode slot" in m}
                if waiting >= {"cifa-demo-0002", "cifa-demo-0098"}:
                    both_waiting.set()
                    return
                time.sleep(0.05)

    holder = threading.Thread(target=hold_until_both_wait)
    holder.start()
    try:
        assert held.wait(30)
        state = nightly_ingest(
            [str(path)],
            str(archive_dir),
            allow_private_sources=True,
            settings=settings,
            watch_sources=False,
            return_state=True,
        )
    finally:
        finished.set()
        holder.join()
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert both_waiting.is_set(), messages
    assert "cifa-demo-0002: waiting for an encode slot (1 in use: test-holder on " in "\n".join(
        messages
    )
    reports = reports_of_state(state)
    assert reports is not None, state
    assert sorted(r.outcome for r in reports) == [Outcome.FAILED, Outcome.PRESERVED], reports
    preserved = next(r for r in reports if r.outcome is Outcome.PRESERVED)
    refused = next(r for r in reports if r.outcome is Outcome.FAILED)
    assert refused.error_kind == "duplicate", refused
    assert f"was preserved as {preserved.id} while this work was in progress" in str(refused.error)
    assert [p.name for p in (archive_dir / "bags").iterdir()] == [preserved.id]
    assert_valid_preserved_bag(archive_dir / "bags" / preserved.id, preserved.id)
    assert list((archive_dir / "staging").iterdir()) == []
    assert reports[0].worker == reports[1].worker == f"{os.uname().nodename} pid {os.getpid()}"
