"""Benchmark: making and validating bags, ours against bagit-python 1.9, both sha256 + sha512.

Side by side in one run, on two payloads: (a) film-shaped: one 1.5 GB master, a 300 MB original,
a 150 MB access copy and 50 small files; (b) about 2 GB in 4 large and 200 small files. The same
run measures the machine's hashing limit (one core's single-pass sha256+sha512 throughput over data
in memory, times the cores) before each timed step and once after the last, keeps its best pass
and prints the passes' spread (benchmarks/reference.py); it prints each tool's share of that limit
(target for ours: at least 85%), the ratio of their times, and each side's peak memory. Each
round makes every payload afresh for each tool; the tools alternate which goes first, and each
step's best round is kept, with its spread. The page cache is warmed before each timed run, so
that the disk is not what is measured.

    .venv/bin/python benchmarks/bagging.py [--scale 1.0] [--rounds 1] [--limit-mb 256] [--keep DIR]
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

from reference import MB, HashingLimit, Timings

REPO = Path(__file__).resolve().parent.parent

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


def warm(root: Path) -> None:
    """Flush what was just written (its write-back would otherwise run during the timed step)
    and read every file once, so that both tools hash from the page cache."""
    os.sync()
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(16 * 1024 * 1024):
                    pass


def run(code: str, target: Path, limit: HashingLimit | None = None) -> dict[str, float]:
    """One timed step in a child process, from a warm page cache; a pass of ``limit`` first,
    between the warming and the step, so that the limit is measured beside every step."""
    warm(target)
    if limit is not None:
        limit.measure()
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"benchmark step failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


TOOLS = {"cifa": (OURS_BAG, OURS_VALIDATE), "bagit-python": (BAGIT_BAG, BAGIT_VALIDATE)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor for the payloads")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tool's steps")
    parser.add_argument("--limit-mb", type=float, default=256, help="data per limit pass")
    parser.add_argument("--keep", help="work in this folder (default: a temporary one)")
    args = parser.parse_args()
    s = args.scale
    payloads = {
        "(a) film-shaped": ([int(1500 * MB * s), int(300 * MB * s), int(150 * MB * s)], 50),
        "(b) 4 large + 200 small": ([int(480 * MB * s)] * 4, 200),
    }
    limit = HashingLimit(args.limit_mb)
    timings = {
        (name, tool, step): Timings()
        for name in payloads
        for tool in TOOLS
        for step in ("bag", "validate")
    }
    sizes: dict[str, int] = {}
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cifa-bagging-"))
    try:
        for name, (large, small) in payloads.items():
            for round_ in range(args.rounds):
                order = list(TOOLS) if round_ % 2 == 0 else list(reversed(TOOLS))
                for tool in order:
                    target = base / f"{tool}-{name[1]}"
                    shutil.rmtree(target, ignore_errors=True)
                    sizes[name] = make_payload(target, large, small)
                    for step, code in zip(("bag", "validate"), TOOLS[tool], strict=True):
                        timings[name, tool, step].runs.append(run(code, target, limit))
                    shutil.rmtree(target, ignore_errors=True)
        limit.measure()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(limit.describe())
    for name in payloads:
        print(f"\n{name}: {sizes[name] / MB:.0f} MB")
        for tool in TOOLS:
            for step in ("bag", "validate"):
                timing = timings[name, tool, step]
                rate = sizes[name] / timing.best
                print(
                    f"  {tool:13s} {step:9s} {timing.best:7.2f} s ({timing.spread_text()})"
                    f"  {rate / MB:6.0f} MB/s  {limit.share(rate):4.0f}% of the limit"
                    f"  peak {timing.peak('peak_mb'):.0f} MB"
                )
        ratios = []
        for step in ("bag", "validate"):
            ours, theirs = timings[name, "cifa", step], timings[name, "bagit-python", step]
            ratios.append(f"{step} {ours.best / theirs.best:.2f}")
        print(f"  ratio cifa/bagit-python (time, best against best): {', '.join(ratios)}")


if __name__ == "__main__":
    main()
