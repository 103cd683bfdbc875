"""What the benchmarks measure against, and how steadily: one discipline for all of them.

A reference (the machine's hashing limit, or the other tool's time) is never measured once: it is
measured several times, interleaved with the runs it is compared with, so that a slow or fast
moment of the machine falls on both sides; the best measurement is the one kept (the machine's
noise only ever slows a run down), and the spread is printed beside it, so that a reader can see
how far a ratio can be trusted. The spread is (worst - best) / best.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MB = 1_000_000


def spread(values: Sequence[float], best: Callable[[Sequence[float]], float] = min) -> float:
    """(worst - best) / best: 0 for one value; ``best`` is ``min`` for times, ``max`` for rates."""
    top = best(values)
    return max(abs(v - top) for v in values) / top if top else 0.0


def spread_text(values: Sequence[float], best: Callable[[Sequence[float]], float] = min) -> str:
    """``spread 4% over 3`` (or ``1 run, no spread`` when there is nothing to compare)."""
    if len(values) < 2:
        return "1 run, no spread"
    return f"spread {100 * spread(values, best):.0f}% over {len(values)}"


@dataclass
class Timings:
    """The runs of one measured step, in seconds, with anything else each run reported."""

    runs: list[dict[str, float]] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [run["seconds"] for run in self.runs]

    @property
    def best(self) -> float:
        return min(self.seconds)

    def peak(self, key: str) -> float:
        return max(run[key] for run in self.runs)

    def spread_text(self) -> str:
        return spread_text(self.seconds)


LIMIT = """
import hashlib, os, sys, time
data = os.urandom(int(sys.argv[1]))
started = time.perf_counter()
sha256, sha512 = hashlib.sha256(), hashlib.sha512()
for offset in range(0, len(data), 8 * 1024 * 1024):
    chunk = data[offset : offset + 8 * 1024 * 1024]
    sha256.update(chunk)
    sha512.update(chunk)
print(len(data) / (time.perf_counter() - started))
"""


@dataclass
class HashingLimit:
    """The machine's hashing limit: one core's single-pass sha256+sha512 throughput over data in
    memory, times the cores, in bytes per second. Call :meth:`measure` before each timed run
    and once after the last; :attr:`best` is the limit the shares are taken of."""

    megabytes: float = 256
    passes: list[float] = field(default_factory=list)

    def measure(self) -> None:
        """One pass, in a child process, so that the caller stays small for the others' peaks."""
        size = str(int(self.megabytes * MB))
        out = subprocess.run(
            [sys.executable, "-c", LIMIT, size], capture_output=True, text=True, check=True
        )
        self.passes.append(float(out.stdout) * (os.cpu_count() or 1))

    @property
    def best(self) -> float:
        return max(self.passes)

    def share(self, rate: float) -> float:
        """``rate`` as a percentage of the best pass."""
        return 100 * rate / self.best

    def describe(self) -> str:
        worst = min(self.passes)
        return (
            f"hashing limit: {self.best / MB:.0f} MB/s, best of {len(self.passes)} passes"
            f" interleaved with the runs (worst {worst / MB:.0f} MB/s,"
            f" {spread_text(self.passes, max)});"
            f" {os.cpu_count()} cores x one-pass sha256+sha512 over {self.megabytes:g} MB"
        )


#: Run in a child Python with the archive's path: every folder under its bags/ made a bag and
#: registered in its ledger, as the pipeline would have, for the benchmarks that need an archive.
REGISTER_BAGS = """
import sys
from pathlib import Path
from cifa_ingest.archive.layout import Archive
from cifa_ingest.bag.write import make_bag_in_place
from cifa_ingest.archive.ledger import BagRecord, Ledger, now
from cifa_ingest.bag.package import summarise_bag
from cifa_ingest.revision import record_first_version
from cifa_ingest.versions import User
archive = Archive(Path(sys.argv[1]))
ledger = Ledger(archive.ledger_path)
for bag in sorted(archive.bags_dir.iterdir()):
    make_bag_in_place(bag)
    summary = summarise_bag(bag)
    ledger.register_bag(BagRecord(bag.name, archive.relative(bag), now(), summary.payload_oxum,
                                  summary.manifest_digests, [], "benchmark"))
    # As the ingest does right after placing a bag: its version 1 (hard links, no second copy).
    record_first_version(archive, bag.name, User("benchmark"))
"""
