"""A changed source fetched again, as a new version of the work: a PREMIS ``capture`` (issue 18;
``cifa recapture ID``, ``cifa watch --recapture``).

A source changes after the archive preserved it: a re-upload, a better resolution, the missing
part of a multi-part work appears (the source watch, :mod:`cifa_ingest.audit.watch`, records it
``changed``). The archive keeps both captures: the work gets a new version holding the new
capture, and the earlier version keeps the earlier one (the versions store keeps every
version's files).

The re-capture is an ingest of the work's catalogue entry, step for step
(:func:`cifa_ingest.preserve.run_job`): the same staging folder, the fetch with its source policy,
completeness proof, degraded check (below the work's own earlier capture included), resume and
host pauses, the normalisation and its lossless proof, the bag with the catalogue's descriptive
and permission records, validated in full. Only its last step differs: instead of placing a
first bag, the new bag becomes the work's next version (:func:`_make_version`):

* payload files byte for byte the head's are hard links to the head's (nothing stored twice);
* ``metadata/versions.json`` the head's history and one entry more (a ``capture``: why, on
  whose word), ``metadata/premis.xml`` the head's record carried on, every earlier object and
  event as it was, and the new files' objects and the capture's events
  (:mod:`cifa_ingest.metadata.premis`); the tag manifests; validated in full
  (:func:`cifa_ingest.bag.revise.seal_version`);
* then, holding the placement slot, after :func:`cifa_ingest.revision.reconcile`, and only if
  the work is still at the version it was fetched for, :func:`cifa_ingest.revision.commit` makes
  it the work's newest version and its ``bags/<id>``.

A source that gives the very originals of the head (every file, every sha512) makes nothing:
the fetch stops before the normalisation (:class:`~cifa_ingest.preserve.UnchangedSource`).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger, Outcome, SourceStatus
from cifa_ingest.bag import manifest, package
from cifa_ingest.bag.revise import check_agent, next_version, seal_version
from cifa_ingest.catalogue.model import Catalogue, Work
from cifa_ingest.config import Settings
from cifa_ingest.errors import ArchiveStateError, InputError
from cifa_ingest.metadata.versions_record import Version, VersionChange, read_versions
from cifa_ingest.preserve import Job, WorkReport, run_job
from cifa_ingest.renormalise import Head, commit_next, payload_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recaptured:
    """A capture version made: the version, and the payload files it replaced and brought."""

    work_id: str
    version: Version
    #: The new version's originals (paths in the bag).
    originals: list[str]
    #: The payload files of the version before that this one no longer has as they were.
    replaced: list[str]
    #: The payload files new in this version (the others are the version before's, linked).
    made: list[str]
    proof: list[str] = field(default_factory=list)
    #: Why the capture is degraded (:mod:`cifa_ingest.fetch.degraded`), or None.
    degraded: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "version": self.version.number,
            "change": str(self.version.change),
            "message": self.version.message,
            "agent": self.version.agent,
            "created": self.version.created,
            "originals": self.originals,
            "replaced": self.replaced,
            "made": self.made,
            "proof": self.proof,
            "degraded": self.degraded,
        }


@dataclass(frozen=True)
class Attempt:
    """What a re-capture did: the run's report of the work, and the version, where one was made."""

    report: WorkReport
    made: Recaptured | None

    @property
    def ok(self) -> bool:
        return self.made is not None

    def as_dict(self) -> dict[str, Any]:
        """``cifa recapture --json``'s document (and each of ``cifa watch --recapture``'s)."""
        if self.made is not None:
            return {**self.made.as_dict(), "ok": True, "outcome": str(self.report.outcome)}
        return {
            "id": self.report.id,
            "version": self.report.version,
            "ok": False,
            "outcome": str(self.report.outcome),
            "error": self.report.error,
            "error_kind": self.report.error_kind,
        }


def catalogue_entry(
    catalogues: Sequence[tuple[Path, Catalogue]], work_id: str
) -> tuple[Work, str | None]:
    """The work ``work_id`` of the catalogues and its collection; InputError where none has it
    (a re-capture fetches the catalogue's source address, and records its entry)."""
    for _path, catalogue in catalogues:
        for work in catalogue.works:
            if work.id == work_id:
                return work, catalogue.collection.name if catalogue.collection else None
    named = ", ".join(str(path) for path, _catalogue in catalogues) or "none given"
    raise InputError(
        f"{work_id}: not in the catalogues ({named}): a re-capture fetches the source address"
        " the catalogue gives"
    )


def check_work(work: Work, head_bag: Path) -> None:
    """InputError where the preserved ``work`` (its bag ``head_bag``) may not be captured again:
    deaccessioned, a permission that does not cover preservation, no source address."""
    if read_versions(head_bag)[-1].change is VersionChange.DEACCESSION:
        raise InputError(f"{work.id}: deaccessioned; nothing is fetched for it again")
    if not work.is_permitted:
        raise InputError(
            f"{work.id}: its permission ({work.permission.status}) does not cover preservation"
            " in the catalogue: nothing is fetched"
        )
    if not work.has_source_address:
        raise InputError(f"{work.id}: no source address in the catalogue")


def why(ledger: Ledger, work_id: str) -> str:
    """The default message: what the source watch last found changed in the work's sources,
    where it did."""
    from cifa_ingest.audit.watch import changes_summary

    found = []
    for check in ledger.latest_source_checks([work_id]):
        if check.status == SourceStatus.CHANGED:
            summary = changes_summary(check.details.get("changes") or {})
            found.append(
                f"source {check.source_index}: watch found 'changed' on {check.checked_at[:10]}"
                + (f": {summary}" if summary else "")
            )
    if not found:
        return "a re-capture of the source"
    return f"a re-capture: the source changed ({'; '.join(found)})"


def recapture_work(
    archive: Archive,
    settings: Settings,
    work: Work,
    collection: str | None,
    *,
    agent: str,
    message: str | None = None,
    allow_private_sources: bool = False,
    run_id: str | None = None,
) -> Attempt:
    """Fetch the catalogue's ``work`` (in ``collection``) again and make the capture the work's
    next version (the module says how). Raises InputError where the work may not be captured
    again (not preserved, no version yet, :func:`check_work`, an agent that is no name),
    before anything is fetched; ArchiveStateError where its bag is missing or unreadable; every
    other failure is the attempt's report (``failed``, or ``deferred`` for a host this run
    found blocking), nothing of the archive changed."""
    agent = check_agent(agent)
    built_from = payload_head(archive, settings, work.id, "a re-capture")
    check_work(work, built_from.bag)
    entries, problems = manifest.payload_entries(built_from.bag)
    if any(problem.is_error for problem in problems):
        raise ArchiveStateError(f"{work.id}: its manifests cannot be read; run an audit")
    originals = {p: d["sha512"] for p, d in entries.items() if p.startswith("data/original/")}
    ledger = Ledger(archive.ledger_path)
    text = message.strip() if message and message.strip() else why(ledger, work.id)
    made: list[Recaptured] = []

    def finish(job: Job) -> WorkReport:
        made.append(_make_version(job, built_from, agent, text))
        version = made[-1].version
        report = WorkReport(
            id=work.id,
            title=work.display_title,
            outcome=Outcome.NEW_VERSION,
            bag=archive.relative(archive.bag_path(work.id)),
            bytes=package.summarise_bag(archive.bag_path(work.id)).bytes_by_role,
            version=version.number,
            change=f"{version.change}: {version.message}",
        )
        if made[-1].degraded:
            report.error = f"degraded capture: {made[-1].degraded}"
        return report

    report = run_job(
        work,
        archive,
        settings,
        collection,
        finish=finish,
        allow_private_sources=allow_private_sources,
        follows=(built_from.number, originals),
        run_id=run_id or uuid.uuid4().hex,
    )
    if report.version is None:
        report.version = built_from.number
    return Attempt(report, made[-1] if made and report.outcome is Outcome.NEW_VERSION else None)


def _make_version(job: Job, built_from: Head, agent: str, message: str) -> Recaptured:
    """Make the job's fresh, validated bag the work's next version (the module says how)."""
    from cifa_ingest.preserve import _degraded_reasons

    assert job.capture is not None and job.normalised is not None
    work_id, bag, head_bag = job.work.id, job.bag_dir, built_from.bag
    before, _problems = manifest.payload_entries(head_bag)
    after, problems = manifest.payload_entries(bag)
    if any(problem.is_error for problem in problems):
        raise ArchiveStateError(f"{work_id}: the new bag's manifests cannot be read")
    same = sorted(p for p, d in after.items() if before.get(p, {}).get("sha512") == d["sha512"])
    for path in same:  # the head's own file: stored once
        (bag / path).unlink()
        os.link(head_bag / path, bag / path)
    history, version = next_version(head_bag, VersionChange.CAPTURE, message, agent)
    info = (bag / "bag-info.txt").read_bytes()
    seal_version(bag, head_bag, job.settings.organisation, [*history, version], info)
    made = Recaptured(
        work_id=work_id,
        version=version,
        originals=sorted(p for p in after if p.startswith("data/original/")),
        replaced=sorted(p for p, d in before.items() if after.get(p) != d),
        made=sorted(set(after) - set(same)),
        proof=[
            f"{group.stem}: {group.proof.summary}" for group in job.normalised.groups if group.proof
        ],
        degraded=_degraded_reasons(worse)
        if (worse := [s for s in job.capture.sources if s.is_degraded])
        else None,
    )
    commit_next(
        job.archive, job.settings, built_from, bag, version.number, agent,
        during="it was captured again for", command="recapture",
    )  # fmt: skip
    log.info("%s: version %d (%s): %s", work_id, version.number, version.change, message)
    return made
