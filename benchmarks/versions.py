"""Benchmark: recording a placed bag as the first version of its work (cifa_ingest.versions,
``add_version(link=True)``: every digest of the bag's manifests verified, its files hard-linked
into the OCFL object), against bagit-python 1.9 validating the same bag (the check a user would
run to verify a bag), both from a warm page cache.

What the ingest pays for versions is one more verification of each new bag at its placement;
this says how that verification compares with the field's validator, and with the machine's
hashing limit (one core's single-pass sha256+sha512 throughput over data in memory, times the
cores: benchmarks/reference.py), measured beside every timed step. The bag is film-shaped: one
1.5 GB master, a 300 MB original, a 150 MB access copy and 50 small files, bagged with sha256 and
sha512 and sealed read-only, as a placed bag is. Each round gives each tool the same bag, the
tools alternating which goes first; each side's best round is kept, with its spread.

    .venv/bin/python benchmarks/versions.py [--scale 1.0] [--rounds 1] [--limit-mb 256]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bagging import BAGIT_VALIDATE, make_payload, run
from reference import MB, HashingLimit, Timings

OURS = """
import json, resource, shutil, sys, time
from pathlib import Path
from cifa_ingest.versions import StorageRoot, User, add_version
bag = Path(sys.argv[1])
objects, staging = bag.parent / "objects", bag.parent / "staging"
shutil.rmtree(objects, ignore_errors=True)
started = time.monotonic()
add_version(StorageRoot(objects), "cifa-bench-0001", bag, message="ingestion",
            user=User("benchmark"), staging_dir=staging, link=True)
print(json.dumps({"seconds": time.monotonic() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
TOOLS = {"cifa version 1": OURS, "bagit-python validate": BAGIT_VALIDATE}


def placed_bag(folder: Path, scale: float) -> int:
    """A film-shaped bag, sealed read-only as a placed bag is; its payload's size."""
    from cifa_ingest.archive.layout import seal_tree
    from cifa_ingest.bag.write import make_bag_in_place

    size = make_payload(
        folder, [int(1500 * MB * scale), int(300 * MB * scale), int(150 * MB * scale)], 50
    )
    make_bag_in_place(folder)
    seal_tree(folder)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor for the bag")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tool")
    parser.add_argument("--limit-mb", type=float, default=256, help="data per limit pass")
    args = parser.parse_args()
    limit = HashingLimit(args.limit_mb)
    timings = {tool: Timings() for tool in TOOLS}
    base = Path(tempfile.mkdtemp(prefix="cifa-versions-"))
    try:
        size = placed_bag(base / "bag", args.scale)
        for round_ in range(args.rounds):
            order = list(TOOLS) if round_ % 2 == 0 else list(reversed(TOOLS))
            for tool in order:
                timings[tool].runs.append(run(TOOLS[tool], base / "bag", limit))
        limit.measure()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(limit.describe())
    print(f"\n(a) film-shaped bag: {size / MB:.0f} MB of payload")
    for tool, timing in timings.items():
        rate = size / timing.best
        print(
            f"  {tool:22s} {timing.best:7.2f} s ({timing.spread_text()})"
            f"  {rate / MB:6.0f} MB/s  {limit.share(rate):4.0f}% of the limit"
            f"  peak {timing.peak('peak_mb'):.0f} MB"
        )
    ours, theirs = timings["cifa version 1"], timings["bagit-python validate"]
    print(
        "  ratio cifa version 1/bagit-python validate (time, best against best):"
        f" {ours.best / theirs.best:.2f}"
    )


if __name__ == "__main__":
    main()
