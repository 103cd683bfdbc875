"""Conformance of masters to the archive's MediaConch policy.

MediaConch is optional (Debian package ``mediaconch``; ``make setup`` installs it): where it is
missing, or its run fails (it exits non-zero when it cannot read a file or the policy, or runs past
its time limit), the check is recorded as not run, with why, never silently as passed.
MediaConch's exit code does not say whether a policy passed (it exits 0 for a file that fails
it), so the outcome is read from its XML report. It runs through the one runner
(:mod:`cifa_ingest.tools.runner`): logged, with a time limit, its exit code checked.
"""

from __future__ import annotations

import logging
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from cifa_ingest.errors import ConfigError, FFmpegError
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)

POLICY_NAME = "mediaconch-master-policy.xml"
_NS = {"mc": "https://mediaarea.net/mediaconch"}
#: Seconds a check may take: MediaConch reads the whole master.
CHECK_TIMEOUT = 3600


@dataclass
class PolicyCheck:
    """The outcome of one MediaConch check: pass, fail, or not-run (with why)."""

    outcome: str
    policy: str
    tool: str | None = None
    failed_rules: list[str] = field(default_factory=list)
    detail: str | None = None


def _version(tool: str) -> str:
    """MediaConch's version line (its last), for the record of what checked a master; its
    program's name where it does not say."""
    try:
        out = runner.run([tool, "--version"], timeout=60).stdout.decode("utf-8", "replace")
    except FFmpegError:
        return tool
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else tool


def check_master(master: Path, policy: Path | None) -> PolicyCheck:
    """Check ``master`` against the archive's MediaConch policy (``config.mediaconch_policy_path``:
    the package ships one). A policy file that has gone is an error, not a check not run."""
    if policy is None:
        return PolicyCheck("not-run", POLICY_NAME, detail="no MediaConch policy was given")
    if not policy.is_file():
        raise ConfigError(f"MediaConch policy {policy} does not exist")
    tool = runner.find("mediaconch")
    if tool is None:
        return PolicyCheck("not-run", policy.name, detail="MediaConch is not installed")
    # MediaConch keeps a database of every file it has seen in the user's home, shared by every
    # process: checks running side by side then fail with "database is locked", and a file already
    # registered there is answered from it rather than read again. Each check gets a home of its
    # own, thrown away afterwards, so every master is read and judged afresh.
    with tempfile.TemporaryDirectory(prefix="cifa-mediaconch-") as home:
        try:
            completed = runner.run(
                [tool, "-p", str(policy), "-fx", "--", str(master)],
                timeout=CHECK_TIMEOUT,
                env={"HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home},
            )
        except FFmpegError as exc:
            log.warning("%s: MediaConch did not check it: %s", master.name, exc)
            stderr = exc.stderr.strip()
            return PolicyCheck(
                "not-run", policy.name, _version(tool), detail=f"no report: {stderr}"
            )
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
