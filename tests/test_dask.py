"""A nightly run on a Dask cluster: `cifa ingest --dask ADDRESS` against a real
``distributed.LocalCluster`` of two worker processes, with the real yt-dlp, ffmpeg and Prefect
(each worker starts Prefect's embedded server on this session's PREFECT_HOME, which the workers
inherit with CIFA_CONFIG from this process's environment); and the fixity audits, their bags and
copies checked as tasks on the same kind of cluster."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.demo import films as demo
from cifa_ingest.demo.http_server import LocalFileServer
from tests.helpers import assert_valid_preserved_bag
from tests.test_audit_locations import (
    WORKS,
    _flip_a_byte_keeping_size_and_mtime,
    _master,
    _states,
    archive,
    disk,
    pristine,
)

__all__ = ["archive", "disk", "pristine"]  # fixtures

GOOD = ["cifa-demo-0002", "cifa-demo-0003"]  # the two smallest demo works (one in two parts)
MISSING = "cifa-demo-0099"


@pytest.fixture
def dask_address() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    assert os.environ["PREFECT_HOME"] and os.environ["CIFA_CONFIG"]  # what the workers inherit
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield cluster.scheduler_address


def _catalogue(tmp_path: Path, server: LocalFileServer) -> Path:
    """Two demo works, and a third whose film the server does not have (404)."""
    catalogue = demo.demo_catalogue(server.base_url)
    works = [w for w in catalogue["works"] if w["id"] in GOOD]  # type: ignore[index]
    missing = json.loads(json.dumps(works[0]))
    missing["id"] = MISSING
    missing["title"] = {"en": "A Film the Server Lost", "zh": "丢失的电影"}
    missing["source"]["url"] = f"{server.base_url}/films/no-such-film.mp4"
    catalogue["works"] = [*works, missing]
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue, allow_unicode=True), "utf-8")
    return path


def test_a_nightly_run_on_a_dask_cluster(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    film_server: LocalFileServer,
    archive_dir: Path,
    dask_address: str,
) -> None:
    status = cli.main(
        ["ingest", str(_catalogue(tmp_path, film_server)), "--archive", str(archive_dir),
         "--allow-private-sources", "--dask", dask_address, "--json", "--quiet"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out.startswith("{"), captured.err
    report = {work["id"]: work for work in json.loads(captured.out)["works"]}

    # The failed work failed alone; the others are preserved, in valid bags.
    assert status == 1, report
    assert {i: w["outcome"] for i, w in report.items()} == {
        **dict.fromkeys(GOOD, "preserved"),
        MISSING: "failed",
    }, report
    assert "404" in report[MISSING]["error"], report
    for work_id in GOOD:
        assert_valid_preserved_bag(archive_dir / "bags" / work_id, work_id)

    # Each work ran on a worker of the cluster, not in this process; the two preserved works
    # ran in two different worker processes.
    workers = {i: w["worker"] for i, w in report.items()}
    assert all(w.startswith("dask worker tcp://127.0.0.1:") for w in workers.values()), workers
    assert all(f"pid {os.getpid()})" not in w for w in workers.values()), workers
    assert workers[GOOD[0]] != workers[GOOD[1]], workers

    # In Prefect: the failed work's own preserve-film run is Failed, the others Completed, and
    # the nightly run is Failed, saying how many works failed and which.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        nightly = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly-ingest"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )[0]
        films = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[nightly.id])
            ),
            flow_filter=FlowFilter(name=FlowFilterName(any_=["preserve-film"])),
            sort=FlowRunSort.START_TIME_ASC,
            limit=10,
        )
    assert nightly.state and nightly.state.is_failed(), nightly.state
    message = nightly.state.message or ""
    assert message.startswith(f"1 of {len(GOOD) + 1} work(s) failed: {MISSING}: not-found: "), (
        nightly.state
    )
    states = {run.parameters["work"]["id"]: run.state.type.value for run in films if run.state}
    assert states == {**dict.fromkeys(GOOD, "COMPLETED"), MISSING: "FAILED"}, states


def test_an_unreachable_scheduler_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], archive_dir: Path
) -> None:
    """Nothing listens at the address: the run fails saying which scheduler it could not reach
    (after distributed's connect timeout, shortened here), and nothing is fetched."""
    dask = pytest.importorskip("dask")
    catalogue = tmp_path / "one.yaml"
    catalogue.write_text(
        "works:\n- id: cifa-0001\n  title: {en: A Film}\n"
        "  source: {url: 'https://www.youtube.com/watch?v=aaaaaaaaaaa', platform: YouTube}\n"
        "  permission: {status: granted, granted_by: The Director}\n",
        "utf-8",
    )
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        status = cli.main(
            ["ingest", str(catalogue), "--archive", str(archive_dir), "--dask", "tcp://127.0.0.1:9"]
        )
    err = capsys.readouterr().err
    assert status == 1
    assert "the Dask scheduler at tcp://127.0.0.1:9 cannot be reached" in err, err
    assert not (archive_dir / "bags").exists() or not any((archive_dir / "bags").iterdir())


def test_a_dask_address_that_is_not_one_is_refused(
    capsys: pytest.CaptureFixture[str], archive_dir: Path
) -> None:
    status = cli.main(
        ["ingest", "manifests/cifa.yaml", "--archive", str(archive_dir), "--dask", "http://x:1"]
    )
    assert status == 2
    assert "--dask: not a Dask scheduler address" in capsys.readouterr().err


def test_the_execution_settings_are_checked(tmp_path: Path) -> None:
    from cifa_ingest.config import load_settings
    from cifa_ingest.errors import ConfigError

    config = tmp_path / "cifa.toml"
    config.write_text('[execution]\ndask_address = "tcp://10.1.2.3:8786"\nmax_encodes = 3\n')
    execution = load_settings(config).execution
    assert (execution.dask_address, execution.max_encodes) == ("tcp://10.1.2.3:8786", 3)
    assert execution.max_parallel_works == 1  # one work at a time unless asked
    for bad, key in (
        ('dask_address = "scheduler:8786 --evil"', "execution.dask_address"),
        ("max_encodes = 0", "execution.max_encodes"),
        ("max_parallel_works = 0", "execution.max_parallel_works"),
        ("workers = 4", "execution.workers"),
    ):
        config.write_text(f"[execution]\n{bad}\n")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_settings(config)


def test_a_deep_location_audit_on_a_dask_cluster_finds_the_damage_and_repairs_it(
    archive: Path, disk: Path, dask_address: str
) -> None:
    """``fixity-audit`` with ``[execution] dask_address``: each copy's ``audit-copy`` task runs
    on a worker of the cluster (two in flight, one per worker), the damaged copy is found there
    and then repaired from the primary; the primary's audit runs its bags there too."""
    from cifa_ingest.archive.ledger import CopyState
    from cifa_ingest.config import load_settings
    from cifa_ingest.pipelines.flows import fixity_audit

    settings = load_settings()
    settings = settings.model_copy(
        update={"execution": settings.execution.model_copy(update={"dask_address": dask_address})}
    )
    work = sorted(WORKS)[0]
    damaged = _master(disk, work)
    intact = _master(archive, work).read_bytes()
    _flip_a_byte_keeping_size_and_mtime(damaged)

    state = fixity_audit(
        str(archive), location="disk2", deep=True, settings=settings, return_state=True
    )
    assert state.is_completed(), state.message
    report = state.result()
    assert sorted(bag.bag for bag in report.bags) == sorted(WORKS) and report.ok
    assert [(r["id"], r["location"], r["was"], r["source"]) for r in report.repaired] == [
        (work, "disk2", "copy_damaged", "primary")
    ]
    assert damaged.read_bytes() == intact
    assert _states(archive, "disk2") == dict.fromkeys(WORKS, CopyState.GOOD)
    workers = {bag.bag: bag.worker for bag in report.bags}
    assert all(w.startswith("dask worker tcp://127.0.0.1:") for w in workers.values()), workers
    assert all(f"pid {os.getpid()})" not in w for w in workers.values()), workers

    # Told only to look, on Dask too: the damage is found there, and the run fails.
    _flip_a_byte_keeping_size_and_mtime(damaged)
    state = fixity_audit(
        str(archive), location="disk2", deep=True, settings=settings, repair=False,
        return_state=True,
    )  # fmt: skip
    assert state.is_failed() and "copy_damaged" in (state.message or "")
    assert damaged.read_bytes() != intact

    # The primary's audit, its bags as audit-bag tasks on the workers.
    state = fixity_audit(str(archive), settings=settings, return_state=True)
    assert state.is_completed(), state.message
    primary = state.result()
    assert len(primary.bags) == len(WORKS)
    assert all(bag.worker.startswith("dask worker tcp://") for bag in primary.bags)
