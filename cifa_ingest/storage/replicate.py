"""Replication: every registered bag to every storage location, each copy verified against the
ledger before it is recorded good.

Why it works as it does:

- **The ledger decides what a bag's bytes must be, never the primary copy.** A bag's files and
  the sha256 each must have are derived from the ledger (:func:`source_files`): the bag's manifest
  and tag manifest files must hash to the digests the ledger recorded at ingest; then every file
  that ``tagmanifest-sha256.txt`` or ``manifest-sha256.txt`` lists takes its digest from them.
  Every byte sent is thus checked against the ledger's chain, and a primary that was damaged
  since ingest is reported (``source_damaged``) instead of spread to every location.
- **A copy is recorded good only once every file of it was verified.** Each file goes through
  the store's all-or-nothing ``put``, which returns only once what it kept was verified against
  the expected digest (read back from disk, or checked by the server); a file found already
  there is trusted only on the store's own digest of it, or read back and hashed here. Before the
  first file the copy is recorded ``pending``; ``good`` is written after the last, in one row.
  A run killed at any instant leaves every file at the location whole or absent, and the copy
  not good; the next run resumes it, skipping each file already there with the right size and a
  verified digest.
- **An unreachable location is no verdict.** A disk not mounted or a server down is reported
  ``location_unreachable`` and nothing new is recorded: the copies there are neither good nor
  damaged for it.
- **Then the ledger itself.** A run that recorded anything sends a consistent snapshot of the
  ledger (SQLite's backup) to every location it reached, under ``ledger/``: any one location then
  holds the bags and the record that vouches for them.

One replication at a time per archive (:func:`replication_lock`): two would write the same
temporary files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest import __version__, revision
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, CopyState, Ledger, StaleCopy
from cifa_ingest.bag import manifest
from cifa_ingest.errors import CifaError
from cifa_ingest.storage import versions_copy
from cifa_ingest.storage.confirmed import ConfirmedObjects
from cifa_ingest.storage.digests import sha256_of, sha256_of_path
from cifa_ingest.storage.locations import FilesystemLocation, S3Location
from cifa_ingest.storage.store import (
    CopyRefused,
    LocationUnreachable,
    ObjectMissing,
    Store,
    StoredObject,
)
from cifa_ingest.storage.stores import open_store
from cifa_ingest.versions import User

log = logging.getLogger("cifa_ingest.replicate")

SOFTWARE = f"cifa-ingest {__version__}"
#: The manifests whose digests replication sends with each file (the stores verify sha256).
TAG_MANIFEST = "tagmanifest-sha256.txt"
PAYLOAD_MANIFEST = "manifest-sha256.txt"


class ReplicationOutcome(StrEnum):
    """What one run did for one bag at one location (``outcome`` of ``cifa replicate --json``)."""

    #: This run made the copy, or completed one begun earlier, and verified every file of it.
    COPIED = "copied"
    #: The ledger already held a good copy there: nothing was read or written.
    ALREADY_COPIED = "already_copied"
    #: The location did not answer (a disk not mounted, a server down, credentials refused):
    #: nothing new is recorded.
    LOCATION_UNREACHABLE = "location_unreachable"
    #: The primary copy does not verify against the ledger: nothing of it was sent.
    SOURCE_DAMAGED = "source_damaged"
    #: The location answered but did not keep the bytes (refused, a full disk, a read-back that
    #: differs): the copy stays not good, the next run tries again.
    COPY_FAILED = "copy_failed"


#: The outcomes after which the bag's copy at the location is good.
GOOD_OUTCOMES = frozenset({ReplicationOutcome.COPIED, ReplicationOutcome.ALREADY_COPIED})


class SourceDamaged(CifaError):
    """The primary copy of a bag does not match what the ledger recorded at ingest."""


@dataclass(frozen=True)
class SourceFile:
    """One file a copy of a work holds: its path (in the bag, or in the work's OCFL object for
    the versions beside it, :mod:`cifa_ingest.storage.versions_copy`), the sha256 the ledger's
    chain gives it, its key at every location and the primary's file of it."""

    path: str
    sha256: str
    key: str
    source: Path


@dataclass
class BagReplication:
    """One bag at one location, as this run left it."""

    work_id: str
    location: str
    outcome: ReplicationOutcome
    #: The ledger's state of the copy after the run (None: the ledger records no copy there).
    state: CopyState | None = None
    files_copied: int = 0
    files_present: int = 0
    bytes: int = 0
    seconds: float = 0.0
    detail: str = ""
    #: Whether this run wrote the copy's row in the ledger.
    recorded: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome in GOOD_OUTCOMES

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "outcome": str(self.outcome),
            "state": str(self.state) if self.state is not None else None,
            "files_copied": self.files_copied,
            "files_present": self.files_present,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass
class Snapshot:
    """The ledger's snapshot sent to one location."""

    location: str
    key: str
    ok: bool
    detail: str = ""
    #: Older snapshots removed there afterwards, beyond the location's ``ledger_snapshots_kept``
    #: (:func:`prune_snapshots`).
    pruned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "key": self.key,
            "ok": self.ok,
            "detail": self.detail,
            "pruned": self.pruned,
        }


@dataclass
class ReplicationReport:
    """A replication run: one row per bag and location, and the ledger snapshots sent."""

    archive: str
    started: str
    locations: list[str]
    copies: list[BagReplication] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    #: Locations that answered but refused to be used (a bucket without the Object Lock the
    #: settings ask for): why.
    refused: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every copy good and every snapshot sent."""
        return all(c.ok for c in self.copies) and all(s.ok for s in self.snapshots)

    @property
    def problems(self) -> list[BagReplication]:
        return [c for c in self.copies if not c.ok]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for copy in self.copies:
            counts[str(copy.outcome)] = counts.get(str(copy.outcome), 0) + 1
        return counts

    def summary_line(self) -> str:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.counts().items()))
        where = ", ".join(self.locations) or "no location"
        return f"replication to {where}: {counts or 'no bag'}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "locations": [
                {
                    "name": name,
                    "reachable": name not in self.unreachable,
                    "detail": self.unreachable.get(name) or self.refused.get(name, ""),
                }
                for name in self.locations
            ],
            "counts": self.counts(),
            "copies": [c.as_dict() for c in self.copies],
            "snapshots": [s.as_dict() for s in self.snapshots],
            "ok": self.ok,
        }


# ---------------------------------------------------------------------------------------------
# What a bag's bytes must be, from the ledger


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_files(archive: Archive, record: BagRecord) -> list[SourceFile]:
    """Every file of the placed bag with the sha256 the ledger's chain gives it, in the order
    a copy is written: payload first, then tag files, the manifests, and ``bagit.txt`` last, so
    that a copy cut short never looks like a complete bag. Raises :class:`SourceDamaged` when the
    primary copy does not match the ledger: a manifest whose digest differs from the one recorded
    at ingest, a manifest unknown to the ledger, a file in no manifest, a file listed and absent.
    """
    bag = archive.root / record.bag_path
    return [
        SourceFile(path, digests["sha256"], bag_key(record, path), bag / path)
        for path, digests in expected_digests(archive, record, ("sha256",)).items()
    ]


def work_files(archive: Archive, record: BagRecord) -> list[SourceFile]:
    """Every file a location holds of a work: its bag's (:func:`source_files`), then what its
    OCFL object holds beside the bag, every version's own files and inventories
    (:func:`cifa_ingest.storage.versions_copy.object_files`), each with the sha256 the ledger's
    chain gives it. Raises :class:`SourceDamaged` as :func:`source_files` does, and when the
    work's object is not the bag the ledger vouches for."""
    bag = archive.root / record.bag_path
    digests = expected_digests(archive, record, ("sha256", "sha512"))
    files = [
        SourceFile(path, known["sha256"], bag_key(record, path), bag / path)
        for path, known in digests.items()
    ]
    try:
        versions = versions_copy.object_files(archive, record.work_id, digests)
    except versions_copy.ObjectNotCopyable as exc:
        raise SourceDamaged(str(exc)) from None
    return files + [
        SourceFile(f.path, f.sha256, f.key,
                   versions_copy.source_path(archive, record.work_id, f.path))
        for f in versions
    ]  # fmt: skip


def expected_digests(
    archive: Archive, record: BagRecord, algorithms: Sequence[str] = ("sha256", "sha512")
) -> dict[str, dict[str, str]]:
    """Every file of the placed bag, in copy order (:func:`source_files`), with the digest of
    each of ``algorithms`` the ledger's chain vouches for: the manifest files must hash to the
    sha256 the ledger recorded at ingest before anything they list is believed, and only then
    does ``manifest-<algorithm>.txt`` / ``tagmanifest-<algorithm>.txt`` give each file its
    digest. So a location's audit checks its copies' sha512 against the same chain as their
    sha256 (what replication sends), one definition for both. A file no manifest of an algorithm
    lists (a tag manifest does not list itself) has no digest of it; sha256 is always required
    (the ledger's own digests of the manifests are sha256). Raises :class:`SourceDamaged` as
    :func:`source_files` does."""
    bag = archive.root / record.bag_path
    name = Path(record.bag_path).name
    if not bag.is_dir():
        raise SourceDamaged(f"{record.bag_path}: not in the archive")
    expected = record.manifest_digests
    present = {p.name for p in manifest.manifest_paths(bag)}
    unknown = sorted(present - set(expected))
    if unknown:
        raise SourceDamaged(f"{name}: {', '.join(unknown)} not registered at ingest")
    digests: dict[str, str] = {}
    texts: dict[str, bytes] = {}
    for manifest_name, digest in sorted(expected.items()):
        try:
            data = (bag / manifest_name).read_bytes()
        except FileNotFoundError:
            raise SourceDamaged(f"{name}: {manifest_name} is missing") from None
        if _sha256_bytes(data) != digest:
            raise SourceDamaged(f"{name}: {manifest_name} differs from ingest")
        digests[manifest_name], texts[manifest_name] = digest, data
    declaration = manifest.read_declaration(bag)
    listed = {"sha256": digests}
    for algorithm in dict.fromkeys(("sha256", *algorithms)):
        found = listed.setdefault(algorithm, {})
        for manifest_name, payload in (
            (f"tagmanifest-{algorithm}.txt", False),
            (f"manifest-{algorithm}.txt", True),
        ):
            if manifest_name not in texts:
                if algorithm == "sha256":
                    raise SourceDamaged(f"{name}: no {manifest_name} registered at ingest")
                continue
            found.update(_listed(name, texts[manifest_name], manifest_name, payload,
                                 declaration, found))  # fmt: skip
    on_disk = {
        p.relative_to(bag).as_posix()
        for p in bag.rglob("*")
        if p.is_file() or p.is_symlink()
    }  # fmt: skip
    if stray := sorted(on_disk - set(digests)):
        raise SourceDamaged(f"{name}: {stray[0]!r} is in no manifest" + _more(stray))
    if gone := sorted(set(digests) - on_disk):
        raise SourceDamaged(f"{name}: {gone[0]!r} is missing" + _more(gone))
    if sha256_of_path(bag / "bagit.txt") != digests.get("bagit.txt"):
        raise SourceDamaged(f"{name}: bagit.txt differs from its tag manifest")
    return {
        path: {a: listed[a][path] for a in ("sha256", *algorithms) if path in listed.get(a, {})}
        for path in sorted(digests, key=_copy_order)
    }


def _listed(
    name: str,
    data: bytes,
    manifest_name: str,
    payload: bool,
    declaration: manifest.Declaration,
    known: dict[str, str],
) -> dict[str, str]:
    """The entries of one manifest whose bytes the ledger vouched for: payload paths only in a
    payload manifest, tag paths only in a tag manifest, never two digests for one path."""
    try:
        text = data.decode(declaration.reading_encoding)
    except UnicodeDecodeError:
        raise SourceDamaged(f"{name}: {manifest_name} does not decode") from None
    read = manifest.parse_manifest(
        text.removeprefix("\ufeff"), manifest_name, version=declaration.version
    )
    errors = [p.detail for p in read.problems if p.is_error]
    if errors:
        raise SourceDamaged(f"{name}: {'; '.join(errors[:3])}")
    entries: dict[str, str] = {}
    for path, digest in read.entries.items():
        if path.startswith("data/") != payload:
            raise SourceDamaged(f"{name}: {manifest_name} lists {path!r}")
        if known.get(path, digest) != digest:
            raise SourceDamaged(f"{name}: {path}: {manifest_name} and the ledger disagree")
        entries[path] = digest
    return entries


def sha256_of_manifests(
    name: str, texts: dict[str, bytes], declaration: manifest.Declaration
) -> dict[str, str]:
    """Every file of a bag with its sha256, in copy order, from the bytes of its sha256 manifests
    (``texts``: every manifest the ledger registered, by file name, each of which the caller
    verified against the ledger's digest, from whichever copy held it whole). What
    :func:`expected_digests` reads from the primary, for a reader (repair, restore) whose
    primary may be the damaged copy. Raises :class:`SourceDamaged` as it does."""
    digests = {manifest_name: _sha256_bytes(data) for manifest_name, data in texts.items()}
    for manifest_name, payload in ((TAG_MANIFEST, False), (PAYLOAD_MANIFEST, True)):
        if manifest_name not in texts:
            raise SourceDamaged(f"{name}: no {manifest_name} registered at ingest")
        digests.update(
            _listed(name, texts[manifest_name], manifest_name, payload, declaration, digests)
        )
    return {path: digests[path] for path in sorted(digests, key=_copy_order)}


def _more(items: list[str]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


def _copy_order(path: str) -> tuple[int, str]:
    if path.startswith("data/"):
        rank = 0
    elif path == "bagit.txt":
        rank = 4
    elif path.startswith("tagmanifest-"):
        rank = 3
    elif path.startswith("manifest-"):
        rank = 2
    else:
        rank = 1
    return rank, path


def bag_key(record: BagRecord, path: str) -> str:
    """The key of a bag's file at every location: ``bags/<bag>/<path in the bag>``."""
    return f"bags/{Path(record.bag_path).name}/{path}"


# ---------------------------------------------------------------------------------------------
# One bag to one location


def _verified_at_location(store: Store, found: StoredObject, sha256: str) -> bool:
    """Whether the object's bytes have ``sha256``: the store's own digest where it keeps one,
    else read back and hashed."""
    if found.sha256 is not None:
        return found.sha256.lower() == sha256
    try:
        with store.open(found.key) as reader:
            return sha256_of(reader) == sha256
    except ObjectMissing:
        return False


def replicate_bag(
    archive: Archive,
    ledger: Ledger,
    record: BagRecord,
    files: Sequence[SourceFile],
    store: Store,
    confirmed: ConfirmedObjects | None = None,
) -> BagReplication:
    """Copy one bag's ``files`` to ``store``, resuming, and record the copy good once every file
    is verified there (the module says why). Each object verified is remembered in
    ``confirmed``, so that the next cheap audit need not look it up again. Never raises for what
    a location does: the outcome says it."""
    started = time.monotonic()
    prior = ledger.copy(record.work_id, store.name)
    result = BagReplication(
        record.work_id, store.name, ReplicationOutcome.COPIED, prior.state if prior else None
    )

    def begin() -> None:
        """Before the first byte is written, the copy is pending (and no longer what it was):
        a run killed from here on leaves it so, never good."""
        if not result.recorded:
            ledger.record_copy(record.work_id, store.name, CopyState.PENDING, software=SOFTWARE)
            result.state, result.recorded = CopyState.PENDING, True

    total = 0
    try:
        for file in files:
            key, source = file.key, file.source
            size = source.stat().st_size
            total += size
            found = store.stat(key)
            if (
                found is not None
                and found.size == size
                and _verified_at_location(store, found, file.sha256)
            ):
                result.files_present += 1
                if confirmed is not None:
                    confirmed.remember(key, found.fingerprint, file.sha256)
                continue
            begin()
            try:
                stored = store.put(key, source, file.sha256)
            except CopyRefused as exc:
                if sha256_of_path(source) != file.sha256:
                    raise SourceDamaged(
                        f"{archive.relative(source)}: differs from the ledger's sha256"
                    ) from None
                raise exc
            # A put returns only once the bytes kept were verified against the digest (the
            # Store's contract: each store reads back or has the server check, and raises
            # otherwise), so they are not read again here; a digest it reports is compared.
            if stored.sha256 is not None and stored.sha256.lower() != file.sha256:
                with contextlib.suppress(CifaError, OSError):
                    store.delete(key)
                raise CopyRefused(f"{key}: the location keeps sha256 {stored.sha256}")
            result.files_copied += 1
            result.bytes += stored.size
            if confirmed is not None:
                confirmed.remember(key, stored.fingerprint, file.sha256)
    except LocationUnreachable as exc:
        result.outcome, result.detail = ReplicationOutcome.LOCATION_UNREACHABLE, str(exc)
    except SourceDamaged as exc:
        result.outcome, result.detail = ReplicationOutcome.SOURCE_DAMAGED, str(exc)
    except (CopyRefused, ObjectMissing) as exc:
        result.outcome, result.detail = ReplicationOutcome.COPY_FAILED, str(exc)
    except (CifaError, OSError) as exc:  # a full disk, an I/O error, a refusal of the store's
        result.outcome = ReplicationOutcome.COPY_FAILED
        result.detail = f"{type(exc).__name__}: {exc}"
    else:
        try:
            copy = ledger.record_copy(
                record.work_id, store.name, CopyState.GOOD, software=SOFTWARE, size=total,
                copied=True, of_bag=record.manifest_digests,
            )  # fmt: skip
            result.state, result.recorded = copy.state, True
        except StaleCopy as exc:  # a new version meanwhile: the next run copies it
            result.outcome, result.detail = ReplicationOutcome.COPY_FAILED, str(exc)
    if result.outcome is not ReplicationOutcome.COPIED and result.recorded:
        ledger.record_copy(
            record.work_id, store.name, CopyState.PENDING, software=SOFTWARE,
            detail=result.detail[:500],
        )  # fmt: skip
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------------------------------------
# The archive to its locations


def replication_lock(
    archive: Archive, on_wait: Callable[[], None] | None = None
) -> contextlib.AbstractContextManager[None]:
    """One replication of the archive at a time, across processes (a ``cifa replicate`` and a
    nightly run): the second waits. The lock dies with its process."""
    return archive.exclusive("replicate", on_wait)


def replicate_archive(
    archive: Archive,
    locations: Sequence[FilesystemLocation | S3Location],
    *,
    stores: Callable[[FilesystemLocation | S3Location], Store] = open_store,
    user: User | None = None,
) -> ReplicationReport:
    """Replicate every registered work (its bag and its versions) to each of ``locations`` not
    holding a good copy of it, then send the ledger's snapshot to every location reached if
    anything was recorded. Holds :func:`replication_lock`. With ``user``, a work whose versions
    are not recorded yet (an archive of a release before versions) first gets its version 1,
    named for ``user`` (:func:`cifa_ingest.revision.record_first_version`): a copy holds every
    version, so there must be one."""
    started = time.monotonic()
    report = ReplicationReport(
        archive=str(archive.root),
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        locations=[location.name for location in locations],
    )

    def waiting() -> None:
        log.warning("another replication of %s is running; waiting for it", archive.root)

    with replication_lock(archive, on_wait=waiting):
        ledger = Ledger(archive.ledger_path)
        records = ledger.bags()
        if user is not None:
            for record in records:
                revision.record_first_version(
                    archive, record.work_id, user, placed_at=record.placed_at
                )
        sources: dict[str, list[SourceFile] | SourceDamaged] = {}
        reached: list[Store] = []
        changed = False
        for location in locations:
            store = stores(location)
            good = {c.work_id for c in ledger.copies(location=location.name)
                    if c.state is CopyState.GOOD}  # fmt: skip
            try:
                store.check()
                _holds_what_the_ledger_says(store, sorted(good))
            except LocationUnreachable as exc:
                report.unreachable[location.name] = str(exc)
                log.warning("%s", exc)
            except (CifaError, OSError) as exc:  # it answered, and refused: nothing to write to
                report.refused[location.name] = f"{type(exc).__name__}: {exc}"
                log.error("location %s: %s", location.name, exc)
            else:
                reached.append(store)
            confirmed = ConfirmedObjects.load(archive.root, location)
            try:
                for record in records:
                    row = _replicate_one(
                        archive, ledger, record, store, good, sources, report, confirmed
                    )
                    report.copies.append(row)
                    changed |= row.recorded
                    if row.outcome is ReplicationOutcome.LOCATION_UNREACHABLE:
                        report.unreachable.setdefault(location.name, row.detail)
            finally:
                confirmed.save()
        if changed:
            report.snapshots = _send_snapshots(archive, ledger, [
                s for s in reached if s.name not in report.unreachable
            ], {loc.name: loc.ledger_snapshots_kept or 0 for loc in locations})  # fmt: skip
    report.seconds = time.monotonic() - started
    return report


#: How many of a location's good copies are looked for before it is written to.
_PROBES = 3


def _holds_what_the_ledger_says(store: Store, good: Sequence[str]) -> None:
    """Raise :class:`LocationUnreachable` when the ledger records good copies at the location
    and the first few of them are not there at all (not even their ``bagit.txt``): that is a disk
    not mounted (its mount point an empty folder of the system disk), another disk mounted in
    its place, or a wrong bucket or prefix, not copies lost one by one. Nothing is written
    there, nor recorded. A copy missing among others that are there is for an audit to find."""
    probes = good[:_PROBES]
    if probes and all(store.stat(f"bags/{work_id}/bagit.txt") is None for work_id in probes):
        raise LocationUnreachable(
            f"location {store.name}: the ledger records {len(good)} good copies there, and"
            f" {', '.join(probes)} are not there (a disk not mounted? another in its place?);"
            " nothing written"
        )


def _replicate_one(
    archive: Archive,
    ledger: Ledger,
    record: BagRecord,
    store: Store,
    good: set[str],
    sources: dict[str, list[SourceFile] | SourceDamaged],
    report: ReplicationReport,
    confirmed: ConfirmedObjects,
) -> BagReplication:
    prior = ledger.copy(record.work_id, store.name)
    state = prior.state if prior else None
    if store.name in report.unreachable:  # the ledger's state stands, unconfirmed tonight
        return BagReplication(
            record.work_id, store.name, ReplicationOutcome.LOCATION_UNREACHABLE, state,
            detail=report.unreachable[store.name],
        )  # fmt: skip
    if store.name in report.refused:
        return BagReplication(
            record.work_id, store.name, ReplicationOutcome.COPY_FAILED, state,
            detail=report.refused[store.name],
        )  # fmt: skip
    if record.work_id in good:
        return BagReplication(
            record.work_id, store.name, ReplicationOutcome.ALREADY_COPIED, CopyState.GOOD
        )
    if record.work_id not in sources:
        try:
            sources[record.work_id] = work_files(archive, record)
        except SourceDamaged as exc:
            sources[record.work_id] = exc
        except OSError as exc:
            sources[record.work_id] = SourceDamaged(f"{record.bag_path}: {exc}")
    files = sources[record.work_id]
    if isinstance(files, SourceDamaged):
        log.error("%s: not replicated to %s: %s", record.work_id, store.name, files)
        return BagReplication(
            record.work_id, store.name, ReplicationOutcome.SOURCE_DAMAGED, state,
            detail=str(files),
        )  # fmt: skip
    log.info("%s: replicating to %s", record.work_id, store.name)
    row = replicate_bag(archive, ledger, record, files, store, confirmed)
    if not row.ok:
        log.error("%s: %s at %s: %s", record.work_id, row.outcome, store.name, row.detail)
    return row


def snapshot_key(at: dt.datetime | None = None) -> str:
    """``ledger/ledger-<UTC time>.sqlite``: one per run that changed the ledger, each a new
    object (a damaged ledger sent tonight must not replace last night's good one); the older ones
    are kept, all of them or the newest ``ledger_snapshots_kept`` (:func:`prune_snapshots`)."""
    at = at or dt.datetime.now(dt.UTC)
    return f"ledger/ledger-{at.strftime('%Y%m%dT%H%M%SZ')}.sqlite"


#: The keys :func:`snapshot_key` makes: the only objects :func:`prune_snapshots` ever removes.
SNAPSHOT_KEY = re.compile(r"^ledger/ledger-\d{8}T\d{6}Z\.sqlite$")


def _send_snapshots(
    archive: Archive,
    ledger: Ledger,
    stores: Sequence[Store],
    kept: dict[str, int] | None = None,
) -> list[Snapshot]:
    """Send the ledger's snapshot to each of ``stores``; then, at each that received it and
    keeps only the newest ``kept[name]`` (0 or absent: all), remove the older ones, provided the
    snapshot is sound (:func:`prune_snapshots`)."""
    if not stores:
        return []
    key = snapshot_key()
    # One name: the replication lock is held, and a run killed here leaves nothing for long.
    temporary = archive.root / ".ledger-snapshot.sqlite"
    temporary.unlink(missing_ok=True)
    sent = []
    kept = kept or {}
    pruning: list[tuple[Store, Snapshot]] = []
    try:
        ledger.snapshot(temporary)
        digest = sha256_of_path(temporary)
        for store in stores:
            try:
                store.put(key, temporary, digest)
            except (CifaError, OSError) as exc:
                log.error("the ledger's snapshot could not be sent to %s: %s", store.name, exc)
                sent.append(Snapshot(store.name, key, False, str(exc)))
            else:
                sent.append(Snapshot(store.name, key, True))
        pruning = [
            (st, sn) for st, sn in zip(stores, sent, strict=True) if sn.ok and kept.get(st.name)
        ]
        if pruning and (why := _unsound_snapshot(archive, temporary)):
            log.warning(
                "the ledger's snapshot %s is not one recovery would take (%s): no older snapshot"
                " is removed anywhere",
                key, why,
            )  # fmt: skip
            pruning = []
    except (sqlite3.Error, OSError) as exc:
        sent = [Snapshot(s.name, key, False, f"no snapshot: {exc}") for s in stores]
        pruning = []
    finally:
        temporary.unlink(missing_ok=True)
    for store, snapshot in pruning:
        snapshot.pruned = prune_snapshots(store, key, kept[store.name])
    return sent


def _unsound_snapshot(archive: Archive, snapshot: Path) -> str:
    """Why recovery would refuse ``snapshot`` (:func:`cifa_ingest.storage.recover.unsound_ledger`),
    or "": checked on a scratch copy, since the check may upgrade what it reads."""
    from cifa_ingest.storage.recover import unsound_ledger  # it imports this module

    scratch = archive.root / ".ledger-snapshot-check.sqlite"
    try:
        shutil.copyfile(snapshot, scratch)
        return unsound_ledger(scratch)
    except (CifaError, sqlite3.Error, OSError) as exc:
        return f"it could not be checked: {exc}"
    finally:
        for leftover in archive.root.glob(f"{scratch.name}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def prune_snapshots(store: Store, newest: str, kept: int) -> list[str]:
    """Remove the ledger's snapshots at ``store`` beyond the newest ``kept`` (``newest``, the one
    just sent, among them); the keys removed. Called only once ``newest`` was sent there and
    verified (the store's ``put``), and found sound (what recovery asks of it), so the snapshot
    recovery takes first is never one removed. Nothing is removed when ``kept`` is under 2 (0:
    keep all), when ``newest`` is not the newest listed there (a clock set back), nor anything
    but the keys :func:`snapshot_key` makes. A snapshot the store refuses to remove (S3 Object
    Lock retention) is kept, and so are the newer ones (written later, retained longer), without
    error; any other failure is a warning, never the run's failure."""
    if kept < 2:
        return []
    try:
        keys = sorted(o.key for o in store.list("ledger/") if SNAPSHOT_KEY.match(o.key))
    except (CifaError, OSError) as exc:
        log.warning("ledger snapshots at %s not pruned: %s", store.name, exc)
        return []
    if not keys or keys[-1] != newest:
        log.warning(
            "ledger snapshots at %s not pruned: the one just sent, %s, is not the newest there"
            " (%s)",
            store.name, newest, keys[-1] if keys else "none listed",
        )  # fmt: skip
        return []
    removed: list[str] = []
    for key in keys[:-kept]:
        try:
            store.delete(key)
        except CopyRefused as exc:  # under retention: kept, as are the newer ones
            log.info("ledger snapshots at %s: %s and newer kept: %s", store.name, key, exc)
            break
        except LocationUnreachable as exc:
            log.warning("ledger snapshots at %s: %s not removed: %s", store.name, key, exc)
            break
        except (CifaError, OSError) as exc:
            log.warning("ledger snapshots at %s: %s not removed: %s", store.name, key, exc)
            continue
        removed.append(key)
    if removed:
        log.info(
            "ledger snapshots at %s: %d older than the newest %d removed",
            store.name, len(removed), kept,
        )  # fmt: skip
    return removed


def table(report: ReplicationReport) -> str:
    """The run for people: every copy this run made or could not make, problems first, then
    the counts (copies already good are counted, not listed)."""
    lines = []
    for location, why in report.unreachable.items():
        lines.append(f"{location}: {ReplicationOutcome.LOCATION_UNREACHABLE}: {why}")
    for location, why in report.refused.items():
        lines.append(f"{location}: refused: {why}")
    ordered = sorted(report.copies, key=lambda c: (c.ok, c.location, c.work_id))
    for copy in ordered:
        if copy.outcome is ReplicationOutcome.ALREADY_COPIED:
            continue
        if copy.outcome is ReplicationOutcome.LOCATION_UNREACHABLE or (
            copy.location in report.refused
        ):
            continue  # said once per location, above
        done = (
            f" ({copy.files_copied} files, {copy.bytes / 1e6:.1f} MB written,"
            f" {copy.files_present} already there, {copy.seconds:.1f} s)"
            if copy.ok
            else f": {copy.detail}"
        )
        lines.append(f"{copy.work_id} → {copy.location}: {copy.outcome}{done}")
    for snapshot in report.snapshots:
        if not snapshot.ok:
            lines.append(f"ledger snapshot → {snapshot.location}: failed: {snapshot.detail}")
    sent = [s.location for s in report.snapshots if s.ok]
    if sent:
        lines.append(f"ledger snapshot {report.snapshots[0].key} → {', '.join(sent)}")
    for snapshot in report.snapshots:
        if snapshot.pruned:
            lines.append(
                f"older ledger snapshots removed at {snapshot.location}: {len(snapshot.pruned)}"
            )
    lines.append(f"{report.summary_line()}, in {report.seconds:.1f} s")
    return "\n".join(lines)
