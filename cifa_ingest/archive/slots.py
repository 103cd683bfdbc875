"""Counting semaphores that hold across threads, processes and Dask workers: the pipeline's limits
(at most N ffmpeg encodes at once on a machine, one download per host).

A limit of N is a folder of N slot files (``slot-0`` … ``slot-<N-1>``) under the archive's
``locks/`` folder; holding a slot is holding an exclusive ``flock`` on one of its files. The kernel
releases a lock when its holder dies, however it dies, so a killed ingest never leaves a slot
taken; ``flock`` locks belong to the open file, so two threads of one process contend like two
processes do. While it is held, a slot file names its holder (work, host, pid, since when), so that
a waiting process can say what it waits for; a released file keeps the time of its release, which
is how the pause between two downloads from one host holds across processes too.

Why not Prefect's global concurrency limits (``prefect.concurrency.sync.concurrency``)? They
exist only on a Prefect server where someone created them: with ``strict=False`` (the default) a
missing limit is skipped with a warning in the run's log (Prefect 3.8.8), so a typo or a fresh
server removes the limit and the work goes on.
In embedded mode every process (the CLI, each Dask worker) starts its own ephemeral server on
the same SQLite database, and Prefect 3.8.8 keeps a limit's leases in that server's memory
(``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE`` defaults to ``...lease_storage.memory``): the
servers do not see each other's leases, and the limit's slot count in the database is all they
share. And the library runs without Prefect (``cifa_ingest.preserve``), where the limits must
hold just the same. A lock file needs nothing but a file system, and is as shared as the archive
is: on one machine always; across machines where the archive's file system carries ``flock``
(NFS does, through its byte-range locks, unless mounted ``nolock``; see the operators' guide,
docs/guides/operators.md, "Dask and several machines").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: How often a waiter tries the slots again (seconds): first quickly, then every second.
POLL_FIRST, POLL_MAX = 0.05, 1.0


def default_max_encodes(cores: int | None = None) -> int:
    """At most this many ffmpeg encodes at once on this machine: half its cores, at least one.

    One encode is already several busy threads (the source's decode feeds the FFV1 encoder, the
    x264 access copy and the frame hashes side by side, and both encoders are multi-threaded),
    so running more than one per two cores adds contention and memory (a 1080p encode peaks at
    about 670 MB) without adding throughput; fewer would leave cores idle. Computed where the
    encode runs, so each machine of a cluster uses its own core count."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // 2)


def default_locks_dir() -> Path:
    """Where slots live when no archive is at hand (fetching outside an ingest): one folder per
    user in the system's temporary folder, shared by that user's processes on this machine."""
    return Path(tempfile.gettempdir()) / f"cifa-locks-{os.getuid()}"


def safe_name(text: str) -> str:
    """``text`` (a host name: remote data) as a file name that cannot escape its folder or
    collide: a readable, sanitised prefix and a digest of the exact text."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = re.sub(r"[^a-z0-9.-]+", "-", text.lower())[:48].strip(".-")
    return f"{readable}-{digest}" if readable else digest


@dataclass
class Slot:
    """A held slot: its file, and what that file said when it was taken (the previous holder,
    and when it released the slot)."""

    path: Path
    previous: dict[str, Any] = field(default_factory=dict)

    @property
    def released_at(self) -> float | None:
        value = self.previous.get("released_at")
        return float(value) if isinstance(value, int | float) else None


class Slots:
    """A limit of ``size`` holders at once, over every thread and process that uses ``directory``.

    ``what`` names a slot in messages ("an encode slot")."""

    def __init__(self, directory: Path, size: int, what: str) -> None:
        if size < 1:
            raise ValueError(f"a limit needs at least one slot, not {size}")
        self.directory = directory
        self.size = size
        self.what = what

    def _try(self, index: int) -> tuple[int, Slot] | None:
        path = self.directory / f"slot-{index}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return fd, Slot(path, _read_record(fd))

    def holders(self) -> list[str]:
        """Who holds the slots now, as their files say (for the waiting message)."""
        found = []
        for index in range(self.size):
            try:
                record = json.loads((self.directory / f"slot-{index}").read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "holder" in record and "released_at" not in record:
                found.append(
                    f"{record.get('holder')} on {record.get('host')} pid {record.get('pid')}"
                )
        return found

    def _holders_once_written(self) -> list[str]:
        """:meth:`holders`, read again for a moment if no slot names one yet: a holder writes
        its name just after taking its lock, and a waiter can look in between (seen in CI)."""
        for _ in range(10):
            found = self.holders()
            if found:
                return found
            time.sleep(0.02)
        return []

    @contextlib.contextmanager
    def hold(self, holder: str, on_wait: Callable[[str], None] | None = None) -> Iterator[Slot]:
        """Take a free slot (waiting for one, saying so once), hold it for the ``with`` block,
        then release it with the time of release written in its file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        taken = self._take_any()
        if taken is None:
            busy = "; ".join(self._holders_once_written()) or "held by another process"
            message = f"{holder}: waiting for {self.what} ({self.size} in use: {busy})"
            (on_wait or log.info)(message)
            started, pause = time.monotonic(), POLL_FIRST
            while taken is None:
                time.sleep(pause)
                pause = min(pause * 2, POLL_MAX)
                taken = self._take_any()
            log.info("%s: got %s after %.1f s", holder, self.what, time.monotonic() - started)
        fd, slot = taken
        try:
            _write_record(
                fd,
                {"holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                 "since": time.time()},
            )  # fmt: skip
            yield slot
        finally:
            try:
                _write_record(fd, {"last_holder": holder, "released_at": time.time()})
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _take_any(self) -> tuple[int, Slot] | None:
        # Start at a different slot in each process, so that waiters do not all poll slot 0.
        first = os.getpid() % self.size
        for offset in range(self.size):
            taken = self._try((first + offset) % self.size)
            if taken is not None:
                return taken
        return None


def _read_record(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record, ensure_ascii=False).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


# ---------------------------------------------------------------------------------------------
# The pipeline's two limits


def encode_slots(locks_dir: Path, max_encodes: int | None = None) -> Slots:
    """At most ``max_encodes`` (default :func:`default_max_encodes`) ffmpeg encodes at once on
    this machine. The folder is per machine (``encodes-<host>``): a cluster's machines share the
    archive's ``locks/`` but each has its own cores."""
    size = max_encodes or default_max_encodes()
    return Slots(locks_dir / f"encodes-{safe_name(socket.gethostname())}", size, "an encode slot")


def download_slots(locks_dir: Path, host: str) -> Slots:
    """One download at a time from ``host``, over every process and machine sharing
    ``locks_dir``. The host name is remote data: it becomes a file name only through
    :func:`safe_name`."""
    return Slots(locks_dir / "downloads" / safe_name(host), 1, f"the download slot of {host}")


@contextlib.contextmanager
def download_slot(locks_dir: Path, host: str, pause_seconds: float, holder: str) -> Iterator[Slot]:
    """Hold ``host``'s download slot, first pausing until ``pause_seconds`` have passed since
    the last download from it ended (in any process)."""
    with download_slots(locks_dir, host).hold(holder) as slot:
        if slot.released_at is not None:
            wait = slot.released_at + pause_seconds - time.time()
            if wait > 0:
                log.debug("pausing %.1f s before the next download from %s", wait, host)
                time.sleep(min(wait, pause_seconds))
        yield slot
