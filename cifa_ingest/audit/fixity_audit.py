"""The fixity audit: re-read and re-hash every file of every bag, and say, with evidence, which
files are not the files the archive ingested.

Nothing is trusted: not sizes, not modification times, not an earlier result; every byte is read
(:mod:`cifa_ingest.bag.fixity`, flat memory). Each problem is one of :class:`ProblemKind`. A bag
that is valid on its own but whose manifests differ from those the ledger recorded at ingest was
rewritten with its manifests (a forgery, or an unrecorded change): ``ledger_mismatch``. A damaged
FFV1 master is decoded with slice CRC checks to name the damaged frames
(:mod:`cifa_ingest.audit.damage`). Every check of every bag goes into the hash-chained audit log
(:mod:`cifa_ingest.archive.audit_log`), its outcome one of
:class:`~cifa_ingest.archive.ledger.CheckOutcome`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cifa_ingest import __version__
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, CheckOutcome, Ledger
from cifa_ingest.audit import damage as inspect
from cifa_ingest.bag import check as bagcheck
from cifa_ingest.bag.package import payload_files
from cifa_ingest.storage.locations import PRIMARY
from cifa_ingest.versions.storage_root import StorageRoot

if TYPE_CHECKING:
    from cifa_ingest.audit.versions_audit import ObjectCheck


class ProblemKind(StrEnum):
    """What is wrong, in the words ``cifa audit --json``, the audit log and the reports publish
    (docs/reference/kinds.md): a program that reads them matches these spellings, so they never
    change. Underscores, unlike the hyphens of the ledger's other words: so they were published."""

    #: A payload file's content differs from its manifest.
    CHECKSUM_MISMATCH = "checksum_mismatch"
    #: Listed in a manifest, absent on disk.
    MISSING_FILE = "missing_file"
    #: In the payload, listed in no manifest.
    UNEXPECTED_FILE = "unexpected_file"
    #: A tag file differs from its tag manifest.
    TAG_CHECKSUM_MISMATCH = "tag_checksum_mismatch"
    #: Payload-Oxum disagrees with the payload.
    OXUM_MISMATCH = "oxum_mismatch"
    #: Not a valid bag (bagit.txt, encodings, …).
    INVALID_STRUCTURE = "invalid_structure"
    #: Self-consistent, but not what was ingested: a forgery, or an unrecorded change.
    LEDGER_MISMATCH = "ledger_mismatch"
    #: Registered in the ledger, gone from disk.
    MISSING_BAG = "missing_bag"
    #: Under bags/, unknown to the ledger.
    UNREGISTERED_BAG = "unregistered_bag"
    #: A work's OCFL object under objects/ whose work the ledger does not know.
    UNREGISTERED_OBJECT = "unregistered_object"
    #: A storage location's copy of a bag lacks a file (the location answered, without it).
    COPY_MISSING = "copy_missing"
    #: A storage location's copy of a file differs from the ledger's digests (or size).
    COPY_DAMAGED = "copy_damaged"
    #: A storage location did not answer (a disk not mounted, a server down, credentials
    #: refused): nothing is said of its copies, and nothing is marked damaged for it.
    LOCATION_UNREACHABLE = "location_unreachable"
    #: An object of a location whose settings ask for Object Lock is held under no retention:
    #: it could be deleted or overwritten.
    COPY_UNLOCKED = "copy_unlocked"
    #: A content file of a work's versions (its OCFL object) differs from the sha512 (or the
    #: sha256) its inventory records: every version whose state has the file is damaged.
    VERSION_CHECKSUM_MISMATCH = "version_checksum_mismatch"
    #: A content file the object's inventory lists is gone (or unreadable), or the object's
    #: declaration is.
    VERSION_MISSING_FILE = "version_missing_file"
    #: A file in the object that its inventory does not list and OCFL does not define.
    VERSION_UNEXPECTED_FILE = "version_unexpected_file"
    #: An inventory of the object (the root's or a version's) is missing, does not match its
    #: digest file, is not an inventory of this object, or disagrees with the others.
    VERSION_INVENTORY_INVALID = "version_inventory_invalid"
    #: bags/<id>, intact on its own, is not the work's newest version: a file differs, is
    #: absent, or is more.
    HEAD_MISMATCH = "head_mismatch"


class AuditMode(StrEnum):
    """Which bags an audit checks: every one (``cifa audit --full``, the default), or those not
    verified within a maximum age (``--max-age DAYS``). The report's ``mode`` is ``full``, or
    ``rolling`` followed by the age, ``rolling (max age 90 days)``."""

    FULL = "full"
    ROLLING = "rolling"

    @staticmethod
    def described(max_age_days: float | None) -> str:
        """The report's ``mode``: what ``max_age_days`` makes of the audit."""
        if max_age_days is None:
            return str(AuditMode.FULL)
        return f"{AuditMode.ROLLING} (max age {max_age_days:g} days)"


#: Validator codes (cifa_ingest.bag.check) -> audit kinds; every other error is invalid_structure.
_KIND_OF_CODE = {
    "E011": ProblemKind.CHECKSUM_MISMATCH,
    "E009": ProblemKind.MISSING_FILE,
    "E010": ProblemKind.UNEXPECTED_FILE,
    "E013": ProblemKind.TAG_CHECKSUM_MISMATCH,
    "E014": ProblemKind.OXUM_MISMATCH,
}
SOFTWARE = f"cifa-ingest {__version__}"


@dataclass
class Problem:
    bag: str
    kind: ProblemKind
    path: str | None = None
    detail: str | None = None
    damaged_frames: list[int] | None = None
    #: The evidence, where there is a value to compare: the algorithm (``sha256``, ``sha512``,
    #: or ``Payload-Oxum``), the value the bag's manifest (or the ledger, at ingest) holds, and
    #: the value found (None: the file is gone). A file wrong in both manifests is one problem,
    #: with the first manifest's (sha256's) evidence.
    algorithm: str | None = None
    expected: str | None = None
    found: str | None = None
    #: For a problem of the work's versions: its OCFL object's folder (``objects/cifa-0001``;
    #: ``path`` is then relative to it, a content path such as ``v1/content/data/x.mkv``), and
    #: the versions the problem damages (``["v1", "v2"]``: every version whose state has the
    #: damaged file; the version whose folder holds a file or inventory; none for the object
    #: as a whole). None for a problem of a bag.
    object: str | None = None
    versions: list[str] | None = None


@dataclass
class BagAudit:
    bag: str
    problems: list[Problem] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0
    #: Files checked (a location's deep check counts them for its preservation event).
    files: int = 0
    #: Where the check ran, when not in the audit's own process (a Dask worker): provenance.
    worker: str = ""
    #: The check of the work's versions (its OCFL object), made with the bag's; None where the
    #: versions were not checked (a storage location's audit).
    object: ObjectCheck | None = None

    @property
    def intact(self) -> bool:
        return not self.problems


class CheckDepth(StrEnum):
    """How an audit reads its copies (``check`` of ``cifa audit --json``). The primary's audit
    is always ``deep``; a storage location's is ``cheap`` unless ``--deep``."""

    #: The location listed and compared with the ledger: every file there, its size, and the
    #: store's own checksum where it keeps one (S3). No byte is read: a flipped bit in a file
    #: of the right size on a disk that keeps no checksum is not seen.
    CHEAP = "cheap"
    #: Every byte read and hashed (sha256 and sha512) against the ledger's chain.
    DEEP = "deep"


@dataclass
class AuditReport:
    archive: str
    mode: str
    started: str
    finished: str = ""
    bags: list[BagAudit] = field(default_factory=list)
    unregistered: list[Problem] = field(default_factory=list)
    not_reached: list[str] = field(default_factory=list)
    #: Problems of the location as a whole (it did not answer), not of one bag's copy.
    location_problems: list[Problem] = field(default_factory=list)
    #: Which copy was audited: ``primary`` (the archive's ``bags/``) or a storage location's name.
    location: str = PRIMARY
    check: CheckDepth = CheckDepth.DEEP
    #: Files of copies repaired after this audit (:mod:`cifa_ingest.audit.repairs`), each as
    #: :meth:`cifa_ingest.storage.repair.Repaired.as_dict`; empty for an audit that only looks.
    repaired: list[dict[str, Any]] = field(default_factory=list)
    #: Why repair did not run though problems were found (the ledger's chain broken), or None.
    repair_refused: str | None = None

    @property
    def problems(self) -> list[Problem]:
        return (
            self.location_problems
            + [p for bag in self.bags for p in bag.problems]
            + self.unregistered
        )

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "location": self.location,
            "check": str(self.check),
            "mode": self.mode,
            "started": self.started,
            "finished": self.finished,
            "checked": len(self.bags),
            "intact": sum(1 for bag in self.bags if bag.intact),
            "problems": [asdict(p) for p in self.problems],
            "objects": [bag.object.as_dict(bag.bag) for bag in self.bags if bag.object],
            "not_reached": self.not_reached,
            "repaired": self.repaired,
            "repair_refused": self.repair_refused,
            "bytes_read": sum(bag.bytes_read for bag in self.bags),
            "seconds": round(sum(bag.seconds for bag in self.bags), 2),
            "ok": self.ok,
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def audit_bag(archive: Archive, record: BagRecord) -> BagAudit:
    """Check one registered work: its bag (structure, completeness, every checksum, and the
    ledger), then its versions (:func:`cifa_ingest.audit.versions_audit.audit_object`: every
    version of its OCFL object, and that an intact bag is the newest version). The bag's files
    that are also version 1's (the same inodes) are read once, for both."""
    from cifa_ingest.audit import versions_audit

    started = time.monotonic()
    result = BagAudit(bag=record.work_id)
    bag_dir = archive.root / record.bag_path
    known = versions_audit.KnownDigests()
    before: dict[str, versions_audit.Identity] = {}
    if not bag_dir.is_dir():
        result.problems.append(Problem(record.work_id, ProblemKind.MISSING_BAG, record.bag_path))
    else:
        before = versions_audit.identities(bag_dir)
        report = bagcheck.validate(bag_dir)
        known = versions_audit.digests_of_bag_check(bag_dir, before, report)
        _bag_problems(archive, record, bag_dir, report, result)
    intact = bag_dir.is_dir() and not result.problems
    checked = versions_audit.audit_object(
        archive, record.work_id, known, bag_dir if intact else None, before
    )
    result.object = checked
    result.problems += checked.problems
    result.bytes_read += checked.bytes_read
    result.seconds = time.monotonic() - started
    return result


def _bag_problems(
    archive: Archive, record: BagRecord, bag_dir: Path, report: bagcheck.Report, result: BagAudit
) -> None:
    """The bag's problems, from its validation's ``report`` and the ledger."""
    result.bytes_read = report.bytes_checked
    seen: set[tuple[ProblemKind, str | None]] = set()
    for finding in report.errors:  # one problem per file, though each manifest names it
        kind = _KIND_OF_CODE.get(finding.code, ProblemKind.INVALID_STRUCTURE)
        if (kind, finding.path) not in seen:
            seen.add((kind, finding.path))
            result.problems.append(
                Problem(
                    record.work_id,
                    kind,
                    finding.path,
                    finding.message,
                    algorithm=finding.algorithm,
                    expected=finding.expected,
                    found=finding.found,
                )
            )
    if {k for k, _ in seen} & {ProblemKind.MISSING_FILE, ProblemKind.UNEXPECTED_FILE}:
        # A file gone or added changes the Payload-Oxum too: that is not a problem of its own.
        result.problems = [p for p in result.problems if p.kind != ProblemKind.OXUM_MISMATCH]
    if report.valid:
        ingested = Ledger(archive.ledger_path).bag_files(record.work_id)
        result.problems += _ledger_mismatches(bag_dir, record, ingested)
    for problem in result.problems:
        in_master = (problem.path or "").startswith("data/master/")
        if problem.kind == ProblemKind.CHECKSUM_MISMATCH and in_master:
            master = bag_dir / str(problem.path)
            if master.suffix == ".mkv" and master.is_file():
                problem.damaged_frames = [d.frame for d in inspect.inspect_master(master).damaged]


def _ledger_mismatches(
    bag_dir: Path, record: BagRecord, ingested: list[tuple[str, int, str | None, str | None]]
) -> list[Problem]:
    """A self-consistent bag whose manifests are not the ones registered at ingest. Where the
    ledger holds each payload file's digests at ingest, the rewritten files are named too."""
    problems = []
    if ingested:
        now = {
            path: (size, sha256, sha512) for path, size, sha256, sha512 in payload_files(bag_dir)
        }
        then = {path: (size, sha256, sha512) for path, size, sha256, sha512 in ingested}
        for path in sorted(set(now) | set(then)):
            was, is_ = then.get(path), now.get(path)
            if is_ != was:
                detail = (
                    "added since ingest" if was is None
                    else "removed since ingest" if is_ is None
                    else "differs from ingest"
                )  # fmt: skip
                problems.append(
                    Problem(
                        record.work_id, ProblemKind.LEDGER_MISMATCH, path, detail,
                        algorithm="sha256", expected=was[1] if was else None,
                        found=is_[1] if is_ else None,
                    )
                )  # fmt: skip
    present = {p.name for p in bag_dir.glob("*manifest-*.txt")}
    for name in sorted(present | set(record.manifest_digests)):
        manifest = bag_dir / name
        expected = record.manifest_digests.get(name)
        actual = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
        if expected != actual:
            detail = "not registered at ingest" if expected is None else "differs from ingest"
            problems.append(
                Problem(
                    record.work_id, ProblemKind.LEDGER_MISMATCH, name, detail,
                    algorithm="sha256", expected=expected, found=actual,
                )
            )  # fmt: skip
    return problems


def plan(
    records: list[BagRecord], last_verified: dict[str, str], max_age_days: float | None, now: str
) -> list[BagRecord]:
    """The bags to check, oldest verification first (never verified: by placement time). With
    ``max_age_days``, only those not verified within that many days."""

    def verified(record: BagRecord) -> str:
        return last_verified.get(record.work_id, record.placed_at)

    ordered = sorted(records, key=lambda r: (verified(r), r.work_id))
    if max_age_days is None:
        return ordered
    cutoff = (dt.datetime.fromisoformat(now) - dt.timedelta(days=max_age_days)).isoformat()
    return [r for r in ordered if verified(r) < cutoff or r.work_id not in last_verified]


def unregistered_bags(archive: Archive, records: list[BagRecord]) -> list[Problem]:
    """Folders in bags/ the ledger does not know. bags/ is listed first and the ledger read after
    it: a bag enters bags/ only once the ledger holds its placement, so an ingest placing bags
    while the audit runs is never mistaken for an intruder (``records``, read when the audit
    began, would not know the bags placed since)."""
    if not archive.bags_dir.is_dir():
        return []
    entries = sorted(archive.bags_dir.iterdir())
    ledger = Ledger(archive.ledger_path)
    known = {Path(r.bag_path).name for r in [*records, *ledger.bags()]}
    known |= set(ledger.pending_placements())
    strangers = [
        Problem(entry.name, ProblemKind.UNREGISTERED_BAG, archive.relative(entry))
        for entry in entries
        if entry.name not in known
    ]
    return strangers + unregistered_objects(archive, known)


def unregistered_objects(archive: Archive, known: set[str]) -> list[Problem]:
    """Objects in objects/ (the versions store) of works the ledger does not know (``known``,
    read after the listing, as for bags/): the versions of a work the archive does not vouch
    for. An object is made only for a registered work, so none is ever mistaken for one being
    made."""
    ids = StorageRoot(archive.objects_dir).ids()
    return [
        Problem(work_id, ProblemKind.UNREGISTERED_OBJECT, f"objects/{work_id}")
        for work_id in ids
        if work_id not in known
    ]


def audit_archive(
    archive: Archive,
    *,
    max_age_days: float | None = None,
    budget_seconds: float | None = None,
    budget_bytes: int | None = None,
    check: Callable[[Archive, BagRecord], BagAudit] = audit_bag,
    workers: int = 2,
    overlap_budget: bool = False,
) -> AuditReport:
    """Audit the archive: every bag (full), or the bags not verified in ``max_age_days``
    (rolling), oldest first, within an optional time or byte budget. Every check is logged.
    ``check`` audits one bag (pipelines/ passes it as a Prefect task, on a Dask cluster with
    ``workers`` its threads and ``overlap_budget``: :func:`check_in_order`)."""
    ledger, log = Ledger(archive.ledger_path), AuditLog(archive.ledger_path)
    records = ledger.bags()
    mode = AuditMode.described(max_age_days)
    report = AuditReport(archive=str(archive.root), mode=mode, started=_now())
    todo = plan(records, log.last_verified(), max_age_days, report.started)
    done: dict[str, BagAudit] = {}
    # Bags are checked `workers` at a time: a bag's one large file cannot keep every core busy
    # (its sha256 and sha512 run side by side, the slower one sets the pace), two bags can.
    report.not_reached = check_in_order(
        todo,
        lambda record: check(archive, record),
        lambda _record, checked: _finish(checked, log, done),
        workers=workers,
        budget_seconds=budget_seconds,
        budget_bytes=budget_bytes,
        overlap_budget=overlap_budget,
        pooled=True,
    )
    report.bags = [done[r.work_id] for r in todo if r.work_id in done]
    report.unregistered = unregistered_bags(archive, records)
    report.finished = _now()
    return report


_Checked = TypeVar("_Checked")


def check_in_order(
    todo: Sequence[BagRecord],
    check: Callable[[BagRecord], _Checked],
    finish: Callable[[BagRecord, _Checked], int],
    *,
    workers: int = 1,
    budget_seconds: float | None = None,
    budget_bytes: int | None = None,
    overlap_budget: bool = False,
    pooled: bool = False,
) -> list[str]:
    """Check the bags of ``todo`` in its order, ``workers`` at a time, and give each result to
    ``finish`` (in the caller's thread, in ``todo``'s order), which returns the bytes it read;
    returns the ids of the bags a budget left unchecked.

    A budget is looked at before each bag is started: once the time or the bytes are spent, no
    other bag is started. With a budget, bags are checked one at a time, so that the budget
    stops the audit exactly where it is spent; with ``overlap_budget`` (the audits on a Dask
    cluster, whose workers would otherwise wait) ``workers`` at a time still, the bags in flight
    when it is spent being finished. Each check runs with a copy of the caller's context (a
    Prefect task needs its flow's): in a thread of a pool of ``workers``, or, with one worker
    and not ``pooled``, in the caller's own thread (Ctrl-C then stops it at once)."""
    width = max(1, workers)
    one_by_one = (budget_seconds is not None or budget_bytes is not None) and not overlap_budget
    started, read = time.monotonic(), 0
    not_reached: list[str] = []
    if width == 1 and not pooled:
        for index, record in enumerate(todo):
            if _spent(started, read, budget_seconds, budget_bytes):
                return [r.work_id for r in todo[index:]]
            read += finish(record, contextvars.copy_context().run(check, record))
        return not_reached
    in_flight: deque[tuple[BagRecord, Future[_Checked]]] = deque()
    with ThreadPoolExecutor(max_workers=width) as pool:
        for index, record in enumerate(todo):
            while len(in_flight) >= width or (one_by_one and in_flight):
                finished, future = in_flight.popleft()
                read += finish(finished, future.result())
            if _spent(started, read, budget_seconds, budget_bytes):
                not_reached = [r.work_id for r in todo[index:]]
                break
            context = contextvars.copy_context()  # a Prefect task needs its flow's context
            in_flight.append((record, pool.submit(context.run, check, record)))
        while in_flight:
            finished, future = in_flight.popleft()
            read += finish(finished, future.result())
    return not_reached


def _spent(
    started: float, read: int, budget_seconds: float | None, budget_bytes: int | None
) -> bool:
    over_time = budget_seconds is not None and time.monotonic() - started >= budget_seconds
    return over_time or (budget_bytes is not None and read >= budget_bytes)


def record_check(archive: Archive, checked: BagAudit) -> None:
    """Record a check of a primary bag made outside :func:`audit_archive` (the check after a
    repair) in the audit log, as the audit records its own."""
    _finish(checked, AuditLog(archive.ledger_path), {})


def _finish(checked: BagAudit, log: AuditLog, done: dict[str, BagAudit]) -> int:
    """Record one finished bag check in the audit log; returns the bytes it read."""
    done[checked.bag] = checked
    log.record(
        checked.bag,
        _now(),
        SOFTWARE,
        CheckOutcome.INTACT if checked.intact else CheckOutcome.DAMAGED,
        [asdict(p) for p in checked.problems],
        checked.bytes_read,
        checked.seconds,
    )
    return checked.bytes_read


def table(report: AuditReport) -> str:
    """The audit for people: problems first, then the counts."""
    lines = []
    for problem in report.problems:
        where = f" {problem.path}" if problem.path else ""
        frames = ""
        if problem.damaged_frames:
            shown = ", ".join(map(str, problem.damaged_frames[:20]))
            frames = f" (damaged frames: {shown}{' …' if len(problem.damaged_frames) > 20 else ''})"
        why = f": {problem.detail}" if problem.kind == ProblemKind.LOCATION_UNREACHABLE else ""
        if problem.object is not None:  # a problem of the versions: where, and which
            named = ", ".join(problem.versions or []) or "none"
            why = f" in {problem.object} (versions: {named})"
        lines.append(f"{problem.bag}: {problem.kind}{where}{frames}{why}")
    for done in report.repaired:
        lines.append(
            f"{done['id']} @ {done['location']}: {done['path']} ({done['was']}) repaired from"
            f" {done['source']}"
        )
    if report.repair_refused:
        lines.append(f"repair refused: {report.repair_refused}")
    summary = report.as_dict()
    where = "" if report.location == PRIMARY else f"{report.location} ({report.check} check): "
    repaired = len(report.repaired)
    lines.append(
        f"{where}{summary['mode']} audit: {summary['checked']} bags checked,"
        f" {summary['intact']} intact,"
        f" {len(report.problems)} problem{'s' * (len(report.problems) != 1)},"
        + (f" {repaired} file{'s' * (repaired != 1)} repaired," if repaired else "")
        + f" {summary['bytes_read'] / 1e6:.1f} MB read"
        f" in {summary['seconds']:.1f} s"
    )
    objects = [bag.object for bag in report.bags if bag.object is not None]
    if objects:
        versions = sum(o.versions or 0 for o in objects)
        held = [o for o in objects if o.versions is not None]
        lines.append(
            f"versions: {len(held)} object{'s' * (len(held) != 1)} checked,"
            f" {versions} version{'s' * (versions != 1)},"
            f" {sum(o.bytes_read for o in objects) / 1e6:.1f} MB read for them"
            f" ({sum(o.bytes_reused for o in objects) / 1e6:.1f} MB shared with their bags,"
            " not read twice)"
        )
        none = [bag.bag for bag in report.bags if bag.object is not None and not bag.object.object]
        if none:
            lines.append(
                f"no versions recorded yet (the next ingest records them): {', '.join(none)}"
            )
    if report.not_reached:
        lines.append(f"not reached within the budget: {len(report.not_reached)} bags")
    return "\n".join(lines)
