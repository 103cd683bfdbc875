"""Shared fixtures: an isolated Prefect home, the demo films, and a real HTTP server serving them.

Prefect runs for real (its embedded server, in this test process); its home is a temporary folder
so the tests neither read nor write the developer's ~/.prefect.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="cifa-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
# Tests must not pick up a developer's archive or configuration: they use their own.
os.environ.pop("CIFA_ARCHIVE", None)
TEST_CONFIG = Path(__file__).parent / "data" / "test-config.toml"
os.environ["CIFA_CONFIG"] = str(TEST_CONFIG)

from cifa_ingest.demo import films as demo  # noqa: E402
from cifa_ingest.demo.http_server import LocalFileServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the demo films under films/, generated once per test session."""
    root = tmp_path_factory.mktemp("served")
    demo.make_site(root)
    return root


@pytest.fixture
def film_server(served_root: Path) -> Iterator[LocalFileServer]:
    """A real HTTP server on 127.0.0.1 serving the demo films; a fresh access log per test."""
    with LocalFileServer(served_root) as server:
        yield server


@pytest.fixture
def demo_catalogue(tmp_path: Path, film_server: LocalFileServer) -> Path:
    """The demo catalogue, pointing at this test's server."""
    return demo.write_catalogue(tmp_path / "demo-catalogue.yaml", film_server.base_url)


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"
