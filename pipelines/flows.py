"""The Prefect flows: ``preserve-film`` (one work), ``nightly-ingest`` (catalogues) and
``source-watch`` (are the preserved films still where they came from; the nightly run's last step).

They compose the library's steps (``cifa_ingest.preserve.STEPS``) as Prefect tasks; the order of
the steps and what each does live in the library, so the pipeline also runs without Prefect.
Tasks never use Prefect's cache (``NO_CACHE``): whether a file changed is decided by reading it,
never by a cache keyed on its path. A run in which any work failed ends in a Failed state (with the
reports as its data), so that a scheduler, not only the summary table, sees the failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from cifa_ingest.archive.layout import Archive, NoArchive
from cifa_ingest.archive.ledger import CheckOutcome, SourceStatus
from cifa_ingest.audit import copies as copy_audit
from cifa_ingest.audit import fixity_audit as audit
from cifa_ingest.audit import repairs, watch
from cifa_ingest.catalogue.model import Work, load_catalogues
from cifa_ingest.catalogue.one_off import work_for_job
from cifa_ingest.config import Settings, load_settings, locks_dir, resolve_archive
from cifa_ingest.errors import CifaError, InputError, RunFailed
from cifa_ingest.fetch import pauses
from cifa_ingest.fetch.source_policy import SourcePolicy
from cifa_ingest.preserve import (
    STEPS,
    Job,
    Outcome,
    Step,
    StepErrorKind,
    WorkReport,
    catalogue_triage,
    needs_a_run,
    place_step,
    preserve_work,
)
from cifa_ingest.reports.summary import block_lines
from cifa_ingest.revision import version_user
from cifa_ingest.storage import repair as repairing
from cifa_ingest.storage import replicate as replication
from cifa_ingest.storage.locations import PRIMARY
from cifa_ingest.storage.store import LocationUnreachable


def _as_task(step: Callable[[Job], object]) -> Callable[[Job], object]:
    return task(name=str(Step.of(step)), cache_policy=NO_CACHE, persist_result=False)(step)


_TASKS = {step: _as_task(step) for step in (*STEPS, place_step)}


def _run_as_task(step: Callable[[Job], object], job: Job) -> object:
    return _TASKS[step](job)


class _ClassifiedFailures(logging.Filter):
    """Keeps the tracebacks of failures the pipeline classified out of Prefect's logs (the run's
    page in the UI, the server's database), where they read as bugs of the pipeline:

    - the record in which Prefect's engine logs a :class:`RunFailed` as an "unexpected exception"
      (the failed run's data, re-raised when a served run ends) is dropped: the run already
      logged why each work failed, and its state's message says it;
    - a step's task that failed with one of our errors (:class:`CifaError`: a 404, a failed
      proof) keeps its line, "Task run failed with exception: FetchError(…)", without the
      traceback.

    - a task run that returned a Failed state (a damaged bag's ``audit-bag``) is logged by
      Prefect with ``exc_info=True`` outside any exception, which printed ``NoneType: None``
      under the message as if it were a traceback: the empty exception is dropped.

    Anything else (a true bug) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        raised = record.exc_info[1] if record.exc_info else None
        if isinstance(raised, RunFailed):
            return False
        if isinstance(raised, CifaError):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
    if not any(isinstance(f, _ClassifiedFailures) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_ClassifiedFailures())

#: How much of the failures a Failed state's message quotes (the UI shows it in lists).
_MESSAGE_CHARS = 600


def _final_state(reports: list[WorkReport]) -> State:
    """Completed, or Failed with a message that says which works failed and why; the reports are
    the state's data either way (in a :class:`RunFailed` when Failed)."""
    failed = [report for report in reports if report.outcome is Outcome.FAILED]
    if not failed:
        return Completed(message=f"{len(reports)} work(s) done", data=reports)
    logger = get_run_logger()
    for report in failed:
        logger.error("%s failed (%s): %s", report.id, _kind(report), report.error)
    reasons = "; ".join(
        f"{r.id}: {_kind(r)}: {r.error.splitlines()[0] if r.error else ''}" for r in failed
    )
    message = f"{len(failed)} of {len(reports)} work(s) failed: {reasons}"
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return Failed(message=message, data=RunFailed(message, reports))


def _kind(report: WorkReport) -> str:
    """A failed work's kind; a failure report made here (a lost task, a crashed run) has none."""
    return report.error_kind or StepErrorKind.ERROR


def reports_of_state(state: State) -> list[WorkReport] | None:
    """The work reports a preserve-film or nightly-ingest run's state carries, Completed or
    Failed; None when it carries none (a crash, a bad parameter)."""
    data = state.result(raise_on_failure=False)
    return _reports_in(data.data if isinstance(data, RunFailed) else data)


def _reports_in(data: object) -> list[WorkReport] | None:
    """``data`` if it is a list of work reports (what a run or a work's task returns), or None."""
    if isinstance(data, list) and all(isinstance(item, WorkReport) for item in data):
        return data
    return None


def _film_run_name() -> str:
    """``preserve-<work id>``: which film a ``preserve-film`` run is about, in the UI's lists."""
    parameters = flow_run.parameters
    work = parameters.get("work")
    work_id = getattr(work, "id", None) or (work.get("id") if isinstance(work, dict) else None)
    return f"preserve-{work_id or parameters.get('id') or 'film'}"


@flow(
    name="preserve-film",
    flow_run_name=_film_run_name,
    persist_result=False,
    validate_parameters=False,
)
def preserve_film(
    work: Work,
    archive: str,
    allow_private_sources: bool = False,
    collection: str | None = None,
    settings: Settings | None = None,
    publish: bool = False,
) -> State:
    """Preserve one work: fetch, normalise, package, validate, place, register.

    Called in-process, with the work as the catalogue (``nightly-ingest``) or the command line
    (``cifa preserve``) gave it. Prefect stores the run's parameters as JSON, where the work's
    permission record reads its personal details as withheld (:class:`Permission`); the run
    itself has the full record, and writes it into the bag. With ``publish`` (a run of its own,
    ``cifa preserve``; not a work of a nightly run, which reports all its works together) the
    run writes its report and artifacts as every run does (:func:`_publish_run`)."""
    report = preserve_work(
        work,
        Archive(archive),
        settings or load_settings(),
        collection,
        allow_private_sources=allow_private_sources,
        run_step=_run_as_task,
        run_id=flow_run.get_root_flow_run_id() or flow_run.get_id(),
    )
    if publish:
        _publish_run([report], archive, key="preserve-film")
    return _final_state([report])


@flow(name="preserve-film", flow_run_name=_film_run_name, persist_result=False)
def preserve_film_job(
    id: str,
    permission: str,
    url: str | None = None,
    title: str | None = None,
    title_zh: str | None = None,
    director: str | None = None,
    director_zh: str | None = None,
    year: int | None = None,
    platform: str | None = None,
    archive: str | None = None,
    allow_private_sources: bool = False,
) -> State:
    """A one-off job for one film, started from Prefect: the ``preserve-film`` deployment.

    Its parameters are plain values that anyone may read in Prefect's UI: the film's address,
    archive id and titles, and ``permission``, the path of the file that holds its permission
    record (a permission record file, or the catalogue that holds the work ``id``; see
    :mod:`cifa_ingest.catalogue.one_off`). The record itself, which may name the filmmaker, is read
    here and
    goes into the bag only. It is the same flow as :func:`preserve_film` (its runs are listed
    together in the UI); only the way the work is given differs. Relative paths are relative to
    the working directory of ``cifa serve``; ``archive`` defaults to the configured archive.

    The run holds the archive's writer lock, so it never writes beside a ``cifa ingest`` or
    ``cifa preserve``: it waits for them. Bad parameters end the run Failed, with a message that
    names the problem and quotes nothing of the permission record."""
    logger = get_run_logger()
    settings = load_settings()
    root = archive or str(resolve_archive(None, settings))
    try:
        work, collection = work_for_job(
            id,
            permission,
            url=url,
            title=title,
            title_zh=title_zh,
            director=director,
            director_zh=director_zh,
            year=year,
            platform=platform,
        )
        policy = SourcePolicy.of(settings.fetch, allow_private_sources, resolve=False)
        for source in work.sources:
            if source.url is not None:
                policy.check(source.url)
    except InputError as exc:
        message = f"bad input: {exc}"
        logger.error("%s", message)
        return Failed(message=message, data=RunFailed(message))

    def waiting() -> None:
        logger.info("another ingest is writing to %s; waiting for it to finish", root)

    with Archive(root).writer_lock(on_wait=waiting):
        report = preserve_work(
            work,
            Archive(root),
            settings,
            collection,
            allow_private_sources=allow_private_sources,
            run_step=_run_as_task,
            run_id=flow_run.get_root_flow_run_id() or flow_run.get_id(),
        )
    _publish_run([report], root, key="preserve-film")
    return _final_state([report])


@flow(name="nightly-ingest", persist_result=False, validate_parameters=False)
def nightly_ingest(
    manifests: list[str],
    archive: str,
    only: list[str] | None = None,
    allow_private_sources: bool = False,
    settings: Settings | None = None,
    watch_sources: bool = True,
) -> State:
    """Preserve every permitted work of the catalogues that is not preserved yet; then copy
    every bag to the storage locations of the settings, if any (the ``replicate`` task,
    :func:`_replicate_after_ingest`); then, as the last step (``watch_sources``), ask the
    sources of the catalogues' preserved works whether they are still there (``source-watch``).

    Works without permission or without a source address are reported and never contacted. A
    work that fails does not stop the others.

    The works to fetch are tasks of a task runner (:func:`_works_runner`): the workers of the
    Dask cluster at ``[execution] dask_address``, or threads of this process
    (``max_parallel_works``, one at a time by default). Each is its own ``preserve-film`` flow
    run, started by its task wherever the task runs; what comes back is the work's report (with
    where it ran), never an exception: a work whose run or worker failed is a failure report,
    and the run goes on with the others.

    A work whose fetch ends ``blocked`` (a bot wall, 429 after every retry) pauses its host for
    the rest of the run: the works on that host that have not started are ``deferred``, not
    tried (:mod:`cifa_ingest.fetch.pauses`, shared by threads and Dask workers through the
    archive's ``locks/``); works on other hosts go on."""
    settings = settings or load_settings()
    logger = get_run_logger()
    planned: list[list[WorkReport] | tuple[Work, str | None]] = []
    for _path, catalogue in load_catalogues(Path(m) for m in manifests):
        collection = catalogue.collection.name if catalogue.collection else None
        for work in catalogue.works:
            if only and work.id not in only:
                continue
            runs = needs_a_run(work, Archive(archive))
            planned.append((work, collection) if runs else _reports_of(None, work))
    reports: list[WorkReport] = []
    runner = _works_runner(settings) if any(isinstance(i, tuple) for i in planned) else None
    with runner if runner is not None else contextlib.nullcontext():
        results = [
            _start(runner, item[0], archive, allow_private_sources, item[1], settings)
            if isinstance(item, tuple)
            else item
            for item in planned
        ]
        for result in results:
            if callable(result):
                work_reports = result()
                for report in work_reports:
                    logger.info("%s: %s on %s", report.id, report.outcome, report.worker)
                reports.extend(work_reports)
            else:
                reports.extend(result)
    # The hosts that blocked this run, said once each; the next run tries them again.
    run_id = flow_run.get_root_flow_run_id() or flow_run.get_id()
    if run_id:
        pauses.forget(locks_dir(settings, Path(archive)), run_id)
    for line in block_lines(reports):
        logger.warning("%s", line)
    preserved = [
        report.id
        for report in reports
        if report.outcome
        in {
            Outcome.PRESERVED,
            Outcome.PRESERVED_DEGRADED,
            Outcome.ALREADY_PRESERVED,
            Outcome.NEW_VERSION,
        }
    ]
    replicated = _replicate_after_ingest(archive, settings)
    if watch_sources and preserved:
        _watch_after_ingest(archive, preserved, allow_private_sources, settings)
    _publish_run(reports, archive)
    return _with_replication(_final_state(reports), replicated)


def _works_runner(settings: Settings) -> TaskRunner | None:
    """Where a nightly run's works are preserved: on the Dask cluster at ``[execution]
    dask_address`` (prefect-dask's DaskTaskRunner, connected to the existing scheduler, never
    starting one), in threads of this process (``max_parallel_works`` above 1), or (None) one
    after another in the flow's own thread, as a run always did: Ctrl-C then stops the work at
    once, where a thread would finish its download first.

    On Dask, every worker needs this project, ffmpeg, the archive at the same path, and the
    Prefect API: with ``PREFECT_API_URL`` unset, each worker starts Prefect's embedded server on
    its own ``PREFECT_HOME`` database (which works on one machine, at a few seconds per worker);
    across machines, a Prefect server (on PostgreSQL) that every machine names (the operators'
    guide)."""
    execution = settings.execution
    if execution.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=execution.dask_address)
    if execution.max_parallel_works > 1:
        return ThreadPoolTaskRunner(max_workers=execution.max_parallel_works)
    return None


def _start(
    runner: TaskRunner | None,
    work: Work,
    archive: str,
    allow_private_sources: bool,
    collection: str | None,
    settings: Settings,
) -> Callable[[], list[WorkReport]]:
    """Submit one work's task to ``runner`` now (or, without one, prepare to run it in this
    thread); the function returned waits for the work's reports."""
    named = _preserve_work_task.with_options(task_run_name=f"preserve-{work.id}")
    parameters: dict[str, Any] = {
        "work": work,
        "archive": archive,
        "allow_private_sources": allow_private_sources,
        "collection": collection,
        "settings": settings,
    }
    if runner is None:
        return lambda: _collected(lambda: named(**parameters), work)
    try:
        future: PrefectFuture[list[WorkReport]] = runner.submit(named, parameters=parameters)
    except OSError as exc:  # the first submission connects to the Dask scheduler
        address = settings.execution.dask_address
        raise CifaError(f"the Dask scheduler at {address} cannot be reached: {exc}") from None
    return lambda: _collected(future.result, work)


def _where() -> str:
    """The machine, process and (on Dask) worker that preserves a work: provenance for the run's
    report, and what an operator needs to find the log of a failure on a cluster. In a Dask
    worker whose ``cifa_ingest`` log goes nowhere yet, it is sent to the worker's stderr (its
    log), as ``cifa`` does on a terminal: progress, waits for a slot, failures."""
    where = f"{socket.gethostname()} pid {os.getpid()}"
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):  # not in a Dask worker
        return where
    ours = logging.getLogger("cifa_ingest")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    return f"dask worker {address} ({where})"


@task(name="preserve-work", cache_policy=NO_CACHE, persist_result=False)
def _preserve_work_task(
    work: Work,
    archive: str,
    allow_private_sources: bool,
    collection: str | None,
    settings: Settings,
) -> list[WorkReport]:
    """One work of a nightly run, as its own ``preserve-film`` flow run, wherever the task
    runner put this task. Never raises: whatever happens is the work's report."""
    where = _where()
    try:
        state = preserve_film(
            work,
            archive,
            allow_private_sources=allow_private_sources,
            collection=collection,
            settings=settings,
            return_state=True,
        )
        reports = _reports_of(state, work)
    except Exception as exc:  # a run that could not even start must not stop the others
        reports = [_failure(work, f"preserve-film could not run: {type(exc).__name__}: {exc}")]
    for report in reports:
        report.worker = where
    return reports


def _collected(result: Callable[[], object], work: Work) -> list[WorkReport]:
    """A work's reports from its task; a task that failed (a worker lost, a result that could
    not come back) is the work's failure report."""
    try:
        data = result()
    except Exception as exc:
        return [_failure(work, f"its task failed: {type(exc).__name__}: {exc}")]
    reports = _reports_in(data)
    if reports is not None:
        return reports
    return [_failure(work, f"its task returned {type(data).__name__}, not reports")]


def _failure(work: Work, error: str) -> WorkReport:
    return WorkReport(id=work.id, title=work.display_title, outcome=Outcome.FAILED, error=error)


def _reports_of(state: State | None, work: Work) -> list[WorkReport]:
    """The reports a preserve-film run returned; a crashed run becomes a failure report."""
    if state is None:
        decided = catalogue_triage(work)
        assert decided is not None, "only works the catalogue rules out come without a run"
        return [decided]
    reports = reports_of_state(state)
    if reports is not None:
        return reports
    return [
        WorkReport(
            id=work.id,
            title=work.display_title,
            outcome=Outcome.FAILED,
            error=f"preserve-film ended {state.type.value}: {state.message}",
        )
    ]


def _publish_run(reports: list[WorkReport], archive: str, key: str = "nightly-ingest") -> None:
    """What people see of a run that preserves works (a night, a one-off job, ``cifa
    preserve``): the HTML and JSON report in ``ARCHIVE/reports/``
    (:mod:`cifa_ingest.reports.ingest_report`),
    a table artifact (one row per work, problems first, naming each bag, its size and its
    proof) and a markdown summary artifact (counts, problems named, the report's path), under
    ``key`` (the flow's name: the UI's artifact page keeps each key's history).

    The report describes the run; it never decides it: a report or an artifact that cannot be
    written is logged, and the run's state stays what its works made it."""
    from prefect.context import FlowRunContext

    from cifa_ingest.reports import ingest_report as run_report

    logger = get_run_logger()
    context = FlowRunContext.get()
    started = context.flow_run.start_time if context and context.flow_run else None
    try:
        run, written = run_report.write_run_report(
            reports, Archive(archive), started=started, run_name=flow_run.get_name()
        )
    except Exception as exc:  # an addition to the night's work, never its failure
        logger.warning("the run report could not be written: %s", exc, exc_info=True)
        return
    logger.info("run report: %s", written.html)
    try:
        create_table_artifact(
            table=run_report.table_rows(run),
            key=key,
            description=run_report.summary_line(run),
        )
        create_markdown_artifact(
            markdown=run_report.markdown_summary(run, written.html),
            key=f"{key}-summary",
        )
    except Exception as exc:
        logger.warning("the run's artifacts could not be created: %s", exc, exc_info=True)


# ---------------------------------------------------------------------------------------------
# Replication to the storage locations


@task(name="replicate", cache_policy=NO_CACHE, persist_result=False)
def _replicate(archive: str, settings: Settings) -> replication.ReplicationReport | State:
    """Copy every bag to every location of the settings not holding a good copy of it
    (:func:`cifa_ingest.storage.replicate.replicate_archive`). A copy that is not good at the
    end ends the task Failed (red in the UI, the problems named), with the report as the state's
    data: a location down or a damaged source is a finding, not an error of the task, so nothing
    is raised."""
    report = replication.replicate_archive(
        Archive(archive), settings.storage.locations, user=version_user(settings)
    )
    logger = get_run_logger()
    for copy in report.problems:
        logger.error("%s → %s: %s: %s", copy.work_id, copy.location, copy.outcome, copy.detail)
    if report.ok:
        logger.info("%s", report.summary_line())
        return report
    return Failed(message=_replication_problems(report), data=report)


def _replication_problems(report: replication.ReplicationReport) -> str:
    """``replication to disk2, nas: 2 copied, 1 source_damaged (cifa-0001 → nas: …)``."""
    named = [f"{c.work_id} → {c.location}: {c.outcome}" for c in report.problems[:5]]
    named += [f"ledger snapshot → {s.location}: failed" for s in report.snapshots if not s.ok]
    more = len(report.problems) - 5
    return f"{report.summary_line()} ({'; '.join(named)}{f'; and {more} more' if more > 0 else ''})"


def _replicate_after_ingest(archive: str, settings: Settings) -> str | None:
    """The nightly run's replication, after every work was placed: a step of its own (the
    ``replicate`` task), run only when the settings declare locations and the archive exists.
    Returns what is wrong (None: every copy good). It never changes what the works' reports
    say: a bag placed is preserved whether or not its copies could be made tonight, and the next
    run (or ``cifa replicate``) completes them; but the run ends Failed
    (:func:`_with_replication`), so that notifications fire."""
    if not settings.storage.locations or not Archive(archive).ledger_path.is_file():
        return None
    logger = get_run_logger()
    try:
        state = _replicate(archive, settings, return_state=True)
        report = state.result(raise_on_failure=False)
    except Exception as exc:  # replication is an addition to the night's work: said, not raised
        logger.error("replication could not run: %s: %s", type(exc).__name__, exc)
        return f"replication could not run: {type(exc).__name__}: {exc}"
    if isinstance(report, replication.ReplicationReport):
        _publish_replication(report)
        return None if report.ok else _replication_problems(report)
    return f"replication ended {state.type.value}: {state.message}"


def _with_replication(state: State, problem: str | None) -> State:
    """The run's state with replication's problem added: Failed (the works' reports still its
    data, in a :class:`RunFailed`), its message naming the works that failed, if any, then the
    copies that could not be made."""
    if problem is None:
        return state
    get_run_logger().error("%s", problem)
    data = state.result(raise_on_failure=False)
    reports = data.data if isinstance(data, RunFailed) else data
    message = problem if state.is_completed() else f"{state.message}; {problem}"
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return Failed(message=message, data=RunFailed(message, reports))


def replication_problem(state: State) -> str | None:
    """Why a nightly-ingest run ended Failed though none of its works failed (its replication),
    for ``cifa ingest``'s exit code; None when it did not."""
    reports = reports_of_state(state)
    if not state.is_failed() or reports is None:
        return None
    if any(report.outcome is Outcome.FAILED for report in reports):
        return None
    return state.message or "the run ended Failed"


def _publish_replication(report: replication.ReplicationReport) -> None:
    """A table artifact of the night's replication (``replicate``): every copy this run made
    or could not make, problems first. Never changes the run's state."""
    rows = [
        {
            "bag": copy.work_id,
            "location": copy.location,
            "outcome": str(copy.outcome),
            "bytes": copy.bytes,
            "seconds": round(copy.seconds, 1),
            "detail": copy.detail,
        }
        for copy in sorted(report.copies, key=lambda c: (c.ok, c.location, c.work_id))
        if copy.outcome is not replication.ReplicationOutcome.ALREADY_COPIED
    ]
    try:
        create_table_artifact(table=rows, key="replicate", description=report.summary_line())
    except Exception as exc:
        get_run_logger().warning("the replication artifact could not be created: %s", exc)


# ---------------------------------------------------------------------------------------------
# The source watch

#: The nightly run asks a source again only when its last check is older than this: a run started
#: again the same night leaves the sources alone.
NIGHTLY_WATCH_INTERVAL_HOURS = 20.0


@task(name="plan-watch", cache_policy=NO_CACHE, persist_result=False)
def _plan_watch(
    archive: Archive, work_ids: list[str] | None, min_interval: dt.timedelta | None
) -> tuple[list[watch.WatchedWork], list[watch.Note]]:
    return watch.plan(archive, work_ids, min_interval=min_interval)


_watch_work = task(name="watch-work", cache_policy=NO_CACHE, persist_result=False)(watch.watch_work)


@flow(name="source-watch", persist_result=False, validate_parameters=False)
def source_watch(
    archive: str,
    work_ids: list[str] | None = None,
    allow_private_sources: bool = False,
    settings: Settings | None = None,
    min_interval_hours: float | None = None,
) -> State:
    """Ask the sources of preserved works (``work_ids``, or every one), metadata only, whether
    they are still there and unchanged; every check is recorded in the ledger.

    Ends Completed with the :class:`cifa_ingest.audit.watch.WatchReport` as its data whatever the
    sources said, its message naming those not present: a film that vanished is a finding of the
    run, not a failure of it (Failed is kept for a watch that could not run)."""
    settings = settings or load_settings()
    store = Archive(archive)
    interval = dt.timedelta(hours=min_interval_hours) if min_interval_hours is not None else None
    works, notes = _plan_watch(store, work_ids, interval)

    def as_task(work: watch.WatchedWork) -> list[watch.SourceCheck]:
        return _watch_work.with_options(task_run_name=f"watch-{work.work_id}")(
            work, archive, settings, allow_private_sources=allow_private_sources
        )

    report = watch.run(
        works,
        store,
        settings,
        allow_private_sources=allow_private_sources,
        notes=notes,
        run_work=as_task,
    )
    logger = get_run_logger()
    findings = [check for check in report.checks if check.status != SourceStatus.PRESENT]
    for check in findings:
        logger.warning(
            "%s source %d %s since %s: %s",
            check.work_id,
            check.source_index,
            check.status,
            check.since,
            check.summary(),
        )
    named = ", ".join(f"{c.work_id}/{c.source_index} {c.status}" for c in findings)
    return Completed(message=report.summary_line() + (f" ({named})" if named else ""), data=report)


def _watch_after_ingest(
    archive: str, work_ids: list[str], allow_private_sources: bool, settings: Settings
) -> None:
    """The nightly run's last step: the source watch of the works it covers that are preserved.

    Its findings go to the ledger and to its own flow run; it never changes the ingest's state or
    reports, and a watch that fails is logged, never raised."""
    logger = get_run_logger()
    try:
        state = source_watch(
            archive,
            work_ids,
            allow_private_sources=allow_private_sources,
            settings=settings,
            min_interval_hours=NIGHTLY_WATCH_INTERVAL_HOURS,
            return_state=True,
        )
    except Exception as exc:  # the watch is an addition to the night's work, never its failure
        logger.warning("source-watch could not run: %s", exc, exc_info=True)
        watch.log.warning("source watch could not run: %s: %s", type(exc).__name__, exc)
        return
    if not state.is_completed():
        logger.warning("source-watch ended %s: %s", state.type.value, state.message)
        watch.log.warning("source watch ended %s: %s", state.type.value, state.message)


# ---------------------------------------------------------------------------------------------
# The fixity audit


def _named(problems: list[audit.Problem], limit: int = 5) -> str:
    """``bag kind path; …``: the first ``limit`` problems, in one line (control characters of a
    path made visible)."""
    from cifa_ingest.reports.ingest_report import visible

    names = [visible(" ".join(filter(None, (p.bag, p.kind, p.path)))) for p in problems]
    more = f"; and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(names[:limit]) + more


@task(name="audit-bag", cache_policy=NO_CACHE, persist_result=False)
def _audit_bag(store: Archive, record: audit.BagRecord) -> audit.BagAudit | State:
    """Check one bag. A damaged bag ends the task Failed (red in the UI, its problems named), with
    the bag's :class:`~cifa_ingest.audit.fixity_audit.BagAudit` as the state's data: a damaged bag
    is what
    the audit is for, not an error of it, so nothing is raised and no traceback is logged."""
    checked = audit.audit_bag(store, record)
    checked.worker = _where()
    if checked.intact:
        return checked
    return Failed(message=f"damaged: {_named(checked.problems)}", data=checked)


@task(name="audit-copy", cache_policy=NO_CACHE, persist_result=False)
def _audit_copy(
    store: Archive, location: copy_audit.Location, record: audit.BagRecord
) -> audit.BagAudit | State:
    """Deep-check one bag's copy at a storage location: Failed when the copy is damaged or
    missing files (its BagAudit the state's data, nothing raised), as ``audit-bag`` is. A
    location that stops answering (or a primary that no longer says what the copy must be) is
    the Failed state's data, not a traceback: the audit says it once."""
    try:
        checked = copy_audit.deep_check(store, location, record)
    except (LocationUnreachable, replication.SourceDamaged) as exc:
        return Failed(message=str(exc), data=exc)
    checked.worker = _where()
    if checked.intact:
        return checked
    return Failed(message=f"{location.name}: {_named(checked.problems)}", data=checked)


@task(name="repair", cache_policy=NO_CACHE, persist_result=False)
def _repair(
    store: Archive, work_ids: list[str], locations: list[copy_audit.Location]
) -> repairing.RepairReport | State:
    """Repair the works an audit found wanting (:func:`cifa_ingest.storage.repair.repair_work`):
    Failed when a problem remains (no good copy of a file, a location unreachable), its report
    the state's data; a ledger whose chain is broken is the Failed state's data, nothing read or
    written. Nothing is raised: what remains is the audit's to say."""
    try:
        report = repairing.repair_work(store, work_ids, locations)
    except repairing.LedgerTampered as exc:
        return Failed(message=f"repair refused: {exc}", data=exc)
    if report.ok:
        return report
    remains = "; ".join(f"{p.work_id} @ {p.location}: {p.kind} {p.path}" for p in report.problems)
    return Failed(message=f"problems remain: {remains}"[:_MESSAGE_CHARS], data=report)


def _task_result(state: State, name: str) -> audit.BagAudit:
    return _checked(
        state.result(raise_on_failure=False), f"ended {state.type.value}: {state.message}", name
    )


def _checked(data: object, otherwise: str, name: str) -> audit.BagAudit:
    """The BagAudit a check's task came back with; what it raised, raised here."""
    if isinstance(data, audit.BagAudit):
        return data
    if isinstance(data, BaseException):  # the check raised: unreachable, or a bug
        raise data
    raise RuntimeError(f"{name} {otherwise}")


def _audit_runner(settings: Settings) -> TaskRunner | None:
    """Where an audit's checks run: on the Dask cluster at ``[execution] dask_address``, as the
    nightly ingest's works do (:func:`_works_runner`: the workers need the project and the
    archive, and the storage locations, at the same paths), or (None) in this process, as they
    always did (the primary's bags two at a time, a location's copies one at a time)."""
    if settings.execution.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=settings.execution.dask_address)
    return None


def _dask_threads(runner: TaskRunner) -> int:
    """The threads of the cluster's workers: how many checks are kept in flight on it. Connects
    to the scheduler (:class:`OSError` when it cannot)."""
    from prefect_dask import DaskTaskRunner

    assert isinstance(runner, DaskTaskRunner)
    return max(1, sum(runner.client.nthreads().values()))


@flow(name="fixity-audit", persist_result=False, validate_parameters=False)
def fixity_audit(
    archive: str,
    max_age_days: float | None = None,
    budget_seconds: float | None = None,
    budget_bytes: int | None = None,
    location: str | None = None,
    deep: bool = False,
    settings: Settings | None = None,
    repair: bool = True,
) -> State:
    """Re-read and re-hash every bag (or, with ``max_age_days``, the bags not verified in that
    many days, oldest first, within a budget). Every file is read: the tasks never use Prefect's
    cache. Each bag is an ``audit-bag`` task, Failed when the bag is damaged; every bag is checked
    whatever the others' outcome. Writes the same reports as ``cifa audit`` (``ARCHIVE/reports/``,
    :mod:`cifa_ingest.reports.audit_report`). Ends Failed when any problem was found, its message
    naming
    them, so that notifications and automations act.

    With ``location`` (a name of ``[[storage.locations]]``), the copies at that location are
    audited instead, as ``cifa audit --location NAME [--deep]`` does
    (:mod:`cifa_ingest.audit.copies`): with ``deep``, each copy is an ``audit-copy`` task; a
    location that does not answer ends the run Failed (``location_unreachable``), nothing marked
    damaged.

    With ``repair`` (the default, and the deployments'), the copies found missing or damaged are
    then repaired from a copy that verifies (a ``repair`` task,
    :mod:`cifa_ingest.audit.repairs`), and the run ends Failed only when a problem remains (no
    good copy of a file anywhere: nothing overwritten; a ledger whose chain is broken: nothing
    repaired). With ``[execution] dask_address``, the checks are tasks on the Dask cluster
    (:func:`_audit_runner`), as many in flight as its workers have threads, in the audit's order,
    none started once a budget is spent."""
    try:
        store = Archive(archive).existing()
    except NoArchive as exc:  # a wrong path, or the first night has not run yet
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc), data=RunFailed(str(exc)))
    settings = settings or load_settings()
    declared = None
    if location is not None:
        declared = settings.storage.location(location)
        if declared is None:
            message = f"no storage location named {location!r} in the settings"
            get_run_logger().error("%s", message)
            return Failed(message=message, data=RunFailed(message))
    runner = _audit_runner(settings)
    with runner if runner is not None else contextlib.nullcontext():
        parallel: dict[str, Any] = {}
        if runner is not None:
            try:
                parallel = {"workers": _dask_threads(runner), "overlap_budget": True}
            except OSError as exc:
                message = (
                    f"the Dask scheduler at {settings.execution.dask_address} cannot be reached:"
                    f" {exc}"
                )
                get_run_logger().error("%s", message)
                return Failed(message=message, data=RunFailed(message))

        def run(check_task: Any, name: str, parameters: dict[str, Any]) -> audit.BagAudit:
            named = check_task.with_options(task_run_name=name)
            if runner is None:
                return _task_result(named(**parameters, return_state=True), name)
            future = runner.submit(named, parameters=parameters)
            return _checked(future.result(raise_on_failure=False), "came back empty", name)

        def check(store: Archive, record: audit.BagRecord) -> audit.BagAudit:
            return run(_audit_bag, f"audit-{record.work_id}", {"store": store, "record": record})

        def check_copy(
            store: Archive, where: copy_audit.Location, record: audit.BagRecord
        ) -> audit.BagAudit:
            name = f"audit-{record.work_id}-at-{where.name}"
            return run(_audit_copy, name, {"store": store, "location": where, "record": record})

        if declared is not None:
            report = copy_audit.audit_location(
                store, declared, deep=deep, max_age_days=max_age_days,
                budget_seconds=budget_seconds, budget_bytes=budget_bytes, check=check_copy,
                **parallel,
            )  # fmt: skip
        else:
            report = audit.audit_archive(
                store,
                max_age_days=max_age_days,
                budget_seconds=budget_seconds,
                budget_bytes=budget_bytes,
                check=check,
                **parallel,
            )
        if repair:
            repairs.repair_found(
                store, report, list(settings.storage.locations), repair=_repair_as_task,
                recheck=check,
            )  # fmt: skip
    logger = get_run_logger()
    for done in report.repaired:
        logger.info("%s @ %s: %s (%s) repaired from %s", done["id"], done["location"],
                    done["path"], done["was"], done["source"])  # fmt: skip
    if report.repair_refused:
        logger.error("repair refused: %s", report.repair_refused)
    summary = audit.table(report).splitlines()[-1]
    _publish_audit(report, summary, archive)
    if not report.ok:
        kinds = sorted({p.kind for p in report.problems})
        message = f"{summary}; problems: {', '.join(kinds)}: {_named(report.problems)}"
        if report.repair_refused:
            message += f"; repair refused: {report.repair_refused}"
        return Failed(message=message, data=RunFailed(message, report))
    return Completed(message=summary, data=report)


def _repair_as_task(
    store: Archive, work_ids: list[str], locations: Sequence[copy_audit.Location]
) -> repairing.RepairReport:
    """Repair as the ``repair`` task, in the flow's process (it holds the archive's replication
    lock, and writes the primary's files); what it came back with, or its refusal raised."""
    state = _repair(store, work_ids, list(locations), return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, repairing.RepairReport):
        return data
    if isinstance(data, BaseException):
        raise data
    raise RuntimeError(f"repair ended {state.type.value}: {state.message}")


def _publish_audit(report: audit.AuditReport, summary: str, archive: str) -> None:
    """What people see of an audit: the HTML and JSON reports in ``ARCHIVE/reports/``, written
    as ``cifa audit`` writes them (:func:`cifa_ingest.reports.audit_report.write`), and in the
    Prefect UI
    a table of every bag (problems first) and a markdown summary naming the report.

    The reports describe the audit; they never decide it: a report or an artifact that cannot be
    written is logged as a warning, and the run's state stays what the bags made it."""
    from cifa_ingest.reports import audit_report
    from cifa_ingest.reports.ingest_report import markdown_text, visible

    logger = get_run_logger()
    written = None
    try:
        written = audit_report.write(report, Archive(archive))
    except OSError as exc:  # a full disk, a folder not writable: said, no traceback
        logger.warning("the audit report could not be written: %s", exc)
    except Exception as exc:  # a bug of the report: its traceback helps
        logger.warning("the audit report could not be written: %r", exc, exc_info=True)
    else:
        logger.info("audit report: %s (also %s; JSON: %s)", written.html, written.latest.name,
                    written.json)  # fmt: skip
    rows = [
        {
            "bag": visible(p.bag),
            "kind": str(p.kind),
            "path": visible(p.path or ""),
            "expected": p.expected or "",
            "found": p.found or "",
            "damaged frames": len(p.damaged_frames or []),
        }
        for p in report.problems
    ] + [
        {"bag": bag.bag, "kind": str(CheckOutcome.INTACT), "path": "", "expected": "", "found": "",
         "damaged frames": 0}
        for bag in report.bags
        if bag.intact
    ] + [
        {"bag": visible(done["id"]), "kind": f"repaired ({done['was']})",
         "path": visible(f"{done['location']}: {done['path']}"), "expected": done["sha256"],
         "found": f"from {done['source']}", "damaged frames": 0}
        for done in report.repaired
    ]  # fmt: skip
    lines = [
        f"# Fixity audit: {'every bag intact' if report.ok else 'problems found'}",
        "",
        summary,
    ]
    if report.problems:
        lines += ["", "| bag | kind | path |", "| --- | --- | --- |"]
        lines += [
            f"| {markdown_text(p.bag)} | {p.kind} | {markdown_text(p.path or '')} |"
            for p in report.problems
        ]
    if report.repaired:
        lines += ["", "Repaired:", "", "| bag | copy | path | was | from |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        lines += [
            f"| {markdown_text(d['id'])} | {markdown_text(d['location'])} |"
            f" {markdown_text(d['path'])} | {d['was']} | {markdown_text(d['source'])} |"
            for d in report.repaired
        ]
    if report.repair_refused:
        lines += ["", f"Repair refused: {markdown_text(report.repair_refused)}"]
    if written is not None:
        lines += ["", f"Report: `{visible(str(written.html)).replace('`', '')}`"]
    try:
        key = "fixity-audit" if report.location == PRIMARY else f"fixity-audit-{report.location}"
        create_table_artifact(table=rows, key=key.lower(), description=summary)
        create_markdown_artifact(markdown="\n".join(lines), key=f"{key.lower()}-summary")
    except Exception as exc:
        logger.warning("the audit's artifacts could not be created: %s", exc, exc_info=True)
