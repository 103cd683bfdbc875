"""What every storage location can do, whatever keeps its bytes (a file system, S3).

Keys are relative, ``/``-separated and come from the archive's own bag names and manifest
paths, never from untrusted text: ``bags/<bag name>/<path in the bag>`` for a bag's files and
``ledger/<name>`` for snapshots of the ledger. A store never decides what is good: replication,
audit and repair compare what it returns with the digests of the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cifa_ingest.errors import CifaError


class LocationUnreachable(CifaError):
    """The location cannot be reached (a server down, a disk not mounted, credentials refused):
    nothing can be said about the copies there, and nothing is marked damaged for it."""


class ObjectMissing(CifaError):
    """No object under that key at the location."""


class CopyRefused(CifaError):
    """The location refused or did not keep the bytes as sent: the store's own check on receipt
    failed (S3's ``x-amz-checksum-sha256``), or the copy read back differs. Nothing is recorded
    as good."""


@dataclass(frozen=True)
class StoredObject:
    """One object (file) as the location lists it."""

    key: str
    size: int
    #: The SHA-256 (hex) the store itself keeps for the whole object, when it keeps one (an S3
    #: object written in one part with a SHA-256 checksum); None when it keeps none or only a
    #: composite of parts. Cheap audits compare it with the ledger's digest.
    sha256: str | None = None
    #: Whether the store holds the object under write-once retention (S3 Object Lock).
    locked: bool = False
    #: What the store says of this version of the object (listed, looked up or just written),
    #: changing whenever it is written again with other bytes (S3: its ETag and last-modified
    #: time); None where it says nothing such (a file system). An object whose checksum was
    #: confirmed need not be looked up again while this stays the same
    #: (:mod:`cifa_ingest.storage.confirmed`).
    fingerprint: str | None = None


class Store(Protocol):
    """A location's bytes."""

    #: The location's name, as in the settings.
    name: str

    def check(self) -> None:
        """Raise :class:`LocationUnreachable` unless the location answers now."""

    def put(self, key: str, source: Path, sha256: str) -> StoredObject:
        """Write ``source`` under ``key``, all or nothing: a reader never sees part of it.
        Returns only after verifying what the location kept against ``sha256`` (the digest the
        ledger expects): S3 checks it on receipt and keeps it, a file system's copy is read back
        and hashed. Raises :class:`CopyRefused` when the bytes kept are not those."""

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The object's bytes, streamed; :class:`ObjectMissing` when there is none."""

    def stat(self, key: str) -> StoredObject | None:
        """The object under ``key``, or None."""

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``, in key order."""

    def delete(self, key: str) -> None:
        """Remove the object (a write-once store may refuse: :class:`CopyRefused`)."""

    def purge(self, prefix: str) -> tuple[int, tuple[str, ...]]:
        """Remove every object under ``prefix`` and every version a versioned store keeps of
        it, delete markers included, so that no byte of them is left (a deaccession); what
        write-once retention holds is left, its keys returned. (removed, held)."""
