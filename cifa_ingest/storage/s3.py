"""A storage location in an S3-compatible object store: the
:class:`~cifa_ingest.storage.store.Store` of an :class:`~cifa_ingest.storage.locations.S3Location`.

Objects are ``<prefix><key>`` in the location's bucket. Why it works as it does:

- **The server checks the bytes on receipt.** Every write carries the SHA-256 the ledger
  expects (``x-amz-checksum-sha256``): a file up to :data:`MULTIPART_THRESHOLD` goes in one
  PutObject, which the server refuses (``BadDigest``) unless the bytes it received have that
  digest, so a copy damaged on the way never becomes an object. The digest is the ledger's, not
  one computed while sending: a source changed on the primary since it was recorded is refused,
  not copied.
- **Large files in parts, with bounded memory.** A larger file is a multipart upload, read once
  and in order: a few parts in flight at a time (:data:`CONCURRENCY`, each sent by a thread of
  its own, so that the server's work on one overlaps the sending of the others; the memory held
  is that many parts and one more; the next part starts as soon as any one ends, so that a part
  the server holds back stalls no other), each part with its own SHA-256 the server checks, and the
  whole file's SHA-256 computed as the file is read. Only when it equals the ledger's is the
  upload completed; otherwise, or on any failure, the upload is aborted (once no part is in
  flight), so nothing half-written ever becomes an object (an upload that cannot even be
  aborted, the server gone, is left to the bucket's lifecycle rule for incomplete uploads, and
  is never visible as an object).
- **Each byte hashed once per digest.** A write carrying the ledger's SHA-256 is signed without
  a second SHA-256 of its body (the checksum header is signed, and the server refuses a body
  without it): :meth:`S3Store._no_second_hash`.
- **Trust, but verify what was kept.** After a write the object is read back by HEAD: its size
  and the server's stored checksum (a full-object SHA-256 for a single PUT, the composite of the
  parts' SHA-256 for a multipart one, which is compared with the composite computed here). A
  server that keeps no checksum at all gets its object read back and hashed instead: slower, but
  nothing is called a copy unverified.
- **Write-once where asked.** With ``object_lock_days`` every write carries COMPLIANCE retention
  until that many days from now; nobody, root included, can remove or shorten it. An overwrite is
  a new version, the old one stays. :meth:`S3Store.delete` refuses a locked object rather than
  hide it behind a delete marker and report it gone.
- **Unreachable is not damaged.** A server that does not answer, a timeout, refused credentials
  or a missing bucket are :class:`LocationUnreachable` (nothing is said about the copies), after
  a few bounded retries and timeouts so that a dead location costs seconds, not hours. Only an
  absent key is "missing".
- **No secret ever written.** Credentials come only from boto3's standard chain (environment,
  shared profile, instance role), never from settings or arguments. Messages name the location,
  the endpoint and the server's error code, never the server's message text or a credential, and
  the S3 client's DEBUG logging (request dumps with signed headers and session tokens) is kept
  off in this process (:func:`_quiet_client_logging`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import boto3
import botocore.exceptions
from botocore.config import Config

from cifa_ingest.storage.digests import sha256_of
from cifa_ingest.storage.locations import S3Location
from cifa_ingest.storage.store import CopyRefused, LocationUnreachable, ObjectMissing, StoredObject

#: Files up to this size go in one PutObject (the server verifies the whole file's SHA-256);
#: larger ones in a multipart upload.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: A multipart upload's part size (the memory one upload holds is :data:`CONCURRENCY` + 1 parts,
#: 72 MiB). Raised for very large files so that no upload needs more than :data:`MAX_PARTS`
#: parts (S3's limit is 10,000).
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 9_000
#: Parts of one multipart upload sent at once, each by a thread of its own: a part's round trip
#: (the server receiving, checking and storing it) overlaps the others' and the reading and
#: hashing of the next. The memory one upload holds is this many parts and one more.
CONCURRENCY = 8
#: Seconds to open a connection, and to wait for any answer once a request is sent.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
#: Attempts of one request (the first included) before the location is unreachable: botocore's
#: "standard" retry mode, with its exponential backoff (a few seconds in all at this count).
MAX_ATTEMPTS = 3
#: Reads of :meth:`S3Store.open`'s stream are this large underneath.
READ_CHUNK = 1024 * 1024

#: The server's error codes that mean the credentials were refused.
_REFUSED_CREDENTIALS = frozenset(
    {
        "403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "AuthorizationHeaderMalformed",
        "AccountProblem",
    }
)
_NO_BUCKET = frozenset({"NoSuchBucket"})
_NO_KEY = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
#: The server's error codes for bytes that do not match the checksum sent with them.
_BAD_DIGEST = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"})
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
#: Errors on the way (no answer, timeouts, a broken connection, no credentials at all).
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.NoRegionError,
)
#: Loggers of the S3 client whose DEBUG records carry signed request headers.
_CLIENT_LOGGERS = ("boto3", "botocore", "s3transfer")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: The parts of a multipart upload sent so far: each one's entry for CompleteMultipartUpload and
#: its SHA-256 (a name of its own: inside :class:`S3Store`, ``list`` is a method).
_Parts = list[tuple[dict[str, Any], bytes]]


def _quiet_client_logging() -> None:
    """Keep the S3 client's loggers at WARNING (unless set to INFO or above), whatever the root
    logger's level.

    botocore's DEBUG records dump every request: its signed headers (the access key id, the
    signature) and, with temporary credentials, the session token itself. A process that logs
    at DEBUG (``caplog``, a developer's ``logging.basicConfig(level=DEBUG)``, a Prefect worker)
    would write those to its log and Prefect's database. Setting the level on the parent
    loggers covers their children (``botocore.endpoint``, ``botocore.auth``, …), which inherit
    it."""
    for name in _CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.WARNING)


class S3Store:
    """The objects of one S3 location. Nothing is contacted when it is made: :meth:`check`."""

    def __init__(
        self,
        location: S3Location,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        concurrency: int = CONCURRENCY,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if part_size < 1 or multipart_threshold < 0 or concurrency < 1:
            raise ValueError(
                "part_size and concurrency must be positive and multipart_threshold not negative"
            )
        _quiet_client_logging()
        self.name = location.name
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.endpoint = location.endpoint or "AWS S3"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.concurrency = concurrency
        self._attempts = max_attempts
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Checksums are the ones we send (the ledger's); none is computed by the client on
            # its own, and reads are not validated by it: the caller hashes what it reads.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # A custom endpoint (SeaweedFS, MinIO, Ceph) rarely has a DNS name per bucket.
            s3={"addressing_style": "path" if location.endpoint else "auto"},
            user_agent_extra="cifa-ingest",
            # One connection per part in flight, and one for the reading thread's requests.
            max_pool_connections=max(10, concurrency + 1),
        )
        # A session of its own: boto3's default session is shared, mutable module state.
        session = boto3.session.Session()
        self._client: Any = session.client(
            "s3", endpoint_url=location.endpoint, region_name=location.region, config=config
        )
        # A write carrying the ledger's SHA-256 is not hashed a second time for its signature:
        # see _no_second_hash.
        self._unsigned_body = config.merge(
            Config(s3={**config.s3, "payload_signing_enabled": False})
        )
        for operation in ("PutObject", "UploadPart"):
            self._client.meta.events.register(f"before-sign.s3.{operation}", self._no_second_hash)

    # -----------------------------------------------------------------------------------------

    def check(self) -> None:
        """The bucket answers to these credentials (HEAD bucket); with ``object_lock_days``, it
        has Object Lock enabled, since a write with retention to a bucket without it is refused
        and a copy meant to be write-once must not silently become an ordinary one."""
        self._call("reach the bucket", None, self._client.head_bucket, Bucket=self.bucket)
        if self.location.object_lock_days:
            try:
                found = self._client.get_object_lock_configuration(Bucket=self.bucket)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "ObjectLockConfigurationNotFoundError":
                    raise self._unreachable_or(exc, "read the bucket's Object Lock", None) from None
                found = {}
            except _TRANSPORT_ERRORS as exc:
                raise self._unreachable(exc, "read the bucket's Object Lock", None) from None
            enabled = found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            if enabled != "Enabled":
                raise LocationUnreachable(
                    f"location {self.name}: the settings ask for Object Lock"
                    f" (object_lock_days = {self.location.object_lock_days}) but bucket"
                    f" {self.bucket} at {self.endpoint} has none; Object Lock is enabled when a"
                    " bucket is created"
                )

    def put(self, key: str, source: Path, sha256: str) -> StoredObject:
        """Write ``source`` under ``key``, verified by the server against ``sha256`` (the
        ledger's digest, hex): one PutObject up to the threshold, a multipart upload above."""
        if not _HEX64.match(sha256):
            raise ValueError(f"not a SHA-256 (64 hex digits): {sha256!r}")
        expected = sha256.lower()
        full = self._full(key)
        size = source.stat().st_size
        composite: str | None = None
        if size <= self.multipart_threshold:
            self._put_single(key, full, source, expected)
        else:
            composite = self._put_multipart(key, full, source, size, expected)
        return self._verify_kept(key, full, size, expected, composite)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """The object's bytes, streamed from the server (never held whole in memory)."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NO_KEY:
                raise ObjectMissing(f"location {self.name}: no {key}") from None
            raise self._unreachable_or(exc, "read", key) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, "read", key) from None
        body = answer["Body"]
        reader = io.BufferedReader(_Body(body, self, key), buffer_size=READ_CHUNK)
        try:
            yield reader
        finally:
            body.close()

    def stat(self, key: str) -> StoredObject | None:
        """The object under ``key`` as the server keeps it: size, its full-object SHA-256 when
        it keeps one (not for a multipart object: a composite of the parts' digests says
        nothing the ledger can compare with), and whether COMPLIANCE retention holds it now."""
        head = self._head(key, self._full(key))
        if head is None:
            # HEAD answers a bare 404 for a missing bucket too: a location whose bucket is
            # gone is unreachable, not a location whose copies are all missing.
            self._call("reach the bucket", None, self._client.head_bucket, Bucket=self.bucket)
            return None
        return _stored(key, head)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``, in key order (S3 lists in UTF-8 byte
        order, which is the order of Python's strings), with their sizes: a listing carries no
        checksum and no retention, :meth:`stat` does."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        try:
            for page in pages:
                for entry in page.get("Contents", ()):
                    yield StoredObject(
                        key=entry["Key"][len(self.prefix) :],
                        size=int(entry["Size"]),
                        fingerprint=_fingerprint(entry),
                    )
        except botocore.exceptions.ClientError as exc:
            raise self._unreachable_or(exc, "list", prefix or "(everything)") from None
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, "list", prefix or "(everything)") from None

    def delete(self, key: str) -> None:
        """Remove the object; nothing to do when there is none. An object under COMPLIANCE
        retention is refused (:class:`CopyRefused`): S3 would accept the DELETE and only hide the
        object behind a delete marker, its bytes kept until the retention ends, and a caller told
        "deleted" would believe something false. In a versioned bucket without retention the
        older versions stay, as the bucket's versioning means them to."""
        found = self.stat(key)
        if found is None:
            return
        if found.locked:
            raise CopyRefused(
                f"location {self.name}: {key} is held under Object Lock (COMPLIANCE retention);"
                " it cannot be removed before its retention ends"
            )
        self._call(
            "delete", key, self._client.delete_object, Bucket=self.bucket, Key=self._full(key)
        )

    def purge(self, prefix: str) -> tuple[int, tuple[str, ...]]:
        """Every object under ``prefix``, and in a versioned bucket every version of it and every
        delete marker, removed by its version id: a plain DELETE there only hides the bytes
        behind a marker. A version under COMPLIANCE retention is left (S3 refuses, and it is
        looked up first to say so), its key returned once."""
        if prefix:
            self._full(prefix.rstrip("/"))  # a key's rules apply to the prefix too
        paginator = self._client.get_paginator("list_object_versions")
        removed = 0
        held: dict[str, None] = {}  # keys, in order, once each
        try:
            pages = list(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix))
        except botocore.exceptions.ClientError as exc:
            raise self._unreachable_or(exc, "list", prefix) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, "list", prefix) from None
        for page in pages:
            for entry in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                full, version = entry["Key"], entry.get("VersionId")
                key = full[len(self.prefix) :]
                extra = {"VersionId": version} if version and version != "null" else {}
                if "Size" in entry:  # a version, not a marker: its retention is asked
                    head = self._call(
                        "look up", key, self._client.head_object,
                        Bucket=self.bucket, Key=full, **extra,
                    )  # fmt: skip
                    if _locked_now(head):
                        held[key] = None
                        continue
                self._call(
                    "delete", key, self._client.delete_object, Bucket=self.bucket, Key=full,
                    **extra,
                )  # fmt: skip
                removed += "Size" in entry
        return removed, tuple(held)

    # -----------------------------------------------------------------------------------------

    def _no_second_hash(self, request: Any, **_: Any) -> None:
        """A PutObject or UploadPart that carries ``x-amz-checksum-sha256`` (every one this store
        sends) is signed with UNSIGNED-PAYLOAD in place of a SHA-256 of its body: the checksum
        header is itself signed, and the server refuses a body without that SHA-256, so the
        body stays bound to the signature; without this, the S3 client would read and hash
        every byte once more (always over http, and over https for a body without Content-MD5)
        only to say the same thing. Any other request is signed as usual."""
        if "x-amz-checksum-sha256" in request.headers:
            request.context["client_config"] = self._unsigned_body

    def _full(self, key: str) -> str:
        """The object key of ``key``: relative, ``/``-separated, no ``..`` and no empty part,
        the same keys a filesystem location accepts, under the location's prefix."""
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
            raise ValueError(f"not a key: {key!r}")
        return self.prefix + key

    def _retention(self) -> dict[str, Any]:
        days = self.location.object_lock_days
        if not days:
            return {}
        until = datetime.now(UTC) + timedelta(days=days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    def _put_single(self, key: str, full: str, source: Path, expected: str) -> None:
        """One PutObject carrying the expected SHA-256: the server keeps the object only if the
        bytes it received have it."""
        with source.open("rb") as body:
            self._call(
                "write",
                key,
                self._client.put_object,
                Bucket=self.bucket,
                Key=full,
                Body=body,
                ChecksumSHA256=_b64(bytes.fromhex(expected)),
                **self._retention(),
            )

    def _put_multipart(self, key: str, full: str, source: Path, size: int, expected: str) -> str:
        """A multipart upload, at most :attr:`concurrency` parts in flight (and one more being
        read): the file is read once, in order, the whole file's SHA-256 updated as it is read
        while each part's own SHA-256 is computed and the part sent by a worker thread. The
        first part goes alone: a location that fails it has not been sent a flood of others.
        Completed only when the whole file's SHA-256 equals ``expected``, aborted otherwise and
        on any failure (once no part is in flight any more). Returns the composite checksum the
        server must report for the completed object."""
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        created = self._call(
            "start an upload of",
            key,
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=full,
            ChecksumAlgorithm="SHA256",
            **self._retention(),
        )
        upload_id = created["UploadId"]
        whole = hashlib.sha256()
        parts: list[tuple[dict[str, Any], bytes]] = []
        completed = False
        try:
            with (
                source.open("rb") as reader,
                ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part") as pool,
            ):
                in_flight: set[Future[tuple[dict[str, Any], bytes]]] = set()
                try:
                    number = 0
                    while chunk := reader.read(part_size):
                        whole.update(chunk)
                        number += 1
                        if number == 1:
                            parts.append(self._put_part(key, full, upload_id, number, chunk))
                            continue
                        if len(in_flight) >= self.concurrency:  # bounded: wait for any one
                            in_flight = self._collect(in_flight, parts, FIRST_COMPLETED)
                        in_flight.add(
                            pool.submit(self._put_part, key, full, upload_id, number, chunk)
                        )
                        del chunk
                    self._collect(in_flight, parts, ALL_COMPLETED)
                finally:
                    # On a failure: parts not yet started are not sent, those being sent end
                    # (the pool waits for them) before the upload is aborted below.
                    for future in in_flight:
                        future.cancel()
            if whole.hexdigest() != expected:
                raise CopyRefused(
                    f"location {self.name}: {key}: {source} reads as sha256 {whole.hexdigest()},"
                    f" not the {expected} the ledger expects; the upload was aborted"
                )
            self._call(
                "complete the upload of",
                key,
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": [part for part, _ in sorted(parts, key=_number)]},
            )
            completed = True
        finally:
            if not completed:
                # Best effort: an upload the server cannot abort now stays invisible, and the
                # bucket's lifecycle rule for incomplete uploads removes it.
                with contextlib.suppress(Exception):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload_id
                    )
        digests = b"".join(digest for _, digest in sorted(parts, key=_number))
        return f"{_b64(hashlib.sha256(digests).digest())}-{len(parts)}"

    @staticmethod
    def _collect(
        in_flight: set[Future[tuple[dict[str, Any], bytes]]],
        parts: _Parts,
        until: str,
    ) -> set[Future[tuple[dict[str, Any], bytes]]]:
        """Wait for parts in flight (the first to end, or all) and add them to ``parts``; the
        first failure is raised. Any part, not the oldest: a part the server holds back (it
        answers a request's ``Expect: 100-continue`` only when it is ready for the body, and
        botocore sends the body anyway after a second) must not stall the others behind it.
        Returns the parts still in flight."""
        done, pending = wait(in_flight, return_when=until)
        for future in done:
            parts.append(future.result())
        return pending

    def _put_part(
        self, key: str, full: str, upload_id: str, number: int, chunk: bytes
    ) -> tuple[dict[str, Any], bytes]:
        """One part, with its own SHA-256 for the server to check: the part's entry for
        CompleteMultipartUpload, and its digest."""
        digest = hashlib.sha256(chunk).digest()
        answer = self._call(
            "write a part of",
            key,
            self._client.upload_part,
            Bucket=self.bucket,
            Key=full,
            UploadId=upload_id,
            PartNumber=number,
            Body=chunk,
            ChecksumSHA256=_b64(digest),
        )
        entry = {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)}
        return entry, digest

    def _verify_kept(
        self, key: str, full: str, size: int, expected: str, composite: str | None
    ) -> StoredObject:
        """HEAD the object just written: the size and the server's checksum must be the ones
        sent (the full-object SHA-256, or the composite of the parts'). A server that keeps no
        checksum has the object read back and hashed."""
        head = self._head(key, full)
        if head is None:
            raise CopyRefused(
                f"location {self.name}: {key}: the server accepted the write but has no such object"
            )
        kept = head.get("ChecksumSHA256")
        stored = int(head["ContentLength"])
        if stored != size:
            self._refuse(key, f"it keeps {stored} bytes, not the {size} sent")
        if composite is None:
            wanted = _b64(bytes.fromhex(expected))
            if kept is not None and kept != wanted:
                self._refuse(key, f"it keeps SHA-256 {kept}, not {wanted}")
        elif kept is not None and kept != composite:
            self._refuse(key, f"it keeps the parts' checksum {kept}, not {composite}")
        if kept is None:
            with self.open(key) as reader:
                read_back = sha256_of(reader)
            if read_back != expected:
                self._refuse(key, f"it reads back as sha256 {read_back}")
        return _stored(key, head)

    def _head(self, key: str, full: str) -> dict[str, Any] | None:
        """The HEAD of object ``full`` (its checksum asked for), None when there is no such
        key; any other failure is :class:`LocationUnreachable`."""
        try:
            head: dict[str, Any] = self._client.head_object(
                Bucket=self.bucket, Key=full, ChecksumMode="ENABLED"
            )
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NO_KEY:
                return None
            raise self._unreachable_or(exc, "look up", key) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, "look up", key) from None
        return head

    def _refuse(self, key: str, why: str) -> None:
        """The server kept something other than what was sent: remove it where it can be
        removed (retention may forbid it) and refuse the copy."""
        with contextlib.suppress(Exception):
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        raise CopyRefused(f"location {self.name}: {key}: not kept as sent: {why}")

    def _call(self, action: str, key: str | None, method: Any, **kwargs: Any) -> Any:
        """``method(**kwargs)``, its failures as this package's errors: what the server refuses
        to write is :class:`CopyRefused`, everything else :class:`LocationUnreachable`."""
        try:
            return method(**kwargs)
        except botocore.exceptions.ClientError as exc:
            writing = action not in ("reach the bucket", "look up", "list", "read")
            if writing and not _unreachable_code(exc):
                code = _code(exc)
                why = ""
                if code in _BAD_DIGEST:
                    why = " (the bytes received do not have the ledger's SHA-256)"
                elif code == "InvalidRequest" and self.location.object_lock_days:
                    why = f" (the settings ask for Object Lock: is it enabled on {self.bucket}?)"
                raise CopyRefused(
                    f"location {self.name}: the server at {self.endpoint} refused to {action}"
                    f" {key}: {code}{why}"
                ) from None
            raise self._unreachable_or(exc, action, key) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, action, key) from None

    def _unreachable_or(
        self, exc: botocore.exceptions.ClientError, action: str, key: str | None
    ) -> LocationUnreachable:
        code = _code(exc)
        where = f"location {self.name} (bucket {self.bucket} at {self.endpoint})"
        if code in _REFUSED_CREDENTIALS:
            why = f"the server refused the credentials ({code}); they come from the S3 client's"
            why += " standard places (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, a role)"
        elif code in _NO_BUCKET or (key is None and code in _NO_KEY):
            why = "the bucket does not exist"
        else:
            why = f"the server answered {code} (HTTP {_status(exc)})"
        target = f" {key}" if key else ""
        return LocationUnreachable(f"{where}: cannot {action}{target}: {why}")

    def _unreachable(self, exc: Exception, action: str, key: str | None) -> LocationUnreachable:
        if isinstance(exc, _CREDENTIAL_ERRORS):
            why = (
                "no usable S3 credentials: give them to the S3 client (AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY in the environment, a profile, or an instance role)"
            )
        elif isinstance(exc, botocore.exceptions.NoRegionError):
            why = "no region: set the location's region (or AWS_DEFAULT_REGION)"
        else:
            why = f"no answer ({type(exc).__name__}, after {self._attempts} attempts at most)"
        target = f" {key}" if key else ""
        return LocationUnreachable(
            f"location {self.name} (bucket {self.bucket} at {self.endpoint}): cannot"
            f" {action}{target}: {why}"
        )


class _Body(io.RawIOBase):
    """An object's streamed body as a file, its transport failures as
    :class:`LocationUnreachable` (a connection dropped mid-read says nothing about the copy)."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        super().__init__()
        self._body = body
        self._store = store
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except _TRANSPORT_ERRORS as exc:
            raise self._store._unreachable(exc, "read", self._key) from None
        view[: len(data)] = data
        return len(data)


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "") or _status(exc))


def _status(exc: botocore.exceptions.ClientError) -> int | str:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else "?"


def _unreachable_code(exc: botocore.exceptions.ClientError) -> bool:
    """Whether a refused request means the location (credentials, bucket, server) rather than
    the bytes."""
    code = _code(exc)
    status = _status(exc)
    return (
        code in _REFUSED_CREDENTIALS
        or code in _NO_BUCKET
        or (isinstance(status, int) and status >= 500)
    )


def _number(part: tuple[dict[str, Any], bytes]) -> int:
    return int(part[0]["PartNumber"])


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _stored(key: str, head: dict[str, Any]) -> StoredObject:
    """The object under ``key`` as a HEAD of it describes it."""
    return StoredObject(
        key=key,
        size=int(head["ContentLength"]),
        sha256=_full_object_sha256(head),
        locked=_locked_now(head),
        fingerprint=_fingerprint(head),
    )


def _full_object_sha256(head: dict[str, Any]) -> str | None:
    """The hex SHA-256 of the whole object, when the server keeps one: not a composite of
    parts (``…-N``, or ChecksumType COMPOSITE)."""
    kept = head.get("ChecksumSHA256")
    if not kept or "-" in kept or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    try:
        digest = base64.b64decode(kept, validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 32 else None


def _fingerprint(entry: dict[str, Any]) -> str | None:
    """``ETag@last-modified`` of an object, listed or looked up (HEAD): a rewrite with other
    bytes changes its ETag (an MD5 of the content, or of the parts, or random under SSE-KMS), and
    any rewrite its time. In whole seconds: a HEAD's time has no more (an HTTP date), where a
    listing's may have milliseconds, and the two must say the same of one object."""
    etag, modified = entry.get("ETag"), entry.get("LastModified")
    if not etag or not isinstance(modified, datetime):
        return None
    when = modified.astimezone(UTC).replace(microsecond=0).isoformat()
    return f"{etag.strip(chr(34))}@{when}"


def _locked_now(head: dict[str, Any]) -> bool:
    """COMPLIANCE retention that has not ended (GOVERNANCE can be lifted: not write-once)."""
    until = head.get("ObjectLockRetainUntilDate")
    return (
        head.get("ObjectLockMode") == "COMPLIANCE"
        and isinstance(until, datetime)
        and until > datetime.now(UTC)
    )
