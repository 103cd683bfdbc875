"""Conformance of masters to the archive's MediaConch policy, and MediaInfo's description of files.

Both tools are optional (Debian packages ``mediaconch`` and ``mediainfo``; ``make setup`` installs
them): where one is missing, the check is recorded as not run, never silently as passed.
MediaConch's exit code does not say whether a policy passed, so the outcome is read from its XML
report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.errors import ConfigError

POLICY_NAME = "mediaconch-master-policy.xml"
_NS = {"mc": "https://mediaarea.net/mediaconch"}


@dataclass
class PolicyCheck:
    """The outcome of one MediaConch check: pass, fail, or not-run (with why)."""

    outcome: str
    policy: str
    tool: str | None = None
    failed_rules: list[str] = field(default_factory=list)
    detail: str | None = None


def _version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else tool


def check_master(master: Path, policy: Path | None) -> PolicyCheck:
    """Check ``master`` against the archive's MediaConch policy (``config.mediaconch_policy_path``:
    the package ships one). A policy file that has gone is an error, not a check not run."""
    if policy is None:
        return PolicyCheck("not-run", POLICY_NAME, detail="no MediaConch policy was given")
    if not policy.is_file():
        raise ConfigError(f"MediaConch policy {policy} does not exist")
    tool = shutil.which("mediaconch")
    if tool is None:
        return PolicyCheck("not-run", policy.name, detail="MediaConch is not installed")
    # MediaConch keeps a database of every file it has seen in the user's home, shared by every
    # process: checks running side by side then fail with "database is locked", and a file already
    # registered there is answered from it rather than read again. Each check gets a home of its
    # own, thrown away afterwards, so every master is read and judged afresh.
    with tempfile.TemporaryDirectory(prefix="cifa-mediaconch-") as home:
        completed = subprocess.run(
            [tool, "-p", str(policy), "-fx", "--", str(master)],
            capture_output=True, check=False, timeout=3600,
            env={**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home},
        )  # fmt: skip
    try:
        root = ET.fromstring(completed.stdout)
    except ET.ParseError:
        stderr = completed.stderr.decode("utf-8", "replace").strip()
        return PolicyCheck("not-run", policy.name, _version(tool), detail=f"no report: {stderr}")
    verdict = root.find("mc:media/mc:policy", _NS)
    if verdict is None:
        return PolicyCheck("not-run", policy.name, _version(tool), detail="no policy in the report")
    failed = [
        str(rule.get("name"))
        for rule in verdict.iter(f"{{{_NS['mc']}}}rule")
        if rule.get("outcome") != "pass"
    ]
    return PolicyCheck(str(verdict.get("outcome")), policy.name, _version(tool), failed)


def mediainfo(path: Path) -> dict[str, Any] | None:
    """MediaInfo's JSON description of a file, or None where MediaInfo is not installed."""
    tool = shutil.which("mediainfo")
    if tool is None:
        return None
    completed = subprocess.run(
        [tool, "--Output=JSON", "--", str(path)], capture_output=True, check=False, timeout=600
    )
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError:
        return None
