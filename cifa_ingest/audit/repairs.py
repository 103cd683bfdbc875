"""What an audit found, repaired: ``cifa audit`` and the ``fixity-audit`` flow, unless told only
to look (``--no-repair``, ``repair=False``), hand the works whose copies it found missing or
damaged to repair (:func:`cifa_ingest.storage.repair.repair_work`), then say what remains.

Why it works as it does:

- **Repair decides, with its own reading.** An audit's finding is where to look, not what to
  write: repair re-hashes every copy of each work named (the primary and every location holding
  one) against the ledger's chain and replaces a missing or damaged file only from a copy that
  verifies, checked again once written; with no good copy anywhere nothing is overwritten. So it
  may also mend copies at other locations than the one audited: they are listed among the
  repairs too (``repaired``: work, location, file, what it was, the copy it came from, its
  sha256).
- **What remains is what the report says.** A problem of the audited copy leaves the report
  once repair mended that file, or verified the whole copy good (a cheap check's "recorded
  damaged" included); every other problem stays, with why it was not repaired, and the audit
  fails (exit 1, a Failed run). A file of the audited copy that repair found wanting and could
  not mend, though the audit had not named it, is added. Problems repair cannot mend (a file
  added to a bag, an object without its retention, a location that does not answer) stay as
  they were. What repair left wanting at *other* copies is not this audit's verdict: it is in
  the ledger (their copies recorded missing or damaged) and the audit log, for their own audits.
- **Every version too.** A version's stored file the primary's audit found damaged or missing
  is mended from the work's bag where the bag holds the same bytes, read and verified first
  (:func:`cifa_ingest.versions.repair.mend_from_bag`); what the bag cannot give (an earlier
  version's own file, an inventory) is handed to repair, which mends it from a storage
  location's copy of the versions that verifies (``versions/<id>/``), as it mends a bag. A
  location's audit that finds a file of its copy of the versions missing or damaged hands the
  work to repair as it does for the bag's. The primary's object is named ``primary (versions)``
  among the repairs.
- **The primary is audited again after its repair.** A primary bag that repair mended is
  checked once more, whole, as the audit checks (:func:`~cifa_ingest.audit.fixity_audit.audit_bag`,
  recorded in the audit log): the log's last word on the bag is then what it is now, and what
  repair does not see (an extra file in the payload) is still named.
- **A ledger whose chain is broken stops repair** (:class:`LedgerTampered`): nothing is read or
  written, the problems stay, and the report says why (``repair_refused``).
- **With no storage location declared there is nothing to repair from**: the audit is as it
  always was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, Ledger
from cifa_ingest.audit.fixity_audit import (
    AuditReport,
    BagAudit,
    Problem,
    ProblemKind,
    audit_bag,
    record_check,
)
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, S3Location
from cifa_ingest.storage.repair import (
    PRIMARY_VERSIONS,
    LedgerTampered,
    Repaired,
    RepairProblemKind,
    RepairReport,
    repair_work,
)
from cifa_ingest.storage.store import Store
from cifa_ingest.storage.stores import open_store

log = logging.getLogger("cifa_ingest.audit")

Location = FilesystemLocation | S3Location
Repair = Callable[[Archive, list[str], Sequence[Location]], RepairReport]

#: Problems that repair cannot mend: nothing to replace from another copy. Every other kind
#: names a bag (or a file of it) whose copy may be wanting.
NOT_REPAIRABLE = frozenset(
    {
        ProblemKind.UNREGISTERED_BAG,
        ProblemKind.LOCATION_UNREACHABLE,
        ProblemKind.COPY_UNLOCKED,
        ProblemKind.UNEXPECTED_FILE,
        # A version's stored file, an inventory: not a bag's file (a bag's repair writes into
        # bags/, never into the versions store); a stored file is mended after it, from the
        # bag's verified bytes or a location's copy of the versions (_repair_versions).
        ProblemKind.VERSION_CHECKSUM_MISMATCH,
        ProblemKind.VERSION_MISSING_FILE,
        ProblemKind.VERSION_UNEXPECTED_FILE,
        ProblemKind.VERSION_INVENTORY_INVALID,
        ProblemKind.HEAD_MISMATCH,
    }
)
#: The kinds a location's copy is repaired for.
OF_A_COPY = frozenset({ProblemKind.COPY_MISSING, ProblemKind.COPY_DAMAGED})


def affected(report: AuditReport) -> list[str]:
    """The works whose audited copy the audit found missing or damaged, in the audit's order."""
    primary = report.location == PRIMARY
    wanting = {
        problem.bag
        for bag in report.bags
        for problem in bag.problems
        if (problem.kind not in NOT_REPAIRABLE if primary else problem.kind in OF_A_COPY)
    }
    return [bag.bag for bag in report.bags if bag.bag in wanting]


def repair_found(
    archive: Archive,
    report: AuditReport,
    locations: Sequence[Location],
    *,
    stores: Callable[[Location], Store] = open_store,
    repair: Repair | None = None,
    recheck: Callable[[Archive, BagRecord], BagAudit] = audit_bag,
) -> RepairReport | None:
    """Repair the works of ``report`` whose audited copy is missing or damaged, from every copy
    at ``locations`` and the primary, and change ``report`` to say what was repaired and what
    remains (the module says how). ``repair`` repairs (pipelines/ passes it as a Prefect task;
    by default :func:`repair_work` with ``stores``), ``recheck`` audits a repaired primary bag
    again. Returns repair's own report (its runs' as one, where the versions needed a run of
    their own), None when nothing was repaired or repair refused."""
    repaired = _repair_bags(archive, report, locations, stores, repair, recheck)
    if report.location == PRIMARY and not report.repair_refused:
        more = _repair_versions(archive, report, locations, stores, repair, recheck, repaired)
        if more is not None:
            repaired = more if repaired is None else _merged(repaired, more)
    return repaired


def _merged(first: RepairReport, then: RepairReport) -> RepairReport:
    """Two repair runs of one audit as one report."""
    first.works += [w for w in then.works if w not in first.works]
    first.copies += then.copies
    first.repaired += then.repaired
    first.problems += then.problems
    first.unreachable.update(then.unreachable)
    first.seconds += then.seconds
    return first


def _repair_bags(
    archive: Archive,
    report: AuditReport,
    locations: Sequence[Location],
    stores: Callable[[Location], Store],
    repair: Repair | None,
    recheck: Callable[[Archive, BagRecord], BagAudit],
) -> RepairReport | None:
    repaired = _run_repair(archive, report, affected(report), locations, stores, repair)
    if repaired is None:
        return None
    report.repaired = [_row(done, _found_in_versions(report)) for done in repaired.repaired]
    if report.location == PRIMARY:
        _settle_primary(archive, report, repaired, recheck)
    else:
        _settle_copies(report, repaired)
    return repaired


#: A version's stored file the audit found wanting: mended from the newest bag where it holds
#: the same bytes (:mod:`cifa_ingest.versions.repair`), else from a location's copy.
OF_A_VERSION = frozenset({ProblemKind.VERSION_CHECKSUM_MISMATCH, ProblemKind.VERSION_MISSING_FILE})
#: What of a work's versions repair may mend from a location's copy of them: a stored file the
#: bag could not give, an inventory or its digest file.
FROM_A_LOCATION = OF_A_VERSION | {ProblemKind.VERSION_INVENTORY_INVALID}


def _repair_versions(
    archive: Archive,
    report: AuditReport,
    locations: Sequence[Location],
    stores: Callable[[Location], Store],
    repair: Repair | None,
    recheck: Callable[[Archive, BagRecord], BagAudit],
    earlier: RepairReport | None,
) -> RepairReport | None:
    """Each version's stored file found damaged or missing, mended from the work's bag once its
    own repair is done (its bytes verified against the inventory, never taken on trust); what
    the bag cannot give, and a damaged inventory, by repair from a location's copy of the
    versions (unless this audit's repair of the bags, ``earlier``, already checked the work's
    every copy); each work mended audited again; what could not be, explained. Returns the
    report of that repair, if one ran."""
    from cifa_ingest.versions.repair import mend_from_bag

    ledger = Ledger(archive.ledger_path)
    mended_in: set[str] = set()
    left_by_bag: dict[str, dict[str, str]] = {}
    for bag in report.bags:
        wanting = [p for p in bag.problems if p.kind in FROM_A_LOCATION and p.path]
        if not wanting or any(p.kind not in NOT_REPAIRABLE for p in bag.problems):
            for problem in wanting:  # the bag itself is wanting: not a source to mend from
                if problem.kind in OF_A_VERSION:
                    _explained(problem, "not repaired: the work's bag is not sound itself")
            continue
        stored = sorted({p.path for p in wanting if p.kind in OF_A_VERSION and p.path})
        mended, left = mend_from_bag(
            archive.objects_dir, bag.bag, archive.bag_path(bag.bag), stored
        )
        was = {p.path: str(p.kind) for p in wanting}
        for done in mended:
            log.info("%s @ %s: %s (%s) repaired from bags/%s/%s", bag.bag, PRIMARY_VERSIONS,
                     done.content_path, was[done.content_path], bag.bag, done.source)  # fmt: skip
            report.repaired.append({
                "id": bag.bag, "location": PRIMARY_VERSIONS, "path": done.content_path,
                "source": f"bags/{bag.bag}/{done.source}", "sha256": done.sha256,
                "was": was[done.content_path],
            })  # fmt: skip
        if mended:
            mended_in.add(bag.bag)
        inventories = any(p.kind not in OF_A_VERSION for p in wanting)
        if left or inventories:
            left_by_bag[bag.bag] = left
    checked = set(earlier.works) if earlier is not None else set()
    found = _found_in_versions(report)
    from_locations = _repair_from_locations(
        archive, report, sorted(w for w in left_by_bag if w not in checked), locations, stores,
        repair, found,
    )  # fmt: skip
    for bag in report.bags:
        if bag.bag not in left_by_bag and bag.bag not in mended_in:
            continue
        left = dict(left_by_bag.get(bag.bag, {}))
        ran = next(
            (r for r in (from_locations, earlier) if r is not None and bag.bag in r.works), None
        )
        if ran is not None:
            if ran is from_locations:  # what it did (a recovery's roll-forward too), seen again
                mended_in.add(bag.bag)
            left.update(
                (path or "", why) for path, why in _left(ran, bag.bag, PRIMARY_VERSIONS).items()
            )
        record = ledger.bag(bag.bag)
        if bag.bag in mended_in and record is not None:
            _check_again(archive, bag, record, recheck)
        for problem in bag.problems:
            if problem.kind in FROM_A_LOCATION and problem.path is not None:
                why = left.get(problem.path) or left.get("")
                if why is not None:
                    _explained(problem, why)
    return from_locations


def _repair_from_locations(
    archive: Archive,
    report: AuditReport,
    work_ids: list[str],
    locations: Sequence[Location],
    stores: Callable[[Location], Store],
    repair: Repair | None,
    found: dict[tuple[str, str], str],
) -> RepairReport | None:
    """Repair of ``work_ids``, whose versions the bag could not mend, from every copy of them
    (:func:`repair_work`: a location's copy of the versions that verifies); its repairs listed
    among the audit's, a file of the primary's versions with what the audit ``found`` it (by
    work and path), as the ones mended from the bag. None when there is nothing to repair or
    nowhere to repair it from."""
    repaired = _run_repair(archive, report, work_ids, locations, stores, repair)
    if repaired is not None:
        report.repaired += [_row(done, found) for done in repaired.repaired]
    return repaired


def _run_repair(
    archive: Archive,
    report: AuditReport,
    work_ids: list[str],
    locations: Sequence[Location],
    stores: Callable[[Location], Store],
    repair: Repair | None,
) -> RepairReport | None:
    """:func:`repair_work` (or ``repair``) of ``work_ids`` from every copy, each file it
    repaired logged; None when there is nothing to repair, nowhere to repair it from, or the
    ledger's chain is broken (then ``report.repair_refused`` says so: nothing was touched)."""
    if not work_ids or not locations:
        return None

    def default(archive: Archive, ids: list[str], where: Sequence[Location]) -> RepairReport:
        return repair_work(archive, ids, where, stores=stores)

    try:
        repaired = (repair or default)(archive, work_ids, locations)
    except LedgerTampered as exc:
        report.repair_refused = str(exc)
        log.error("repair refused: %s", exc)
        return None
    for done in repaired.repaired:
        log.info("%s @ %s: %s (%s) repaired from %s", done.work_id, done.location, done.path,
                 done.was, done.source)  # fmt: skip
    return repaired


def _found_in_versions(report: AuditReport) -> dict[tuple[str, str], str]:
    """What the audit found each file of the primary's versions it names (by work and path)."""
    return {
        (bag.bag, problem.path): str(problem.kind)
        for bag in report.bags
        for problem in bag.problems
        if problem.kind in FROM_A_LOCATION and problem.path
    }


def _row(done: Repaired, found: dict[tuple[str, str], str]) -> dict[str, Any]:
    """One file repair replaced, as the audit's ``repaired`` lists it: a file of the primary's
    versions with what the audit ``found`` it, as the ones mended from the bag."""
    row = done.as_dict()
    if done.location == PRIMARY_VERSIONS:
        row["was"] = found.get((done.work_id, done.path), row["was"])
    return row


def _left(repaired: RepairReport, work_id: str, location: str) -> dict[str | None, str]:
    """Why each file of a copy was not repaired (by path; None: the copy as a whole)."""
    left: dict[str | None, str] = {}
    for problem in repaired.problems:
        if problem.work_id == work_id and problem.location in (location, "*"):
            detail = f": {problem.detail}" if problem.detail else ""
            left[problem.path or None] = f"not repaired: {problem.kind}{detail}"
    return left


def _explained(problem: Problem, why: str) -> Problem:
    problem.detail = f"{problem.detail}; {why}" if problem.detail else why
    return problem


def _settle_copies(report: AuditReport, repaired: RepairReport) -> None:
    """A location's audit: each problem of a copy mended, gone; each other, explained."""
    location = report.location
    checks = {c.work_id: c for c in repaired.copies if c.location == location}
    mended = {(r.work_id, r.path) for r in repaired.repaired if r.location == location}
    for bag in report.bags:
        if not any(p.kind in OF_A_COPY for p in bag.problems):
            continue
        check = checks.get(bag.bag)
        left = _left(repaired, bag.bag, location)
        whole = check is not None and check.good and not left
        kept: list[Problem] = []
        for problem in bag.problems:
            if problem.kind not in OF_A_COPY:
                kept.append(problem)
            elif whole or (bag.bag, problem.path) in mended:
                continue
            else:
                why = left.get(problem.path) or left.get(None) or (
                    "not repaired: repair could not read this copy" if check is None
                    else "not repaired"
                )  # fmt: skip
                kept.append(_explained(problem, why))
        named = {p.path for p in kept}
        if check is not None:  # found wanting by repair's full reading, not by the audit
            for path, kind in sorted(check.bad.items()):
                if path not in named and (bag.bag, path) not in mended:
                    found = (ProblemKind.COPY_MISSING if kind is RepairProblemKind.COPY_MISSING
                             else ProblemKind.COPY_DAMAGED)  # fmt: skip
                    why = left.get(path) or "not repaired"
                    kept.append(Problem(bag.bag, found, path, f"found by repair; {why}"))
        bag.problems = kept


def _check_again(
    archive: Archive,
    bag: BagAudit,
    record: BagRecord,
    recheck: Callable[[Archive, BagRecord], BagAudit],
) -> None:
    """A primary bag (and its versions) something was mended in, audited again, whole, and
    recorded in the audit log: its problems are now that check's, the log's last word what
    the bag is now."""
    again = recheck(archive, record)
    record_check(archive, again)
    bag.problems, bag.object = again.problems, again.object
    bag.bytes_read += again.bytes_read
    bag.seconds += again.seconds


def _settle_primary(
    archive: Archive,
    report: AuditReport,
    repaired: RepairReport,
    recheck: Callable[[Archive, BagRecord], BagAudit],
) -> None:
    """The primary's audit: each bag repair mended there audited again (its problems now the
    new check's), each other's problems explained."""
    ledger = Ledger(archive.ledger_path)
    mended = {r.work_id for r in repaired.repaired if r.location in (PRIMARY, PRIMARY_VERSIONS)}
    for bag in report.bags:
        if bag.intact or bag.bag not in repaired.works:
            continue
        record = ledger.bag(bag.bag)
        if bag.bag in mended and record is not None:
            _check_again(archive, bag, record, recheck)
            continue
        left = _left(repaired, bag.bag, PRIMARY)
        check = next((c for c in repaired.copies
                      if c.work_id == bag.bag and c.location == PRIMARY), None)  # fmt: skip
        if check is not None and not check.bad and not left:
            nothing = "not repaired: every file the ledger records verified, nothing to replace"
        else:
            nothing = "not repaired"
        for problem in bag.problems:
            if problem.kind not in NOT_REPAIRABLE:
                _explained(problem, left.get(problem.path) or left.get(None) or nothing)
