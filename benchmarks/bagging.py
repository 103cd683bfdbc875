"""Benchmark: making and validating bags, ours against bagit-python 1.9, both sha256 + sha512.

Side by side in one run, on two payloads: (a) film-shaped: one 1.5 GB master, a 300 MB original,
a 150 MB access copy and 50 small files; (b) about 2 GB in 4 large and 200 small files. The same
run measures the machine's hashing limit (one core's single-pass sha256+sha512 throughput over data
in memory, times the cores) and prints each tool's share of it (target for ours: at least 85%),
and each side's peak memory. The page cache is warmed before each timed run, so that the disk is
not what is measured.

    .venv/bin/python benchmarks/bagging.py [--scale 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000

OURS_BAG = """
import json, resource, sys, time
from pathlib import Path
from cifa_ingest.bag.write import make_bag_in_place
started = time.monotonic()
make_bag_in_place(Path(sys.argv[1]))
print(json.dumps({"seconds": time.monotonic() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
OURS_VALIDATE = """
import json, resource, sys, time
from pathlib import Path
from cifa_ingest.bag.check import validate
started = time.monotonic()
report = validate(Path(sys.argv[1]))
assert report.valid, report.errors
print(json.dumps({"seconds": time.monotonic() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
BAGIT_BAG = """
import json, resource, sys, time
import bagit
started = time.monotonic()
bagit.make_bag(sys.argv[1], checksums=["sha256", "sha512"], processes=2)
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF,
           resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": time.monotonic() - started, "peak_mb": peak / 1024}))
"""
BAGIT_VALIDATE = """
import json, resource, sys, time
import bagit
started = time.monotonic()
bagit.Bag(sys.argv[1]).validate(processes=2)
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF,
           resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": time.monotonic() - started, "peak_mb": peak / 1024}))
"""


def _write(path: Path, size: int, block: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        remaining = size
        while remaining > 0:
            piece = block[: min(len(block), remaining)]
            fh.write(piece)
            remaining -= len(piece)


def make_payload(root: Path, large: list[int], small: int) -> int:
    block = os.urandom(4 * 1024 * 1024)
    for index, size in enumerate(large):
        _write(root / f"large-{index}.bin", size, block[index:] + block[:index])
    for index in range(small):
        _write(root / "small" / f"file-{index:03d}.txt", 20_000 + index, block[index * 7 :])
    return sum(large) + sum(20_000 + i for i in range(small))


LIMIT = """
import hashlib, os, time
data = os.urandom(256 * 1024 * 1024)
started = time.perf_counter()
sha256, sha512 = hashlib.sha256(), hashlib.sha512()
for offset in range(0, len(data), 8 * 1024 * 1024):
    chunk = data[offset : offset + 8 * 1024 * 1024]
    sha256.update(chunk)
    sha512.update(chunk)
print(len(data) / (time.perf_counter() - started))
"""


def hashing_limit() -> float:
    """Bytes per second: one core, one pass feeding sha256 and sha512, data in memory; x cores.
    Measured in a child process, so that this process stays small for the others' peaks."""
    out = subprocess.run([sys.executable, "-c", LIMIT], capture_output=True, text=True, check=True)
    return float(out.stdout) * (os.cpu_count() or 1)


def warm(root: Path) -> None:
    """Flush what was just written (its write-back would otherwise run during the timed step)
    and read every file once, so that both tools hash from the page cache."""
    os.sync()
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(16 * 1024 * 1024):
                    pass


def run(code: str, target: Path) -> dict[str, float]:
    warm(target)
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"benchmark step failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor for the payloads")
    parser.add_argument("--keep", help="work in this folder (default: a temporary one)")
    args = parser.parse_args()
    s = args.scale
    payloads = {
        "(a) film-shaped": ([int(1500 * MB * s), int(300 * MB * s), int(150 * MB * s)], 50),
        "(b) 4 large + 200 small": ([int(480 * MB * s)] * 4, 200),
    }
    limit = hashing_limit()
    print(f"hashing limit: {limit / MB:.0f} MB/s ({os.cpu_count()} cores x one-pass sha256+sha512)")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cifa-bagging-"))
    try:
        for name, (large, small) in payloads.items():
            print(f"\n{name}")
            for tool, make, check in (
                ("cifa", OURS_BAG, OURS_VALIDATE),
                ("bagit-python", BAGIT_BAG, BAGIT_VALIDATE),
            ):
                target = base / f"{tool}-{name[1]}"
                shutil.rmtree(target, ignore_errors=True)
                size = make_payload(target, large, small)
                for step, code in (("bag", make), ("validate", check)):
                    result = run(code, target)
                    rate = size / result["seconds"]
                    print(
                        f"  {tool:13s} {step:9s} {result['seconds']:6.1f} s"
                        f"  {rate / MB:6.0f} MB/s  {100 * rate / limit:4.0f}% of the limit"
                        f"  peak {result['peak_mb']:.0f} MB"
                    )
                shutil.rmtree(target, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
