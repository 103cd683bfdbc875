"""Unattended, as an operator runs it: Prefect's own scheduler starts the runs; the UI shows them.

Every run in ``test_deployments.py`` is started through the API; none by the scheduler. That is how
all tests passed while no scheduled run could ever start (prefect 3.8.8's scheduler service failed
every minute with SQLAlchemy 2.1). Here:

- a real ``prefect server start`` on a port other than 4200, started as the operators' guide says
  (the port also in ``PREFECT_SERVER_API_PORT``), and ``cifa serve`` with schedules due every
  minute: the
  server's scheduler creates the runs, ``cifa serve`` starts them, and the nightly ingest of the
  demo films and a full audit complete; each leaves its reports in ``ARCHIVE/reports/``;
- the UI of that server and of ``cifa serve``'s own server, opened in headless Chromium: the
  deployments with their schedules; a one-off job started with ``prefect deployment run``, its run
  page's logs and its artifact (the bag, its size, the proof); a failed job's state saying why,
  with no traceback in its logs;
- ``cifa serve`` stopped by SIGTERM right after it started: it stops its own server too.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cifa_ingest.demo import films as demo
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.sizes import decimal
from tests.browser import run_chromium
from tests.helpers import assert_valid_preserved_bag
from tests.test_deployments import (
    _config,
    _finished,
    _own_api_address,
    _permission_file,
    _private_home,
    _start_serve,
    _stop,
    _wait_for,
    running_prefect_server,
)

BIN = Path(sys.executable).parent
DEPLOYMENTS = [
    "nightly-ingest/nightly-ingest",
    "fixity-audit/rolling",
    "fixity-audit/full",
    "preserve-film/preserve-film",
]


def _page_text(url: str, budget_ms: int = 20000) -> str:
    """The text of the page Prefect's UI (a single-page application) rendered at ``url``, after
    its scripts have run and its API calls have come back (Chromium's virtual time budget)."""
    dom = run_chromium(
        "--window-size=1400,1000",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
        timeout=180,
    ).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def _ui_text(url: str, *needles: str) -> str:
    """The page's text once it shows every needle (the UI can take a few seconds to fill in)."""
    text = ""
    for _ in range(4):
        text = _page_text(url)
        if all(needle in text for needle in needles):
            return text
    missing = [needle for needle in needles if needle not in text]
    raise AssertionError(f"{url} never showed {missing}: {text[:3000]}")


def _screenshot(url: str, target: Path) -> Path:
    run_chromium(
        "--virtual-time-budget=20000",
        "--window-size=1400,1000",
        f"--screenshot={target}",
        url,
        timeout=180,
    )
    return target


def _env(tmp_path: Path, config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PREFECT_HOME=str(tmp_path / "client-home"),
        CIFA_CONFIG=str(config),
        HOME=str(_private_home(tmp_path)),
        PREFECT_RUNNER_POLL_FREQUENCY="2",  # looks for runs to start every 2 s, not 10
        **extra,
    )
    return env


def _runs_of(http: httpx.Client, deployment_id: str) -> list[dict]:
    body = {
        "flow_runs": {"deployment_id": {"any_": [deployment_id]}},
        "sort": "EXPECTED_START_TIME_ASC",
        "limit": 50,
    }
    return http.post("/flow_runs/filter", json=body).json()


def _logs(http: httpx.Client, flow_run_id: str) -> list[dict]:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "offset": 0, "limit": 200}
    return http.post("/logs/filter", json=body).json()


# ---------------------------------------------------------------------------------------------
# The scheduler


def test_prefects_scheduler_starts_the_nightly_ingest_and_the_audit(
    tmp_path: Path, film_server: LocalFileServer
) -> None:
    """A server on a port of its own (not 4200), as the operators' guide starts one; schedules due
    every minute. The runs are created by the server's scheduler (``auto_scheduled``), started by
    ``cifa serve``, and complete: the demo films preserved, then every bag audited, each run
    leaving its reports."""
    archive = tmp_path / "archive"
    catalogue = demo.write_catalogue(tmp_path / "manifests" / "demo.yaml", film_server.base_url)
    every_minute = '[schedules]\nnightly_ingest = "* * * * *"\nfixity_full = "* * * * *"\n'
    config = _config(tmp_path / "cifa.toml", archive, [catalogue], extra=every_minute)
    with contextlib.ExitStack() as cleanup:
        api = cleanup.enter_context(running_prefect_server(tmp_path))
        # The archive as it is before a night: one film preserved by hand. (Before the first
        # ingest there is no archive, and an audit due then fails saying so.)
        subprocess.run(
            [str(BIN / "cifa"), "ingest", str(catalogue), "--only", "cifa-demo-0002",
             "--allow-private-sources", "--quiet"],
            env=_env(tmp_path, config), cwd=tmp_path, check=True, timeout=300,
        )  # fmt: skip
        serve, _out, err = _start_serve(
            tmp_path, _env(tmp_path, config, PREFECT_API_URL=api), "--allow-private-sources"
        )
        cleanup.callback(_stop, serve)
        http = httpx.Client(base_url=api, timeout=30)

        def deployment(name: str) -> dict:
            answer = http.get(f"/deployments/name/{name}")
            return answer.json() if answer.status_code == 200 else {}

        _wait_for(
            "the deployments",
            lambda: all(deployment(name) for name in DEPLOYMENTS),
            120,
            [serve],
        )
        nightly, full = deployment(DEPLOYMENTS[0]), deployment("fixity-audit/full")
        assert "time zone Europe/London" in nightly["description"]
        assert nightly["parameters"]["allow_private_sources"] is True

        def completed_scheduled(deployment_id: str, after: str = "") -> dict:
            for run in _runs_of(http, deployment_id):
                state = run["state"]["type"]
                assert state not in {"FAILED", "CRASHED"}, (run["name"], run["state"]["message"])
                if run["auto_scheduled"] and state == "COMPLETED" and run["start_time"] > after:
                    return run
            return {}

        night = _wait_for(
            "a night started by the scheduler to complete",
            lambda: completed_scheduled(nightly["id"]),
            420,
            [serve],
        )
        assert night["created_by"] is None or night["created_by"].get("type") != "USER"
        bags = sorted(p.name for p in (archive / "bags").iterdir())
        assert len(bags) == 8, bags  # the demo's permitted films with a source
        for bag in bags:
            assert_valid_preserved_bag(archive / "bags" / bag, bag)
        assert (archive / "reports" / "ingest-latest.html").is_file()

        audit = _wait_for(
            "a full audit started by the scheduler after the night",
            lambda: completed_scheduled(full["id"], after=night["end_time"]),
            240,
            [serve],
        )
        assert "8" in audit["state"]["message"], audit["state"]
        written = sorted((archive / "reports").glob("audit-*.json"))
        assert written, "the scheduled audit wrote no report"
        latest = json.loads(written[-1].read_text("utf-8"))
        assert latest["ok"] is True, latest
        assert (archive / "reports" / "audit-latest.html").is_file()

        # The UI of this server, on its own port, shows the deployments and their schedules.
        text = _ui_text(f"{api.removesuffix('/api')}/deployments", "nightly-ingest", "Every minute")
        assert "Can't connect" not in text
        for name in ("rolling", "full", "preserve-film"):
            assert name in text

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
        said = err.read_text("utf-8")
        assert "Traceback" not in said, said


# ---------------------------------------------------------------------------------------------
# cifa serve's own server: its UI, one-off jobs, failures, stopping


def test_cifa_serves_own_server_shows_deployments_runs_and_artifacts_in_its_ui(
    tmp_path: Path, film_server: LocalFileServer
) -> None:
    archive = tmp_path / "archive"
    config = _config(tmp_path / "cifa.toml", archive, [tmp_path / "films.yaml"])
    permission = _permission_file(tmp_path / "permission.yaml")
    env = _env(tmp_path, config)
    serve, out, err = _start_serve(tmp_path, env, "--allow-private-sources")
    try:
        api = _wait_for("the server's address", lambda: _own_api_address(out), 120, [serve])
        ui = api.removesuffix("/api")
        assert httpx.get(f"{ui}/ui-settings").json()["api_url"] == api
        http = httpx.Client(base_url=api, timeout=30)
        _wait_for(
            "the deployments",
            lambda: all(http.get(f"/deployments/name/{n}").status_code == 200 for n in DEPLOYMENTS),
            90,
            [serve],
        )

        # Two one-off jobs, as the operators' guide starts them: `prefect deployment run`.
        def one_off(work_id: str, film: str) -> str:
            started = subprocess.run(
                [str(BIN / "prefect"), "deployment", "run", "preserve-film/preserve-film",
                 "-p", f"url={film_server.base_url}/films/{film}", "-p", f"id={work_id}",
                 "-p", "title=Day One", "-p", f"permission={permission}"],
                env={**env, "PREFECT_API_URL": api}, capture_output=True, text=True,
                timeout=120, check=True,
            ).stdout  # fmt: skip
            return re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)  # type: ignore[union-attr]

        good = one_off("cifa-ui-0001", "three-days-day-1.mp4")
        bad = one_off("cifa-ui-0002", "no-such-film.mp4")

        ran = _wait_for("the good job", lambda: _finished(http, good), 240, [serve])
        assert ran["state"]["type"] == "COMPLETED", ran["state"]
        bag = archive / "bags" / "cifa-ui-0001"
        assert_valid_preserved_bag(bag, "cifa-ui-0001")
        failed = _wait_for("the bad job", lambda: _finished(http, bad), 240, [serve])
        assert failed["state"]["type"] == "FAILED", failed["state"]
        message = failed["state"]["message"]
        assert "cifa-ui-0002" in message and "not-found" in message, message

        def last_logs(run_id: str) -> list[dict]:
            logs = _logs(http, run_id)
            return logs if any("Finished in state" in log["message"] for log in logs) else []

        logs = _wait_for("the bad job's last log line", lambda: last_logs(bad), 60, [serve])
        said = "\n".join(log["message"] for log in logs)
        assert "Traceback" not in said and "unexpected exception" not in said, said
        assert any(log["level"] >= 40 and "not-found" in log["message"] for log in logs), said

        # Its artifact names the bag, its size and the proof.
        body = {"artifacts": {"flow_run_id": {"any_": [good]}}}
        artifacts = {a["key"]: a for a in http.post("/artifacts/filter", json=body).json()}
        table = artifacts["preserve-film"]
        [row] = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
        bag_bytes = sum(p.stat().st_size for p in bag.rglob("*") if p.is_file())
        assert row["bag"] == "bags/cifa-ui-0001" and row["bag size"] == decimal(bag_bytes), row
        assert row["proof"].startswith("passed"), row
        assert (archive / "reports" / "ingest-latest.html").is_file()

        # The UI: the deployments with their schedules, the run's logs, the artifact's table.
        text = _ui_text(f"{ui}/deployments", "nightly-ingest", "At 02:00 AM every day")
        assert "Can't connect" not in text and "Create a deployment" not in text
        assert "At 05:00 AM, only on Sunday" in text
        _screenshot(f"{ui}/deployments", tmp_path / "deployments.png")
        text = _ui_text(f"{ui}/runs/flow-run/{good}", "preserve-cifa-ui-0001", "Completed")
        assert "Finished in state Completed" in text, text[:3000]
        text = _ui_text(f"{ui}/runs/flow-run/{bad}", "preserve-cifa-ui-0002", "not-found")
        assert "Traceback" not in text
        _screenshot(f"{ui}/runs/flow-run/{bad}", tmp_path / "failed-run.png")
        text = _ui_text(f"{ui}/artifacts/artifact/{table['id']}", "bags/cifa-ui-0001")
        assert "passed" in text
        _screenshot(f"{ui}/artifacts/artifact/{table['id']}", tmp_path / "artifact.png")

        os.killpg(serve.pid, signal.SIGINT)
        assert serve.wait(timeout=60) == 0
    finally:
        _stop(serve)
    assert "Traceback" not in err.read_text("utf-8")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=2)


def test_sigterm_right_after_start_stops_cifa_serve_and_its_server(tmp_path: Path) -> None:
    """A supervisor's stop in the first seconds (before Prefect's runner has a SIGTERM handler
    of its own) used to end ``cifa serve`` on the spot and leave its Prefect server running."""
    config = _config(tmp_path / "cifa.toml", tmp_path / "archive", [tmp_path / "films.yaml"])
    serve, out, err = _start_serve(tmp_path, _env(tmp_path, config))
    try:
        _wait_for("Ctrl-C stops.", lambda: "Ctrl-C stops." in out.read_text("utf-8"), 120, [serve])
        api = _own_api_address(out)
        assert api is not None
        serve.send_signal(signal.SIGTERM)  # its pid only, as `kill PID` or systemd sends it
        assert serve.wait(timeout=60) == 0
    finally:
        _stop(serve)
    said = err.read_text("utf-8")
    assert "cifa serve: stopped" in said and "Traceback" not in said, said
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{api}/health", timeout=2)
        except httpx.HTTPError:
            return
        time.sleep(0.5)
    raise AssertionError(f"cifa serve's Prefect server at {api} outlived it")
