"""Repair: a copy of a bag found missing or damaged, on any location including the primary, is
replaced file by file from a copy that verifies against the ledger's digests.

Why it works as it does:

- **The ledger decides, never a copy, and only a ledger whose chain holds.** What each file must
  be comes from the ledger's chain (:func:`cifa_ingest.storage.replicate.sha256_of_manifests`:
  the manifests must hash to the digests recorded at ingest, from whichever copy holds them
  whole). A ledger whose hash chain is broken (:meth:`AuditLog.verify`) stops repair before
  anything is read: a forged record must never "repair" good copies with other bytes.
- **Every copy is checked in full.** ``cifa repair ID`` re-hashes every file of every copy of
  the bag that the ledger records (the primary, and each location with a row in ``copies``),
  whatever its recorded state: the primary has no row saying it is damaged, a copy recorded
  good may have rotted since, and a source must be proven good before its bytes are used.
  Correctness over speed: this reads each copy once; the cheap audits are for every night.
- **Only verified bytes are written.** A file's bytes are staged from a copy that verified, in
  the archive's work area (``staging/.repair/``), hashed while staged: the staged file must match
  the ledger before it is used. Each location then receives it through its store's ``put``
  (all or nothing, verified before it returns). The primary's file is replaced last by renaming
  the staged file over it (same file system: atomic), after it was flushed, made read-only and
  read back once more; the bag folder never holds a temporary file, so a run killed at any
  instant leaves each file of each copy as it was or wholly replaced, never worse.
- **Recorded only once verified.** A location's copy found wanting is recorded ``missing`` or
  ``damaged`` before anything is written to it, and ``good`` only after every file of it
  verified (read whole, or put and verified by the store). Every check, copy and recovery is a
  PREMIS event in the audit log's hash chain (:class:`EventType`: ``fixity check``,
  ``replication``, ``recovery``), which ``cifa events`` shows.
- **No good copy anywhere: nothing is overwritten.** The problem stays reported (``no_good_copy``)
  and the run fails, so that Prefect's notifications fire.

One repair or replication of an archive at a time: :func:`repair_work` holds
:func:`cifa_ingest.storage.replicate.replication_lock` (callers must not hold it already).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType
from cifa_ingest.archive.layout import Archive, fsync_dir
from cifa_ingest.archive.ledger import BagRecord, CopyState, Ledger
from cifa_ingest.bag import manifest
from cifa_ingest.errors import CifaError
from cifa_ingest.storage.digests import copy_hashed, sha256_of, sha256_of_path
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, S3Location
from cifa_ingest.storage.replicate import (
    SOFTWARE,
    SourceDamaged,
    bag_key,
    replication_lock,
    sha256_of_manifests,
)
from cifa_ingest.storage.store import LocationUnreachable, ObjectMissing, Store
from cifa_ingest.storage.stores import open_store

log = logging.getLogger("cifa_ingest.repair")

#: The work area of repair, inside the archive's staging folder (the file system of bags/).
WORK_AREA = ".repair"


class LedgerTampered(CifaError):
    """The audit log's hash chain is broken: the ledger cannot be trusted to say which bytes
    are good, so nothing is repaired."""


class RepairProblemKind(StrEnum):
    """What repair found and could not mend (``problems[].kind`` of ``cifa repair --json``)."""

    #: A file of the copy is absent (and no verified copy of it could be written there).
    COPY_MISSING = "copy_missing"
    #: A file of the copy differs from the ledger's digest (and was not replaced).
    COPY_DAMAGED = "copy_damaged"
    #: The location did not answer: its copy could be neither checked nor used.
    LOCATION_UNREACHABLE = "location_unreachable"
    #: No copy anywhere holds the file as the ledger records it: nothing was overwritten.
    NO_GOOD_COPY = "no_good_copy"


@dataclass(frozen=True)
class Problem:
    work_id: str
    location: str
    kind: RepairProblemKind
    path: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "kind": str(self.kind),
            "path": self.path,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Repaired:
    """One file of one copy replaced by verified bytes of another."""

    work_id: str
    location: str
    path: str
    source: str
    sha256: str
    was: RepairProblemKind

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "path": self.path,
            "source": self.source,
            "sha256": self.sha256,
            "was": str(self.was),
        }


@dataclass
class CopyCheck:
    """One copy of one bag as this run found and left it."""

    work_id: str
    location: str
    files: int = 0
    #: Files found missing or damaged, by path.
    bad: dict[str, RepairProblemKind] = field(default_factory=dict)
    repaired: int = 0

    @property
    def good(self) -> bool:
        return self.repaired == len(self.bad)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "files": self.files,
            "missing": _found(self)["missing"],
            "damaged": _found(self)["damaged"],
            "repaired": self.repaired,
            "good": self.good,
        }


@dataclass
class RepairReport:
    """A repair run."""

    archive: str
    started: str
    works: list[str] = field(default_factory=list)
    copies: list[CopyCheck] = field(default_factory=list)
    repaired: list[Repaired] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "works": self.works,
            "copies": [c.as_dict() for c in self.copies],
            "repaired": [r.as_dict() for r in self.repaired],
            "problems": [p.as_dict() for p in self.problems],
            "ok": self.ok,
        }


# ---------------------------------------------------------------------------------------------
# The copies of a bag: the primary and the locations, read alike


class Copy:
    """One copy of one bag: its name and how to read (and replace) a file of it."""

    name: str

    def open(self, path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        raise NotImplementedError


class PrimaryCopy(Copy):
    """The placed bag under ``ARCHIVE/bags/``."""

    def __init__(self, archive: Archive, record: BagRecord) -> None:
        self.name = PRIMARY
        self.archive = archive
        self.bag = archive.root / record.bag_path

    def _file(self, path: str) -> Path:
        parts = PurePosixPath(path).parts
        if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a path in a bag: {path!r}")
        return self.bag.joinpath(*parts)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        try:
            handle = self._file(path).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"{PRIMARY}: no {path}") from None
        with handle:
            yield handle

    def replace(self, path: str, staged: Path, sha256: str) -> None:
        """Put the verified ``staged`` file in the placed bag in place of ``path``, atomically:
        flushed, read-only, hashed once more from disk, then renamed over the old one (same file
        system: staging and bags are, :meth:`Archive.place`), the folder flushed. ``staged`` is
        consumed."""
        target = self._file(path)
        with staged.open("rb") as reader:
            os.fsync(reader.fileno())
        os.chmod(staged, 0o444)
        if sha256_of_path(staged) != sha256:
            raise SourceDamaged(f"{path}: the staged copy no longer verifies; not placed")
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True)
        os.replace(staged, target)
        fsync_dir(target.parent)


class LocationCopy(Copy):
    """A bag's copy at a storage location, through its store."""

    def __init__(self, store: Store, record: BagRecord) -> None:
        self.name = store.name
        self.store = store
        self.record = record

    def open(self, path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.store.open(bag_key(self.record, path))


def hash_in_copy(copy: Copy, path: str) -> str | None:
    """The sha256 of ``path`` as ``copy`` holds it, read whole; None when it is absent.
    :class:`LocationUnreachable` propagates."""
    try:
        with copy.open(path) as reader:
            return sha256_of(reader)
    except ObjectMissing:
        return None


def read_verified(copy: Copy, path: str, sha256: str, limit: int = 64 * 1024 * 1024) -> bytes:
    """A small file (a manifest, ``bagit.txt``) of ``copy``, only if it hashes to ``sha256``."""
    with copy.open(path) as reader:
        data = reader.read(limit + 1)
    if len(data) > limit or hashlib.sha256(data).hexdigest() != sha256:
        raise SourceDamaged(f"{copy.name}: {path} differs from the ledger")
    return data


def stage(copy: Copy, path: str, sha256: str, target: Path) -> int:
    """Copy ``path`` of ``copy`` to the new file ``target``, hashed while written and flushed;
    the file is kept only if its bytes are the ledger's (else removed, :class:`SourceDamaged`).
    Its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with copy.open(path) as reader, target.open("xb") as out:
            digest, size = copy_hashed(reader, out)
        if digest != sha256:
            raise SourceDamaged(f"{copy.name}: {path} no longer verifies; not used")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return size


def expected_files(
    record: BagRecord, copies: Sequence[Copy], scratch: Path
) -> tuple[dict[str, str], list[str]]:
    """Every file of the bag with its sha256 from the ledger's chain, read from the manifests of
    whichever copies hold them as the ledger recorded (each manifest may come from another copy);
    and the notes of copies that could not be read. ``scratch`` is a folder to read
    ``bagit.txt``'s declaration in. Raises :class:`SourceDamaged` when no copy holds a manifest
    as recorded."""
    name = Path(record.bag_path).name
    texts: dict[str, bytes] = {}
    notes: list[str] = []
    for manifest_name, digest in sorted(record.manifest_digests.items()):
        for copy in copies:
            try:
                texts[manifest_name] = read_verified(copy, manifest_name, digest)
                break
            except (SourceDamaged, ObjectMissing):
                continue
            except LocationUnreachable as exc:
                notes.append(str(exc))
        else:
            raise SourceDamaged(f"{name}: no copy holds {manifest_name} as the ledger recorded it")
    # The declaration (encoding, version) from a bagit.txt that reads; the one a copy must hold
    # is then checked like every other file, against the tag manifest's digest.
    declaration = manifest.Declaration(version=(1, 0), encoding="UTF-8")
    for copy in copies:
        with contextlib.suppress(CifaError, OSError):
            with copy.open("bagit.txt") as reader:
                data = reader.read(4096)
            scratch.mkdir(parents=True, exist_ok=True)
            (scratch / "bagit.txt").write_bytes(data)
            found = manifest.read_declaration(scratch)
            if not found.problems:
                declaration = found
                break
    return sha256_of_manifests(name, texts, declaration), notes


# ---------------------------------------------------------------------------------------------
# Repair


def check_chain(archive: Archive) -> None:
    problems = AuditLog(archive.ledger_path).verify()
    if problems:
        raise LedgerTampered(
            "the ledger's hash chain is broken, so it cannot say which copies are good; nothing"
            f" was repaired ({'; '.join(problems[:3])}). Restore the ledger from a snapshot"
            " (ledger/ at any location) and run cifa ledger verify."
        )


def repair_work(
    archive: Archive,
    work_ids: Sequence[str] | None,
    locations: Sequence[FilesystemLocation | S3Location],
    *,
    stores: Callable[[FilesystemLocation | S3Location], Store] = open_store,
) -> RepairReport:
    """Check every copy of each bag of ``work_ids`` (every registered bag when None) in full and
    replace each missing or damaged file from a copy that verifies (the module says how). Holds
    the replication lock. Raises :class:`LedgerTampered` before reading anything when the
    ledger's chain is broken; never raises for what a copy or location does: the report says it.
    """
    started = time.monotonic()
    report = RepairReport(
        archive=str(archive.root),
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    with replication_lock(archive):
        check_chain(archive)
        ledger = Ledger(archive.ledger_path)
        audit_log = AuditLog(archive.ledger_path)
        records = ledger.bags() if work_ids is None else [
            r for r in (ledger.bag(w) for w in work_ids) if r is not None
        ]  # fmt: skip
        report.works = [r.work_id for r in records]
        work_area = archive.staging_dir / WORK_AREA
        shutil.rmtree(work_area, ignore_errors=True)  # what a killed run left: never used
        opened: dict[str, Store] = {}
        for location in locations:
            store = stores(location)
            try:
                store.check()
            except LocationUnreachable as exc:
                report.unreachable[location.name] = str(exc)
            except (CifaError, OSError) as exc:
                report.unreachable[location.name] = f"{type(exc).__name__}: {exc}"
            else:
                opened[location.name] = store
        try:
            for record in records:
                _repair_bag(archive, ledger, audit_log, record, locations, opened, report,
                            work_area / secrets.token_hex(6))  # fmt: skip
        finally:
            shutil.rmtree(work_area, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report


def _repair_bag(
    archive: Archive,
    ledger: Ledger,
    audit_log: AuditLog,
    record: BagRecord,
    locations: Sequence[FilesystemLocation | S3Location],
    opened: dict[str, Store],
    report: RepairReport,
    work_area: Path,
) -> None:
    work_id = record.work_id
    recorded = {c.location: c for c in ledger.copies(work_id=work_id)}
    primary = PrimaryCopy(archive, record)
    copies: list[Copy] = [primary]
    for location in locations:
        if location.name not in recorded:
            continue  # never copied there: replication's work, not repair's
        if location.name in report.unreachable:
            report.problems.append(Problem(work_id, location.name,
                                           RepairProblemKind.LOCATION_UNREACHABLE,
                                           detail=report.unreachable[location.name]))  # fmt: skip
            continue
        copies.append(LocationCopy(opened[location.name], record))
    try:
        expected, _notes = expected_files(record, copies, work_area / "declaration")
    except SourceDamaged as exc:
        report.problems.append(
            Problem(work_id, "*", RepairProblemKind.NO_GOOD_COPY, detail=str(exc))
        )
        log.error("%s: %s", work_id, exc)
        return

    # 1. Check every copy in full.
    checks: dict[str, CopyCheck] = {}
    good_in: dict[str, list[Copy]] = {path: [] for path in expected}
    usable: list[Copy] = []
    for copy in copies:
        check = CopyCheck(work_id, copy.name, files=len(expected))
        try:
            for path, sha256 in expected.items():
                found = hash_in_copy(copy, path)
                if found == sha256:
                    good_in[path].append(copy)
                else:
                    check.bad[path] = (
                        RepairProblemKind.COPY_MISSING if found is None
                        else RepairProblemKind.COPY_DAMAGED
                    )  # fmt: skip
        except (LocationUnreachable, CifaError, OSError) as exc:
            report.problems.append(Problem(work_id, copy.name,
                                           RepairProblemKind.LOCATION_UNREACHABLE,
                                           detail=str(exc)))  # fmt: skip
            for files in good_in.values():  # a copy half read is no source
                if copy in files:
                    files.remove(copy)
            continue
        usable.append(copy)
        checks[copy.name] = check
        report.copies.append(check)
        audit_log.record_event(
            work_id, EventType.FIXITY_CHECK, copy.name,
            EventOutcome.SUCCESS if not check.bad else EventOutcome.FAILURE,
            _found(check), SOFTWARE,
        )  # fmt: skip
        if check.bad and copy is not primary:
            # Known wanting before anything is written: a run killed from here on leaves the
            # copy recorded not good, never good.
            state = (CopyState.MISSING if RepairProblemKind.COPY_MISSING in check.bad.values()
                     else CopyState.DAMAGED)  # fmt: skip
            ledger.record_copy(work_id, copy.name, state, software=SOFTWARE,
                               detail=_detail(check))  # fmt: skip

    # 2. Each file some copy lacks, from a copy that verifies, staged and verified.
    bad_paths = sorted({p for c in checks.values() for p in c.bad})
    for path in bad_paths:
        sha256 = expected[path]
        targets = [c for c in usable if path in checks[c.name].bad]
        sources = good_in[path]
        staged = work_area / secrets.token_hex(8)
        source = None
        for candidate in sources:
            try:
                stage(candidate, path, sha256, staged)
            except (CifaError, OSError) as exc:
                log.warning("%s: %s from %s: %s", work_id, path, candidate.name, exc)
                continue
            source = candidate
            break
        if source is None:
            for target in targets:
                report.problems.append(Problem(
                    work_id, target.name, RepairProblemKind.NO_GOOD_COPY, path,
                    "no copy holds this file as the ledger records it; nothing was overwritten",
                ))  # fmt: skip
            log.error("%s: %s: no copy verifies; nothing overwritten", work_id, path)
            continue
        # Locations first (each put reads the staged file), the primary last (it takes it).
        for target in sorted(targets, key=lambda c: c is primary):
            check = checks[target.name]
            try:
                if isinstance(target, PrimaryCopy):
                    target.replace(path, staged, sha256)
                elif isinstance(target, LocationCopy):
                    stored = target.store.put(bag_key(record, path), staged, sha256)
                    if stored.sha256 is not None and stored.sha256.lower() != sha256:
                        raise SourceDamaged(f"{path}: the location keeps sha256 {stored.sha256}")
            except (CifaError, OSError) as exc:
                report.problems.append(Problem(work_id, target.name, check.bad[path], path,
                                               f"not replaced: {exc}"))  # fmt: skip
                audit_log.record_event(work_id, EventType.REPLICATION, target.name,
                                       EventOutcome.FAILURE,
                                       {"path": path, "source": source.name,
                                        "error": str(exc)[:300]}, SOFTWARE)  # fmt: skip
                continue
            check.repaired += 1
            report.repaired.append(Repaired(work_id, target.name, path, source.name, sha256,
                                            check.bad[path]))  # fmt: skip
            audit_log.record_event(work_id, EventType.REPLICATION, target.name,
                                   EventOutcome.SUCCESS,
                                   {"path": path, "source": source.name, "sha256": sha256,
                                    "was": str(check.bad[path])}, SOFTWARE)  # fmt: skip
        staged.unlink(missing_ok=True)

    # 3. Record what each copy now is.
    for copy in usable:
        check = checks[copy.name]
        if check.bad:
            audit_log.record_event(
                work_id, EventType.RECOVERY, copy.name,
                EventOutcome.SUCCESS if check.good else EventOutcome.FAILURE,
                {**_found(check), "repaired": check.repaired}, SOFTWARE,
            )  # fmt: skip
        if copy is primary:
            continue
        if check.good:
            ledger.record_copy(work_id, copy.name, CopyState.GOOD, software=SOFTWARE,
                               copied=bool(check.repaired))  # fmt: skip


def _found(check: CopyCheck) -> dict[str, Any]:
    return {
        "files": check.files,
        "missing": sorted(p for p, k in check.bad.items() if k is RepairProblemKind.COPY_MISSING),
        "damaged": sorted(p for p, k in check.bad.items() if k is RepairProblemKind.COPY_DAMAGED),
    }


def _detail(check: CopyCheck) -> str:
    found = _found(check)
    parts = []
    for word in ("missing", "damaged"):
        if found[word]:
            more = f" and {len(found[word]) - 1} more" if len(found[word]) > 1 else ""
            parts.append(f"{word}: {found[word][0]}{more}")
    return "; ".join(parts)[:500]


def table(report: RepairReport) -> str:
    """The run for people: what was repaired, then what remains wrong, then a count."""
    lines = [f"{loc}: unreachable: {why}" for loc, why in report.unreachable.items()]
    for done in report.repaired:
        lines.append(f"{done.work_id} @ {done.location}: {done.path} ({done.was}) repaired"
                     f" from {done.source}")  # fmt: skip
    for problem in report.problems:
        where = f" {problem.path}" if problem.path else ""
        lines.append(f"{problem.work_id} @ {problem.location}:{where} {problem.kind}:"
                     f" {problem.detail}")  # fmt: skip
    checked = len(report.copies)
    lines.append(
        f"repair: {len(report.works)} bags, {checked} copies checked in full,"
        f" {len(report.repaired)} files repaired, {len(report.problems)} problems remain,"
        f" in {report.seconds:.1f} s"
    )
    return "\n".join(lines)
