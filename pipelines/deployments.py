"""The deployments ``cifa serve`` serves, in one place, built from the settings.

==============================  =========================  =====================================
deployment                      schedule ([schedules])     runs
==============================  =========================  =====================================
``nightly-ingest/nightly-ingest``  ``nightly_ingest``      ``nightly-ingest`` over
                                                           ``[catalogue].manifests``, then the
                                                           source watch; at most one at a time
``fixity-audit/rolling``        ``fixity_rolling``         the bags not verified in
                                                           ``fixity_rolling_max_age_days``,
                                                           within ``fixity_rolling_budget_hours``
``fixity-audit/full``           ``fixity_full``            every bag, every byte
``preserve-film/preserve-film``  none                      one-off jobs with parameters
``fixity-audit/location-NAME``  from the location's        the copies at storage location
                                ``audit_every_days``       ``NAME``: a deep rolling audit
==============================  =========================  =====================================

Every schedule is a cron expression in ``[schedules].timezone`` (an IANA zone: 02:00 stays 02:00
across the clocks' change). The catalogues and the archive are made absolute when ``cifa serve``
starts, so that a run means the same files whatever directory it is later started from.

The rolling and the full audit are two deployments of the one ``fixity-audit`` flow rather than
one deployment with two parameterised schedules, because that is what reads clearly in Prefect's
UI: each has its own name, its own run history ("did Sunday's full audit pass?" is one click),
its parameters shown on its page rather than hidden in a schedule, its own pause switch, and a
"Quick run" that does what its name says (with one deployment, a quick run takes the
deployment's defaults, which would be one of the two audits, silently). Each is limited to one
run at a time, as is the nightly ingest: a night whose run is still going when the next is due
queues the next one, and two nights never write at once. The rolling audit's budget (one hour by
default) ends it before Sunday's full audit starts.

Each storage location of ``[[storage.locations]]`` gets a deployment of its own,
``fixity-audit/location-NAME`` (the ``location-`` keeps a location named ``full`` from taking
the primary's audit's name): its run history, pause switch and Quick run are that location's.
It runs a *deep* rolling audit of the location's copies with ``max_age_days`` set to the
location's ``audit_every_days`` (:func:`location_cron`): every night (more often when
``audit_every_days`` is under a day), the copies not deep-verified within that many days are
read and re-hashed, least recently verified first. So every byte at the location is re-read
within ``audit_every_days`` while each night reads only its share, as the primary's rolling
audit spreads its reading; a deep audit finds all a cheap check would (a file gone, a size or
the store's checksum changed) and more, so a cheap check is not scheduled as well: it is for an
operator's ``cifa audit --location NAME``. No budget: a location slower than its cycle shows
as copies left unverified beyond their age, never as a night cut short silently; one run at a
time per location.

:func:`plan` describes the deployments as plain data without importing Prefect (``cifa serve``
prints it; the tests read it); :func:`to_deployments` turns them into Prefect deployments, which
:func:`serve` serves with Prefect's ``serve`` (no work pool, no worker: the ``cifa serve`` process
runs each flow run in a subprocess of its own, which imports the deployment's entry point).
The nightly entry point is ``cifa_ingest.pipelines.served.nightly_ingest``: the flow of
``cifa_ingest.pipelines.flows``,
holding the archive's writer lock, as ``cifa ingest`` holds it around the flow in-process.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifa_ingest.audit.fixity_audit import AuditMode
from cifa_ingest.config import Settings
from cifa_ingest.storage.locations import FilesystemLocation, S3Location

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

#: How a one-off job is started from Prefect, for the messages that show it.
ONE_OFF_EXAMPLE = (
    "prefect deployment run 'preserve-film/preserve-film' -p url=URL -p id=ID -p title=TITLE"
    " -p permission=FILE"
)


@dataclass(frozen=True)
class Deployment:
    """One deployment as data: which flow, when, with which parameters."""

    flow: str  #: the flow's name in Prefect
    entrypoint: str  #: the flow, as a module path (what the served run imports)
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    timezone: str | None = None
    concurrency_limit: int | None = None
    tags: tuple[str, ...] = ("cifa",)

    @property
    def full_name(self) -> str:
        """As Prefect names it: ``flow/deployment``."""
        return f"{self.flow}/{self.name}"

    @property
    def when(self) -> str:
        return f"{self.cron} ({self.timezone})" if self.cron else "no schedule"

    @property
    def full_description(self) -> str:
        """The description as Prefect shows it, ending with the schedule and its time zone:
        Prefect stores the zone with the schedule, but its UI shows the times without it."""
        if not self.cron:
            return self.description
        return f"{self.description} Schedule: cron `{self.cron}`, time zone {self.timezone}."


def plan(
    settings: Settings,
    archive: Path,
    manifests: Sequence[Path],
    *,
    allow_private_sources: bool = False,
) -> list[Deployment]:
    """The deployments, from the settings, with absolute paths. No Prefect import.

    ``allow_private_sources`` (``cifa serve --allow-private-sources``: the demo's films, a test
    server) becomes the nightly run's and the one-off job's parameter, shown in the UI."""
    archive_path = str(Path(archive).expanduser().absolute())
    private = {"allow_private_sources": True} if allow_private_sources else {}
    catalogues = [str(Path(m).expanduser().absolute()) for m in manifests]
    when = settings.schedules
    budget = when.fixity_rolling_budget_hours
    max_age = when.fixity_rolling_max_age_days
    rolling: dict[str, Any] = {
        "archive": archive_path,
        "max_age_days": max_age,
    }
    if budget is not None:
        rolling["budget_seconds"] = budget * 3600
    return [
        Deployment(
            flow="nightly-ingest",
            entrypoint="cifa_ingest.pipelines.served.nightly_ingest",
            name="nightly-ingest",
            description=(
                "Every night: preserve the permitted works of the catalogues not preserved yet,"
                " then ask their sources whether they are still there. One run at a time."
            ),
            parameters={"manifests": catalogues, "archive": archive_path, **private},
            cron=when.nightly_ingest,
            timezone=when.timezone,
            concurrency_limit=1,
        ),
        Deployment(
            flow="fixity-audit",
            entrypoint="cifa_ingest.pipelines.flows.fixity_audit",
            name=AuditMode.ROLLING,  # the deployment fixity-audit/rolling
            description=(
                f"Every night: re-verify the bags not verified in {max_age:g} days, oldest first"
                + (f", within {budget:g} h" if budget is not None else "")
                + ". Repairs a bag found damaged from a copy that verifies (when storage"
                " locations are declared); fails when a problem remains."
            ),
            parameters=rolling,
            cron=when.fixity_rolling,
            timezone=when.timezone,
            concurrency_limit=1,
        ),
        Deployment(
            flow="fixity-audit",
            entrypoint="cifa_ingest.pipelines.flows.fixity_audit",
            name=AuditMode.FULL,
            description=(
                "Every week: re-read and re-hash every file of every bag. Repairs a bag found"
                " damaged from a copy that verifies (when storage locations are declared); fails"
                " when a problem remains."
            ),
            parameters={"archive": archive_path},
            cron=when.fixity_full,
            timezone=when.timezone,
            concurrency_limit=1,
        ),
        *(
            _location_audit(location, archive_path, when.fixity_rolling, when.timezone)
            for location in settings.storage.locations
        ),
        Deployment(
            flow="preserve-film",
            entrypoint="cifa_ingest.pipelines.flows.preserve_film_job",
            name="preserve-film",
            description=(
                "A one-off job for one film: url, id, title (title_zh, director, year …) and"
                " permission, the path of its permission record file or of the catalogue that"
                " holds the work. The record is never a parameter: it may name the filmmaker."
            ),
            parameters={"archive": archive_path, **private},
        ),
    ]


def location_cron(audit_every_days: float, nightly: str) -> str:
    """When a location's deep rolling audit runs: on the primary's rolling audit's ``nightly``
    cron when ``audit_every_days`` is a day or more (the rolling ``max_age_days`` does the
    spacing: each night reads the copies due), every ``N`` hours (``audit_every_days`` x 24,
    rounded, at least 1) when it is less, so that no copy waits longer than its age."""
    if audit_every_days >= 1:
        return nightly
    hours = max(1, round(audit_every_days * 24))
    return f"0 */{hours} * * *"


def _location_audit(
    location: FilesystemLocation | S3Location, archive: str, nightly: str, timezone: str
) -> Deployment:
    days = location.audit_every_days
    return Deployment(
        flow="fixity-audit",
        entrypoint="cifa_ingest.pipelines.flows.fixity_audit",
        name=f"location-{location.name}",
        description=(
            f"The copies at storage location {location.name} ({location.kind}, zone"
            f" {location.zone}): a deep rolling audit, every copy re-read and re-hashed at least"
            f" every {days:g} days, least recently verified first. A copy found missing or"
            " damaged is repaired from one that verifies; fails when a problem remains (a file"
            " with no good copy anywhere, a copy unlocked, the location not answering)."
        ),
        parameters={
            "archive": archive,
            "location": location.name,
            "deep": True,
            "max_age_days": days,
        },
        cron=location_cron(days, nightly),
        timezone=timezone,
        concurrency_limit=1,
    )


def describe(deployments: Sequence[Deployment]) -> str:
    """The lines ``cifa serve`` prints: each deployment, its schedule and its limit."""
    width = max(len(d.full_name) for d in deployments)
    lines = []
    for deployment in deployments:
        limit = (
            f"; at most {deployment.concurrency_limit} run at a time"
            if deployment.concurrency_limit
            else ""
        )
        lines.append(f"  {deployment.full_name:<{width}}  {deployment.when}{limit}")
    return "\n".join(lines)


def to_deployments(deployments: Sequence[Deployment]) -> list[RunnerDeployment]:
    """Prefect's deployments for :func:`plan`'s (building them contacts no server)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    built = []
    for deployment in deployments:
        module, _, name = deployment.entrypoint.rpartition(".")
        flow = getattr(importlib.import_module(module), name)
        schedules = (
            [Cron(deployment.cron, timezone=deployment.timezone)] if deployment.cron else None
        )
        built.append(
            flow.to_deployment(
                name=deployment.name,
                description=deployment.full_description,
                schedules=schedules,
                parameters=deployment.parameters,
                concurrency_limit=deployment.concurrency_limit,
                tags=list(deployment.tags),
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return built


def serve(deployments: Sequence[Deployment]) -> None:
    """Serve the deployments until interrupted (Ctrl-C, SIGTERM), then return. Blocks.

    On shutdown their schedules are paused, so that a server without ``cifa serve`` does not
    pile up runs that nobody will start; the next ``cifa serve`` resumes them. Prefect's runner
    pauses them only once it has started its loop, so a Ctrl-C in its first seconds left them
    running (seen in CI): :func:`pause` does it again, whenever the stop came. Prefect 3.8.8's
    SIGTERM handler stops its runner with ``sys.exit(0)`` and warns of a coroutine it never
    awaited: both are a clean stop here, as Ctrl-C is."""
    from prefect import serve as prefect_serve

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
        try:
            prefect_serve(*to_deployments(deployments), print_starting_message=False)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            pause(deployments)


def pause(deployments: Sequence[Deployment]) -> None:
    """Pause the deployments' schedules on the server; a server that cannot be reached (or a
    deployment it does not have yet) is logged, never raised: serving is over either way."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    log = logging.getLogger("cifa_ingest.serve")
    try:
        with get_client(sync_client=True) as client:
            for deployment in deployments:
                try:
                    found = client.read_deployment_by_name(deployment.full_name)
                except ObjectNotFound:
                    continue
                client.pause_deployment(found.id)
    except Exception as exc:  # the server went away first: nothing left to pause it on
        log.warning("could not pause the schedules: %s: %s", type(exc).__name__, exc)
