"""Make ``ledger-v0.1.0.sql``: a ledger written by the code of v0.1.0 itself, dumped as SQL.

Run with that release's package first on the path, never this one's::

    git archive 39670d7 cifa_ingest | tar -x -C /tmp/v0.1.0
    PYTHONPATH=/tmp/v0.1.0 python tests/ledger-fixtures/make-ledger-v0.1.0.py /tmp/l.sqlite \\
        > tests/ledger-fixtures/ledger-v0.1.0.sql

The fixture is made once and kept: it stands for the ledgers v0.1.0 left in archives, so it is
never made again with a later release's code.
"""

import itertools
import sqlite3
import sys
from pathlib import Path

from cifa_ingest import ledger as old
from cifa_ingest.audit_log import AuditLog
from cifa_ingest.ledger import BagRecord, Ledger

assert hasattr(old, "SCHEMA"), "this is not v0.1.0's cifa_ingest (it made its own tables)"

HEADER = """\
-- A ledger made by cifa-ingest v0.1.0 (commit 39670d7), the last release without a schema
-- version, dumped with Python's sqlite3 iterdump: its tables exactly as that release created them
-- (SQLite keeps each CREATE statement's text, less its IF NOT EXISTS), indexes, and a few rows of
-- each table: two bags and their files and source keys, two runs' outcomes, an unfinished
-- placement, a source that vanished, and an audit log of three records hash-chained by that
-- release's algorithm. Its user_version is 0, as v0.1.0 left it. Made by running v0.1.0's own
-- code: tests/ledger-fixtures/make-ledger-v0.1.0.py says how. Never regenerate it otherwise."""
SOFTWARE = "cifa-ingest 0.1.0"

times = itertools.product(range(1, 29), range(10))
old._now = lambda: "2026-11-{:02d}T0{}:00:00+00:00".format(*next(times))
path = Path(sys.argv[1])
path.unlink(missing_ok=True)
ledger, log = Ledger(path), AuditLog(path)


def bag(work_id: str, keys: list[str]) -> BagRecord:
    digests = {"manifest-sha256.txt": "a" * 64, "manifest-sha512.txt": "b" * 128}
    return BagRecord(work_id, f"bags/{work_id}", old._now(), "300.2", digests, keys, SOFTWARE)


def files(work_id: str) -> list[tuple[str, int, str, str]]:
    return [
        (f"data/original/{work_id}.mkv", 200, "1" * 64, "2" * 128),
        (f"data/master/{work_id}.mkv", 100, "3" * 64, "4" * 128),
    ]


ledger.record_outcome("run-1", "cifa-v-0002", "failed", "no route\nretried", 4.5, "network")
ledger.register_bag(bag("cifa-v-0001", ["Youtube:abc123"]), files("cifa-v-0001"))
ledger.record_outcome("run-1", "cifa-v-0001", "preserved", None, 12.25)
two = bag("cifa-v-0002", ["Generic:http://films.example/two.mkv"])
ledger.begin_placement(two, files("cifa-v-0002"))
ledger.complete_placement("cifa-v-0002")
ledger.record_outcome("run-2", "cifa-v-0002", "preserved", None, 10.0)
ledger.record_outcome("run-2", "cifa-v-0004", "failed", "HTTP Error 410: Gone", 0.5, "gone")
ledger.begin_placement(bag("cifa-v-0003", ["Youtube:def456"]), files("cifa-v-0003"))  # killed
for status in ("present", "present", "gone"):
    details = {"http_status": 410} if status == "gone" else {}
    url = "https://www.youtube.com/watch?v=abc123"
    ledger.record_source_check("cifa-v-0001", 1, url, status, details, SOFTWARE)
log.record("cifa-v-0001", old._now(), SOFTWARE, "intact", [], 300, 0.01)
log.record("cifa-v-0002", old._now(), SOFTWARE, "intact", [], 300, 0.0123)
problem = {"kind": "checksum_mismatch", "path": "data/master/cifa-v-0001.mkv", "note": "café"}
log.record("cifa-v-0001", old._now(), SOFTWARE, "damaged", [problem], 300, 0.02)
assert log.verify() == []
with sqlite3.connect(path) as conn:
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    print(HEADER)
    print("\n".join(conn.iterdump()))
