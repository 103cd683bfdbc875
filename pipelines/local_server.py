"""A Prefect server of ``cifa serve``'s own, on 127.0.0.1, when no ``PREFECT_API_URL`` is set.

Prefect's embedded ("temporary") server is a child process in the terminal's process group: the
Ctrl-C that is meant to stop ``cifa serve`` kills it first, and the runner, which pauses the
deployments' schedules on its way out, then finds no server (connection errors, a traceback,
and a minute of retries before it gives up). So ``cifa serve`` starts ``prefect server start``
itself, in a session of its own that a terminal's Ctrl-C does not reach, on the same
``PREFECT_HOME`` database the embedded server would use, and stops it after the runner has
paused the schedules. The server is bound to 127.0.0.1; while ``cifa serve`` runs, its UI and
API (one-off jobs through ``prefect deployment run``) are there for this machine's users.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

log = logging.getLogger("cifa_ingest.serve")

#: How long ``prefect server start`` may take to answer (it migrates its database first).
STARTUP_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole session (uvicorn and its workers), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def server_environment(port: int, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a ``prefect server start --port PORT`` whose UI works.

    The UI asks the server's ``/ui-settings`` where its API is, and the server answers from
    ``PREFECT_UI_API_URL``, by default ``http://PREFECT_SERVER_API_HOST:PREFECT_SERVER_API_PORT/api``;
    the ``--port`` option does not change that setting, so on any port but 4200 the UI said
    "Can't connect to Server API" and showed no deployment. The host and port are set to the
    ones served, and a ``PREFECT_UI_API_URL`` of the caller's (meant for another server, or a
    proxy in front of one) is not passed on to this loopback server."""
    env = {k: v for k, v in environ.items() if k != "PREFECT_UI_API_URL"}
    env.update(
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`KeyboardInterrupt` in the main thread for the duration, so that a
    stop sent by a supervisor (systemd, a container runtime, ``kill``) unwinds every ``finally``
    (the schedules paused, this server stopped) as a terminal's Ctrl-C does. Python's default
    SIGTERM ends the process at once; Prefect's runner installs a handler of its own only once
    its loop runs, so a stop in the first seconds of ``cifa serve`` left its server orphaned.
    Once raised, later SIGTERMs are ignored while the clean-up runs."""

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def local_server() -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1 and a free port for the duration; yields its
    API address, which the caller puts in ``PREFECT_API_URL`` before Prefect is imported.

    Raises :class:`RuntimeError` with the server's own output when it does not come up."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    command = [
        sys.executable, "-m", "prefect", "server", "start",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log.debug("running: %s", " ".join(command))
    with tempfile.TemporaryFile() as output:  # what it says, kept for when it fails to start
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # out of reach of the terminal's Ctrl-C
            env=server_environment(port),
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _healthy(api_url):
                if server.poll() is not None or time.monotonic() > deadline:
                    _stop(server)
                    output.seek(0)
                    said = output.read().decode("utf-8", "replace").strip()[-2000:]
                    raise RuntimeError(f"the Prefect server did not start: {said}")
                time.sleep(0.5)
            yield api_url
        finally:
            _stop(server)
