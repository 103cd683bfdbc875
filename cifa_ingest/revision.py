"""A preserved work's new version, when its catalogue entry no longer agrees with it (issue 18).

The catalogue lives on after a work is preserved: a Chinese title is corrected, a filmmaker
narrows or withdraws permission. Each run of the ingest compares every preserved work's entry
with its bag (:mod:`cifa_ingest.catalogue.drift`); where they differ, :func:`revise_work` makes
the next version: the bag revised in staging (:mod:`cifa_ingest.bag.revise`: kilobytes, the
payload hard-linked), recorded in the versions store (:func:`cifa_ingest.versions.add_version`),
and then made the archive's ``bags/<id>``, the ledger vouching for it.

The order is what makes it safe to kill at any instant. The versions store is the truth, and its
one rename is the moment the version exists:

1. the revised bag is built and validated in ``staging/<id>.v<N>`` (nothing else changed);
2. the store records it as version N (one rename: before it, the work is at N-1; after, at N);
3. ``bags/<id>`` and the revised bag exchange names (one ``renameat2``, or two renames);
4. the ledger records the new bag's manifests, and the work's copies at the storage locations
   become ``pending``: they hold version N-1 until replication brings them version N.

:func:`reconcile` runs before every revision and on every run's triage of a preserved work, and
finishes what a crash left: a ``bags/<id>`` older than the store's head (killed after 2) is made
again from the store, hard links to its content (:func:`cifa_ingest.versions.export.link_version`);
a ``bags/<id>`` absent while the bag it was is in ``staging/<id>.replaced`` (killed between the
two renames) too; a ledger still vouching for the bag before (killed after 3) is brought up to
date, once the bag's manifests are proved to be the head version's own (their sha512 in the
store's inventory). A revised bag left in staging by a run killed before 2 is debris, removed.
A bag missing with no such sign is no interrupted revision: it is reported, never made again
quietly (the audit says so, and a repair restores it).

A work whose permission no longer covers preservation is revised all the same: its withdrawal or
narrowing must be recorded (a PREMIS rights statement in the new version) even though nothing more
will be fetched for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from cifa_ingest.archive import slots
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, Ledger
from cifa_ingest.bag import manifest, package
from cifa_ingest.bag.revise import revise
from cifa_ingest.catalogue import drift
from cifa_ingest.catalogue.model import Permission, Work
from cifa_ingest.config import Settings, locks_dir
from cifa_ingest.errors import ArchiveStateError, CifaError, UnchangedVersion
from cifa_ingest.fetch.capture import captured_source_keys
from cifa_ingest.metadata.versions_record import Version, VersionChange, read_versions
from cifa_ingest.versions import StorageRoot, User, add_version
from cifa_ingest.versions.export import link_version
from cifa_ingest.versions.history import read_object
from cifa_ingest.versions.inventory import Inventory

log = logging.getLogger(__name__)


def version_user(settings: Settings, person: str | None = None) -> User:
    """Who a version names as its OCFL ``user``: the person on whose word it was made (a
    command's ``--agent``), else the organisation (the ingest, the catalogue); with the
    organisation's contact address as OCFL asks (a URI: ``mailto:``), where the settings give
    one: how to reach whoever answers for it."""
    email = settings.organisation.contact_email.strip()
    return User(person or settings.organisation.name, f"mailto:{email}" if email else None)


def record_first_version(
    archive: Archive, work_id: str, user: User, placed_at: str | None = None
) -> None:
    """Make the placed bag of ``work_id`` the first version of its OCFL object in
    ``ARCHIVE/objects/`` (:mod:`cifa_ingest.versions`), where it has none yet: right after its
    placement, or for a bag placed before the archive kept versions (its version dated by
    ``placed_at``, the ledger's). The version's files are hard links to the bag's (sealed
    read-only): no byte is stored twice; every digest of the bag's manifests is verified on the
    way in. A failure here never un-preserves the work: the bag is placed and registered, the
    failure is logged, and the next run tries again (so does a run after a crash)."""
    store = StorageRoot(archive.objects_dir)
    if store.object_path(work_id).is_dir():
        return
    try:
        number = bag_version(archive.bag_path(work_id))
    except (CifaError, OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: its bag's history does not read (%s); no version recorded", work_id, exc)
        return
    if number > 1:
        # A bag that is version N > 1 (its object lost, or a bag restored by hand) made
        # version 1 would be a false history, and replication would spread it over the
        # locations' true one: it is left for recovery from a location that holds them.
        log.warning(
            "%s: its bag is version %d but the archive holds none of its versions; none"
            " recorded (recover them from a storage location: cifa recover)",
            work_id,
            number,
        )
        return
    created = None
    if placed_at is not None:
        try:
            created = dt.datetime.fromisoformat(placed_at)
        except ValueError:
            created = None
    message = "ingestion: the work's bag as placed in the archive" + (
        f" on {placed_at}" if placed_at else ""
    )
    try:
        add_version(
            store,
            work_id,
            archive.bag_path(work_id),
            message=message,
            user=user,
            staging_dir=archive.staging_dir,
            created=created if created is not None and created.tzinfo else None,
            link=True,
        )
    except UnchangedVersion:  # another process recorded it meanwhile
        return
    except (CifaError, OSError) as exc:
        log.warning(
            "%s: its first version could not be recorded (%s); the next run tries again",
            work_id,
            exc,
        )
        return
    log.info(
        "%s: recorded as version 1 in %s", work_id, archive.relative(store.object_path(work_id))
    )


@dataclass(frozen=True)
class NewVersion:
    """A version this run made: its number, what changed and the message (as ``cifa history``
    shows them)."""

    number: int
    change: VersionChange
    message: str


def bag_version(bag_dir: Path) -> int:
    """The version a bag is (its ``metadata/versions.json``; 1 for a bag made before it)."""
    return read_versions(bag_dir)[-1].number


def access_withheld(bag_dir: Path) -> str | None:
    """Why the work's access copies may not be given out, by the permission the bag records
    (``metadata/permission.json``), or None where they may: the words of the run report and of
    ``cifa export --for-access``. An unreadable record withholds."""
    if read_versions(bag_dir)[-1].change is VersionChange.DEACCESSION:
        return "deaccessioned"
    try:
        data = (bag_dir / drift.Record.PERMISSION.file).read_bytes()
    except OSError as exc:
        return f"the permission record cannot be read ({type(exc).__name__})"
    return Permission.withheld_by_record(data)


def placement_slot(archive: Archive, settings: Settings) -> slots.Slots:
    """The slot placements hold: one change of ``bags/`` at a time, across processes."""
    return slots.Slots(locks_dir(settings, archive.root) / "placement", 1, "the placement slot")


def _manifest_sha512s(bag_dir: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha512(path.read_bytes()).hexdigest()
        for path in manifest.manifest_paths(bag_dir)
    }


def _discard_debris(archive: Archive, work_id: str) -> None:
    """What a killed revision left in staging: a revised bag never recorded (``<id>.v<N>``),
    a half-built one (``.<id>.v<N>.building-…``, ``.<id>.v<N>.link-…``), a bag renamed aside
    (``<id>.replaced``). A work id has no dot, so no other work's folder matches."""
    for pattern in (f"{work_id}.v*", f".{work_id}.v*", f"{work_id}.replaced"):
        for debris in archive.staging_dir.glob(pattern):
            shutil.rmtree(debris, ignore_errors=True)


def tag_manifest_digests(bag_dir: Path) -> dict[str, str]:
    """The sha512 of each of a bag's tag manifests: what identifies the whole bag."""
    return {
        path.name: hashlib.sha512(path.read_bytes()).hexdigest()
        for path in sorted(bag_dir.glob("tagmanifest-*.txt"))
    }


def version_of_bag(bag_dir: Path, inventory: Inventory) -> int | None:
    """Which version of the object ``bag_dir`` is (the newest, where two are alike), by its tag
    manifests: the files that name every other file's digest, so that their sha512 identify
    the whole bag, whatever its size. None where it is none of them (or has no tag manifest)."""
    found = tag_manifest_digests(bag_dir)
    if not found:
        return None
    for number in range(inventory.head, 0, -1):
        state = inventory.state(number)
        if all(state.get(name) == digest for name, digest in found.items()):
            return number
    return None


def reconcile(archive: Archive, ledger: Ledger, work_id: str) -> bool:
    """Bring ``bags/<id>`` and the ledger to the versions store's head, finishing a revision a
    crash interrupted (the module says how); True when something was done. Nothing is done
    for a work with no versions yet, nor for a bag lost with no sign of a revision (the
    audit's business). Raises ArchiveStateError where the bag is none of the store's versions
    and not the ledger's either (never made by this program: an audit says more)."""
    store = StorageRoot(archive.objects_dir)
    record = ledger.bag(work_id)
    if record is None or not store.object_path(work_id).is_dir():
        return False
    _obj, inventory = read_object(store, work_id)
    newest = inventory.head
    bag_dir = archive.bag_path(work_id)
    changed = False
    if not bag_dir.is_dir():
        if not (archive.staging_dir / f"{work_id}.replaced").is_dir():
            return False  # not a revision interrupted: a bag lost, the audit's business
        current = None
    else:
        current = version_of_bag(bag_dir, inventory)
        if current is None:
            if package.summarise_bag(bag_dir).manifest_digests == record.manifest_digests:
                return False  # the ledger's own bag, unlike the store: the audit says so
            raise ArchiveStateError(
                f"{archive.relative(bag_dir)}: its manifests are neither the ledger's nor those"
                " of any version in the versions store; run an audit"
            )
    if current is None or current < newest:
        _discard_debris(archive, work_id)
        rebuilt = link_version(store, work_id, newest, archive.staging_dir / f"{work_id}.v{newest}")
        archive.replace_bag(rebuilt, work_id)
        log.warning(
            "%s: %s made again from version %d of the versions store (a run was interrupted"
            " while making it the head)",
            work_id,
            archive.relative(bag_dir),
            newest,
        )
        changed = True
    if package.summarise_bag(bag_dir).manifest_digests != record.manifest_digests:
        state = inventory.state(newest)
        if any(state.get(name) != digest for name, digest in _manifest_sha512s(bag_dir).items()):
            raise ArchiveStateError(
                f"{archive.relative(bag_dir)}: its manifests are not those of version {newest}"
                " in the versions store; run an audit"
            )
        record_head(ledger, record, bag_dir, newest)
        changed = True
    _discard_debris(archive, work_id)
    return changed


def record_head(ledger: Ledger, record: BagRecord, bag_dir: Path, number: int) -> None:
    """The ledger vouches for ``bags/<id>``, now version ``number``; copies become pending."""
    summary = package.summarise_bag(bag_dir)
    ledger.record_new_head(
        replace(
            record,
            source_keys=list(dict.fromkeys([*record.source_keys, *captured_source_keys(bag_dir)])),
            payload_oxum=summary.payload_oxum,
            manifest_digests=summary.manifest_digests,
            software=package.SOFTWARE_AGENT,
        ),
        package.payload_files(bag_dir),
        detail=f"holds a version before {number}: replication brings it version {number}",
    )


def commit(
    archive: Archive, ledger: Ledger, settings: Settings, staged: Path, person: str | None = None
) -> Version:
    """Make ``staged`` (a complete, validated bag of a work's next version in ``staging/``,
    carrying its history: ``metadata/versions.json`` one entry more, as
    :func:`cifa_ingest.bag.revise.revise` makes it) the work's newest version and its
    ``bags/<id>``: recorded in the versions store, exchanged with the bag there, vouched for by
    the ledger (steps 2 to 4 of the module). The caller holds the placement slot
    (:func:`placement_slot`) and ran :func:`reconcile`; the work must be registered. On a
    failure before the store's rename, the staged bag is removed and the work is as it was;
    after it, :func:`reconcile` finishes. ``person``: on whose word, for the version's OCFL
    user (:func:`version_user`). Returns the version recorded."""
    store = StorageRoot(archive.objects_dir)
    made = read_versions(staged)[-1]
    work_id = staged.name.split(".")[0]
    record = ledger.bag(work_id)
    if record is None:
        shutil.rmtree(staged, ignore_errors=True)
        raise ArchiveStateError(f"{work_id} is not registered in the ledger")
    try:
        add_version(
            store,
            work_id,
            staged,
            message=f"{made.change}: {made.message}",
            user=version_user(settings, person),
            staging_dir=archive.staging_dir,
            link=True,
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    archive.replace_bag(staged, work_id)
    record_head(ledger, record, archive.bag_path(work_id), made.number)
    return made


def revise_work(
    work: Work,
    collection: str | None,
    archive: Archive,
    ledger: Ledger,
    settings: Settings,
    *,
    agent: str,
) -> NewVersion | None:
    """Make the next version of the preserved ``work`` where its catalogue entry (in
    ``collection``) differs from its bag's records, and make it the archive's ``bags/<id>``;
    None where they agree (or the work has no versions yet: :func:`record_first_version` comes
    first). ``agent``: on whose word (the catalogue). Raises CifaError when the version cannot
    be made; the work is then as it was."""
    bag_dir = archive.bag_path(work.id)
    if drift.differences(work, collection, bag_dir) == []:
        return None
    store = StorageRoot(archive.objects_dir)
    with placement_slot(archive, settings).hold(work.id):
        if not store.object_path(work.id).is_dir():
            return None
        reconcile(archive, ledger, work.id)
        if ledger.bag(work.id) is None or not drift.differences(work, collection, bag_dir):
            return None
        staged = revise(
            bag_dir,
            archive.staging_dir,
            work,
            collection,
            settings.organisation,
            agent=agent,
        )
        made = commit(archive, ledger, settings, staged)
    log.info("%s: version %d (%s): %s", work.id, made.number, made.change, made.message)
    return NewVersion(made.number, made.change, made.message)
