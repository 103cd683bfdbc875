"""Headless Chromium for the tests that look at a page as a person would: the reports' HTML and
Prefect's UI. Debian's ``chromium``, installed by ``make test`` (scripts/install-test-deps.sh).

The flags keep Chromium off the network it would otherwise reach for on start (this machine has
none: it would retry, many at a time) and give every run a profile of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The chromium executable; skipped (with the reason) only outside CI: CI must run it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed (scripts/install-test-deps.sh installs it)")
    pytest.skip("chromium is not installed: run scripts/install-test-deps.sh (make test does)")


def run_chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Chromium with :data:`FLAGS`, a new profile, and ``args``; its output as text."""
    with tempfile.TemporaryDirectory(prefix="cifa-chromium-") as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
