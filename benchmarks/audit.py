"""Benchmark: a full fixity audit against bagit-python's validate(processes=2) over the same bags.

An archive of 10 bags of about 200 MB each (one large file and a few small ones: about 2 GB in
all) is made and registered; then, side by side in one run, with a warm page cache, `cifa audit`'s
engine and bagit-python 1.9 validate every bag. The machine's hashing limit is measured in the same
run (one core, one pass of sha256+sha512 over data in memory, times the cores), and each side's
share of it is printed (target for ours: at least 85%, and faster than bagit-python). Last, it
times planning a rolling audit over a ledger of 10,000 bags (target: under a second).

    .venv/bin/python benchmarks/audit.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bagging import hashing_limit, make_payload, warm

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000

SETUP = """
import sys
from pathlib import Path
from cifa_ingest.archive.layout import Archive
from cifa_ingest.bag.write import make_bag_in_place
from cifa_ingest.archive.ledger import BagRecord, Ledger, now
from cifa_ingest.bag.package import summarise_bag
archive = Archive(Path(sys.argv[1]))
ledger = Ledger(archive.ledger_path)
for bag in sorted(archive.bags_dir.iterdir()):
    make_bag_in_place(bag)
    summary = summarise_bag(bag)
    ledger.register_bag(BagRecord(bag.name, archive.relative(bag), now(), summary.payload_oxum,
                                  summary.manifest_digests, [], "benchmark"))
"""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor for the bags")
    args = parser.parse_args()
    limit = hashing_limit()
    print(f"hashing limit: {limit / MB:.0f} MB/s ({os.cpu_count()} cores x one-pass sha256+sha512)")
    base = Path(tempfile.mkdtemp(prefix="cifa-audit-bench-"))
    try:
        archive = base / "archive"
        size = 0
        for index in range(10):
            size += make_payload(
                archive / "bags" / f"bag-{index:02d}", [int(190 * MB * args.scale)], 10
            )
        child(SETUP, str(archive))
        print(f"archive: 10 bags, {size / MB:.0f} MB of payload")
        for name, code in (("cifa audit", OURS), ("bagit-python", BAGIT)):
            warm(archive)
            result = child(code, str(archive))
            rate = size / result["seconds"]
            print(
                f"  {name:13s} {result['seconds']:6.1f} s  {rate / MB:6.0f} MB/s"
                f"  {100 * rate / limit:4.0f}% of the limit  peak {result['peak_mb']:.0f} MB"
            )
        print(f"planning a rolling audit over 10,000 bags: {time_planning() * 1000:.0f} ms")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
