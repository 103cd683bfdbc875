"""Issue 18's migration of an existing archive and its replica, on the previous release's archive
and S3 replica made by that release's own code (tests/previous_release.py)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from cifa_ingest.versions import versions
from tests.previous_release import (
    PreviousRelease,
    copies_in_ledger,
    make_previous_release_archive,
)
from tests.s3server import S3Server, s3_server
from tests.test_recover import assert_ocfl_valid  # W008 allowed: no contact address

__all__ = ["s3_server"]  # the fixture, imported for pytest


def _assert_as_the_previous_release_left_it(s3_server: S3Server, old: PreviousRelease) -> None:
    """The starting point is what that release really left: bags and no ``objects/`` (it kept no
    versions), copies the ledger records good at the S3 location, the bags in the bucket."""
    assert old.work_ids
    bags = old.archive / "bags"
    assert sorted(p.name for p in bags.iterdir()) == sorted(old.work_ids)
    assert all((bags / work_id / "bagit.txt").is_file() for work_id in old.work_ids)
    assert not (old.archive / "objects").exists(), "the previous release kept no versions"

    copies = copies_in_ledger(old.archive)
    assert {work_id: copies.get((work_id, old.location)) for work_id in old.work_ids} == {
        work_id: "good" for work_id in old.work_ids
    }

    keys = _keys(s3_server, old.bucket, old.prefix)
    missing = [w for w in old.work_ids if f"{old.prefix}bags/{w}/bagit.txt" not in keys]
    assert not missing, f"no bagit.txt in the bucket for {missing}"
    assert not any(key.startswith(f"{old.prefix}versions/") for key in keys)


def _keys(s3_server: S3Server, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    client = s3_server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _bags_table(archive: Path) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{archive / 'ledger.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute(
            "SELECT work_id, bag_path, placed_at, payload_oxum, manifest_digests FROM bags"
            " ORDER BY work_id"
        ).fetchall()


def _cifa(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The current release's ``cifa``, as an operator runs it after the upgrade."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("cifa")), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.slow  # the previous release's demo, then the migration
def test_the_previous_releases_archive_and_s3_replica_migrate_resumably_and_audit_clean(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Issue 18's migration, on what the previous release really wrote: its archive (bags, no
    versions) and its S3 replica (bags only) become version 1 of each work, every digest the
    ledger held carried over, on the primary and at the location. The current release's first
    `cifa replicate` migrates the ledger (its good copies pending: they hold no versions),
    records version 1 of every work and sends the versions; killed half-way (SIGKILL), the next
    one resumes and completes it. Then ocfl-py finds every object valid, and the audits of the
    primary and of the location (every byte read back) are clean."""
    old = make_previous_release_archive(tmp_path, s3_server)
    _assert_as_the_previous_release_left_it(s3_server, old)
    before = _bags_table(old.archive)
    env = {key: value for key, value in old.env.items() if key != "PYTHONPATH"}
    replicate = [
        str(Path(sys.executable).with_name("cifa")), "replicate",
        "--archive", str(old.archive), "--json", "--quiet",
    ]  # fmt: skip
    versions_prefix = f"{old.prefix}versions/"

    # The first replication of the new release, killed once it has sent some versions.
    process = subprocess.Popen(
        replicate, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while not _keys(s3_server, old.bucket, versions_prefix) and time.monotonic() < deadline:
            assert process.poll() is None, "the replication ended before any version was sent"
            time.sleep(0.02)
        interrupted = process.poll() is None
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert interrupted
    # The ledger was migrated (a backup of the previous release's kept), and not every copy is
    # good again yet: those that hold no versions are pending.
    assert (old.archive / "ledger.sqlite.before-v4").is_file()
    halfway = copies_in_ledger(old.archive)
    assert any(halfway[(w, old.location)] != "good" for w in old.work_ids), halfway

    done = _cifa(env, tmp_path, *replicate[1:])

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"]
    copies = copies_in_ledger(old.archive)
    assert {w: copies[(w, old.location)] for w in old.work_ids} == dict.fromkeys(
        old.work_ids, "good"
    )
    # Every work is version 1 of its object, dated by its placement; the ledger's digests of
    # every bag are what the previous release recorded; ocfl-py (not ours) checks each digest.
    assert _bags_table(old.archive) == before
    objects = old.archive / "objects"
    assert sorted(p.name for p in objects.iterdir() if p.is_dir()) == sorted(old.work_ids)
    for work_id, _path, placed_at, _oxum, _digests in before:
        [first] = versions(objects, work_id)
        assert first.created == dt.datetime.fromisoformat(placed_at)
    assert_ocfl_valid(objects)
    # The location holds every work's bag and, beside it, its versions.
    keys = _keys(s3_server, old.bucket, old.prefix)
    for work_id in old.work_ids:
        assert f"{old.prefix}bags/{work_id}/bagit.txt" in keys
        assert f"{versions_prefix}{work_id}/0=ocfl_object_1.1" in keys
        assert f"{versions_prefix}{work_id}/v1/inventory.json" in keys
    # Audited clean: the primary in full, the location cheap and deep.
    for args in (
        ("audit", "--archive", str(old.archive), "--json"),
        ("audit", "--archive", str(old.archive), "--location", old.location, "--json"),
        ("audit", "--archive", str(old.archive), "--location", old.location, "--deep", "--json"),
    ):
        audited = _cifa(env, tmp_path, *args)
        assert audited.returncode == 0, (args, audited.stdout[-2000:], audited.stderr[-2000:])
        assert json.loads(audited.stdout)["ok"], args
