"""Benchmark: a full fixity audit against bagit-python's validate(processes=2) over the same bags.

An archive of 10 bags of about 200 MB each (one large file and a few small ones: about 2 GB in
all) is made and registered; then, side by side in one run, with a warm page cache, `cifa audit`'s
engine and bagit-python 1.9 validate every bag, in rounds, alternating which goes first. The
machine's hashing limit (one core, one pass of sha256+sha512 over data in memory, times the cores)
is measured before each timed run and once after the last; its best pass is kept and the passes'
spread printed (benchmarks/reference.py). Each side's best round is kept, with its spread, and
printed as its share of the limit (target for ours: at least 85%), with the ratio of the two
sides' times (target: under 1, ours faster). Last, it times planning a rolling audit over a
ledger of 10,000 bags, best of three (target: under a second).

    .venv/bin/python benchmarks/audit.py [--scale 1.0] [--rounds 3] [--limit-mb 256]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bagging import make_payload, warm
from reference import MB, REGISTER_BAGS, HashingLimit, Timings, spread_text

REPO = Path(__file__).resolve().parent.parent

OURS = """
import json, resource, sys, time
from pathlib import Path
from cifa_ingest.archive.layout import Archive
from cifa_ingest.audit.fixity_audit import audit_archive
started = time.monotonic()
report = audit_archive(Archive(Path(sys.argv[1])))
assert report.ok, report.problems
print(json.dumps({"seconds": time.monotonic() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
BAGIT = """
import json, resource, sys, time
from pathlib import Path
import bagit
started = time.monotonic()
for bag in sorted((Path(sys.argv[1]) / "bags").iterdir()):
    bagit.Bag(str(bag)).validate(processes=2)
peak = max(resource.getrusage(w).ru_maxrss
           for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": time.monotonic() - started, "peak_mb": peak / 1024}))
"""


def child(code: str, *args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"benchmark step failed:\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def time_planning(bags: int = 10_000) -> float:
    sys.path.insert(0, str(REPO))
    from cifa_ingest.archive.ledger import BagRecord
    from cifa_ingest.audit.fixity_audit import plan

    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    records = [
        BagRecord(f"cifa-{i:05d}", f"bags/cifa-{i:05d}",
                  (start + dt.timedelta(hours=i)).isoformat(), "1.1", {}, [], "benchmark")
        for i in range(bags)
    ]  # fmt: skip
    verified = {r.work_id: (start + dt.timedelta(days=i % 400)).isoformat() for i, r in
                enumerate(records) if i % 3}  # fmt: skip
    now = (start + dt.timedelta(days=500)).isoformat()
    started = time.perf_counter()
    todo = plan(records, verified, 90, now)
    elapsed = time.perf_counter() - started
    assert todo
    return elapsed


SIDES = {"cifa audit": OURS, "bagit-python": BAGIT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor for the bags")
    parser.add_argument("--rounds", type=int, default=3, help="audits by each side")
    parser.add_argument("--limit-mb", type=float, default=256, help="data per limit pass")
    args = parser.parse_args()
    limit = HashingLimit(args.limit_mb)
    timings = {name: Timings() for name in SIDES}
    base = Path(tempfile.mkdtemp(prefix="cifa-audit-bench-"))
    try:
        archive = base / "archive"
        size = 0
        for index in range(10):
            size += make_payload(
                archive / "bags" / f"bag-{index:02d}", [int(190 * MB * args.scale)], 10
            )
        child(REGISTER_BAGS, str(archive))
        for round_ in range(args.rounds):
            order = list(SIDES) if round_ % 2 == 0 else list(reversed(SIDES))
            for name in order:
                warm(archive)
                limit.measure()
                timings[name].runs.append(child(SIDES[name], str(archive)))
        limit.measure()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(limit.describe())
    print(f"archive: 10 bags, {size / MB:.0f} MB of payload; {args.rounds} rounds, alternating")
    for name, timing in timings.items():
        rate = size / timing.best
        print(
            f"  {name:13s} {timing.best:7.2f} s ({timing.spread_text()})  {rate / MB:6.0f} MB/s"
            f"  {limit.share(rate):4.0f}% of the limit  peak {timing.peak('peak_mb'):.0f} MB"
        )
    ratio = timings["cifa audit"].best / timings["bagit-python"].best
    print(f"  ratio cifa audit/bagit-python (time, best against best): {ratio:.2f} (target < 1)")
    planning = [time_planning() for _ in range(3)]
    print(
        f"planning a rolling audit over 10,000 bags: {min(planning) * 1000:.0f} ms"
        f" ({spread_text(planning)}; target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
