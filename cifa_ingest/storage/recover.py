"""Recovery: a whole primary archive (bags, every version of each work, and ledger) rebuilt
from one storage location, after the primary's disk is lost (``cifa recover --from NAME --to
DIR``).

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
- **Every version comes back, or the work does not.** Beside each bag a location holds what the
  work's OCFL object holds that the bag does not (``versions/<id>/``,
  :mod:`cifa_ingest.storage.versions_copy`): the inventories, and the content files whose bytes
  the newest version does not have. The object is rebuilt from the two at
  ``DIR/objects/<id>/``: every inventory checked against its digest file and against the root
  inventory, the newest version's files exactly the recovered bag's (path and sha512), each
  content file fetched and checked against the manifest's sha512 and the fixity block's sha256,
  or, where its bytes are the bag's, a hard link to the bag's file (no byte stored twice, as
  the ingest does). A versions file absent or damaged keeps the work out of the rebuilt
  archive, bag and object, and is named (``missing`` or ``damaged``): a bag placed without its
  history would have its version 1 made of it by the next run, and that history sent to every
  location. A work of which the location holds no versions at all (a copy made by a release
  before locations held them) is recovered as before, and its bag recorded as its version 1
  (given who records it), unless the bag says it is a later version: a version 1 made of it
  would be a false history, so none is made, and the report says so.
- **Nothing is half-made.** Bags are built in ``DIR/staging/`` and placed with one rename each
  (read-only, flushed), and the ledger, which is what makes ``DIR`` an archive, is moved in last:
  a recovery killed at any instant leaves a folder that is no archive (no ``ledger.sqlite``), and
  the next ``cifa recover`` into it starts again. A work's object is built whole in staging too,
  beside its bag, and moved into ``objects/`` by one rename once the bag is placed. Then the
  rebuilt archive is audited in full (every checksum, the ledger's digests, every version),
  each check recorded in its audit log, and its chain verified.

The location is only read: recovery writes nothing there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
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
from cifa_ingest.archive.layout import Archive, fsync_dir, seal_tree
from cifa_ingest.archive.ledger import BagRecord, CopyState, Ledger
from cifa_ingest.bag import manifest
from cifa_ingest.errors import ArchiveStateError, CifaError, InputError, ObjectDamaged
from cifa_ingest.storage import versions_copy
from cifa_ingest.storage.digests import CHUNK, copy_hashed, copy_hashed_with
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, S3Location
from cifa_ingest.storage.replicate import PAYLOAD_MANIFEST, TAG_MANIFEST
from cifa_ingest.storage.store import LocationUnreachable, ObjectMissing, Store, StoredObject
from cifa_ingest.storage.stores import open_store
from cifa_ingest.versions.content import discard
from cifa_ingest.versions.history import head
from cifa_ingest.versions.inventory import (
    INVENTORY,
    SIDECAR,
    Inventory,
    User,
    check_sidecar,
    version_name,
)
from cifa_ingest.versions.recovery import staging_name
from cifa_ingest.versions.storage_root import (
    OBJECT_DECLARATION,
    OBJECT_DECLARATION_TEXT,
    StorageRoot,
)

log = logging.getLogger("cifa_ingest.recover")

SOFTWARE = f"cifa-ingest {__version__}"
#: The folder inside ``DIR`` where the ledger's snapshot waits until every bag is placed; its
#: presence (without ``ledger.sqlite``) marks a recovery that did not finish.
WORK_FOLDER = ".recovering"
#: What an unfinished recovery may have left in ``DIR``; anything else makes ``DIR`` not empty.
_OWN_ENTRIES = frozenset({WORK_FOLDER, "bags", "objects", "staging"})
#: The largest inventory (or digest file) fetched: a work's is kilobytes, a location's is read.
_INVENTORY_LIMIT = 64 * 1024 * 1024
#: A content path of an OCFL manifest as this program stores them: ``v<N>/content/<path>``.
_CONTENT_PATH = re.compile(r"(v[1-9][0-9]*)/content/(.+)")


class RecoveryOutcome(StrEnum):
    """What recovery did with one bag (``outcome`` of ``cifa recover --json``), and with its
    versions beside it (``versions/<id>/`` at the location)."""

    #: Every file fetched and verified against the snapshot's ledger; placed, with its versions.
    RECOVERED = "recovered"
    #: Unknown to the snapshot (copied after it was sent): valid on its own manifests, every
    #: checksum; placed and registered from its own records, with its versions.
    REGISTERED_FROM_BAG = "registered_from_bag"
    #: A file at the location differs from the ledger (or the bag is not valid), or a file of
    #: its versions from its inventory: neither bag nor versions placed.
    DAMAGED = "damaged"
    #: The location holds no copy of it, or files of its copy (or of its versions) are absent:
    #: neither bag nor versions placed.
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
    """One bag, as recovery left it. ``files`` and ``bytes``: what was fetched from the location
    and verified (the bag's, and its versions' beside it); ``versions``: how many versions the
    work's rebuilt object holds (0: no object)."""

    work_id: str
    outcome: RecoveryOutcome
    files: int = 0
    bytes: int = 0
    detail: str = ""
    versions: int = 0

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
            "versions": self.versions,
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


@dataclass
class _Staged:
    """A bag fetched into staging: how many files and bytes, and the sha256 of each of its
    files (by path in the bag), verified."""

    files: int
    bytes: int
    sha256: dict[str, str]


def _recover_known(
    store: Store,
    ledger: Ledger,
    record: BagRecord,
    listing: dict[str, StoredObject],
    staging: Path,
    notes: list[str],
) -> _Staged:
    """Fetch a bag the ledger knows into ``staging``, every file verified against the ledger's
    digests (the module says how)."""
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
    return _Staged(files, total, digests)


def _recover_unknown(
    store: Store, name: str, listing: dict[str, StoredObject], staging: Path
) -> _Staged:
    """Fetch a bag the snapshot does not know, every file at the location, and validate it on
    its own manifests (every checksum)."""
    from cifa_ingest.bag.check import validate

    files = total = 0
    digests: dict[str, str] = {}
    for key in sorted(listing):
        relative = key.removeprefix(f"bags/{name}/")
        if not _safe(relative):
            raise _BagNotRecovered(RecoveryOutcome.DAMAGED, f"{key}: not a path inside a bag")
        digests[relative], size = _fetch(store, key, staging / relative, None)
        files, total = files + 1, total + size
    verdict = validate(staging)
    if not verdict.valid:
        problems = "; ".join(f.message for f in verdict.errors[:3])
        raise _BagNotRecovered(RecoveryOutcome.DAMAGED, f"not a valid bag: {problems}")
    return _Staged(files, total, digests)


def _register_from_bag(ledger: Ledger, archive: Archive, work_id: str, placed_at: str) -> None:
    """Register a placed bag from its own records, as the ingest does a bag a crash left placed
    but unregistered (:func:`cifa_ingest.preserve.triage`)."""
    from cifa_ingest.bag import package
    from cifa_ingest.fetch.capture import captured_source_keys

    bag = archive.bag_path(work_id)
    summary = package.summarise_bag(bag)
    record = BagRecord(
        work_id=work_id,
        bag_path=archive.relative(bag),
        placed_at=placed_at,
        payload_oxum=summary.payload_oxum,
        manifest_digests=summary.manifest_digests,
        source_keys=captured_source_keys(bag),
        software=package.SOFTWARE_AGENT,
    )
    ledger.register_bag(record, files=package.payload_files(bag))


def _group(listing: list[StoredObject], top: str = "bags") -> dict[str, dict[str, StoredObject]]:
    """The location's objects under ``top/`` (``bags``, ``versions``), by the folder below it
    (a bag's name, a work's id)."""
    grouped: dict[str, dict[str, StoredObject]] = {}
    for found in listing:
        parts = found.key.split("/", 2)
        if len(parts) == 3 and parts[0] == top and parts[1] and parts[2]:
            grouped.setdefault(parts[1], {})[found.key] = found
    return grouped


# ---------------------------------------------------------------------------------------------
# The versions


def _versions_problem(outcome: RecoveryOutcome, detail: str) -> _BagNotRecovered:
    return _BagNotRecovered(
        outcome,
        f"its versions: {detail}; neither its bag nor its versions placed (a work comes back"
        " with every version or not at all)",
    )


def _bag_sha512(bag: Path) -> dict[str, str]:
    """Every file of a staged bag (by path in the bag) with its sha512: as its sha512 manifests
    give it (their bytes verified with the rest of the bag), hashed where none lists the file
    (the tag manifests)."""
    claims: dict[str, str] = {}
    for tag in (False, True):
        found = manifest.read_manifests(bag, tag=tag).get("sha512")
        if found is not None:
            claims.update(found.entries)
    digests = {}
    for dirpath, _dirs, names in os.walk(bag):
        for name in names:
            path = Path(dirpath) / name
            relative = path.relative_to(bag).as_posix()
            digests[relative] = claims.get(relative) or _sha512_of(path)
    return digests


def _sha512_of(path: Path) -> str:
    hasher = hashlib.sha512()
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _fetch_content(store: Store, key: str, target: Path, sha256: str, sha512: str) -> int:
    """Stream a content file of a work's versions to ``target`` (flushed), checked against the
    sha512 its inventory's manifest gives and the sha256 of its fixity block; its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with store.open(key) as reader, target.open("xb") as out:
            digests, size = copy_hashed_with(reader, out, ("sha256", "sha512"))
    except ObjectMissing:
        raise _versions_problem(RecoveryOutcome.MISSING, f"{key} is absent") from None
    for algorithm, expected in (("sha512", sha512), ("sha256", sha256)):
        found = digests[algorithm]
        if found != expected:
            raise _versions_problem(
                RecoveryOutcome.DAMAGED,
                f"{key}: {algorithm} {found} at the location, {expected} in its inventory",
            )
    return size


def _link(source: Path, target: Path, sha256: str) -> None:
    """The bag's file ``source`` as a content file of the object: a hard link (the same bytes,
    as the ingest's version 1 shares them); a copy, checked against ``sha256``, where the file
    system makes none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    with source.open("rb") as reader, target.open("xb") as out:
        digest, _size = copy_hashed(reader, out)
    if digest != sha256:
        raise _versions_problem(
            RecoveryOutcome.DAMAGED, f"{target.name}: its copy from the bag differs from the bag"
        )


@dataclass
class _StagedObject:
    """A work's object rebuilt in staging: its folder, how many versions, and what was fetched
    for it (files, bytes)."""

    path: Path
    versions: int
    files: int
    bytes: int


def _object_stage(archive: Archive, work_id: str) -> Path:
    """Where a work's whole object is built: where a first version's is
    (:func:`cifa_ingest.versions.new_version.add_version`), which the versions' recovery knows
    as debris."""
    return archive.staging_dir / staging_name(work_id, 1)


def _recover_versions(
    store: Store,
    work_id: str,
    listing: dict[str, StoredObject],
    bag: Path,
    bag_sha256: dict[str, str],
    stage: Path,
    notes: list[str],
) -> _StagedObject:
    """Rebuild ``work_id``'s OCFL object in ``stage`` from ``versions/<id>/`` at the location
    (``listing``) and its bag, fetched and verified in ``bag`` (``bag_sha256``: each of its
    files' sha256); the module says what is checked. :class:`_BagNotRecovered` (missing or
    damaged) names the first file that is not right."""
    prefix = versions_copy.object_prefix(work_id)
    discard(stage)
    stage.mkdir(parents=True)
    expected: set[str] = set()
    files = total = 0

    def fetch_small(path: str) -> bytes:
        nonlocal files, total
        key = versions_copy.object_key(work_id, path)
        expected.add(key)
        found = listing.get(key)
        if found is None:
            raise _versions_problem(RecoveryOutcome.MISSING, f"{key} is absent")
        if found.size > _INVENTORY_LIMIT:
            raise _versions_problem(
                RecoveryOutcome.DAMAGED, f"{key}: {found.size} bytes, not an inventory's"
            )
        try:
            _sha, size = _fetch(store, key, stage / PurePosixPath(path), None)
        except _BagNotRecovered as exc:
            raise _versions_problem(exc.outcome, str(exc)) from None
        files, total = files + 1, total + size
        return (stage / PurePosixPath(path)).read_bytes()

    def inventory_of(folder: str) -> tuple[bytes, Inventory]:
        where = f"{prefix}{folder}".rstrip("/")
        data = fetch_small(f"{folder}/{INVENTORY}" if folder else INVENTORY)
        recorded = fetch_small(f"{folder}/{SIDECAR}" if folder else SIDECAR)
        try:
            check_sidecar(data, recorded, where)
            inventory = Inventory.from_bytes(data, where)
        except ObjectDamaged as exc:
            raise _versions_problem(RecoveryOutcome.DAMAGED, str(exc)) from None
        if inventory.id != work_id:
            raise _versions_problem(
                RecoveryOutcome.DAMAGED, f"{where}/{INVENTORY}: the inventory of {inventory.id!r}"
            )
        return data, inventory

    declaration = fetch_small(OBJECT_DECLARATION)
    if declaration != OBJECT_DECLARATION_TEXT:
        raise _versions_problem(
            RecoveryOutcome.DAMAGED, f"{prefix}{OBJECT_DECLARATION}: not an object's declaration"
        )
    data, inventory = inventory_of("")
    newest = version_name(inventory.head)
    # The newest version is the bag: every file, and the bytes of each.
    state, found = inventory.state(), _bag_sha512(bag)
    if state != found:
        odd = sorted(set(state) ^ set(found)) or sorted(p for p in state if state[p] != found[p])
        raise _versions_problem(
            RecoveryOutcome.DAMAGED,
            f"{prefix}{INVENTORY}: its newest version {newest} is not the recovered bag"
            f" ({odd[0]}{' …' if len(odd) > 1 else ''})",
        )
    # Each version's own inventory: the same history as the root's, up to that version.
    for number in sorted(inventory.versions):
        name = version_name(number)
        version_data, older = inventory_of(name)
        same = older.head == number and all(
            older.versions[n] == inventory.versions[n] for n in range(1, number + 1)
        )
        if not same or (number == inventory.head and version_data != data):
            raise _versions_problem(
                RecoveryOutcome.DAMAGED,
                f"{prefix}{name}/{INVENTORY}: not the history the object's inventory records",
            )
    # The content: from the location where the bag does not hold its bytes, else the bag's file.
    in_bag = {digest: path for path, digest in sorted(state.items(), reverse=True)}
    for digest, content_paths in sorted(inventory.manifest.items()):
        for content_path in content_paths:
            where = f"{prefix}{content_path}"
            match = _CONTENT_PATH.fullmatch(content_path)
            if (
                match is None
                or not _safe(content_path)
                or int(match.group(1)[1:]) not in inventory.versions
            ):
                raise _versions_problem(
                    RecoveryOutcome.DAMAGED, f"{prefix}{INVENTORY} names content {content_path!r}"
                )
            sha256 = inventory.fixity.get(content_path)
            if sha256 is None:
                raise _versions_problem(
                    RecoveryOutcome.DAMAGED, f"{where}: no sha256 in its inventory"
                )
            target = stage / PurePosixPath(content_path)
            try:
                if digest in in_bag:
                    path = in_bag[digest]
                    if bag_sha256.get(path) != sha256:
                        raise _versions_problem(
                            RecoveryOutcome.DAMAGED,
                            f"{where}: sha256 {sha256} in its inventory,"
                            f" {bag_sha256.get(path)} the bag's {path}",
                        )
                    _link(bag / PurePosixPath(path), target, sha256)
                    continue
                expected.add(where)
                size = _fetch_content(store, where, target, sha256, digest)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise _versions_problem(
                    RecoveryOutcome.DAMAGED,
                    f"{prefix}{INVENTORY} names {content_path!r} where another file is",
                ) from None
            files, total = files + 1, total + size
    stray = sorted(set(listing) - expected)
    if stray:
        more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
        notes.append(f"{work_id}: {stray[0]} is in no inventory; not copied{more}")
    return _StagedObject(stage, inventory.head, files, total)


def _place_object(archive: Archive, staged: _StagedObject, work_id: str) -> None:
    """Seal the object built in staging (read-only files, flushed) and move it into the
    storage root, ``objects/<id>``, with one rename: before it there is no object, after it the
    whole one."""
    root = StorageRoot(archive.objects_dir).ensure()
    seal_tree(staged.path)
    with root.locked(work_id):
        target = root.object_path(work_id)
        if target.exists():
            raise ArchiveStateError(f"{archive.relative(target)} already exists; not overwritten")
        os.rename(staged.path, target)
        fsync_dir(root.path)


def _cut_short(held: dict[str, StoredObject], work_id: str, bag: Path) -> bool:
    """Whether the location's versions of a work are a replication cut short before their
    declaration (written last), of a work whose bag is version 1: nothing of them is needed,
    the bag is the whole history. A later bag's versions without a declaration are not: they
    are the only copy of its earlier versions, and their absence is reported."""
    from cifa_ingest.revision import bag_version

    if versions_copy.object_key(work_id, OBJECT_DECLARATION) in held:
        return False
    try:
        return bag_version(bag) == 1
    except (CifaError, OSError, ValueError, KeyError, TypeError):
        return False


def _first_version(
    archive: Archive, work_id: str, placed_at: str, user: User | None, notes: list[str]
) -> int:
    """A work of which the location holds no versions (a copy made before locations held
    them): its recovered bag recorded as its version 1, named for ``user``, where the bag is a
    version 1; the versions its object then holds (0: none, and ``notes`` says why)."""
    from cifa_ingest.revision import bag_version, record_first_version

    none_there = f"{work_id}: the location holds none of its versions (versions/{work_id}/)"
    try:
        number = bag_version(archive.bag_path(work_id))
    except CifaError as exc:
        notes.append(f"{none_there}, and its bag's versions.json cannot be read ({exc}): no"
                     " version recorded")  # fmt: skip
        return 0
    if number > 1:
        earlier = "version 1 is" if number == 2 else f"versions 1 to {number - 1} are"
        notes.append(
            f"{none_there}, and its bag is version {number}: {earlier} not recovered, and no"
            " version is recorded (a version 1 made of this bag would be a false history);"
            " recover them from a location that holds them"
        )
        return 0
    if user is None:
        notes.append(f"{none_there}: no version recorded; the next ingest records its bag as"
                     " version 1")  # fmt: skip
        return 0
    record_first_version(archive, work_id, user, placed_at=placed_at)
    recorded = head(archive.objects_dir, work_id) or 0
    if recorded:
        notes.append(f"{none_there} (a copy made before locations held them): its bag recorded"
                     " as version 1")  # fmt: skip
    else:
        notes.append(f"{none_there}: its bag could not be recorded as version 1 (the log says"
                     " why); the next ingest tries again")  # fmt: skip
    return recorded


# ---------------------------------------------------------------------------------------------
# The whole archive


def recover_archive(
    location: FilesystemLocation | S3Location,
    target: Path,
    *,
    stores: Callable[[FilesystemLocation | S3Location], Store] = open_store,
    user: User | None = None,
) -> RecoveryReport:
    """Rebuild an archive at ``target`` (absent or empty) from ``location``, every bag with
    every version; see the module. ``user``: who records version 1 of a work of which the
    location holds no versions (none recorded without one). Raises :class:`InputError` for a
    ``target`` that is not empty (before anything is read) and :class:`RecoveryFailed` when
    nothing can be rebuilt (nothing is left in ``target`` then)."""
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
    by_work = _group(list(store.list(versions_copy.PREFIX)), top=versions_copy.PREFIX.strip("/"))
    records = ledger.bags()
    known = {PurePosixPath(r.bag_path).name for r in records}

    def with_versions(row: BagRecovery, staging: Path, staged: _Staged, placed_at: str) -> None:
        """The bag fetched into ``staging`` placed, and with it the work's object, rebuilt
        from its versions at the location (or its version 1 recorded from the bag where the
        location holds none); :class:`_BagNotRecovered` places neither."""
        row.files, row.bytes = staged.files, staged.bytes
        held = by_work.get(row.work_id, {})
        if held and _cut_short(held, row.work_id, staging):
            # The first replication after an upgrade, cut short before the declaration it
            # writes last: the bag is whole and version 1, so its version 1 comes from it.
            report.notes.append(
                f"{row.work_id}: versions/{row.work_id}/ has no declaration (a replication cut"
                " short); its bag is version 1, recorded from the bag"
            )
            held = {}
        stage = _object_stage(archive, row.work_id)
        try:
            rebuilt = None
            if held:
                rebuilt = _recover_versions(
                    store, row.work_id, held, staging, staged.sha256, stage, report.notes
                )
                row.files, row.bytes = row.files + rebuilt.files, row.bytes + rebuilt.bytes
            archive.place(staging, row.work_id)
            if rebuilt is not None:
                _place_object(archive, rebuilt, row.work_id)
                row.versions = rebuilt.versions
            else:
                row.versions = _first_version(archive, row.work_id, placed_at, user, report.notes)
        finally:
            discard(stage)

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
            staged = _recover_known(
                store, ledger, record, by_bag.get(name, {}), staging, report.notes
            )
            with_versions(row, staging, staged, record.placed_at)
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
            staged = _recover_unknown(store, name, by_bag[name], staging)
            placed_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            with_versions(row, staging, staged, placed_at)
            _register_from_bag(ledger, archive, name, placed_at)
        except _BagNotRecovered as exc:
            row.outcome, row.detail = exc.outcome, f"unknown to the snapshot; {exc}"
        _after(ledger, archive, location.name, row, report)
    for name in sorted(set(by_work) - known - set(by_bag)):
        report.notes.append(f"{versions_copy.PREFIX}{name}/: versions of no bag here; left")
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
         "versions": row.versions, "detail": row.detail},
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
    placed = [bag for bag in report.bags if bag.ok]
    if placed:
        versioned = sum(1 for bag in placed if bag.versions)
        lines.append(
            f"versions: {sum(bag.versions for bag in placed)} recovered, of {versioned} of the"
            f" {len(placed)} works recovered"
        )
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
