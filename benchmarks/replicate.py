"""Benchmark: replicating a bag to a local S3 server, ours against boto3's own managed transfer.

A bag-shaped payload (one large master-like file and a few small ones, about ``--gigabytes`` in
all) is bagged and registered in an archive's ledger; a real SeaweedFS server (``weed mini`` on
127.0.0.1, the tests' :mod:`tests.s3server`) is started; then, side by side in one run, in rounds
alternating which goes first, each from a warm page cache and in a child process of its own:

- ours: the real path, :func:`cifa_ingest.storage.replicate.replicate_archive` to an S3 location
  (a fresh bucket and location name each round, so that every file is sent): the bag's digests
  derived from the ledger, every write carrying the ledger's SHA-256 for the server to check
  (per part, and the whole file's before an upload is completed), each object verified by HEAD
  after it is written, the copy recorded good, the ledger's snapshot sent;
- boto3: ``upload_file`` of the same files, default ``TransferConfig`` (8 MiB parts, 10
  threads), default client (its own CRC32 checksums), into a fresh bucket of the same server.

Each side's best round is kept, with its spread (benchmarks/reference.py); prints their
throughput, the ratio of the best times (target: at most 1.15) with the range of the rounds' own
ratios, each side's CPU seconds (the child's own, and the server's during its run: steadier than
the times when the machine is shared) and the ratio of the best, and each side's peak memory (the
child's peak RSS; ours must stay bounded whatever the file's size).

    .venv/bin/python benchmarks/replicate.py [--gigabytes 3] [--rounds 3] [--small 5]
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

from bagging import make_payload, warm
from reference import MB, REGISTER_BAGS, Timings, spread_text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.s3server import CLEARED, S3Server, client_env  # noqa: E402

OURS = """
import json, resource, sys, time
from pathlib import Path
from cifa_ingest.archive.layout import Archive
from cifa_ingest.storage.locations import S3Location
from cifa_ingest.storage.replicate import replicate_archive
root, endpoint, region, bucket, name = sys.argv[1:6]
location = S3Location(name=name, zone="bench", endpoint=endpoint, region=region, bucket=bucket,
                      prefix="", object_lock_days=None)
started = time.monotonic()
report = replicate_archive(Archive(Path(root)), [location])
seconds = time.monotonic() - started
assert report.ok, report.as_dict()
assert [c.outcome for c in report.copies] == ["copied"], report.as_dict()
assert all(s.ok for s in report.snapshots), report.as_dict()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024,
                  "cpu": usage.ru_utime + usage.ru_stime}))
"""
BOTO3 = """
import json, resource, sys, time
from pathlib import Path
import boto3
from botocore.config import Config
bag, endpoint, region, bucket = sys.argv[1:5]
files = sorted(p for p in Path(bag).rglob("*") if p.is_file())
started = time.monotonic()
# Default client and TransferConfig; path-style addressing only because 127.0.0.1 has no DNS
# name per bucket.
client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                        config=Config(s3={"addressing_style": "path"}))
for path in files:
    client.upload_file(str(path), bucket, "bags/bench/" + path.relative_to(bag).as_posix())
seconds = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024,
                  "cpu": usage.ru_utime + usage.ru_stime}))
"""
SIDES = ("cifa replicate", "boto3 upload_file")


def child(code: str, env: dict[str, str], *args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"benchmark step failed:\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def server_cpu(server: S3Server) -> float:
    """CPU seconds the server's process has used so far (user + system)."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=3.0, help="size of the bag")
    parser.add_argument("--rounds", type=int, default=3, help="replications by each side")
    parser.add_argument("--small", type=int, default=5, help="small files beside the master")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in CLEARED} | client_env()
    env["PYTHONPATH"] = str(REPO)
    timings = {side: Timings() for side in SIDES}
    base = Path(tempfile.mkdtemp(prefix="cifa-replicate-bench-"))
    try:
        archive = base / "archive"
        bag = archive / "bags" / "bench-0001"
        size = make_payload(bag, [int(args.gigabytes * 1000 * MB)], args.small)
        child(REGISTER_BAGS, env, str(archive))
        files = sum(1 for p in bag.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in bag.rglob("*") if p.is_file())
        with S3Server.start(base / "s3") as server:
            for round_ in range(args.rounds):
                order = SIDES if round_ % 2 == 0 else tuple(reversed(SIDES))
                for side in order:
                    bucket = server.create_bucket(f"bench-{round_}-{SIDES.index(side)}")
                    warm(archive)
                    before = server_cpu(server)
                    if side == SIDES[0]:
                        run = child(OURS, env, str(archive), server.endpoint, server.region,
                                    bucket, f"s3-round-{round_}")  # fmt: skip
                    else:
                        run = child(BOTO3, env, str(bag), server.endpoint, server.region, bucket)
                    run["server_cpu"] = server_cpu(server) - before
                    timings[side].runs.append(run)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"bag: {files} files, {total / MB:.0f} MB ({size / MB:.0f} MB of payload) to SeaweedFS"
        f" (weed mini, 127.0.0.1); {args.rounds} rounds, alternating; {os.cpu_count()} cores"
    )
    for side, timing in timings.items():
        print(
            f"  {side:18s} {timing.best:7.2f} s ({timing.spread_text()})"
            f"  {total / timing.best / MB:6.0f} MB/s  peak {timing.peak('peak_mb'):.0f} MB"
        )
    for side, timing in timings.items():
        cpu = [r["cpu"] + r["server_cpu"] for r in timing.runs]
        print(
            f"  {side:18s} CPU {min(cpu):6.1f} s, {spread_text(cpu)}: client"
            f" {min(r['cpu'] for r in timing.runs):.1f} s (whole process, imports included),"
            f" server {min(r['server_cpu'] for r in timing.runs):.1f} s"
        )
    ours, theirs = timings[SIDES[0]], timings[SIDES[1]]
    cpu_ratio = min(r["cpu"] + r["server_cpu"] for r in ours.runs) / min(
        r["cpu"] + r["server_cpu"] for r in theirs.runs
    )
    ratio = ours.best / theirs.best
    rounds = [a / b for a, b in zip(ours.seconds, theirs.seconds, strict=True)]
    print(
        f"  ratio cifa replicate/boto3 upload_file (time, best against best): {ratio:.2f}"
        f" (target <= 1.15; rounds' own ratios {min(rounds):.2f}-{max(rounds):.2f})"
    )
    print(
        f"  CPU (client + server) cifa replicate/boto3 upload_file, best against best:"
        f" {cpu_ratio:.2f} (less noisy than the times on a shared machine)"
    )
    print(
        f"  peak memory of ours: {ours.peak('peak_mb'):.0f} MB RSS for a {total / MB:.0f} MB bag"
        f" (memory {spread_text([r['peak_mb'] for r in ours.runs])})"
    )


if __name__ == "__main__":
    main()
