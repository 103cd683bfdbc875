"""What is already known of an S3 location's objects: the ones whose stored SHA-256 was
confirmed, by key, with the fingerprint the object had then (``ARCHIVE/.cache/location-NAME.json``).

Why it exists: a listing carries no checksum, so a cheap audit
(:mod:`cifa_ingest.audit.copies`) would look up every object (one HEAD each) to compare the
server's stored SHA-256 with the ledger's, and ten thousand round trips are most of its time.
But an object not written again since its checksum was confirmed still has that checksum: a
rewrite with other bytes changes its ETag, any rewrite its modification time. So an object
listed with the fingerprint it had when it was confirmed is not looked up again.

Two moments confirm an object, and both remember it here:

- **Replication writes it.** :meth:`S3Store.put <cifa_ingest.storage.s3.S3Store.put>` returns
  only after the server checked the ledger's SHA-256 on receipt and a HEAD read back what it
  kept; that HEAD's fingerprint is remembered, so the first cheap audit after a replication needs
  only the listing.
- **A cheap audit looks it up** and finds the stored checksum (and size) the ledger expects.

A location whose settings ask for Object Lock is looked up every time: retention ends on its own
date, and a rewrite of the same bytes without it keeps the ETag. The file is a cache: lost,
unreadable or made for another bucket, every object is looked up again; it says nothing the
ledger does not, and only an account that can write the archive (and its ledger) can write it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cifa_ingest.archive.layout import write_atomically
from cifa_ingest.storage.locations import FilesystemLocation, S3Location

log = logging.getLogger("cifa_ingest.storage")

#: Where the caches live, under the archive's root.
CACHE_DIR = ".cache"


class ConfirmedObjects:
    """The confirmed objects of one location (nothing, and nothing kept, for a location that
    is no S3 location or asks for Object Lock)."""

    def __init__(
        self, path: Path | None, known: dict[str, list[str]], where: dict[str, str | None]
    ) -> None:
        self.path, self.known, self.where, self.changed = path, known, where, False

    @classmethod
    def load(cls, root: Path, location: FilesystemLocation | S3Location) -> ConfirmedObjects:
        """The cache of ``location`` in the archive at ``root``; empty when there is none, or
        when it was made for another endpoint, bucket or prefix."""
        if not isinstance(location, S3Location) or location.object_lock_days:
            return cls(None, {}, {})
        where = {"endpoint": location.endpoint, "bucket": location.bucket,
                 "prefix": location.prefix}  # fmt: skip
        path = root / CACHE_DIR / f"location-{location.name}.json"
        try:
            known = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            known = {}
        usable = isinstance(known, dict) and all(known.get(k) == v for k, v in where.items())
        objects = known.get("objects") if usable else None
        return cls(path, objects if isinstance(objects, dict) else {}, where)

    def holds(self, key: str, fingerprint: str | None, sha256: str) -> bool:
        """Whether the object listed under ``key`` with ``fingerprint`` is the one confirmed to
        keep ``sha256``."""
        return fingerprint is not None and self.known.get(key) == [fingerprint, sha256]

    def remember(self, key: str, fingerprint: str | None, sha256: str) -> None:
        """The object under ``key``, as ``fingerprint`` says it is now, keeps ``sha256``."""
        if self.path is not None and fingerprint is not None:
            self.known[key] = [fingerprint, sha256]
            self.changed = True

    def save(self) -> None:
        """Written atomically, if anything was learnt; a failure is only a warning (the next
        audit looks the objects up)."""
        if self.path is None or not self.changed:
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            document = {**self.where, "objects": self.known}
            write_atomically(self.path, json.dumps(document).encode("utf-8"))
            self.changed = False
        except OSError as exc:
            log.warning("%s could not be written: %s", self.path, exc)
