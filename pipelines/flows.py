"""The Prefect flows: ``preserve-film`` (one work) and ``nightly-ingest`` (catalogues).

They compose the library's steps (``cifa_ingest.preserve.STEPS``) as Prefect tasks; the order of
the steps and what each does live in the library, so the pipeline also runs without Prefect.
Tasks never use Prefect's cache (``NO_CACHE``): whether a file changed is decided by reading it,
never by a cache keyed on its path. A run in which any work failed ends in a Failed state (with the
reports as its data), so that a scheduler, not only the summary table, sees the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from cifa_ingest.archive import Archive
from cifa_ingest.catalogue import Work, load_catalogues
from cifa_ingest.config import Settings, load_settings
from cifa_ingest.preserve import (
    STEPS,
    Job,
    Outcome,
    WorkReport,
    catalogue_triage,
    place_step,
    preserve_work,
)


def _as_task(step: Callable[[Job], object]) -> Callable[[Job], object]:
    name = step.__name__.removesuffix("_step")
    return task(step, name=name, cache_policy=NO_CACHE, persist_result=False)


_TASKS = {step: _as_task(step) for step in (*STEPS, place_step)}


def _run_as_task(step: Callable[[Job], object], job: Job) -> object:
    return _TASKS[step](job)


def _final_state(reports: list[WorkReport]) -> State:
    failed = [report.id for report in reports if report.outcome is Outcome.FAILED]
    if failed:
        return Failed(message=f"{len(failed)} work(s) failed: {', '.join(failed)}", data=reports)
    return Completed(message=f"{len(reports)} work(s) done", data=reports)


@flow(name="preserve-film", persist_result=False, validate_parameters=False)
def preserve_film(
    work: Work,
    archive: str,
    allow_private_sources: bool = False,
    collection: str | None = None,
    settings: Settings | None = None,
) -> State:
    """Preserve one work: fetch, normalise, package, validate, place, register."""
    report = preserve_work(
        work,
        Archive(archive),
        settings or load_settings(),
        collection,
        allow_private_sources=allow_private_sources,
        run_step=_run_as_task,
        run_id=flow_run.get_root_flow_run_id() or flow_run.get_id(),
    )
    return _final_state([report])


@flow(name="nightly-ingest", persist_result=False, validate_parameters=False)
def nightly_ingest(
    manifests: list[str],
    archive: str,
    only: list[str] | None = None,
    allow_private_sources: bool = False,
    settings: Settings | None = None,
) -> State:
    """Preserve every permitted work of the catalogues that is not preserved yet.

    Works without permission or without a source address are reported and never contacted. A
    work that fails does not stop the others."""
    settings = settings or load_settings()
    reports: list[WorkReport] = []
    for _path, catalogue in load_catalogues(Path(m) for m in manifests):
        collection = catalogue.collection.name if catalogue.collection else None
        for work in catalogue.works:
            if only and work.id not in only:
                continue
            if work.may_be_fetched:
                state = preserve_film(
                    work,
                    archive,
                    allow_private_sources=allow_private_sources,
                    collection=collection,
                    settings=settings,
                    return_state=True,
                )
                reports.extend(_reports_of(state, work))
            else:
                reports.extend(_reports_of(None, work))
    return _final_state(reports)


def _reports_of(state: State | None, work: Work) -> list[WorkReport]:
    """The reports a preserve-film run returned; a crashed run becomes a failure report."""
    if state is None:
        decided = catalogue_triage(work)
        assert decided is not None, "only works the catalogue rules out come without a run"
        return [decided]
    data = state.result(raise_on_failure=False)
    if isinstance(data, list) and all(isinstance(item, WorkReport) for item in data):
        return data
    return [
        WorkReport(
            id=work.id,
            title=work.display_title,
            outcome=Outcome.FAILED,
            error=f"preserve-film ended {state.type.value}: {state.message or data}",
        )
    ]
