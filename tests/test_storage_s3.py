"""The S3 store against a real S3-compatible server (SeaweedFS on 127.0.0.1, tests/s3server.py):
what the server verifies on receipt, multipart uploads that complete only when the whole file
is right, Object Lock, and a location that is down or refuses its credentials."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from cifa_ingest.storage.s3 import S3Store
from cifa_ingest.storage.store import CopyRefused, LocationUnreachable, ObjectMissing
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server, s3_env, s3_server

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

MIB = 1024 * 1024
#: Small enough that a few MiB test the multipart path; 5 MiB is S3's smallest part.
SMALL = {"multipart_threshold": 6 * MIB, "part_size": 5 * MIB}


def _file(path: Path, size: int, seed: bytes = b"cifa") -> tuple[Path, str]:
    """A file of ``size`` bytes that are not all alike, and its SHA-256 (hex)."""
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _read(store: S3Store, key: str) -> bytes:
    with store.open(key) as reader:
        return reader.read()


def test_put_stat_open_list_round_trip(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = S3Store(s3_server.location(s3_server.create_bucket(), prefix="copies/"), **SMALL)
    store.check()
    small, small_sha = _file(tmp_path / "small", 1500, b"small")
    large, large_sha = _file(tmp_path / "large", 11 * MIB + 123, b"large")
    small_key = "bags/电影 一号/data/片 段 1.txt"
    large_key = "bags/电影 一号/data/正片 master.mkv"

    written = store.put(small_key, small, small_sha)
    assert (written.key, written.size, written.sha256, written.locked) == (
        small_key,
        1500,
        small_sha,
        False,
    )
    written = store.put(large_key, large, large_sha)
    # A multipart object keeps only the composite of its parts' digests: no whole-file SHA-256.
    assert (written.size, written.sha256) == (large.stat().st_size, None)

    before = store.stat(small_key)
    again = store.put(small_key, small, small_sha)  # an overwrite: the same bytes, written anew
    # The same object, but for its fingerprint: a rewrite has a time of its own (whole seconds).
    assert dataclasses.replace(again, fingerprint=None) == dataclasses.replace(
        before, fingerprint=None
    )
    assert again == store.stat(small_key)  # what a put reports is what a lookup then sees
    assert store.stat(large_key) is not None
    assert store.stat("bags/电影 一号/data/none") is None
    assert _read(store, small_key) == small.read_bytes()
    assert hashlib.sha256(_read(store, large_key)).hexdigest() == large_sha
    with pytest.raises(ObjectMissing), store.open("bags/nothing"):
        pass

    listed = list(store.list("bags/"))
    assert [(o.key, o.size) for o in listed] == sorted(
        [(small_key, 1500), (large_key, large.stat().st_size)]
    )
    assert list(store.list("ledger/")) == []
    # Keys are under the location's prefix in the bucket.
    raw = s3_server.client().list_objects_v2(Bucket=store.bucket)["Contents"]
    assert sorted(o["Key"] for o in raw) == sorted(f"copies/{k}" for k in (small_key, large_key))

    store.delete(small_key)
    assert store.stat(small_key) is None
    store.delete(small_key)  # nothing there: nothing to do


def test_a_wrong_digest_is_refused_by_the_server_and_nothing_is_kept(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = S3Store(s3_server.location(s3_server.create_bucket()), **SMALL)
    source, good = _file(tmp_path / "f", 4000)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(CopyRefused, match=r"BadDigest.*do not have the ledger's SHA-256"):
        store.put("bags/b/data/f", source, wrong)
    assert store.stat("bags/b/data/f") is None
    assert list(store.list("")) == []
    assert store.put("bags/b/data/f", source, good).sha256 == good


def test_a_multipart_upload_with_a_wrong_digest_is_aborted(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = S3Store(s3_server.location(s3_server.create_bucket()), **SMALL)
    source, _good = _file(tmp_path / "big", 7 * MIB)
    wrong = hashlib.sha256(b"not this").hexdigest()
    with pytest.raises(CopyRefused, match="upload was aborted"):
        store.put("bags/b/data/big", source, wrong)
    assert store.stat("bags/b/data/big") is None
    pending = s3_server.client().list_multipart_uploads(Bucket=store.bucket)
    assert pending.get("Uploads", []) == []


def test_a_multipart_upload_broken_midway_is_aborted(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """The connection drops after the first part went through: the location is unreachable,
    and the upload is aborted on the real server (no object, no pending upload)."""
    store = S3Store(s3_server.location(s3_server.create_bucket()), **SMALL)
    source, sha = _file(tmp_path / "big", 12 * MIB)
    real = store._client.upload_part
    sent: list[int] = []

    def drops_after_one(**kwargs: Any) -> Any:
        if sent:
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=s3_server.endpoint)
        sent.append(kwargs["PartNumber"])
        return real(**kwargs)

    store._client.upload_part = drops_after_one
    with pytest.raises(LocationUnreachable, match="ConnectionClosedError"):
        store.put("bags/b/data/big", source, sha)
    assert sent == [1]
    assert store.stat("bags/b/data/big") is None
    pending = s3_server.client().list_multipart_uploads(Bucket=store.bucket)
    assert pending.get("Uploads", []) == []


def test_object_lock_keeps_every_version(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = s3_server.create_bucket(object_lock=True)
    store = S3Store(s3_server.location(bucket, object_lock_days=1), **SMALL)
    store.check()
    key = "bags/locked/data/f"
    first, first_sha = _file(tmp_path / "v1", 3000, b"v1")
    written = store.put(key, first, first_sha)
    assert written.locked
    assert store.stat(key) == written

    # The store refuses rather than hide a locked object behind a delete marker…
    with pytest.raises(CopyRefused, match="Object Lock"):
        store.delete(key)
    # …and the server refuses to delete the locked version itself.
    client = s3_server.client()
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)

    # An overwrite is a new version; the old one stays, whole.
    second, second_sha = _file(tmp_path / "v2", 2000, b"v2")
    assert store.put(key, second, second_sha).sha256 == second_sha
    versions = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 2
    old = client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert old == first.read_bytes()
    assert _read(store, key) == second.read_bytes()

    # A multipart write is locked too.
    big, big_sha = _file(tmp_path / "big", 7 * MIB, b"big")
    assert store.put("bags/locked/data/big", big, big_sha).locked


def test_a_purge_leaves_no_version_of_anything_but_what_retention_holds(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """A deaccession's removal: in a versioned bucket a DELETE only hides the bytes behind a
    marker, so every version and marker under the prefix goes by its id; under Object Lock the
    versions retention holds stay and are named; nothing outside the prefix is touched."""
    bucket = s3_server.create_bucket(versioning=True)
    store = S3Store(s3_server.location(bucket, prefix="copies/"), **SMALL)
    store.check()
    one, one_sha = _file(tmp_path / "one", 1000, b"one")
    two, two_sha = _file(tmp_path / "two", 1200, b"two")
    store.put("bags/gone/data/a", one, one_sha)
    store.put("bags/gone/data/a", two, two_sha)  # a second version of the same key
    store.put("bags/gone/data/b", one, one_sha)
    store.delete("bags/gone/data/b")  # hidden behind a delete marker, its bytes kept
    store.put("bags/gone-not/data/c", one, one_sha)  # another work whose id shares a prefix
    client = s3_server.client()
    assert (
        len(client.list_object_versions(Bucket=bucket, Prefix="copies/bags/gone/")["Versions"]) == 3
    )

    assert store.purge("bags/gone/") == (3, ())

    left = client.list_object_versions(Bucket=bucket, Prefix="copies/bags/gone/")
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert [o.key for o in store.list("bags/")] == ["bags/gone-not/data/c"]

    locked_bucket = s3_server.create_bucket(object_lock=True)
    locked = S3Store(s3_server.location(locked_bucket, object_lock_days=1), **SMALL)
    locked.put("bags/held/data/a", one, one_sha)
    locked.put("bags/held/data/a", two, two_sha)
    assert locked.purge("bags/held/") == (0, ("bags/held/data/a",))
    versions = client.list_object_versions(Bucket=locked_bucket, Prefix="bags/held/")
    assert len(versions["Versions"]) == 2


def test_object_lock_asked_of_a_bucket_without_it(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = S3Store(s3_server.location(s3_server.create_bucket(), object_lock_days=1))
    with pytest.raises(LocationUnreachable, match="has none"):
        store.check()
    source, sha = _file(tmp_path / "f", 100)
    with pytest.raises(CopyRefused, match="is it enabled on"):
        store.put("bags/b/f", source, sha)
    assert store.stat("bags/b/f") is None


def test_an_object_kept_without_a_checksum_is_read_back(
    s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    """SeaweedFS keeps the SHA-256 it verified; a server that keeps none has the object read
    back and hashed instead. Such an object is written here without any checksum."""
    store = S3Store(s3_server.location(s3_server.create_bucket()))
    client = s3_server.client(request_checksum_calculation="when_required")
    client.put_object(Bucket=store.bucket, Key="bags/b/f", Body=b"as kept")
    assert "ChecksumSHA256" not in client.head_object(
        Bucket=store.bucket, Key="bags/b/f", ChecksumMode="ENABLED"
    )
    right = hashlib.sha256(b"as kept").hexdigest()
    kept = store._verify_kept("bags/b/f", "bags/b/f", 7, right, None)
    assert (kept.size, kept.sha256) == (7, None)
    with pytest.raises(CopyRefused, match="reads back as sha256"):
        store._verify_kept("bags/b/f", "bags/b/f", 7, hashlib.sha256(b"as sent").hexdigest(), None)
    assert store.stat("bags/b/f") is None  # what was not kept as sent is removed


def test_a_stopped_server_is_unreachable_quickly(s3_env: dict[str, str], tmp_path: Path) -> None:
    with S3Server.start(tmp_path / "server") as server:
        store = S3Store(server.location(server.create_bucket(), name="offsite"))
        source, sha = _file(tmp_path / "f", 100)
        store.put("bags/b/f", source, sha)
        server.stop()
        attempts: tuple[Callable[[], object], ...] = (
            store.check,
            lambda: store.stat("bags/b/f"),
            lambda: store.put("bags/b/g", source, sha),
            lambda: list(store.list("bags/")),
        )
        for attempt in attempts:
            started = time.monotonic()
            with pytest.raises(LocationUnreachable) as raised:
                attempt()
            assert time.monotonic() - started < 20
            assert "offsite" in str(raised.value) and server.endpoint in str(raised.value)
        with pytest.raises(LocationUnreachable), store.open("bags/b/f"):
            pass


def test_refused_credentials_and_a_missing_bucket_are_unreachable(
    s3_server: S3Server, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = s3_server.create_bucket()
    source, sha = _file(tmp_path / "f", 100)
    wrong = "cifa-WRONG-secret-0b1d"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    store = S3Store(s3_server.location(bucket))
    refused: tuple[Callable[[], object], ...] = (
        store.check,
        lambda: store.put("bags/b/f", source, sha),
    )
    for attempt in refused:
        with pytest.raises(LocationUnreachable, match="refused the credentials") as raised:
            attempt()
        message = str(raised.value)
        assert wrong not in message and SECRET_KEY not in message
        assert raised.value.__suppress_context__

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(LocationUnreachable, match="no usable S3 credentials"):
        S3Store(s3_server.location(bucket)).check()

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    gone = S3Store(s3_server.location("no-such-bucket-here"))
    attempts: tuple[Callable[[], object], ...] = (
        gone.check,
        lambda: gone.stat("bags/b/f"),
        lambda: gone.put("bags/b/f", source, sha),
        lambda: list(gone.list("")),
    )
    for missing in attempts:
        with pytest.raises(LocationUnreachable, match="the bucket does not exist"):
            missing()


def test_no_credential_reaches_a_log(
    s3_server: S3Server,
    s3_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = S3Store(s3_server.location(s3_server.create_bucket()), **SMALL)
    small, small_sha = _file(tmp_path / "small", 1000)
    large, large_sha = _file(tmp_path / "large", 7 * MIB)
    store.check()
    store.put("bags/b/small", small, small_sha)
    store.put("bags/b/large", large, large_sha)
    assert [o.key for o in store.list("bags/")] == ["bags/b/large", "bags/b/small"]
    assert _read(store, "bags/b/small") == small.read_bytes()
    store.stat("bags/b/large")
    store.delete("bags/b/small")
    assert caplog.records  # logging was on: urllib3's connections at least
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert SECRET_KEY not in logged
    # The access key id too: botocore's DEBUG dumps of signed headers stay off.
    assert ACCESS_KEY not in logged
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
