"""Audits of the storage locations: is each copy the ledger records there still the bag it was?

``cifa audit --location NAME`` checks the copies of one location (:mod:`cifa_ingest.storage`)
against the ledger, never against the primary's files as they are now. Why it works as it does:

- **Two depths, because reading a location costs.** A *cheap* check lists the location once and
  compares the listing with the ledger: every file of every copy there, with its size, and,
  where the store keeps its own whole-object SHA-256 (an S3 object written in one part), that
  checksum; with ``object_lock_days`` it also asks whether each object is still held under
  retention. It reads no byte, so it can run often, and it finds what a location most often
  loses: files deleted, a bucket emptied, an object overwritten (a new version in a versioned
  bucket is a new object, with its own size and checksum). It cannot see a flipped bit in a file
  of the right size on a disk that keeps no checksum; the *deep* check can: it streams every
  byte of every file once, hashing sha256 and sha512 together in flat memory, and compares both
  with the ledger's chain. Deep checks run in rolling cycles (``--max-age``, ``--budget``) like
  the primary's audit, the copies least recently verified first.
- **The ledger decides what a copy must be.** The files of a bag and their sha256 and sha512
  come from :func:`cifa_ingest.storage.replicate.expected_digests`: the manifests of the bag at
  the primary, believed only once they hash to the digests the ledger recorded at ingest (one
  definition for replication and audit). Sizes come from the ledger's record of each payload
  file at ingest, a tag file's from the primary. A bag whose primary no longer matches the ledger
  cannot say what its copies must be: it is left unchecked here (``not_reached``), and the
  primary's own audit reports it.
- **Unreachable is no verdict.** A location that does not answer, before or during the audit,
  is one ``location_unreachable`` problem; nothing is recorded for any copy there, neither
  missing nor damaged: the copies are as unknown as the location.
- **What the ledger learns.** A copy found with files absent is recorded ``missing``, one with
  a file whose bytes (or size, or the store's checksum) differ ``damaged``, with what was found
  in its detail; a deep check that verified every byte records it ``good`` with a new
  ``verified_at``. A cheap check that finds nothing changes nothing: it verified no byte. A copy
  the ledger already records missing or damaged stays a problem until a deep check finds it
  whole again (or repair remakes it). Copies ``pending`` (a replication under way) are left to
  replication. A deep check of a copy is a PREMIS ``fixity check`` event of that copy in the
  audit log's chain of preservation events, as repair's checks are; it is never a record of
  the fixity checks' chain, which holds the primary's bags and whose dates plan the primary's
  rolling audit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, CopyRecord, CopyState, Ledger
from cifa_ingest.audit.fixity_audit import (
    SOFTWARE,
    AuditMode,
    AuditReport,
    BagAudit,
    CheckDepth,
    Problem,
    ProblemKind,
    check_in_order,
    plan,
)
from cifa_ingest.errors import CifaError
from cifa_ingest.storage import versions_copy
from cifa_ingest.storage.confirmed import ConfirmedObjects
from cifa_ingest.storage.locations import FilesystemLocation, S3Location
from cifa_ingest.storage.replicate import SourceDamaged, bag_key, expected_digests
from cifa_ingest.storage.store import LocationUnreachable, ObjectMissing, Store, StoredObject
from cifa_ingest.storage.stores import open_store

log = logging.getLogger("cifa_ingest.audit")

Location = FilesystemLocation | S3Location
#: Copies an audit checks: the ones the ledger says exist (or said, before a check found them
#: missing or damaged). ``pending`` copies are replication's, under way.
AUDITED = frozenset({CopyState.GOOD, CopyState.MISSING, CopyState.DAMAGED})
#: The deep check reads in pieces this large: memory stays flat whatever a film's size.
CHUNK = 8 * 1024 * 1024
#: Files of one copy read at once by a deep check: a file's sha512 keeps one core busy and
#: cannot be split, and a film's copy is a few large files, so one at a time would leave the
#: other cores idle (the fixity engine, :mod:`cifa_ingest.bag.fixity`, spreads a bag's files
#: over the cores for the same reason). Memory: a few chunks per file read.
PARALLEL_FILES = max(1, min(4, os.cpu_count() or 1))
#: Objects looked up at once by a cheap check of an S3 location (one HEAD each, for its
#: checksum and retention): a listing carries neither, and one at a time would make ten
#: thousand objects a minute's wait on round trips alone.
LOOKUPS = 16


@dataclass(frozen=True)
class ExpectedFile:
    """One file a copy must hold: its key at the location, size and digests (by algorithm)."""

    path: str
    key: str
    size: int
    digests: dict[str, str]


def expected_files(archive: Archive, ledger: Ledger, record: BagRecord) -> list[ExpectedFile]:
    """The files of ``record``'s copy with the size and digests the ledger's chain gives them
    (the module says where each comes from): the bag's, then what the work's OCFL object holds
    beside it (:mod:`cifa_ingest.storage.versions_copy`: every version's own files and
    inventories, each path the object's, ``v1/content/…``, ``inventory.json``). Raises
    :class:`~cifa_ingest.storage.replicate.SourceDamaged` when the primary no longer matches
    the ledger."""
    digests = expected_digests(archive, record, ("sha256", "sha512"))
    ingested = {path: size for path, size, _sha256, _sha512 in ledger.bag_files(record.work_id)}
    bag = archive.root / record.bag_path
    files = []
    for path, known in digests.items():
        size = ingested.get(path)
        if size is None:
            size = (bag / path).stat().st_size
        files.append(ExpectedFile(path, bag_key(record, path), size, known))
    try:
        held = versions_copy.object_files(archive, record.work_id, digests)
    except versions_copy.ObjectNotCopyable as exc:
        raise SourceDamaged(str(exc)) from None
    files.extend(ExpectedFile(f.path, f.key, f.size, f.digests) for f in held)
    return files


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# One copy, deep


def deep_check(
    archive: Archive, location: Location, record: BagRecord, store: Store | None = None
) -> BagAudit:
    """Read every byte of ``record``'s copy at ``location`` once, hashing sha256 and sha512
    together, and compare both and the size with the ledger's chain. Raises
    :class:`LocationUnreachable` when the location stops answering (no verdict), and
    :class:`SourceDamaged` when the ledger's chain cannot say what the copy must be."""
    started = time.monotonic()
    store = store or open_store(location)
    result = BagAudit(bag=record.work_id)
    files = expected_files(archive, Ledger(archive.ledger_path), record)
    result.files = len(files)

    def read(file: ExpectedFile) -> tuple[int, dict[str, str]] | None:
        try:
            with store.open(file.key) as reader:
                return _hash_stream(reader, ("sha256", "sha512"), file.size >= CHUNK)
        except ObjectMissing:
            return None

    with ThreadPoolExecutor(max_workers=PARALLEL_FILES, thread_name_prefix="deep") as pool:
        # The largest first, so that the last to end is not a large file started late.
        reading = {f.key: pool.submit(read, f) for f in sorted(files, key=lambda f: -f.size)}
        hashed = [(file, reading[file.key].result()) for file in files]
    for file, done in hashed:
        if done is None:
            result.problems.append(_missing(record, file))
            continue
        size, found = done
        result.bytes_read += size
        if size != file.size:
            result.problems.append(_damaged(record, file, "size", str(file.size), str(size)))
            continue
        for algorithm, expected in file.digests.items():
            if found[algorithm] != expected:
                result.problems.append(
                    _damaged(record, file, algorithm, expected, found[algorithm])
                )
                break
    result.seconds = time.monotonic() - started
    return result


def _hash_stream(
    reader: BinaryIO, algorithms: tuple[str, ...], threaded: bool = True
) -> tuple[int, dict[str, str]]:
    """Size and digests of a stream read once: each algorithm hashes in a thread of its own
    while the next chunk is read (hashlib releases the GIL on large updates), so that reading
    from the location and the two hashes overlap instead of taking turns, as the fixity engine
    (:mod:`cifa_ingest.bag.fixity`) does for files; bounded queues keep memory to a few
    chunks. A file smaller than a chunk is hashed in the caller's thread: threads would only
    cost it."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    if not threaded:
        size = 0
        while chunk := reader.read(CHUNK):
            size += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
        return size, {name: hasher.hexdigest() for name, hasher in hashers.items()}
    queues: dict[str, queue.Queue[bytes | None]] = {name: queue.Queue(4) for name in algorithms}

    def consume(name: str) -> None:
        while (chunk := queues[name].get()) is not None:
            hashers[name].update(chunk)

    threads = [threading.Thread(target=consume, args=(n,), daemon=True) for n in algorithms]
    for thread in threads:
        thread.start()
    size = 0
    try:
        while chunk := reader.read(CHUNK):
            size += len(chunk)
            for chunks in queues.values():
                chunks.put(chunk)
    finally:
        for chunks in queues.values():
            chunks.put(None)
        for thread in threads:
            thread.join()
    return size, {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _missing(record: BagRecord, file: ExpectedFile) -> Problem:
    return Problem(record.work_id, ProblemKind.COPY_MISSING, file.path, f"no {file.key}")


def _damaged(
    record: BagRecord, file: ExpectedFile, algorithm: str, expected: str, found: str | None
) -> Problem:
    return Problem(
        record.work_id, ProblemKind.COPY_DAMAGED, file.path, f"{file.key}: {algorithm} differs",
        algorithm=algorithm, expected=expected, found=found,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# One location


def audit_location(
    archive: Archive,
    location: Location,
    *,
    deep: bool = False,
    max_age_days: float | None = None,
    budget_seconds: float | None = None,
    budget_bytes: int | None = None,
    stores: Callable[[Location], Store] = open_store,
    check: Callable[[Archive, Location, BagRecord], BagAudit] | None = None,
    workers: int = 1,
    overlap_budget: bool = False,
) -> AuditReport:
    """Audit the copies the ledger records at ``location``: cheap (a listing, sizes and the
    store's checksums), or ``deep`` (every byte, in a rolling cycle with ``max_age_days`` and a
    budget, as the primary's audit). Records what it found in the ledger (the module says what).
    ``check`` deep-checks one copy (pipelines/ passes it as a Prefect task); by default
    :func:`deep_check` on this process's store. A deep audit checks ``workers`` copies at a
    time (one by default; the flow on a Dask cluster, as many as it has threads, with
    ``overlap_budget``: :func:`~cifa_ingest.audit.fixity_audit.check_in_order`)."""
    ledger = Ledger(archive.ledger_path)
    records = {record.work_id: record for record in ledger.bags()}
    report = AuditReport(
        archive=str(archive.root),
        mode=AuditMode.described(max_age_days if deep else None),
        started=_now(),
        location=location.name,
        check=CheckDepth.DEEP if deep else CheckDepth.CHEAP,
    )
    copies = {
        c.work_id: c
        for c in ledger.copies(location=location.name)
        if c.state in AUDITED and c.work_id in records
    }
    store = stores(location)
    try:
        store.check()
        if deep:
            _deep(archive, ledger, location, store, records, copies, report, check,
                  max_age_days, budget_seconds, budget_bytes, workers, overlap_budget)  # fmt: skip
        else:
            _cheap(archive, ledger, location, store, records, copies, report)
    except LocationUnreachable as exc:
        log.warning("%s", exc)
        checked = {bag.bag for bag in report.bags}
        report.not_reached += [w for w in sorted(copies) if w not in checked]
        report.location_problems.append(
            Problem(location.name, ProblemKind.LOCATION_UNREACHABLE, None, str(exc))
        )
    report.finished = _now()
    return report


def _deep(
    archive: Archive,
    ledger: Ledger,
    location: Location,
    store: Store,
    records: dict[str, BagRecord],
    copies: dict[str, CopyRecord],
    report: AuditReport,
    check: Callable[[Archive, Location, BagRecord], BagAudit] | None,
    max_age_days: float | None,
    budget_seconds: float | None,
    budget_bytes: int | None,
    workers: int = 1,
    overlap_budget: bool = False,
) -> None:
    """Deep-check the copies due, least recently verified first, within the budget; each copy's
    finding recorded as soon as it is known (a run stopped later keeps it)."""
    verified = {w: c.verified_at for w, c in copies.items() if c.verified_at}
    todo = plan([records[w] for w in copies], verified, max_age_days, report.started)

    def default(archive: Archive, location: Location, record: BagRecord) -> BagAudit:
        return deep_check(archive, location, record, store)

    checker = check or default

    def one(record: BagRecord) -> BagAudit | SourceDamaged:
        try:
            return checker(archive, location, record)
        except SourceDamaged as exc:
            return exc

    def finish(record: BagRecord, checked: BagAudit | SourceDamaged) -> int:
        if isinstance(checked, SourceDamaged):
            log.warning("%s at %s not checked: the primary does not match the ledger: %s",
                        record.work_id, location.name, checked)  # fmt: skip
            report.not_reached.append(record.work_id)
            return 0
        report.bags.append(checked)
        _record_event(archive, location, checked)
        if checked.intact:
            ledger.record_copy(record.work_id, location.name, CopyState.GOOD, software=SOFTWARE,
                               size=checked.bytes_read)  # fmt: skip
        else:
            _record_findings(ledger, location, checked)
        return checked.bytes_read

    report.not_reached += check_in_order(
        todo, one, finish, workers=workers, budget_seconds=budget_seconds,
        budget_bytes=budget_bytes, overlap_budget=overlap_budget,
    )  # fmt: skip


def _cheap(
    archive: Archive,
    ledger: Ledger,
    location: Location,
    store: Store,
    records: dict[str, BagRecord],
    copies: dict[str, CopyRecord],
    report: AuditReport,
) -> None:
    """List the location once and compare; look each object up where the store keeps more than
    a listing says (S3: its checksum and retention). Findings are recorded only once the whole
    location answered: a server lost half-way leaves the ledger as it was."""
    listing = {found.key: found for found in store.list("bags/")}
    listing.update((found.key, found) for found in store.list(versions_copy.PREFIX))
    confirmed = ConfirmedObjects.load(archive.root, location)
    audits: list[BagAudit] = []
    lookups: list[tuple[BagAudit, ExpectedFile]] = []
    for work_id in sorted(copies):
        record = records[work_id]
        started = time.monotonic()
        try:
            files = expected_files(archive, ledger, record)
        except (SourceDamaged, OSError) as exc:
            log.warning("%s at %s not checked: the primary does not match the ledger: %s",
                        work_id, location.name, exc)  # fmt: skip
            report.not_reached.append(work_id)
            continue
        result = BagAudit(bag=work_id)
        for file in files:
            found = listing.get(file.key)
            if found is None:
                result.problems.append(_missing(record, file))
            elif found.size != file.size:
                result.problems.append(
                    _damaged(record, file, "size", str(file.size), str(found.size))
                )
            elif isinstance(location, S3Location) and not confirmed.holds(
                file.key, found.fingerprint, file.digests["sha256"]
            ):
                lookups.append((result, file))
        result.seconds = time.monotonic() - started
        audits.append(result)
    if lookups:
        with ThreadPoolExecutor(max_workers=LOOKUPS) as pool:
            looked_up = list(pool.map(lambda pair: store.stat(pair[1].key), lookups))
        for (result, file), stored in zip(lookups, looked_up, strict=True):
            if _compare_stored(records[result.bag], file, stored, location, result):
                confirmed.remember(file.key, listing[file.key].fingerprint,
                                   file.digests["sha256"])  # fmt: skip
    confirmed.save()
    report.bags = audits
    for result in audits:
        copy = copies[result.bag]
        if not result.intact:
            _record_findings(ledger, location, result)
        elif copy.state is not CopyState.GOOD:
            # Nothing seen, but a cheap check verified no byte: the finding stands until a deep
            # check reads the copy whole (or repair remakes it).
            kind = (
                ProblemKind.COPY_DAMAGED if copy.state is CopyState.DAMAGED
                else ProblemKind.COPY_MISSING
            )  # fmt: skip
            why = (
                f"recorded {copy.state} at {copy.updated_at}: {copy.detail}; a cheap check"
                " cannot clear it, a deep check (--deep) can"
            )
            result.problems.append(Problem(result.bag, kind, None, why))


def _compare_stored(
    record: BagRecord,
    file: ExpectedFile,
    stored: StoredObject | None,
    location: Location,
    result: BagAudit,
) -> bool:
    """Whether the store's own record of the object is what the ledger expects; a problem
    added to ``result`` when it is not."""
    before = len(result.problems)
    if stored is None:  # gone since the listing
        result.problems.append(_missing(record, file))
    elif stored.size != file.size:
        result.problems.append(_damaged(record, file, "size", str(file.size), str(stored.size)))
    elif stored.sha256 is not None and stored.sha256.lower() != file.digests["sha256"]:
        result.problems.append(
            _damaged(record, file, "sha256", file.digests["sha256"], stored.sha256.lower())
        )
    elif isinstance(location, S3Location) and location.object_lock_days and not stored.locked:
        result.problems.append(
            Problem(
                record.work_id, ProblemKind.COPY_UNLOCKED, file.path,
                f"{file.key}: under no COMPLIANCE retention, though the settings ask for"
                f" {location.object_lock_days} days",
            )
        )  # fmt: skip
    return len(result.problems) == before


def _record_event(archive: Archive, location: Location, checked: BagAudit) -> None:
    """A deep check read every file of the copy: a PREMIS ``fixity check`` of that copy in the
    audit log's chain of preservation events (``cifa events`` shows it), as repair records its
    own checks. A cheap check reads no byte: it is no fixity check, and records none."""

    def paths(kind: ProblemKind) -> list[str]:
        return sorted(p.path or "" for p in checked.problems if p.kind is kind)

    detail = {
        "files": checked.files,
        "missing": paths(ProblemKind.COPY_MISSING),
        "damaged": paths(ProblemKind.COPY_DAMAGED),
        "bytes_read": checked.bytes_read,
    }
    outcome = EventOutcome.SUCCESS if checked.intact else EventOutcome.FAILURE
    try:
        AuditLog(archive.ledger_path).record_event(
            checked.bag, EventType.FIXITY_CHECK, location.name, outcome, detail, SOFTWARE
        )
    except (CifaError, OSError, sqlite3.Error) as exc:  # the finding is still reported
        log.error("%s at %s: the fixity check could not be logged: %s", checked.bag,
                  location.name, exc)  # fmt: skip


def _record_findings(ledger: Ledger, location: Location, checked: BagAudit) -> None:
    """A copy with a file whose bytes differ is damaged; else, with a file absent, missing.
    Retention missing alone changes no state: the bytes are still the copy's."""
    kinds = {p.kind for p in checked.problems}
    if ProblemKind.COPY_DAMAGED in kinds:
        state = CopyState.DAMAGED
    elif ProblemKind.COPY_MISSING in kinds:
        state = CopyState.MISSING
    else:
        return
    named = [f"{p.kind} {p.path}" for p in checked.problems if p.kind in
             (ProblemKind.COPY_DAMAGED, ProblemKind.COPY_MISSING)]  # fmt: skip
    detail = "; ".join(named[:5]) + (f"; and {len(named) - 5} more" if len(named) > 5 else "")
    try:
        ledger.record_copy(checked.bag, location.name, state, software=SOFTWARE,
                           detail=detail[:500])  # fmt: skip
    except (CifaError, OSError) as exc:  # the finding is still reported
        log.error("%s at %s: could not record %s: %s", checked.bag, location.name, state, exc)
