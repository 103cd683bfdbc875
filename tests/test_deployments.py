"""The deployments of ``cifa serve`` and the privacy of permission records in Prefect.

The deployments are checked as built from a config (fast, no server), and then for real: a real
``prefect server start`` (SQLite in its own temporary home, 127.0.0.1, a free port), ``cifa serve``
against it in a subprocess, the deployments and their schedules read back from the server's API,
a one-off ``preserve-film`` job started through the API, its bag validated, and the grantor's name
looked for everywhere Prefect keeps anything: the run's stored parameters, its logs, and every
column of every table of the server's database. It is in none of them, and in the bag. Then two
nights started at once: the first waits for the archive's writer lock (held by the test), the
second is held back by the deployment's concurrency limit until the first has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.catalogue.model import WITHHELD, Permission
from cifa_ingest.catalogue.one_off import work_for_job
from cifa_ingest.config import Settings, load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.errors import ConfigError, InputError
from cifa_ingest.pipelines import deployments
from tests.helpers import assert_valid_preserved_bag

BIN = Path(sys.executable).parent
#: Personal details that must reach the bag and nothing of Prefect's.
GRANTOR = "Zhang Xiaoming (director), +86 138 0000 0000"
BASIS = "Letter of 1 March 2024 to the archive, kept in the office safe"


def _config(path: Path, archive: Path, manifests: list[Path], extra: str = "") -> Path:
    """A config like the tests' one, with its own archive and catalogues."""
    path.write_text(
        f"[archive]\npath = {json.dumps(str(archive))}\n"
        f"[catalogue]\nmanifests = {json.dumps([str(m) for m in manifests])}\n"
        "[fetch]\npause_seconds = 0\nbackoff_seconds = 0.2\nmax_wait_seconds = 3\n"
        "progress_interval_seconds = 60\n"
        "[normalise]\n"
        "free_space_margin_bytes = 0\nprogress_interval_seconds = 60\n" + extra,
        "utf-8",
    )
    return path


def _permission_file(path: Path) -> Path:
    path.write_text(
        f"status: granted\ngranted_by: {json.dumps(GRANTOR)}\nbasis: {json.dumps(BASIS)}\n"
        "date: 2024-03-01\n",
        "utf-8",
    )
    return path


# ---------------------------------------------------------------------------------------------
# The deployments as data


def test_deployments_are_built_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules = (
        '[schedules]\ntimezone = "Asia/Shanghai"\nnightly_ingest = "30 1 * * *"\n'
        'fixity_rolling = "15 3 * * *"\nfixity_rolling_max_age_days = 30\n'
        'fixity_rolling_budget_hours = 2\nfixity_full = "0 6 * * sun"\n'
    )
    config = _config(tmp_path / "c.toml", Path("arch"), [Path("manifests/a.yaml")], schedules)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config)
    planned = deployments.plan(
        settings, Path(settings.archive.path), [Path(m) for m in settings.catalogue.manifests]
    )
    by_name = {d.full_name: d for d in planned}
    assert list(by_name) == [
        "nightly-ingest/nightly-ingest",
        "fixity-audit/rolling",
        "fixity-audit/full",
        "preserve-film/preserve-film",
    ]
    archive = str(tmp_path / "arch")  # made absolute when served
    nightly = by_name["nightly-ingest/nightly-ingest"]
    assert (nightly.cron, nightly.timezone, nightly.concurrency_limit) == (
        "30 1 * * *",
        "Asia/Shanghai",
        1,
    )
    assert nightly.parameters == {
        "manifests": [str(tmp_path / "manifests" / "a.yaml")],
        "archive": archive,
    }
    rolling = by_name["fixity-audit/rolling"]
    assert (rolling.cron, rolling.parameters) == (
        "15 3 * * *",
        {"archive": archive, "max_age_days": 30, "budget_seconds": 7200},
    )
    assert by_name["fixity-audit/full"].parameters == {"archive": archive}
    assert by_name["fixity-audit/full"].cron == "0 6 * * sun"
    one_off = by_name["preserve-film/preserve-film"]
    assert one_off.cron is None and one_off.parameters == {"archive": archive}

    # The same, as Prefect's deployments (no server is contacted to build them).
    built = {f"{d.flow_name}/{d.name}": d for d in deployments.to_deployments(planned)}
    assert set(built) == set(by_name)
    prefect_nightly = built["nightly-ingest/nightly-ingest"]
    [schedule] = prefect_nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 1 * * *", "Asia/Shanghai")
    assert prefect_nightly.concurrency_limit == 1
    # What a served run imports: the nightly flow holding the writer lock; the others as they are.
    assert prefect_nightly.entrypoint == "cifa_ingest.pipelines.served.nightly_ingest"
    assert (
        built["preserve-film/preserve-film"].entrypoint
        == "cifa_ingest.pipelines.flows.preserve_film_job"
    )
    assert built["preserve-film/preserve-film"].schedules == []
    job_schema = built["preserve-film/preserve-film"]._parameter_openapi_schema
    assert set(job_schema.required) == {"id", "permission"}
    assert {"url", "title", "title_zh", "director", "year"} <= set(job_schema.properties)
    assert "work" not in job_schema.properties  # no record can be passed inline


def test_the_default_schedules() -> None:
    planned = {d.full_name: d.when for d in deployments.plan(Settings(), Path("a"), [])}
    assert planned == {
        "nightly-ingest/nightly-ingest": "0 2 * * * (Europe/London)",
        "fixity-audit/rolling": "0 4 * * * (Europe/London)",
        "fixity-audit/full": "0 5 * * 0 (Europe/London)",
        "preserve-film/preserve-film": "no schedule",
    }


def test_each_storage_location_has_its_deep_rolling_audit_scheduled_from_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One deployment per location, ``fixity-audit/location-NAME``: a deep rolling audit with
    the location's ``audit_every_days`` as its maximum age, on the primary rolling audit's
    nights (hourly steps when the age is under a day)."""
    locations = (
        '[schedules]\nfixity_rolling = "15 3 * * *"\n'
        '[[storage.locations]]\nname = "disk2"\nkind = "filesystem"\npath = "/mnt/disk2/cifa"\n'
        'zone = "building-a"\naudit_every_days = 30\n'
        '[[storage.locations]]\nname = "full"\nkind = "s3"\nbucket = "cifa-copies"\n'
        'zone = "elsewhere"\naudit_every_days = 0.25\n'
    )
    config = _config(tmp_path / "c.toml", Path("arch"), [], locations)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config)
    planned = deployments.plan(settings, Path(settings.archive.path), [])
    by_name = {d.full_name: d for d in planned}
    assert list(by_name) == [
        "nightly-ingest/nightly-ingest",
        "fixity-audit/rolling",
        "fixity-audit/full",
        "fixity-audit/location-disk2",
        "fixity-audit/location-full",  # never the primary's full audit's name
        "preserve-film/preserve-film",
    ]
    archive = str(tmp_path / "arch")
    disk2, s3 = by_name["fixity-audit/location-disk2"], by_name["fixity-audit/location-full"]
    assert disk2.parameters == {
        "archive": archive, "location": "disk2", "deep": True, "max_age_days": 30
    }  # fmt: skip
    assert (disk2.cron, disk2.concurrency_limit) == ("15 3 * * *", 1)
    assert s3.parameters["max_age_days"] == 0.25 and s3.cron == "0 */6 * * *"
    assert deployments.location_cron(1 / 48, "0 4 * * *") == "0 */1 * * *"
    built = {f"{d.flow_name}/{d.name}": d for d in deployments.to_deployments(planned)}
    [schedule] = built["fixity-audit/location-full"].schedules
    assert schedule.schedule.cron == "0 */6 * * *"
    assert built["fixity-audit/location-disk2"].parameters["location"] == "disk2"


#: How a schedule that Prefect's own parser refuses is named (config._valid_cron).
REFUSED = "Value error, Prefect's scheduler refuses it: Invalid"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('nightly_ingest = "0 25 * * *"', f"schedules.nightly_ingest: {REFUSED} cron"),
        ('fixity_full = "every sunday"', f"schedules.fixity_full: {REFUSED} cron"),
        ('timezone = "Europe/Londres"', f"schedules.timezone: {REFUSED} timezone"),
        ("fixity_rolling_max_age_days = 0", "schedules.fixity_rolling_max_age_days"),
        ('nightly = "0 2 * * *"', "schedules.nightly: Extra inputs are not permitted"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_key_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    line: str,
    named: str,
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"[schedules]\n{line}\n", "utf-8")
    with pytest.raises(ConfigError, match="schedules"):
        load_settings(config)
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    assert cli.main(["serve", "--quiet"]) == 2  # before anything is served
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Permission records and their JSON form


def test_a_permission_record_withholds_personal_details_in_json_only() -> None:
    from fastapi.encoders import jsonable_encoder  # what Prefect stores parameters with

    record = Permission.model_validate(
        {"status": "granted", "granted_by": GRANTOR, "basis": BASIS, "date": "2024-03-01"}
    )
    for dumped in (jsonable_encoder(record), record.model_dump(mode="json")):
        assert dumped["granted_by"] == dumped["basis"] == WITHHELD
        assert dumped["status"] == "granted" and dumped["date"] == "2024-03-01"
        assert dumped["notes"] is None
    assert GRANTOR not in record.model_dump_json()
    full = record.record()
    assert (full["granted_by"], full["basis"], full["date"]) == (GRANTOR, BASIS, "2024-03-01")
    assert json.loads(json.dumps(full)) == full


def test_a_one_off_job_reads_its_permission_by_reference(tmp_path: Path) -> None:
    permission = _permission_file(tmp_path / "permission.yaml")
    work, collection = work_for_job(
        "cifa-0500", str(permission), url="https://youtu.be/x", title="A Film", year=2001
    )
    assert work.permission.granted_by == GRANTOR and work.title.en == "A Film"
    assert collection is None

    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "collection: {name: Independent documentaries}\n"
        "works:\n- id: cifa-0501\n  title: {en: Catalogued}\n"
        "  source: {url: 'https://youtu.be/y'}\n"
        f"  permission: {{status: granted, granted_by: {json.dumps(GRANTOR)}}}\n",
        "utf-8",
    )
    work, collection = work_for_job("cifa-0501", str(catalogue))
    assert (work.title.en, work.permission.granted_by) == ("Catalogued", GRANTOR)
    assert collection == "Independent documentaries"

    problems = [
        ("cifa-0501", str(tmp_path / "absent.yaml"), {"url": "https://youtu.be/x"}, "cannot read"),
        ("cifa-0599", str(catalogue), {}, "the catalogue holds no work cifa-0599"),
        ("cifa-0501", str(catalogue), {"title": "Other"}, "do not give title"),
        ("cifa-0503", str(permission), {}, "url and title required"),
    ]
    for work_id, reference, values, message in problems:
        with pytest.raises(InputError, match=message):
            work_for_job(work_id, reference, **values)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"status: granted\nbasis: {json.dumps(BASIS)}\n", "utf-8")  # no grantor
    with pytest.raises(InputError) as refused:
        work_for_job("cifa-0502", str(bad), url="https://youtu.be/z", title="Z")
    assert "granted_by is required" in str(refused.value) and BASIS not in str(refused.value)


def test_a_one_off_job_with_bad_input_fails_naming_it_and_nothing_personal(
    tmp_path: Path, archive_dir: Path, film_server: LocalFileServer
) -> None:
    """The deployment's flow, run in-process: bad input ends the run Failed with the problem
    named (no traceback, nothing fetched), and no message quotes the permission record."""
    from cifa_ingest.pipelines.flows import preserve_film_job

    permission = _permission_file(tmp_path / "permission.yaml")
    url = f"{film_server.base_url}/films/three-days-day-1.mp4"
    cases = [
        ({"permission": str(tmp_path / "absent.yaml"), "url": url, "title": "T"}, "cannot read"),
        ({"permission": str(permission), "url": url}, "title required"),
        ({"permission": str(permission), "url": url, "title": "T"}, "127.0.0.1"),  # private
    ]
    for parameters, named in cases:
        state = preserve_film_job(
            id="cifa-dep-0004", archive=str(archive_dir), return_state=True, **parameters
        )
        assert state.is_failed() and named in (state.message or ""), state.message
        assert "Zhang" not in (state.message or "") and "safe" not in (state.message or "")
    assert film_server.requests == []
    assert not (archive_dir / "bags" / "cifa-dep-0004").exists()


def _db_hits(database: Path, needle: str) -> list[str]:
    """Every ``table.column`` of a Prefect database whose text holds ``needle``."""
    hits = []
    with contextlib.closing(sqlite3.connect(database)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                query = f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE ?'
                if db.execute(query, (f"%{needle}%",)).fetchone()[0]:
                    hits.append(f"{table}.{column}")
    return hits


def _private_home(tmp_path: Path) -> Path:
    """A HOME of the test's own: MediaConch keeps a SQLite database under HOME, and checks run
    by other processes at the same moment would lock it ("database is locked": no verdict)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return home


def test_cifa_preserve_keeps_the_grantor_out_of_prefect(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    archive_dir: Path,
    film_server: LocalFileServer,
) -> None:
    """The everyday path: ``cifa preserve --granted-by`` on the embedded server. Prefect stores
    the run's parameters (the work), its task runs and logs: the grantor is in none of them."""
    monkeypatch.setenv("HOME", str(_private_home(tmp_path)))
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort, LogSort
    from prefect.logging.handlers import APILogWorker

    url = f"{film_server.base_url}/films/three-days-day-1.mp4"
    args = ["preserve", url, "--id", "cifa-dep-0001", "--title", "Day One"]
    args += ["--granted-by", GRANTOR, "--basis", BASIS, "--archive", str(archive_dir)]
    assert cli.main([*args, "--allow-private-sources", "--quiet"]) == 0
    assert GRANTOR not in capsys.readouterr().out
    bag = archive_dir / "bags" / "cifa-dep-0001"
    record = json.loads((bag / "metadata" / "permission.json").read_text("utf-8"))
    assert (record["granted_by"], record["basis"]) == (GRANTOR, BASIS)
    assert GRANTOR in (bag / "metadata" / "premis.xml").read_text("utf-8")

    APILogWorker.drain_all(timeout=10)  # the run's logs, sent in the background, are stored
    with get_client(sync_client=True) as client:
        # Prefect 3.8.8's client sends null sort and offset unless given: its server refuses them.
        runs = client.read_flow_runs(limit=50, offset=0, sort=FlowRunSort.START_TIME_DESC)
        [run_id] = [
            run.id
            for run in runs
            if (run.parameters.get("work") or {}).get("id") == "cifa-dep-0001"
        ]
        stored_run = client.read_flow_run(run_id)
        stored = stored_run.parameters
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
            limit=200,
            offset=0,
            sort=LogSort.TIMESTAMP_ASC,
        )
    assert stored_run.name == "preserve-cifa-dep-0001"  # which film, at a glance in the UI
    assert stored["work"]["permission"]["granted_by"] == WITHHELD
    assert stored["work"]["permission"]["status"] == "granted"
    assert GRANTOR not in json.dumps(stored) and BASIS not in json.dumps(stored)
    assert logs and not [log.message for log in logs if "Zhang" in log.message]
    database = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
    assert _db_hits(database, "cifa-dep-0001")  # the run is there ...
    assert _db_hits(database, "Zhang Xiaoming") == []  # ... and its grantor is not
    assert _db_hits(database, "office safe") == []


# ---------------------------------------------------------------------------------------------
# A real Prefect server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a process group this test started: politely, then for good."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


class _PrefectRetries(httpx.HTTPTransport):
    """The test's raw API calls handled as Prefect's own client handles them: a 408, 429, 502
    or 503 (a busy server) is tried again, up to five times a second apart (the retry codes of
    ``prefect.client.base.PrefectHttpxAsyncClient``). CI once saw a night's ``create_flow_run``
    answered without a run, its status not recorded: ``start_night`` now says it if it recurs."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(5):
            response = super().handle_request(request)
            if response.status_code not in {408, 429, 502, 503}:
                return response
            response.close()
            time.sleep(1)
        return super().handle_request(request)


def _wait_for(what: str, check, timeout: float, processes: list[subprocess.Popen[bytes]]):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited while waiting for {what}"
        with contextlib.suppress(httpx.HTTPError):
            found = check()
            if found:
                return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _start_serve(
    tmp_path: Path, env: dict[str, str], *options: str
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`cifa serve [options]` in a session of its own (the test is its terminal: a SIGINT to the
    group is a Ctrl-C); its output goes to ``serve.out`` and ``serve.err``.

    Its SIGINT and SIGQUIT are those of a terminal's foreground job whatever started the suite:
    a shell without job control runs a background command (`make test &`, `nohup … &`) with
    both ignored, an ignored disposition survives exec, and the Ctrl-C these tests send would
    never arrive."""
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        serve = subprocess.Popen(
            [str(BIN / "cifa"), "serve", *options],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_as_a_terminals_job,
        )
    return serve, out, err


def _as_a_terminals_job() -> None:
    for number in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


def _own_api_address(out: Path) -> str | None:
    """The API of the server `cifa serve` started for itself, from what it printed (or None
    until it has)."""
    for line in out.read_text("utf-8").splitlines():
        if line.startswith("Serving ") and "http://127.0.0.1:" in line:
            return line.split(" at ", 1)[1].split()[0]
    return None


def _finished(http: httpx.Client, flow_run_id: str) -> dict:
    """The flow run once it has ended (Completed, Failed or Crashed), else ``{}``."""
    run = http.get(f"/flow_runs/{flow_run_id}").json()
    return run if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED"} else {}


#: The server's HTTP basic authentication (``PREFECT_SERVER_API_AUTH_STRING``), as the
#: operators' guide advises for a server others can reach; `cifa serve` sends it as
#: ``PREFECT_API_AUTH_STRING``.
AUTH = ("cifa", "a-test-password")


@contextlib.contextmanager
def running_prefect_server(tmp_path: Path, **settings: str) -> Iterator[str]:
    """A real ``prefect server start`` on 127.0.0.1 and a free port, started as the operators'
    guide says (``PREFECT_SERVER_API_PORT`` set to the port, so that its UI finds its API), SQLite
    in a
    temporary home, with ``settings`` in its environment; yields its API URL, stops it after."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "server-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_PORT=str(port),
        **settings,
    )
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait_for("the server", lambda: httpx.get(f"{api}/health").json() is True, 90, [server])
        yield api
    finally:
        _stop(server)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real Prefect server requiring :data:`AUTH`; its API URL and its database."""
    with running_prefect_server(
        tmp_path,
        PREFECT_SERVER_API_AUTH_STRING=":".join(AUTH),
        # A run held back by a concurrency limit is tried again after 2 s, not 30 (test speed).
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="2",
    ) as api:
        yield api, tmp_path / "server-home" / "prefect.db"


def test_cifa_serve_on_a_real_prefect_server(
    tmp_path: Path,
    film_server: LocalFileServer,
    prefect_server: tuple[str, Path],
) -> None:
    api, database = prefect_server
    archive = tmp_path / "archive"
    catalogue = tmp_path / "manifests" / "films.yaml"
    config = _config(tmp_path / "cifa.toml", archive, [catalogue])
    permission = _permission_file(tmp_path / "permission.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PREFECT_API_URL=api,
        PREFECT_API_AUTH_STRING=":".join(AUTH),
        PREFECT_HOME=str(tmp_path / "client-home"),
        CIFA_CONFIG=str(config),
        HOME=str(_private_home(tmp_path)),
        PREFECT_RUNNER_POLL_FREQUENCY="2",  # looks for runs to start every 2 s, not 10
    )
    serve, out, err = _start_serve(tmp_path, env)
    try:
        http = httpx.Client(base_url=api, timeout=30, auth=AUTH, transport=_PrefectRetries())
        assert httpx.post(f"{api}/deployments/filter", json={}).status_code == 401

        def deployment(name: str) -> dict:
            response = http.get(f"/deployments/name/{name}")
            return response.json() if response.status_code == 200 else {}

        _wait_for("the deployments", lambda: deployment("preserve-film/preserve-film"), 90, [serve])
        nightly = deployment("nightly-ingest/nightly-ingest")
        [schedule] = nightly["schedules"]
        assert schedule["schedule"]["cron"] == "0 2 * * *"
        assert schedule["schedule"]["timezone"] == "Europe/London" and schedule["active"]
        assert nightly["global_concurrency_limit"]["limit"] == 1
        assert nightly["parameters"] == {"manifests": [str(catalogue)], "archive": str(archive)}
        rolling, full = deployment("fixity-audit/rolling"), deployment("fixity-audit/full")
        assert [s["schedule"]["cron"] for s in rolling["schedules"]] == ["0 4 * * *"]
        assert rolling["parameters"]["max_age_days"] == 90
        assert [s["schedule"]["cron"] for s in full["schedules"]] == ["0 5 * * 0"]
        assert {s["schedule"]["timezone"] for s in rolling["schedules"] + full["schedules"]} == {
            "Europe/London"
        }
        one_off = deployment("preserve-film/preserve-film")
        assert one_off["schedules"] == [] and not one_off["paused"]
        printed = out.read_text("utf-8")
        assert "nightly-ingest/nightly-ingest  0 2 * * * (Europe/London)" in printed
        assert f"the Prefect server at {api}" in printed
        assert f"no catalogue at {catalogue}" in err.read_text("utf-8")  # written further down

        # A one-off job, through the API, as `prefect deployment run` starts it.
        parameters = {
            "url": f"{film_server.base_url}/films/three-days-day-1.mp4",
            "id": "cifa-dep-0002",
            "title": "Day One",
            "permission": str(permission),
            "allow_private_sources": True,
        }
        created = http.post(
            f"/deployments/{one_off['id']}/create_flow_run", json={"parameters": parameters}
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        run = _wait_for("the one-off job", lambda: _finished(http, run_id), 180, [serve])
        assert run["state"]["type"] == "COMPLETED", run["state"]
        bag = archive / "bags" / "cifa-dep-0002"
        assert_valid_preserved_bag(bag, "cifa-dep-0002")
        record = json.loads((bag / "metadata" / "permission.json").read_text("utf-8"))
        assert (record["granted_by"], record["basis"]) == (GRANTOR, BASIS)

        # The grantor is in the bag, and nowhere in Prefect: parameters, logs, database.
        assert UUID(run_id) and run["parameters"]["permission"] == str(permission)
        assert run["name"] == "preserve-cifa-dep-0002"
        assert GRANTOR not in json.dumps(run)

        def all_logs() -> list[dict]:
            """The run's logs once its last line has arrived: the run's process ships them in
            batches, and the final one can land after the state (seen in CI)."""
            logs = http.post(
                "/logs/filter",
                json={"logs": {"flow_run_id": {"any_": [run_id]}}, "offset": 0, "limit": 200},
            ).json()
            done = any("Finished in state Completed" in log["message"] for log in logs)
            return logs if done else []

        logs = _wait_for("the run's last log line", all_logs, 60, [serve])
        assert not [log["message"] for log in logs if "Zhang" in log["message"]]
        assert _db_hits(database, "cifa-dep-0002")
        assert _db_hits(database, "Zhang Xiaoming") == [] and _db_hits(database, "safe") == []

        # The scheduled night, started now through the API: it holds the archive's writer lock,
        # so it waits while another writer (here, this test) holds it.
        catalogue.parent.mkdir()
        catalogue.write_text(
            "works:\n- id: cifa-dep-0003\n  title: {en: Awaiting permission}\n"
            "  source: {url: 'https://youtu.be/x'}\n  permission: {status: pending}\n",
            "utf-8",
        )

        def run_logs(flow_run_id: str) -> list[str]:
            body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "offset": 0, "limit": 200}
            return [log["message"] for log in http.post("/logs/filter", json=body).json()]

        def state_of(flow_run_id: str) -> tuple[str, str]:
            state = http.get(f"/flow_runs/{flow_run_id}").json()["state"]
            return state["type"], state["name"]

        def start_night() -> str:
            started = http.post(f"/deployments/{nightly['id']}/create_flow_run", json={})
            assert started.status_code == 201, (started.status_code, started.text)
            return started.json()["id"]

        with Archive(archive).writer_lock():
            night = start_night()
            waiting = _wait_for(
                "the night to wait for the writer lock",
                lambda: [m for m in run_logs(night) if "waiting for it" in m],
                90,
                [serve],
            )
            assert str(archive) in waiting[0]
            assert state_of(night) == ("RUNNING", "Running")
            # A second night while the first runs: the deployment's limit of one holds it back.
            second = start_night()
            _wait_for(
                "the second night to be held back",
                lambda: state_of(second)[1] == "AwaitingConcurrencySlot",
                90,
                [serve],
            )
        for flow_run_id in (night, second):
            run = _wait_for("a night", lambda i=flow_run_id: _finished(http, i), 120, [serve])
            assert run["state"]["type"] == "COMPLETED", run["state"]
            assert run["parameters"]["manifests"] == [str(catalogue)]
        first_ended = http.get(f"/flow_runs/{night}").json()["end_time"]
        assert http.get(f"/flow_runs/{second}").json()["start_time"] >= first_ended  # no overlap

        # Ctrl-C stops serving cleanly; the schedules are paused until the next `cifa serve`.
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
        assert "Traceback" not in err.read_text("utf-8")
        assert deployment("nightly-ingest/nightly-ingest")["paused"] is True
    finally:
        _stop(serve)
    assert "Zhang" not in out.read_text("utf-8") + err.read_text("utf-8")


def test_cifa_serve_on_its_own_server_stops_cleanly_on_a_terminals_ctrl_c(tmp_path: Path) -> None:
    """Without PREFECT_API_URL, `cifa serve` runs a Prefect server of its own on 127.0.0.1. A
    terminal's Ctrl-C reaches the whole process group: it used to kill Prefect's temporary server
    first, and the runner then failed to pause the schedules (tracebacks, a minute of retries).
    Now: exit 0 at once, no traceback, the schedules paused in the database, no server left."""
    home = tmp_path / "prefect-home"
    config = _config(tmp_path / "cifa.toml", tmp_path / "archive", [tmp_path / "films.yaml"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), CIFA_CONFIG=str(config), HOME=str(_private_home(tmp_path)))
    serve, out, err = _start_serve(tmp_path, env)
    try:
        api = _wait_for("the server's address", lambda: _own_api_address(out), 120, [serve])
        assert api.startswith("http://127.0.0.1:")

        def served() -> bool:
            names = ["nightly-ingest/nightly-ingest", "fixity-audit/rolling", "fixity-audit/full"]
            names.append("preserve-film/preserve-film")
            answers = [httpx.get(f"{api}/deployments/name/{name}") for name in names]
            return all(a.status_code == 200 and not a.json()["paused"] for a in answers)

        _wait_for("the deployments", served, 90, [serve])
        started = time.monotonic()
        os.killpg(serve.pid, signal.SIGINT)
        assert serve.wait(timeout=60) == 0
        assert time.monotonic() - started < 30, "stopped without a minute of retries"
    finally:
        _stop(serve)
    said = err.read_text("utf-8")
    assert "Traceback" not in said and "error" not in said.lower(), said
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=2)
    with sqlite3.connect(home / "prefect.db") as db:
        paused = dict(db.execute("SELECT name, paused FROM deployment").fetchall())
    assert paused == {"nightly-ingest": 1, "rolling": 1, "full": 1, "preserve-film": 1}, paused
