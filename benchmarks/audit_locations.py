"""Benchmark: audits of an S3 storage location on a local SeaweedFS (``weed mini``).

Two figures, in one run:

- **Cheap audit.** An archive whose copies at the location are 10,000 small objects (100 bags of
  94 payload files and their 6 tag files), written by the real replication, is audited cheaply
  (`cifa audit --location NAME`: one listing, compared with the ledger), in rounds of three
  audits: the first after the replication (the objects it verified as it wrote them are not
  looked up: :mod:`cifa_ingest.storage.confirmed`), the same again (as every nightly check), and
  one with the cache of confirmed objects removed (every object looked up by HEAD for the
  server's own SHA-256: a location whose cache was lost, or written by other means); the best of
  each and its spread are printed with the ratio to the target of 10 s (under 1: met).
- **Deep audit.** A second location holds a few bags of large files (4 x 64 MB at scale 1). Its
  deep audit (every byte streamed once, sha256 and sha512) is compared with what bounds it: the
  smaller of the machine's hashing limit (benchmarks/reference.py, measured before each timed run
  and once after the last) and plain GETs of the same objects, read and thrown away, measured in
  the same rounds, alternating which goes first. Printed as each side's rate and the ratio of the
  deep audit's rate to min(limit, GET) (target: at least 0.85).

The objects are written by :func:`cifa_ingest.storage.replicate.replicate_archive`, as
``cifa replicate`` writes them; its time is printed, but what is measured is the audit.

    .venv/bin/python benchmarks/audit_locations.py [--objects 10000] [--scale 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reference import MB, HashingLimit, Timings, spread_text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cifa_ingest.archive.layout import Archive  # noqa: E402
from cifa_ingest.archive.ledger import BagRecord, Ledger, now  # noqa: E402
from cifa_ingest.audit.copies import audit_location  # noqa: E402
from cifa_ingest.bag.package import summarise_bag  # noqa: E402
from cifa_ingest.bag.write import make_bag_in_place  # noqa: E402
from cifa_ingest.revision import record_first_version  # noqa: E402
from cifa_ingest.storage.locations import S3Location  # noqa: E402
from cifa_ingest.storage.replicate import replicate_archive  # noqa: E402
from cifa_ingest.storage.stores import open_store  # noqa: E402
from cifa_ingest.versions import User  # noqa: E402
from tests.s3server import S3Server, client_env  # noqa: E402

#: Tag files of every bag: bagit.txt, bag-info.txt and two manifests, two tag manifests.
TAG_FILES = 6
CHEAP_TARGET_SECONDS = 10.0


def make_bags(archive: Path, prefix: str, bags: int, files: int, size: int) -> int:
    """``bags`` bags of ``files`` payload files of ``size`` bytes each, bagged and registered."""
    archive.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(archive / "ledger.sqlite")
    block = os.urandom(max(size, 1) + 4096)
    total = 0
    for b in range(bags):
        bag = archive / "bags" / f"{prefix}-{b:04d}"
        (bag / "data").mkdir(parents=True)
        for f in range(files):
            offset = (b * files + f) % 4096
            (bag / "data" / f"file-{f:03d}.bin").write_bytes(block[offset : offset + size])
            total += size
        make_bag_in_place(bag)
        summary = summarise_bag(bag)
        record = BagRecord(bag.name, f"bags/{bag.name}", now(), summary.payload_oxum,
                           summary.manifest_digests, [], "benchmark")  # fmt: skip
        ledger.register_bag(record)
        # As the ingest does right after placing a bag: its version 1 (hard links).
        record_first_version(Archive(archive), bag.name, User("benchmark"))
    return total


def replicate(archive: Path, location: S3Location) -> tuple[int, float]:
    """Every registered bag to ``location`` by the real replication; the objects written and
    the seconds it took."""
    started = time.perf_counter()
    report = replicate_archive(Archive(archive), [location])
    seconds = time.perf_counter() - started
    assert report.ok, [c.detail for c in report.problems[:3]]
    store = open_store(location)  # the bags, and beside them their versions' inventories
    return sum(1 for prefix in ("bags/", "versions/") for _ in store.list(prefix)), seconds


def server_cpu(server: S3Server) -> float:
    """CPU seconds the server's process has used so far (user + system)."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(server: S3Server, step: Any) -> dict[str, float]:
    """``step()``'s figures, with the CPU seconds this process (every thread) and the server
    used during it: on a machine whose cores the server shares, what bounds a step may be the
    CPU both sides need, not either one's speed alone."""
    client, before = time.process_time(), server_cpu(server)
    run: dict[str, float] = step()
    run["client_cpu"] = time.process_time() - client
    run["server_cpu"] = server_cpu(server) - before
    return run


def timed_audit(archive: Path, location: S3Location, deep: bool) -> dict[str, float]:
    started = time.perf_counter()
    report = audit_location(Archive(archive), location, deep=deep)
    seconds = time.perf_counter() - started
    assert report.ok, [(p.kind, p.detail) for p in report.problems[:3]]
    return {"seconds": seconds, "bytes": sum(bag.bytes_read for bag in report.bags)}


def timed_get(location: S3Location) -> dict[str, float]:
    """Every object of the location read through the store and thrown away, one at a time, as
    the deep audit reads them: what the server and the connection give, with no hashing."""
    store = open_store(location)
    started = time.perf_counter()
    size = 0
    for found in [*store.list("bags/"), *store.list("versions/")]:  # as the deep audit reads
        with store.open(found.key) as reader:
            while chunk := reader.read(8 * 1024 * 1024):
                size += len(chunk)
    return {"seconds": time.perf_counter() - started, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000, help="objects of the cheap audit")
    parser.add_argument("--scale", type=float, default=1.0, help="size factor of the deep audit")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measured step")
    parser.add_argument("--limit-mb", type=float, default=256, help="data per limit pass")
    args = parser.parse_args()
    os.environ.update(client_env())
    per_bag = 100
    bags = max(1, args.objects // per_bag)
    files = per_bag - TAG_FILES
    large = max(1, int(64 * 1024 * 1024 * args.scale))
    limit = HashingLimit(args.limit_mb)
    base = Path(tempfile.mkdtemp(prefix="cifa-audit-locations-bench-"))
    after, cheap, cold = Timings(), Timings(), Timings()
    deep, get = Timings(), Timings()
    try:
        archive, large_archive = base / "archive", base / "archive-large"
        with S3Server.start(base / "s3") as server:
            many = server.location(server.create_bucket(), name="many")
            big = server.location(server.create_bucket(), name="big")
            make_bags(archive, "small", bags, files, 1000)
            objects, replicated = replicate(archive, many)
            written = archive / ".cache" / f"location-{many.name}.json"
            kept = base / "cache-after-replication.json"
            shutil.copyfile(written, kept)
            for _ in range(args.rounds):
                shutil.copyfile(kept, written)
                after.runs.append(timed_audit(archive, many, deep=False))
                cheap.runs.append(timed_audit(archive, many, deep=False))
                written.unlink()
                cold.runs.append(timed_audit(archive, many, deep=False))
            # The deep audit's bag in an archive of its own: its location holds only that bag.
            payload = make_bags(large_archive, "large", 1, 4, large)
            replicate(large_archive, big)
            for round_ in range(args.rounds):
                steps: list[tuple[Timings, Any]] = [
                    (deep, lambda: with_cpu(server, lambda: timed_audit(large_archive, big, True))),
                    (get, lambda: with_cpu(server, lambda: timed_get(big))),
                ]
                for timings, step in steps if round_ % 2 == 0 else reversed(steps):
                    limit.measure()
                    timings.runs.append(step())
            limit.measure()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(limit.describe())
    print(
        f"cheap audit of {objects} objects in {bags} bags (written by replication in"
        f" {replicated:.1f} s):"
    )
    steps = (
        ("first", after, "the first after replication: the objects it verified not looked up"),
        ("again", cheap, "objects unchanged since confirmed not looked up again"),
        ("cold", cold, "the cache removed: every object looked up (HEAD)"),
    )
    for name, timing, what in steps:
        print(f"  {name:5s} {timing.best:7.2f} s ({timing.spread_text()})  {what}")
        print(
            f"  ratio cheap audit {name}/target {CHEAP_TARGET_SECONDS:g} s (time):"
            f" {timing.best / CHEAP_TARGET_SECONDS:.2f} (target < 1)"
        )
    size = deep.runs[0]["bytes"]
    print(f"deep audit of 1 bag, {payload / MB:.0f} MB of payload ({size / MB:.0f} MB read)")
    rates = {}
    for name, timing in (("deep audit", deep), ("plain GET", get)):
        rate = timing.runs[0]["bytes"] / timing.best
        rates[name] = rate
        print(
            f"  {name:10s} {timing.best:7.2f} s ({timing.spread_text()})  {rate / MB:6.0f} MB/s"
            f"  {limit.share(rate):4.0f}% of the limit"
        )
    bound = min(limit.best, rates["plain GET"])
    ratios = [
        (d["bytes"] / d["seconds"]) / min(limit.best, g["bytes"] / g["seconds"])
        for d, g in zip(deep.runs, get.runs, strict=True)
    ]
    print(
        f"  ratio deep audit/min(limit, GET) (rate, best against best):"
        f" {rates['deep audit'] / bound:.2f} (target >= 0.85; rounds' own ratios"
        f" {min(ratios):.2f}-{max(ratios):.2f}, {spread_text(ratios, max)})"
    )
    # Where the CPU goes: the server shares this machine's cores, so the deep audit needs the
    # CPU of a plain GET (client and server) and the hashing's on top of it.
    cores = os.cpu_count() or 1
    per_gb = {}
    for name, timing in (("deep audit", deep), ("plain GET", get)):
        runs = timing.runs
        client = min(r["client_cpu"] for r in runs) / runs[0]["bytes"] * 1e9
        server = min(r["server_cpu"] for r in runs) / runs[0]["bytes"] * 1e9
        per_gb[name] = client + server
        print(f"  {name:10s} CPU per GB: client {client:.2f} s + server {server:.2f} s")
    hashing = cores / limit.best * 1e9  # core-seconds per GB at the limit (one pass, both)
    ceiling = cores / (per_gb["plain GET"] + hashing) * 1e9
    print(
        f"  CPU ceiling of a deep audit on {cores} cores shared with the server (GET's CPU +"
        f" hashing's {hashing:.2f} s per GB): {ceiling / MB:.0f} MB/s; deep audit/ceiling:"
        f" {rates['deep audit'] / ceiling:.2f}"
    )


if __name__ == "__main__":
    main()
