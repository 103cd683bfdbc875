"""Recovery: a whole primary archive (bags and ledger) rebuilt from one storage location, after
the primary's disk is lost (``cifa recover --from NAME --to DIR``).

Why it works as it does:

- **The ledger comes first, and only a sound one.** Replication leaves a consistent snapshot of
  the ledger at every location after each run that changed it (``ledger/ledger-<UTC>.sqlite``).
  The newest is taken if SQLite finds it whole (``PRAGMA integrity_check``) and its hash-chained
  audit log verifies; otherwise the next older, and the one refused is named. Snapshots are never
  merged: one is the archive's memory as of that night.
- **Every byte is verified against that ledger before it is placed.** A bag's manifests must hash
  to the digests the ledger recorded at ingest; every other file then takes its sha256 from them
  (and the payload's from the ledger's own list of payload files). A file that differs, or is
  absent, keeps its bag out of the rebuilt archive and is named: a damaged copy is never taken
  silently. The ledger keeps the bag, so ``cifa audit`` on the new archive says it is missing,
  and ``cifa repair`` (or another location) can bring it back.
- **What the snapshot did not yet know is said.** A bag at the location newer than the snapshot
  (copied by a run whose snapshot was never sent) is validated against its own manifests, every
  checksum, and registered from its own records, as the ingest registers a bag a crash left
  placed but unregistered; the report lists it as such.
- **Nothing is half-made.** Bags are built in ``DIR/staging/`` and placed with one rename each
  (read-only, flushed), and the ledger, which is what makes ``DIR`` an archive, is moved in last:
  a recovery killed at any instant leaves a folder that is no archive (no ``ledger.sqlite``), and
  the next ``cifa recover`` into it starts again. Then the rebuilt archive is audited in full (every
  checksum, the ledger's digests), each check recorded in its audit log, and its chain verified.

The location is only read: recovery writes nothing there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from cifa_ingest import __version__
from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, CopyState, Ledger
from cifa_ingest.bag import manifest
from cifa_ingest.errors import CifaError, InputError
from cifa_ingest.storage.digests import copy_hashed
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, S3Location
from cifa_ingest.storage.replicate import PAYLOAD_MANIFEST, TAG_MANIFEST
from cifa_ingest.storage.store import LocationUnreachable, ObjectMissing, Store, StoredObject
from cifa_ingest.storage.stores import open_store

log = logging.getLogger("cifa_ingest.recover")

SOFTWARE = f"cifa-ingest {__version__}"
#: The folder inside ``DIR`` where the ledger's snapshot waits until every bag is placed; its
#: presence (without ``ledger.sqlite``) marks a recovery that did not finish.
WORK_FOLDER = ".recovering"
#: What an unfinished recovery may have left in ``DIR``; anything else makes ``DIR`` not empty.
_OWN_ENTRIES = frozenset({WORK_FOLDER, "bags", "staging"})


class RecoveryOutcome(StrEnum):
    """What recovery did with one bag (``outcome`` of ``cifa recover --json``)."""

    #: Every file fetched and verified against the snapshot's ledger; placed.
    RECOVERED = "recovered"
    #: Unknown to the snapshot (copied after it was sent): valid on its own manifests, every
    #: checksum; placed and registered from its own records.
    REGISTERED_FROM_BAG = "registered_from_bag"
    #: A file at the location differs from the ledger (or the bag is not valid): not placed.
    DAMAGED = "damaged"
    #: The location holds no copy of it, or files of its copy are absent: not placed.
    MISSING = "missing"


#: The outcomes after which the bag is in the rebuilt archive.
PLACED = frozenset({RecoveryOutcome.RECOVERED, RecoveryOutcome.REGISTERED_FROM_BAG})


class RecoveryFailed(CifaError):
    """Nothing could be rebuilt: the location did not answer, or holds no sound ledger."""


class _BagNotRecovered(CifaError):
    def __init__(self, outcome: RecoveryOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


@dataclass
class BagRecovery:
    """One bag, as recovery left it."""

    work_id: str
    outcome: RecoveryOutcome
    files: int = 0
    bytes: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in PLACED

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "outcome": str(self.outcome),
            "files": self.files,
            "bytes": self.bytes,
            "detail": self.detail,
        }


@dataclass
class RecoveryReport:
    """A recovery: the snapshot used, each bag, and the audit of the rebuilt archive."""

    location: str
    archive: str
    started: str
    snapshot: str | None = None
    #: Snapshots found and not used (newer than the one used, and unsound), with why.
    refused_snapshots: list[dict[str, str]] = field(default_factory=list)
    bags: list[BagRecovery] = field(default_factory=list)
    #: Files at the location that no manifest lists (left there, not copied).
    notes: list[str] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    chain_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        audited = self.audit is not None and bool(self.audit.get("ok"))
        return all(b.ok for b in self.bags) and audited and not self.chain_problems

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for bag in self.bags:
            counts[str(bag.outcome)] = counts.get(str(bag.outcome), 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "archive": self.archive,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "snapshot": self.snapshot,
            "refused_snapshots": self.refused_snapshots,
            "counts": self.counts(),
            "bags": [b.as_dict() for b in self.bags],
            "notes": self.notes,
            "audit": self.audit,
            "chain_problems": self.chain_problems,
            "ok": self.ok,
        }


# ---------------------------------------------------------------------------------------------
# The target folder


def prepare_target(target: Path) -> None:
    """Refuse (:class:`InputError`, exit 2) a ``DIR`` that holds anything but what an unfinished
    recovery left there; clear that. A recovery never writes over an archive or anyone's files."""
    if target.exists() and not target.is_dir():
        raise InputError(f"--to: {target} is not a folder")
    if not target.exists():
        return
    entries = {entry.name for entry in target.iterdir()}
    if not entries:
        return
    if (target / "ledger.sqlite").exists():
        raise InputError(f"--to: {target} holds an archive already (ledger.sqlite); not touched")
    if WORK_FOLDER in entries and entries <= _OWN_ENTRIES:
        log.warning("%s: a recovery that did not finish left this; starting again", target)
        for name in entries:
            _remove_tree(target / name)
        return
    raise InputError(
        f"--to: {target} is not empty ({', '.join(sorted(entries)[:3])}…); recovery makes a new"
        " archive in an empty folder, never over files"
    )


def _remove_tree(path: Path) -> None:
    """Remove a folder whose files were sealed read-only (their folders stay writable)."""
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Fetching, verified


def _fetch(store: Store, key: str, target: Path, sha256: str | None) -> tuple[str, int]:
    """Stream the object ``key`` to ``target`` (flushed), hashing it; returns (sha256, size).
    When ``sha256`` is given and differs, :class:`_BagNotRecovered` (damaged) says both."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with store.open(key) as reader, target.open("wb") as out:
            digest, size = copy_hashed(reader, out)
    except ObjectMissing:
        raise _BagNotRecovered(RecoveryOutcome.MISSING, f"{_in_bag(key)} is absent") from None
    if sha256 is not None and digest != sha256:
        raise _BagNotRecovered(
            RecoveryOutcome.DAMAGED,
            f"{_in_bag(key)}: sha256 {digest} at the location, {sha256} in the ledger",
        )
    return digest, size


def _in_bag(key: str) -> str:
    """``bags/<bag>/<path>`` as ``<path>`` (what a person looks for in the bag)."""
    parts = key.split("/", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "bags" else key


def _safe(relative: str) -> bool:
    """A path from a manifest that stays inside its bag."""
    path = PurePosixPath(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts


# ---------------------------------------------------------------------------------------------
# The ledger


def _snapshot_keys(store: Store) -> list[str]:
    """The ledger's snapshots at the location, newest first (their names sort by time)."""
    found = [
        o.key for o in store.list("ledger/")
        if PurePosixPath(o.key).name.startswith("ledger-") and o.key.endswith(".sqlite")
    ]  # fmt: skip
    return sorted(found, reverse=True)


def _sound_ledger(path: Path) -> str:
    """Why the file at ``path`` is not a sound ledger, or "" when it is one."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        return f"not a readable SQLite database ({exc})"
    if not verdict or verdict[0] != "ok":
        return f"SQLite finds it damaged ({verdict[0] if verdict else 'no answer'})"
    if not {"bags", "fixity_checks"} <= tables:
        return "not a ledger (no bags or fixity_checks table)"
    return ""


def unsound_ledger(path: Path) -> str:
    """Why the ledger's snapshot at ``path`` is not one to rebuild an archive from, or "" when
    it is: SQLite finds it whole, it is a ledger, and its audit log's hash chain verifies. What
    recovery asks of a snapshot before taking it, and replication of the one it has just sent
    before removing older ones (:func:`cifa_ingest.storage.replicate.prune_snapshots`). The file
    is upgraded in place to this release's schema, if older."""
    why = _sound_ledger(path)
    if why:
        return why
    try:
        Ledger(path)
        chain = AuditLog(path).verify()
    except (CifaError, sqlite3.Error) as exc:
        chain = [str(exc)]
    return f"its audit log's hash chain does not verify ({chain[0]})" if chain else ""


def _fetch_ledger(store: Store, work: Path, report: RecoveryReport) -> Path:
    """The newest sound snapshot, fetched to ``work/ledger.sqlite`` and upgraded to this
    release's schema; :class:`RecoveryFailed` when the location holds none."""
    target = work / "ledger.sqlite"
    for key in _snapshot_keys(store):
        for leftover in work.glob("ledger.sqlite*"):
            leftover.unlink()
        try:
            digest, _size = _fetch(store, key, target, None)
        except _BagNotRecovered as exc:
            report.refused_snapshots.append({"key": key, "detail": str(exc)})
            continue
        found = store.stat(key)
        why = ""
        if found is not None and found.sha256 is not None and found.sha256.lower() != digest:
            why = "its bytes differ from the digest the store keeps of them"
        why = why or unsound_ledger(target)
        if why:
            log.error("ledger snapshot %s refused: %s", key, why)
            report.refused_snapshots.append({"key": key, "detail": why})
            continue
        report.snapshot = key
        return target
    refused = "; ".join(f"{r['key']}: {r['detail']}" for r in report.refused_snapshots)
    raise RecoveryFailed(
        f"location {store.name} holds no sound ledger snapshot under ledger/"
        + (f" ({refused})" if refused else " (none at all: was it ever replicated to?)")
    )


# ---------------------------------------------------------------------------------------------
# The bags


def _recover_known(
    store: Store,
    ledger: Ledger,
    record: BagRecord,
    listing: dict[str, StoredObject],
    staging: Path,
    notes: list[str],
) -> tuple[int, int]:
    """Fetch a bag the ledger knows into ``staging``, every file verified against the ledger's
    digests (the module says how); returns (files, bytes)."""
    name = PurePosixPath(record.bag_path).name
    prefix = f"bags/{name}/"
    if not listing:
        raise _BagNotRecovered(RecoveryOutcome.MISSING, "no copy of it at the location")
    digests: dict[str, str] = {}
    done: set[str] = set()
    files = total = 0
    for manifest_name, digest in sorted(record.manifest_digests.items()):
        if "/" in manifest_name or not _safe(manifest_name):  # a forged row: never a path out
            raise _BagNotRecovered(
                RecoveryOutcome.DAMAGED, f"the ledger names a manifest {manifest_name!r}"
            )
        _sha, size = _fetch(store, prefix + manifest_name, staging / manifest_name, digest)
        digests[manifest_name] = digest
        done.add(manifest_name)
        files, total = files + 1, total + size
    _fetch(store, prefix + "bagit.txt", staging / "bagit.txt", None)
    declaration = manifest.read_declaration(staging)
    for manifest_name, payload in ((TAG_MANIFEST, False), (PAYLOAD_MANIFEST, True)):
        if manifest_name not in record.manifest_digests:
            raise _BagNotRecovered(
                RecoveryOutcome.DAMAGED, f"the ledger records no {manifest_name} for it"
            )
        text = (staging / manifest_name).read_bytes().decode(declaration.reading_encoding)
        read = manifest.parse_manifest(
            text.removeprefix("\ufeff"), manifest_name, version=declaration.version
        )
        for path, digest in read.entries.items():
            if path.startswith("data/") != payload or not _safe(path):
                raise _BagNotRecovered(RecoveryOutcome.DAMAGED, f"{manifest_name} lists {path!r}")
            digests.setdefault(path, digest)
    for path, _size, sha256, _sha512 in ledger.bag_files(record.work_id):
        if sha256 is not None and digests.get(path) != sha256:
            raise _BagNotRecovered(
                RecoveryOutcome.DAMAGED, f"{path}: its manifest and the ledger disagree"
            )
    if digests.get("bagit.txt") is None:
        raise _BagNotRecovered(RecoveryOutcome.DAMAGED, "bagit.txt is in no tag manifest")
    for path, digest in sorted(digests.items()):
        if path in done:
            continue
        _sha, size = _fetch(store, prefix + path, staging / path, digest)
        files, total = files + 1, total + size
    stray = sorted(key for key in listing if key.removeprefix(prefix) not in digests)
    if stray:
        more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
        notes.append(f"{record.work_id}: {stray[0]} is in no manifest; not copied{more}")
    return files, total


def _recover_unknown(
    store: Store, name: str, listing: dict[str, StoredObject], staging: Path
) -> tuple[int, int]:
    """Fetch a bag the snapshot does not know, every file at the location, and validate it on
    its own manifests (every checksum); returns (files, bytes)."""
    from cifa_ingest.bag.check import validate

    files = total = 0
    for key in sorted(listing):
        relative = key.removeprefix(f"bags/{name}/")
        if not _safe(relative):
            raise _BagNotRecovered(RecoveryOutcome.DAMAGED, f"{key}: not a path inside a bag")
        _sha, size = _fetch(store, key, staging / relative, None)
        files, total = files + 1, total + size
    verdict = validate(staging)
    if not verdict.valid:
        problems = "; ".join(f.message for f in verdict.errors[:3])
        raise _BagNotRecovered(RecoveryOutcome.DAMAGED, f"not a valid bag: {problems}")
    return files, total


def _register_from_bag(ledger: Ledger, archive: Archive, work_id: str) -> None:
    """Register a placed bag from its own records, as the ingest does a bag a crash left placed
    but unregistered (:func:`cifa_ingest.preserve.triage`)."""
    from cifa_ingest.bag import package
    from cifa_ingest.fetch.capture import captured_source_keys

    bag = archive.bag_path(work_id)
    summary = package.summarise_bag(bag)
    record = BagRecord(
        work_id=work_id,
        bag_path=archive.relative(bag),
        placed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        payload_oxum=summary.payload_oxum,
        manifest_digests=summary.manifest_digests,
        source_keys=captured_source_keys(bag),
        software=package.SOFTWARE_AGENT,
    )
    ledger.register_bag(record, files=package.payload_files(bag))


def _group(listing: list[StoredObject]) -> dict[str, dict[str, StoredObject]]:
    """The location's objects under ``bags/``, by bag name."""
    grouped: dict[str, dict[str, StoredObject]] = {}
    for found in listing:
        parts = found.key.split("/", 2)
        if len(parts) == 3 and parts[0] == "bags" and parts[1] and parts[2]:
            grouped.setdefault(parts[1], {})[found.key] = found
    return grouped


# ---------------------------------------------------------------------------------------------
# The whole archive


def recover_archive(
    location: FilesystemLocation | S3Location,
    target: Path,
    *,
    stores: Callable[[FilesystemLocation | S3Location], Store] = open_store,
) -> RecoveryReport:
    """Rebuild an archive at ``target`` (absent or empty) from ``location``; see the module.
    Raises :class:`InputError` for a ``target`` that is not empty (before anything is read) and
    :class:`RecoveryFailed` when nothing can be rebuilt (nothing is left in ``target`` then)."""
    from cifa_ingest.audit.fixity_audit import audit_archive
    from cifa_ingest.catalogue.model import is_work_id

    started = time.monotonic()
    target = target.expanduser().absolute()
    prepare_target(target)
    report = RecoveryReport(
        location=location.name,
        archive=str(target),
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    store = stores(location)
    store.check()  # LocationUnreachable: nothing made yet
    made_target = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    archive = Archive(target)
    work = target / WORK_FOLDER
    work.mkdir()
    try:
        ledger_file = _fetch_ledger(store, work, report)
    except BaseException:
        _remove_tree(work)
        if made_target:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    archive.ensure()
    ledger = Ledger(ledger_file)
    by_bag = _group(list(store.list("bags/")))
    records = ledger.bags()
    known = {PurePosixPath(r.bag_path).name for r in records}
    for record in records:
        log.info("%s: recovering from %s", record.work_id, location.name)
        name = PurePosixPath(record.bag_path).name
        staging = archive.new_staging(record.work_id)
        row = BagRecovery(record.work_id, RecoveryOutcome.RECOVERED)
        try:
            if name != record.work_id or not is_work_id(name):
                raise _BagNotRecovered(
                    RecoveryOutcome.DAMAGED,
                    f"the ledger's path {record.bag_path!r} is not bags/<id>",
                )
            row.files, row.bytes = _recover_known(
                store, ledger, record, by_bag.get(name, {}), staging, report.notes
            )
            archive.place(staging, record.work_id)
        except _BagNotRecovered as exc:
            row.outcome, row.detail = exc.outcome, str(exc)
        _after(ledger, archive, location.name, row, report)
    for name in sorted(set(by_bag) - known):
        if not is_work_id(name):
            report.notes.append(f"bags/{name}: not a work's bag (its name is no work id); left")
            continue
        log.info("%s: at %s, unknown to the snapshot: registering it from its own records",
                 name, location.name)  # fmt: skip
        staging = archive.new_staging(name)
        row = BagRecovery(name, RecoveryOutcome.REGISTERED_FROM_BAG)
        try:
            row.files, row.bytes = _recover_unknown(store, name, by_bag[name], staging)
            archive.place(staging, name)
            _register_from_bag(ledger, archive, name)
        except _BagNotRecovered as exc:
            row.outcome, row.detail = exc.outcome, f"unknown to the snapshot; {exc}"
        _after(ledger, archive, location.name, row, report)
    for work_id in ledger.pending_placements():  # a placement the snapshot caught half-way
        ledger.abandon_placement(work_id)
    _move_ledger_in(ledger_file, archive)
    _remove_tree(work)
    audited = audit_archive(archive)
    report.audit = {
        "checked": len(audited.bags),
        "intact": sum(1 for bag in audited.bags if bag.intact),
        "problems": len(audited.problems),
        "ok": audited.ok,
    }
    report.chain_problems = AuditLog(archive.ledger_path).verify()
    report.seconds = time.monotonic() - started
    return report


def _after(
    ledger: Ledger, archive: Archive, location: str, row: BagRecovery, report: RecoveryReport
) -> None:
    """Record what recovery learnt of the bag's copy at the location (every file verified: good;
    else damaged or missing, as an audit of the location would) and, in the audit log's chain of
    preservation events, the primary copy's ``recovery`` from it (``success``, or ``failure``
    with why); clear its staging."""
    archive.discard_staging(row.work_id)
    report.bags.append(row)
    if not row.ok:
        log.error("%s: not recovered from %s: %s", row.work_id, location, row.detail)
    if ledger.bag(row.work_id) is None:  # a folder at the location no ledger knows, not placed
        return
    if row.ok:
        ledger.record_copy(row.work_id, location, CopyState.GOOD, software=SOFTWARE, size=row.bytes)
    else:
        state = CopyState.DAMAGED if row.outcome is RecoveryOutcome.DAMAGED else CopyState.MISSING
        ledger.record_copy(row.work_id, location, state, software=SOFTWARE, detail=row.detail[:500])
    AuditLog(ledger.path).record_event(
        row.work_id, EventType.RECOVERY, PRIMARY,
        EventOutcome.SUCCESS if row.ok else EventOutcome.FAILURE,
        {"from": location, "outcome": str(row.outcome), "files": row.files, "bytes": row.bytes,
         "detail": row.detail},
        SOFTWARE,
    )  # fmt: skip


def _move_ledger_in(ledger_file: Path, archive: Archive) -> None:
    """Fold the ledger's write-ahead log into its file, flush it, and move it into place: from
    this rename on, the folder is an archive."""
    with contextlib.closing(sqlite3.connect(ledger_file, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    with open(ledger_file, "rb") as written:
        os.fsync(written.fileno())
    os.replace(ledger_file, archive.ledger_path)
    fd = os.open(archive.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def table(report: RecoveryReport) -> str:
    """The recovery for people: the snapshot used, bags not recovered first, then the counts."""
    lines = [f"ledger: {report.snapshot} from {report.location}"]
    for refused in report.refused_snapshots:
        lines.append(f"ledger snapshot refused: {refused['key']}: {refused['detail']}")
    for bag in sorted(report.bags, key=lambda b: (b.ok, b.work_id)):
        if bag.outcome is RecoveryOutcome.RECOVERED:
            continue
        if bag.ok:
            lines.append(
                f"{bag.work_id}: {bag.outcome} (newer than the snapshot: validated on its own"
                " manifests, registered from its own records)"
            )
        else:
            lines.append(f"{bag.work_id}: {bag.outcome}, not recovered: {bag.detail}")
    lines += [f"note: {note}" for note in report.notes]
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.counts().items()))
    lines.append(f"bags: {counts or 'none'}")
    if report.audit is not None:
        audit = report.audit
        lines.append(
            f"audit of {report.archive}: {audit['checked']} bags checked, {audit['intact']}"
            f" intact, {audit['problems']} problems"
        )
    lines += [f"audit log: {problem}" for problem in report.chain_problems]
    verdict = "recovered" if report.ok else "recovered with problems"
    lines.append(f"{verdict}: {report.archive}, in {report.seconds:.1f} s")
    return "\n".join(lines)


__all__ = [
    "LocationUnreachable",
    "RecoveryFailed",
    "RecoveryOutcome",
    "RecoveryReport",
    "recover_archive",
    "table",
]
