"""Shared fixtures: an isolated Prefect home, the demo films, and a real HTTP server serving them.

Prefect runs for real (its embedded server, in this test process); its home is a temporary folder
so the tests neither read nor write the developer's ~/.prefect.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from cifa_ingest.archive.layout import Archive
    from cifa_ingest.catalogue.model import Work

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


@pytest.fixture(scope="session")
def _preserved_once(
    tmp_path_factory: pytest.TempPathFactory, served_root: Path
) -> tuple[Path, Work]:
    """One work preserved by the real ingest (the default profile: FFV1), once for the session:
    the versions' tests (revisions, deaccession, re-normalisation) each get a copy."""
    from cifa_ingest.archive.layout import Archive
    from cifa_ingest.preserve import Outcome, preserve_work
    from tests.test_ingest_versions import _settings, _work

    archive_dir = tmp_path_factory.mktemp("preserved") / "archive"
    with LocalFileServer(served_root) as server:
        work = _work(f"{server.base_url}/films/colour-bars.mkv")
        report = preserve_work(work, Archive(archive_dir), _settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    return archive_dir, work


@pytest.fixture
def preserved(_preserved_once: tuple[Path, Work], archive_dir: Path) -> tuple[Archive, Work]:
    """A copy of the preserved archive, hard links kept (``cp -a``): the bag and its first
    version share their files as the ingest left them."""
    from cifa_ingest.archive.layout import Archive

    template, work = _preserved_once
    subprocess.run(["cp", "-a", str(template), str(archive_dir)], check=True)
    return Archive(archive_dir), work
