"""One work's way through the pipeline, as data: triage, then the steps in order.

    triage  → (nothing to do: not permitted, awaiting a source, already preserved)
    fetch → normalise → package (bag + validation) → place (atomic move + ledger)

Every step takes and returns a :class:`Job` (the work in staging) and is a plain function, so the
pipeline runs without Prefect (:func:`preserve_work`) and the Prefect flows in ``pipelines/``
wrap the very same steps as tasks. Whatever fails, the staging folder is removed and the archive
is left as it was.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest import __version__, deaccession, revision
from cifa_ingest.archive import slots
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, Ledger, Outcome, now
from cifa_ingest.bag import package
from cifa_ingest.catalogue import drift
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import Settings, format_policy_path, locks_dir, mediaconch_policy_path
from cifa_ingest.errors import (
    ArchiveStateError,
    CifaError,
    FetchError,
    FFmpegError,
    InsufficientSpace,
    PackagingError,
    ProofFailed,
    ToolStalled,
)
from cifa_ingest.fetch import degraded, pauses
from cifa_ingest.fetch import ytdlp as fetch
from cifa_ingest.fetch.capture import (
    Capture,
    FetchedSource,
    SourceKey,
    captured_source_keys,
    captured_sources,
)
from cifa_ingest.fetch.failures import FetchErrorKind, block_reason
from cifa_ingest.fetch.pauses import HostPause
from cifa_ingest.fetch.resume import Partials
from cifa_ingest.metadata import dublin_core, premis
from cifa_ingest.normalise import encode as normalise
from cifa_ingest.normalise.format_policy import load_policy
from cifa_ingest.revision import version_user
from cifa_ingest.tools import mediainfo, runner
from cifa_ingest.versions import head

log = logging.getLogger(__name__)


# ``Outcome``, what a run did to a work, is the ledger's word (cifa_ingest.archive.ledger),
# imported above; ``cifa_ingest.preserve.Outcome`` is the same class.

#: Outcomes whose words for people differ from their published spelling.
OUTCOME_WORDS = {Outcome.PRESERVED_DEGRADED: "preserved (degraded)"}


class Step(StrEnum):
    """A work's steps, by the names its error messages (``disk full during fetch: …``) and the
    Prefect tasks (``pipelines/flows.py``) give them: ``start`` makes the staging folder, then
    each of :data:`STEPS` (its function is named ``<step>_step``), then ``place``."""

    START = "start"
    FETCH = "fetch"
    NORMALISE = "normalise"
    PACKAGE = "package"
    PLACE = "place"

    @classmethod
    def of(cls, step: Callable[..., object]) -> Step:
        """The step a step function is (``fetch_step``: ``fetch``)."""
        return cls(step.__name__.removesuffix("_step"))


class StepErrorKind(StrEnum):
    """Why a work failed, as stored in the ledger (``work_outcomes.error_kind``) and shown in
    ``--json``, the reports and ``cifa status``, for a failure the fetch did not classify itself
    (a fetch failure carries its own kind, :class:`~cifa_ingest.errors.FetchError`'s)."""

    #: A full disk, a quota or the file size limit, in any step (the message says which).
    DISK_FULL = "disk-full"
    #: ffmpeg or ffprobe failed, stalled or was killed.
    NORMALISATION = "normalisation"
    #: The master is not lossless against its source.
    PROOF_FAILED = "proof-failed"
    #: The archive's disk cannot hold the master (estimated before encoding).
    DISK_SPACE = "disk-space"
    #: The bag could not be built or did not validate.
    PACKAGING = "packaging"
    #: The archive holds something unexpected for this work.
    ARCHIVE = "archive"
    #: One of our errors of no more precise kind.
    ERROR = "error"
    #: A bug, or a library raising what it does not document.
    UNEXPECTED = "unexpected"


@dataclass
class WorkReport:
    """What happened to one work in one run: the line of the summary table."""

    id: str
    title: str
    outcome: Outcome
    bag: str | None = None
    error: str | None = None
    #: Why it failed: the fetch's own kind, or the later steps'.
    error_kind: FetchErrorKind | StepErrorKind | None = None
    bytes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Where it was preserved (host and process, and the Dask worker on a cluster): set by the
    #: nightly run's dispatch, so that a failure on one machine of a cluster can be traced.
    worker: str | None = None
    #: The newest version of the work in the archive's versions store, where it has one.
    version: int | None = None
    #: What the version this run made records (``new-version``): its change and message.
    change: str | None = None
    #: Why the work's access copies may not be given out (its permission, as its newest
    #: version records it), or None where they may.
    access_withheld: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "outcome": str(self.outcome),
            "bag": self.bag,
            "error": self.error,
            "error_kind": self.error_kind,
            "bytes": self.bytes,
            "storage_factor": round(self.storage_factor, 3) if self.storage_factor else None,
            "seconds": round(self.seconds, 2),
            "worker": self.worker,
            "version": self.version,
            "change": self.change,
            "access_withheld": self.access_withheld,
        }

    @property
    def storage_factor(self) -> float | None:
        """Master bytes / original bytes: what the format policy's choice costs in storage."""
        original, master = self.bytes.get("original"), self.bytes.get("master")
        return master / original if original and master else None


@dataclass
class Job:
    """A work in progress in its staging folder, passed from step to step."""

    work: Work
    archive: Archive
    settings: Settings
    collection: str | None
    allow_private_sources: bool
    staging: Path
    #: The run the work is part of: a host paused in it stops the work before its media.
    run_id: str | None = None
    capture: Capture | None = None
    normalised: normalise.Normalised | None = None
    started: float = field(default_factory=time.monotonic)
    #: A re-capture's (:mod:`cifa_ingest.recapture`): the version of the work it would follow,
    #: and that version's originals (sha512 by path in the bag). A capture of the same bytes
    #: stops at the fetch (:class:`UnchangedSource`): nothing is normalised.
    follows: tuple[int, dict[str, str]] | None = None

    @property
    def bag_dir(self) -> Path:
        return self.staging / "bag"

    @property
    def metadata_dir(self) -> Path:
        return self.staging / "metadata"


def _report(work: Work, outcome: Outcome, **kwargs: object) -> WorkReport:
    return WorkReport(id=work.id, title=work.display_title, outcome=outcome, **kwargs)  # type: ignore[arg-type]


def _bag_report(work: Work, archive: Archive, outcome: Outcome, seconds: float) -> WorkReport:
    bag_dir = archive.bag_path(work.id)
    summary = package.summarise_bag(bag_dir)
    return _report(
        work,
        outcome,
        bag=archive.relative(bag_dir),
        bytes=summary.bytes_by_role,
        seconds=seconds,
        version=newest_version(archive, work.id),
    )


def newest_version(archive: Archive, work_id: str) -> int | None:
    """The number of ``work_id``'s newest version in the archive's versions store; None where
    it has none yet, or its object cannot be read (an audit's business, not the report's)."""
    try:
        return head(archive.objects_dir, work_id)
    except (CifaError, OSError) as exc:
        log.warning("%s: its versions cannot be read: %s", work_id, exc)
        return None


def catalogue_triage(work: Work) -> WorkReport | None:
    """The report for a work the catalogue does not let us fetch (no permission, no address),
    or None. Nothing is asked of the archive or the network."""
    if not work.is_permitted:
        status = work.permission.status
        reason = f"permission {status}"
        if status == "granted":
            reason = "permission granted, but it does not cover preservation"
        return _report(work, Outcome.NOT_PERMITTED, error=reason)
    if not work.has_source_address:
        return _report(work, Outcome.AWAITING_SOURCE, error="no source address in the catalogue")
    return None


def needs_a_run(work: Work, archive: Archive) -> bool:
    """Whether ``work`` is for :func:`preserve_work` at all: it may be fetched, or it is
    preserved already (its catalogue entry, a withdrawn permission included, may make a new
    version: :mod:`cifa_ingest.revision`). The others are decided by the catalogue alone
    (:func:`catalogue_triage`), and nothing of the archive is asked."""
    if work.may_be_fetched:
        return True
    if not archive.ledger_path.is_file():
        return False
    return Ledger(archive.ledger_path).bag(work.id) is not None


def triage(
    work: Work,
    archive: Archive,
    ledger: Ledger,
    settings: Settings | None = None,
    collection: str | None = None,
) -> WorkReport | None:
    """Decide, without any network request, whether ``work`` needs preserving.

    Returns the report when there is nothing to do, None when the work must be fetched. A bag
    found in place but not registered yet (a run killed between the rename into bags/ and the
    registration) is validated and registered, never fetched again: from its placement's journal
    entry in the ledger (source keys included), else from the bag itself. A journal entry whose
    bag never reached bags/ (killed before the rename) is dropped. With ``settings``, a preserved
    work whose versions are not recorded yet (placed before the archive kept versions, or killed
    before its first was recorded) gets its first
    (:func:`cifa_ingest.revision.record_first_version`), and one whose catalogue entry (in
    ``collection``) differs from its bag gets a new version (:func:`_preserved`), whatever its
    permission now says."""
    bag_dir = archive.bag_path(work.id)
    record = ledger.bag(work.id)
    if record is None or settings is None:
        decided = catalogue_triage(work)
        if decided is not None:
            return decided
    pending = ledger.pending_placement(work.id) if record is None else None
    if pending is not None and not bag_dir.exists():
        ledger.abandon_placement(work.id)
        log.info("%s: dropped a placement an interrupted run began but never made", work.id)
    if record is not None:
        if settings is not None:
            return _preserved(work, collection, archive, ledger, settings, record.placed_at)
        if not bag_dir.is_dir():
            return _report(
                work,
                Outcome.FAILED,
                error=f"registered in the ledger but {record.bag_path} is missing; run an audit",
            )
        return _bag_report(work, archive, Outcome.ALREADY_PRESERVED, 0.0)
    if bag_dir.exists():
        started = time.monotonic()
        try:
            package.validate_bag(bag_dir)
        except PackagingError as exc:
            return _report(work, Outcome.FAILED, error=f"unregistered bag in place: {exc}")
        digests = package.summarise_bag(bag_dir).manifest_digests
        if pending is not None and pending[0].manifest_digests == digests:
            ledger.complete_placement(work.id, placed_at=now())
        else:
            if pending is not None:
                ledger.abandon_placement(work.id)
            _register(work, archive, ledger, source_keys=captured_source_keys(bag_dir))
        log.info("%s: registered a complete bag left by an interrupted run", work.id)
        if settings is not None:
            revision.record_first_version(archive, work.id, version_user(settings))
        return _bag_report(work, archive, Outcome.ALREADY_PRESERVED, time.monotonic() - started)
    return None


def _preserved(
    work: Work,
    collection: str | None,
    archive: Archive,
    ledger: Ledger,
    settings: Settings,
    placed_at: str,
) -> WorkReport:
    """The report of a registered work: its first version recorded where it has none, what a
    crash left of a revision finished (:func:`cifa_ingest.revision.reconcile`), and a new
    version made where the catalogue's entry differs from the bag (``new-version``); else
    ``already-preserved``. Either way the report says whether its access copies are withheld."""
    started = time.monotonic()
    bag_dir = archive.bag_path(work.id)
    made = None
    try:
        if bag_dir.is_dir():
            revision.record_first_version(
                archive, work.id, version_user(settings), placed_at=placed_at
            )
        deaccession.finish(archive, ledger, work.id)
        revision.reconcile(archive, ledger, work.id)
        if not bag_dir.is_dir():
            return _report(
                work,
                Outcome.FAILED,
                error=f"registered in the ledger but {archive.relative(bag_dir)} is missing;"
                " run an audit",
            )
        made = revision.revise_work(
            work, collection, archive, ledger, settings, agent=_catalogue_agent(collection)
        )
    except (CifaError, OSError, drift.UnreadableRecord) as exc:
        log.error(
            "%s: its catalogue entry could not be recorded as a new version: %s", work.id, exc
        )
        return _report(
            work,
            Outcome.FAILED,
            error=str(exc),
            error_kind=StepErrorKind.ARCHIVE,
            bag=archive.relative(bag_dir),
            version=newest_version(archive, work.id),
        )
    outcome = Outcome.NEW_VERSION if made is not None else Outcome.ALREADY_PRESERVED
    report = _bag_report(work, archive, outcome, time.monotonic() - started)
    if made is not None:
        report.change = f"{made.change}: {made.message}"
    report.access_withheld = revision.access_withheld(bag_dir)
    return report


def _catalogue_agent(collection: str | None) -> str:
    """On whose word a version made from the catalogue is: the catalogue's."""
    return f"the catalogue ({collection})" if collection else "the catalogue"


def holder_of_source(ledger: Ledger, archive: Archive, key: SourceKey) -> str | None:
    """The work that holds the source video ``key``, if any.

    A ledger written before keys held addresses holds a generic source under its former key
    (``Generic:film``: the file's name only). That key is the holder's only if the holder's own
    capture record names this address too; otherwise it is another film of the same name. Where
    the holder's capture record cannot be read, it is taken to be the holder: one video is not
    preserved twice on a guess."""
    holder = ledger.work_for_source(key.key)
    if holder is not None or key.former is None:
        return holder
    former = ledger.work_for_source(key.former)
    if former is None:
        return None
    captured = captured_sources(archive.bag_path(former))
    if not captured or any(c.key == key.key for c in captured):
        return former
    return None


def earlier_capture(ledger: Ledger, archive: Archive, key: SourceKey) -> dict[str, Any] | None:
    """The chosen video format ({format_id, height, tbr}) of an earlier capture of the source
    ``key``: from the capture record of the bag that holds it (:func:`holder_of_source`), if
    there is one and it can be read; None otherwise."""
    holder = holder_of_source(ledger, archive, key)
    if holder is None:
        return None
    try:
        record = json.loads(
            (archive.bag_path(holder) / "metadata" / "capture.json").read_text("utf-8")
        )
    except (OSError, ValueError):
        return None
    return degraded.earlier_chosen(record, key.key) if isinstance(record, dict) else None


def start(
    work: Work,
    archive: Archive,
    settings: Settings,
    collection: str | None,
    *,
    allow_private_sources: bool,
    run_id: str | None = None,
) -> Job:
    """A fresh staging folder for ``work`` (debris of an interrupted run is cleared)."""
    archive.ensure()
    return Job(
        work=work,
        archive=archive,
        settings=settings,
        collection=collection,
        allow_private_sources=allow_private_sources,
        staging=archive.new_staging(work.id),
        run_id=run_id,
    )


class UnchangedSource(CifaError):
    """A re-capture received the very originals of the version it would follow."""


class HostPaused(CifaError):
    """A host of the work's sources blocked the run while the work was under way (another
    work, running at the same time, met the block): the work stops before its media is asked
    for, and is ``deferred`` like the run's later works on that host. Its message is the
    pause's sentence (a plain message, so that it crosses a Dask worker's pickling)."""


def fetch_step(job: Job) -> Job:
    """Fetch the original bytes and the source's metadata into staging. A source video the
    archive already holds under another work (another URL of the same video) is refused before
    its media is requested; so is a work whose host another work of the run found blocking us
    meanwhile (:class:`HostPaused`: the work is deferred). A degraded capture
    (:mod:`cifa_ingest.fetch.degraded`) is refused when ``[fetch] refuse_degraded`` says so: the
    work fails ``degraded``, and is not bagged.
    A failed fetch's partial downloads are kept aside in ``ARCHIVE/partials/`` before its
    staging folder is removed, for a later run to resume (:mod:`cifa_ingest.fetch.resume`)."""
    ledger = Ledger(job.archive.ledger_path)

    def before_media(source_key: SourceKey) -> None:
        if job.run_id is not None and (
            pause := _paused(job.work, job.archive, job.settings, job.run_id)
        ):
            raise HostPaused(pause.sentence)
        holder = holder_of_source(ledger, job.archive, source_key)
        if holder is not None and holder != job.work.id:
            raise FetchError(
                f"{job.work.id}: the same source video ({source_key}) is already preserved"
                f" as {holder}",
                kind=FetchErrorKind.DUPLICATE,
            )

    partials = Partials(job.archive.partials_dir, job.settings.fetch.resume_kept_days)
    try:
        job.capture = fetch.fetch_work(
            job.work,
            job.bag_dir / "original",
            job.metadata_dir,
            job.settings.fetch,
            allow_private_sources=job.allow_private_sources,
            check_source=before_media,
            locks_dir=locks_dir(job.settings, job.archive.root),
            private_dir=job.staging,
            earlier=lambda key: earlier_capture(ledger, job.archive, key),
            partials=partials,
        )
    except Exception as exc:
        partials.keep_failed("the disk is full" if _disk_full(exc) else None)
        raise
    worse = [source for source in job.capture.sources if source.is_degraded]
    if worse and job.settings.fetch.refuse_degraded:
        raise FetchError(
            f"{job.work.id}: the capture is degraded ({_degraded_reasons(worse)});"
            " refused by [fetch] refuse_degraded, a later run tries again",
            kind=FetchErrorKind.DEGRADED,
        )
    if job.follows is not None:
        number, originals = job.follows
        received = {
            f"data/original/{f.name}": f.sha512 for s in job.capture.sources for f in s.files
        }
        if received == originals:
            raise UnchangedSource(
                f"{job.work.id}: the source gives the same bytes as version {number}"
                f" ({len(received)} original(s), every sha512 the same); nothing made"
            )
    return job


def normalise_step(job: Job) -> Job:
    """Make the preservation master (by the format policy), the access copy and the proof of
    every film or part."""
    assert job.capture is not None, "fetch_step runs first"
    original = job.bag_dir / "original"
    groups = [
        normalise.Group(
            stem=source.stem,
            media=[original / f.name for f in source.media],
            subtitles=[
                (original / f.name, f.language) for f in source.files if f.role == "subtitle"
            ],
        )
        for source in job.capture.sources
    ]
    settings = job.settings.normalise
    profile = load_policy(format_policy_path(job.settings)).profile(settings.profile)
    encodes = slots.encode_slots(
        locks_dir(job.settings, job.archive.root), job.settings.execution.max_encodes
    )
    job.normalised = normalise.normalise_work(
        groups,
        job.bag_dir,
        job.metadata_dir / "proof",
        settings,
        settings.profile,
        profile,
        mediaconch_policy_path(job.settings),
        encode_slot=lambda stem: encodes.hold(stem),
    )
    return job


def _technical(path: Path) -> dict[str, object]:
    """ffprobe's description of a payload file. A received file ffprobe cannot read (a
    "subtitle" track that is an HTML error page or binary junk, as the source sent it) is
    described by the reason, not a failed work: it is kept as received, and the film with it.
    A master or access copy that cannot be read still fails the work."""
    try:
        return runner.probe(path)
    except FFmpegError as exc:
        if path.parent.name != "original":
            raise
        last = (exc.stderr.strip().splitlines() or [str(exc)])[-1]
        return {"unreadable": last.removeprefix(f"{path}: ")}


def package_step(job: Job) -> Job:
    """Write the metadata (JSON, Dublin Core, PREMIS), make the bag, and validate it in full
    (every checksum recomputed) with our fixity engine."""
    assert job.capture is not None and job.normalised is not None
    log.info("%s: packaging and validating the bag", job.work.id)
    packaged_at = now()
    payload = [
        path
        for folder in ("original", "master", "access")
        for path in sorted((job.bag_dir / folder).glob("*"))
    ]
    technical = {p.relative_to(job.bag_dir).as_posix(): _technical(p) for p in payload}
    described = {p.relative_to(job.bag_dir).as_posix(): mediainfo.describe(p) for p in payload}
    documents = {
        "descriptive.json": package.descriptive_record(job.work, job.collection),
        "permission.json": job.work.permission.record(),  # full: the bag keeps it
        "capture.json": job.capture.as_dict(),
        "normalisation.json": normalisation_record(job.normalised),
        "technical.json": technical,
        **({"technical.mediainfo.json": described} if any(described.values()) else {}),
    }
    info = package.bag_info(job.work, job.settings.organisation, job.collection)
    organisation = job.settings.organisation

    def standard_records(bag_dir: Path) -> dict[str, bytes]:
        return {
            "descriptive.xml": dublin_core.descriptive_xml(job.work, job.collection),
            "premis.xml": premis.write_premis(bag_dir, organisation, packaged_at),
        }

    package.make_bag(job.bag_dir, info, job.metadata_dir, documents, standard_records)
    package.validate_bag(job.bag_dir)
    return job


def normalisation_record(normalised: normalise.Normalised) -> dict[str, object]:
    """metadata/normalisation.json: per film or part, the policy's decision, every file made with
    the exact ffmpeg command, the storage factor, the proof, and the events for PREMIS."""
    events: list[dict[str, object]] = []
    for group in normalised.groups:
        # What the master could not carry, and what it keeps as metadata instead: PREMIS's note.
        statements = group.fidelity.statements()
        events.append(
            {
                "type": "normalization",
                "detail": f"{group.stem}: {group.action} ({group.reason})",
                "agent": normalised.ffmpeg_version,
                "outcome": "success",
                **({"outcome_detail": "; ".join(statements)} if statements else {}),
            }
        )
        if group.conformance is not None and group.conformance.outcome != "not-run":
            events.append(
                {
                    "type": "validation",
                    "detail": f"{group.stem}: MediaConch policy {group.conformance.policy}",
                    "outcome": group.conformance.outcome,
                    "agent": group.conformance.tool,
                }
            )
        if group.proof is not None:
            events.append(
                {
                    "type": "validation",
                    "detail": f"{group.stem}: lossless proof by {group.proof.method}",
                    "outcome": "pass" if group.proof.passed else "fail",
                    # How the master's hashes are tied to the file, where they were taken
                    # beside the encode (normalise.master_hashes.bind).
                    "outcome_detail": "; ".join(
                        filter(
                            None,
                            [
                                group.proof.summary,
                                group.proof.binding,
                                *_sample_counts(group.audio_samples),
                            ],
                        )
                    ),
                }
            )
    return {
        "software": f"cifa-ingest {__version__}",
        "ffmpeg": normalised.ffmpeg_version,
        "profile": normalised.profile,
        "groups": [
            {
                "stem": g.stem,
                "action": g.action,
                "reason": g.reason,
                "originals": g.originals,
                "original_bytes": g.original_bytes,
                "master_bytes": g.master_bytes,
                "storage_factor": round(g.storage_factor, 3) if g.storage_factor else None,
                # With, per audio stream whose source declares its length, the samples declared
                # and the samples the master holds.
                "proof": {**vars(g.proof), "audio_samples": g.audio_samples} if g.proof else None,
                "mediaconch": vars(g.conformance) if g.conformance else None,
                "renditions": [vars(r) for r in g.renditions],
                "fidelity": vars(g.fidelity),
                "notes": g.notes,
            }
            for g in normalised.groups
        ],
        "events": events,
    }


def _sample_counts(counts: list[dict[str, object]]) -> list[str]:
    """The proof's note on audio streams whose source declares their length."""
    return [
        f"stream {c['stream']} (audio): {c['master']} samples in the master, {c['declared']}"
        " declared by the source's container"
        for c in counts
    ]


def place_step(job: Job) -> WorkReport:
    """Move the validated bag into ``bags/`` atomically and register it in the ledger.

    The ledger records the placement before the rename and completes it after (see
    :meth:`Ledger.begin_placement`): killed at any instant, the archive holds no bag the ledger
    does not know, and the next run finishes the registration (:func:`triage`).

    Placements are one at a time, across processes and machines (a slot of ``locks/``), and the
    source videos are checked again inside: works preserved side by side (threads, Dask workers)
    both passed the fetch's check if neither was registered yet, and the later one must not
    become a second bag of the same video."""
    assert job.capture is not None
    ledger = Ledger(job.archive.ledger_path)
    with revision.placement_slot(job.archive, job.settings).hold(job.work.id):
        for key in (source.identity for source in job.capture.sources):
            holder = holder_of_source(ledger, job.archive, key)
            if holder is not None and holder != job.work.id:
                raise FetchError(
                    f"{job.work.id}: the same source video ({key}) was preserved as {holder}"
                    " while this work was in progress",
                    kind=FetchErrorKind.DUPLICATE,
                )
        ledger.begin_placement(
            _bag_record(job.archive, job.work.id, job.bag_dir, job.capture.source_keys),
            package.payload_files(job.bag_dir),
        )
        try:
            job.archive.place(job.bag_dir, job.work.id)
        except BaseException:
            if not job.archive.bag_path(job.work.id).exists():
                ledger.abandon_placement(job.work.id)
            raise
        ledger.complete_placement(job.work.id, placed_at=now())
    job.archive.discard_staging(job.work.id)
    revision.record_first_version(job.archive, job.work.id, version_user(job.settings))
    worse = [source for source in job.capture.sources if source.is_degraded]
    outcome = Outcome.PRESERVED_DEGRADED if worse else Outcome.PRESERVED
    log.info("%s: %s", job.work.id, OUTCOME_WORDS.get(outcome, str(outcome)))
    report = _bag_report(job.work, job.archive, outcome, time.monotonic() - job.started)
    if worse:  # why, in the report, the ledger and --json (the work is preserved all the same)
        report.error = "degraded capture: " + _degraded_reasons(worse)
    return report


def _degraded_reasons(sources: list[FetchedSource]) -> str:
    return "; ".join(
        (f"{source.stem}: " if len(sources) > 1 else "")
        + "; ".join(r for r in (source.degraded or {}).get("reasons") or [] if r)
        for source in sources
    )


def _bag_record(archive: Archive, work_id: str, bag_dir: Path, source_keys: list[str]) -> BagRecord:
    """The ledger's record of the bag in ``bag_dir``, to be (or being) placed as ``work_id``."""
    summary = package.summarise_bag(bag_dir)
    return BagRecord(
        work_id=work_id,
        bag_path=archive.relative(archive.bag_path(work_id)),
        placed_at=now(),
        payload_oxum=summary.payload_oxum,
        manifest_digests=summary.manifest_digests,
        source_keys=source_keys,
        software=package.SOFTWARE_AGENT,
    )


def _register(work: Work, archive: Archive, ledger: Ledger, source_keys: list[str]) -> None:
    bag_dir = archive.bag_path(work.id)
    ledger.register_bag(
        _bag_record(archive, work.id, bag_dir, source_keys), files=package.payload_files(bag_dir)
    )


#: How failures of the later steps are classified in the ledger (fetch failures carry their own).
_STEP_ERROR_KINDS: dict[type[CifaError], StepErrorKind] = {
    FFmpegError: StepErrorKind.NORMALISATION,
    ProofFailed: StepErrorKind.PROOF_FAILED,
    InsufficientSpace: StepErrorKind.DISK_SPACE,
    PackagingError: StepErrorKind.PACKAGING,
    ArchiveStateError: StepErrorKind.ARCHIVE,
}

#: The steps after triage, in order; each takes the Job the previous one returned.
STEPS: tuple[Callable[[Job], Job], ...] = (fetch_step, normalise_step, package_step)

#: How a step is run: directly, or (in pipelines/) as a Prefect task.
StepRunner = Callable[[Callable[[Job], object], Job], object]


def _run_directly(step: Callable[[Job], object], job: Job) -> object:
    return step(job)


def preserve_work(
    work: Work,
    archive: Archive,
    settings: Settings,
    collection: str | None = None,
    *,
    allow_private_sources: bool = False,
    run_step: StepRunner = _run_directly,
    run_id: str | None = None,
) -> WorkReport:
    """Preserve one work, or say why not. Never raises for a failure of the work itself: the
    report carries the error, and the staging folder is cleared. Every attempt's outcome is
    recorded in the ledger under ``run_id``.

    A work with a source on a host that blocked this run (``run_id``) is not tried: it is
    ``deferred`` (:mod:`cifa_ingest.fetch.pauses`); a work whose fetch ends ``blocked`` pauses
    its host for the rest of the run."""
    run_id = run_id or uuid.uuid4().hex
    archive.ensure()
    ledger = Ledger(archive.ledger_path)
    report = triage(work, archive, ledger, settings, collection)
    if report is not None:
        # Nothing to fetch; what an interrupted run left in this work's staging is debris
        # (e.g. killed while clearing it after the placement).
        archive.discard_staging(work.id)
    elif (deferred := _deferred(work, archive, settings, run_id)) is not None:
        report = deferred
    else:
        report = _attempt(
            work, archive, settings, collection, allow_private_sources, run_step, run_id
        )
        if report.error_kind == FetchErrorKind.BLOCKED:
            _pause_hosts(work, archive, settings, run_id, report)
    if report.outcome not in {Outcome.NOT_PERMITTED, Outcome.AWAITING_SOURCE}:
        ledger.record_outcome(
            run_id,
            work.id,
            report.outcome,
            report.error,
            report.seconds,
            error_kind=report.error_kind,
        )
    return report


def run_job(
    work: Work,
    archive: Archive,
    settings: Settings,
    collection: str | None,
    *,
    finish: Callable[[Job], WorkReport],
    allow_private_sources: bool = False,
    follows: tuple[int, dict[str, str]] | None = None,
    run_id: str | None = None,
) -> WorkReport:
    """The steps of an ingest for a work triage has no say on (a preserved work fetched again:
    :mod:`cifa_ingest.recapture`), ``finish`` in place of :func:`place_step`: the same staging
    folder, fetch (source policy, completeness proof, duplicate and degraded checks, resume),
    normalisation and proof, bag; the same host pauses within ``run_id``, the same failure
    report. Not recorded among the ledger's run outcomes (``work_outcomes``: the ingest's runs,
    what ``cifa status`` sums up): a preserved work stays preserved whatever its re-capture
    did, and a version made is in the versions store. ``follows``: see :attr:`Job.follows`."""
    run_id = run_id or uuid.uuid4().hex
    archive.ensure()
    report = _deferred(work, archive, settings, run_id)
    if report is None:
        report = _attempt(
            work, archive, settings, collection, allow_private_sources, _run_directly, run_id,
            finish=finish, follows=follows,
        )  # fmt: skip
        if report.error_kind == FetchErrorKind.BLOCKED:
            _pause_hosts(work, archive, settings, run_id, report)
    return report


def _sites(work: Work, settings: Settings) -> list[str]:
    urls = [source.url for source in work.sources if source.url]
    return list(dict.fromkeys(pauses.site_of(url, settings.fetch.allowed_hosts) for url in urls))


def _paused(work: Work, archive: Archive, settings: Settings, run_id: str) -> HostPause | None:
    """The pause of a host of ``work``'s sources in the run ``run_id``, if one blocked it."""
    locks = locks_dir(settings, archive.root)
    for site in _sites(work, settings):
        if (pause := pauses.paused(locks, run_id, site)) is not None:
            return pause
    return None


def _deferred(work: Work, archive: Archive, settings: Settings, run_id: str) -> WorkReport | None:
    """The report of a work not tried because a host of its sources blocked this run."""
    if (pause := _paused(work, archive, settings, run_id)) is not None:
        log.info("%s: deferred to the next run: %s", work.id, pause.sentence)
        return _report(work, Outcome.DEFERRED, error=pause.sentence)
    return None


def _pause_hosts(
    work: Work, archive: Archive, settings: Settings, run_id: str, report: WorkReport
) -> None:
    """Pause, for the rest of the run, the host whose source blocked ``work`` (named at the
    start of the fetch's message), or every host of its sources when the message names none."""
    error = report.error or ""
    urls = [source.url for source in work.sources if source.url]
    named = [url for url in urls if url in error] or urls
    locks = locks_dir(settings, archive.root)
    for site in dict.fromkeys(pauses.site_of(url, settings.fetch.allowed_hosts) for url in named):
        pauses.pause(locks, run_id, site, block_reason(error), work.id)


def _attempt(
    work: Work,
    archive: Archive,
    settings: Settings,
    collection: str | None,
    allow_private_sources: bool,
    run_step: StepRunner,
    run_id: str | None = None,
    *,
    finish: Callable[[Job], WorkReport] = place_step,
    follows: tuple[int, dict[str, str]] | None = None,
) -> WorkReport:
    started = time.monotonic()
    step_name = Step.START
    try:
        job = start(
            work,
            archive,
            settings,
            collection,
            allow_private_sources=allow_private_sources,
            run_id=run_id,
        )
        job.follows = follows
        for step in STEPS:
            step_name = Step.of(step)
            job = run_step(step, job)  # type: ignore[assignment]
        step_name = Step.PLACE
        report = run_step(finish, job)
        assert isinstance(report, WorkReport)
        return report
    except HostPaused as exc:  # another work of the run met a block on this work's host
        log.info("%s: deferred to the next run: %s", work.id, exc)
        return _report(work, Outcome.DEFERRED, error=str(exc), seconds=time.monotonic() - started)
    except Exception as exc:  # a failure of this work, or a surprise: the other works go on
        error, kind = _failure(exc, step_name)
        if isinstance(exc, UnchangedSource):  # a refusal its caller (recapture) reports, once
            log.debug("%s: %s", work.id, error)
        else:
            log.warning("%s: failed (%s): %s", work.id, kind, error.splitlines()[0])
        # A bug or a library's surprise: the traceback is for debugging.
        if kind == StepErrorKind.UNEXPECTED:
            log.debug("%s: %s step raised", work.id, step_name, exc_info=True)
        return _report(
            work, Outcome.FAILED, error=error, error_kind=kind, seconds=time.monotonic() - started
        )
    finally:
        archive.discard_staging(work.id)


#: What the system says when a disk (or the file size limit) is full, in the messages that carry
#: it as text: yt-dlp's "unable to write data", ffmpeg's stderr, SQLite's.
_DISK_FULL_TEXT = re.compile(
    r"No space left on device|File too large|Disk quota exceeded|database or disk is full"
    r"|\[Errno (?:28|27|122)\]"
)
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a full disk (ENOSPC), a quota, or the file size limit (EFBIG,
    or ffmpeg killed by SIGXFSZ), in whichever step and whatever the library that saw it."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(cause, FFmpegError):
            if cause.returncode == -signal.SIGXFSZ or _DISK_FULL_TEXT.search(cause.stderr):
                return True
        elif _DISK_FULL_TEXT.search(str(cause)):
            return True
    return False


def _classified_as(exc: CifaError) -> type[CifaError]:
    """The class :data:`_STEP_ERROR_KINDS` classifies ``exc`` by: its own, or the one there it is
    a kind of (a ToolMissing or an UnknownSampleFormat is an FFmpegError's kind)."""
    return next((cls for cls in _STEP_ERROR_KINDS if isinstance(exc, cls)), type(exc))


def _failure(exc: BaseException, step: str) -> tuple[str, FetchErrorKind | StepErrorKind]:
    """The error message and kind stored for a work that failed in ``step``: ``disk-full`` for a
    full disk in any step (the message says in which), the fetch's own classification, the kind
    of the later steps' errors, else ``unexpected`` (a bug, or a library raising what it does not
    document), named with the step and the exception's type, never a traceback."""
    text = str(exc).strip() or type(exc).__name__
    if _disk_full(exc):
        return f"disk full during {step}: {text}", StepErrorKind.DISK_FULL
    if isinstance(exc, ToolStalled):  # killed by the runner: no progress, or overdue
        return f"{exc.killed}, during {step}: {text}", StepErrorKind.NORMALISATION
    if isinstance(exc, FFmpegError) and exc.returncode < 0:  # a signal from outside: a crash
        try:
            name = signal.Signals(-exc.returncode).name
        except ValueError:
            name = f"signal {-exc.returncode}"
        return f"ffmpeg was killed by {name} during {step}: {text}", StepErrorKind.NORMALISATION
    if isinstance(exc, FetchError):
        return text, exc.kind
    if isinstance(exc, CifaError):
        return text, _STEP_ERROR_KINDS.get(_classified_as(exc), StepErrorKind.ERROR)
    tool = "yt-dlp" if step == Step.FETCH else "the pipeline"
    return (
        f"{step} failed unexpectedly ({tool} raised {type(exc).__name__}): {text}",
        StepErrorKind.UNEXPECTED,
    )
