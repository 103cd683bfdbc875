"""Permission records may hold filmmakers' personal details (a name, a telephone number, the
letter their agreement rests on). They stay in the bag's metadata: never in a log line, the
terminal, the JSON output, a report, the ledger, or anything Prefect stores (flow and task run
parameters, logs, artifacts, states, results).

One real ingest, as a user runs it (``cifa ingest --json --verbose`` in its own process, debug
logs on, Prefect's included, with its own Prefect home), of works whose grantor, basis and notes
are distinctive strings: a film preserved, a film that fails (404), a film granted for access
only (not fetched: its file is served and must not be requested) and a pending one. Then every
byte it wrote is searched: stdout, stderr, every file of the Prefect home (its database with
the parameters, logs and artifacts; stored results) and every file of the archive. The details
must be found in the preserved bag's ``metadata/permission.json`` and PREMIS rights statement,
and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO, TEST_CONFIG

GRANTOR = "Grantor Zhang-Unique-7f3a (director), +86 138 0000 7f3a"
BASIS = "Signed letter Basis-Unique-91c2, kept in the office safe"
NOTES = "Home address Notes-Unique-5d7e, 12 Hidden Lane, Songzhuang"
#: What is searched for: a distinctive part of each, as UTF-8 (and the ASCII-escaped JSON form).
SECRETS = ("Zhang-Unique-7f3a", "Basis-Unique-91c2", "Notes-Unique-5d7e")
#: Where the details may be: the preserved bag's permission record and its PREMIS rights, and
#: the same files as the first version of the work (objects/: hard links to the bag's files).
ALLOWED_PERMISSION = "bags/cifa-pd-0001/metadata/permission.json"
_IN_THE_BAG = {
    "metadata/permission.json",
    "metadata/premis.xml",  # the PREMIS rights statement
    "metadata/descriptive.xml",  # Dublin Core rights: grantor and basis
}
ALLOWED = {f"bags/cifa-pd-0001/{name}" for name in _IN_THE_BAG} | {
    f"objects/cifa-pd-0001/v1/content/{name}" for name in _IN_THE_BAG
}


def _catalogue(path: Path, base_url: str) -> Path:
    permission = {"status": "granted", "granted_by": GRANTOR, "basis": BASIS, "notes": NOTES}
    works = [
        {
            "id": "cifa-pd-0001",
            "title": {"en": "A preserved film <script>alert(1)</script>", "zh": "保存"},
            "source": {"url": f"{base_url}/films/colour-bars.mkv"},
            "permission": dict(permission),  # copies: safe_dump would write YAML aliases
        },
        {
            "id": "cifa-pd-0002",
            "title": {"en": "A film that fails"},
            "source": {"url": f"{base_url}/films/no-such-film.mp4"},
            "permission": dict(permission),  # copies: safe_dump would write YAML aliases
        },
        {
            "id": "cifa-pd-0003",
            "title": {"en": "A film granted for access only"},
            "source": {"url": f"{base_url}/films/pending-film.mp4"},
            "permission": {**permission, "covers": ["access"]},
        },
        {
            "id": "cifa-pd-0004",
            "title": {"en": "A film awaiting an answer"},
            "source": {"url": f"{base_url}/films/three-days-day-2.mp4"},
            "permission": {"status": "pending", "basis": BASIS, "notes": NOTES},
        },
    ]
    path.write_text(yaml.safe_dump({"works": works}, allow_unicode=True), "utf-8")
    return path


def _holders(root: Path, needles: tuple[str, ...] = SECRETS) -> set[str]:
    """Every file under ``root`` that holds any of ``needles`` (JSON keeps non-ASCII text as
    UTF-8 in Prefect's database and our records; the needles are ASCII anyway)."""
    encoded = [needle.encode() for needle in needles]
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and any(needle in path.read_bytes() for needle in encoded):
            found.add(path.relative_to(root).as_posix())
    return found


def _check(
    stdout: str,
    stderr: str,
    logged: str,
    prefect_home: Path,
    archive: Path,
    server: LocalFileServer,
    catalogue: Path,
) -> None:
    """What every run must show: the outcomes, and the details only in the bag."""
    outcomes = {work["id"]: work["outcome"] for work in json.loads(stdout)["works"]}
    assert outcomes == {
        "cifa-pd-0001": "preserved",
        "cifa-pd-0002": "failed",
        "cifa-pd-0003": "not-permitted",
        "cifa-pd-0004": "not-permitted",
    }
    # The run was really verbose (our debug lines and Prefect's), so silence proves something.
    assert "running: " in stderr and "cifa-pd-0002" in stderr
    assert "Finished in state" in logged
    # Permission is checked before any request: the access-only and pending films are untouched.
    requested = server.requested_paths()
    assert "/films/colour-bars.mkv" in requested
    assert not requested & {"/films/pending-film.mp4", "/films/three-days-day-2.mp4"}

    for secret in SECRETS:
        assert secret not in stdout, f"{secret} in the JSON output"
        assert secret not in stderr, f"{secret} in the terminal's log"
        assert secret not in logged, f"{secret} in a log record"
    # The search reads where Prefect keeps the run: its parameters name the catalogue.
    assert _holders(prefect_home, (catalogue.name,)), "the run is not in this Prefect home"
    prefect_files = _holders(prefect_home)
    assert prefect_files == set(), f"Prefect stored personal details in {prefect_files}"

    # Kept where they belong, in full, and nowhere else in the archive (ledger, reports, …).
    assert _holders(archive) == ALLOWED
    kept = json.loads((archive / ALLOWED_PERMISSION).read_text("utf-8"))
    assert (kept["granted_by"], kept["basis"], kept["notes"]) == (GRANTOR, BASIS, NOTES)
    # The reports (the run's and the audit's) show the catalogue's title, escaped.
    pages = sorted((archive / "reports").glob("*.html"))
    assert pages
    for page in pages:
        assert "<script>alert(1)</script>" not in page.read_text("utf-8")
    shown = "A preserved film &lt;script&gt;alert(1)&lt;/script&gt;"
    assert any(shown in page.read_text("utf-8") for page in pages)


class _Records(logging.Handler):
    """Every record, formatted with its arguments and traceback, as the terminal would get it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_personal_details_stay_in_the_bag(
    tmp_path: Path,
    film_server: LocalFileServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In this process, on the test session's Prefect: every record of the cifa_ingest, prefect,
    yt-dlp and root loggers at DEBUG, the CLI's stdout and stderr, and the whole Prefect home."""
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")  # restored after
    import cifa_ingest.pipelines.flows  # noqa: F401 - Prefect configures its logging on import: ours after

    records = _Records()
    root, prefect = logging.getLogger(), logging.getLogger("prefect")
    levels = (root.level, prefect.level)
    # cli.main --verbose reconfigures these: put them back as they were for the next tests.
    ours = [logging.getLogger(name) for name in ("cifa_ingest", "bagit")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in ours]
    root.addHandler(records)  # everything propagates here: prefect.*, yt-dlp, the rest
    root.setLevel(logging.DEBUG)
    prefect.setLevel(logging.DEBUG)
    archive = tmp_path / "archive"
    catalogue = _catalogue(tmp_path / "personal-details-7f3a.yaml", film_server.base_url)
    try:
        # cifa_ingest logs to the CLI's stderr (captured), at DEBUG with --verbose.
        status = cli.main(
            ["ingest", str(catalogue), "--archive", str(archive), "--allow-private-sources",
             "--json", "--verbose"]
        )  # fmt: skip
        assert cli.main(["audit", str(archive), "--verbose"]) == 0
    finally:
        root.removeHandler(records)
        root.setLevel(levels[0])
        prefect.setLevel(levels[1])
        for logger, (handlers, level, propagate) in zip(ours, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)  # (clears the loggers' level cache)
            logger.propagate = propagate
    out, err = capsys.readouterr()
    assert status == 1, err  # one film failed, as intended
    stdout = out[: out.rindex("}") + 1]  # the ingest's JSON; the audit's table follows
    _check(stdout, err + out, "\n".join(records.lines), Path(os.environ["PREFECT_HOME"]),
           archive, film_server, catalogue)  # fmt: skip


@pytest.mark.slow
def test_personal_details_stay_in_the_bag_of_a_separate_verbose_run(
    tmp_path: Path, film_server: LocalFileServer
) -> None:
    """As a user runs it: its own process and Prefect home, Prefect's own logs at DEBUG on the
    terminal and in its database. (Slow: a fresh Prefect server starts, 20 to 40 s.)"""
    catalogue = _catalogue(tmp_path / "personal-details-7f3a.yaml", film_server.base_url)
    archive, prefect_home = tmp_path / "archive", tmp_path / "prefect"
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "ingest", str(catalogue),
         "--archive", str(archive), "--allow-private-sources", "--json", "--verbose"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={
            "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
            "PREFECT_HOME": str(prefect_home), "CIFA_CONFIG": str(TEST_CONFIG),
            "PREFECT_LOGGING_LEVEL": "DEBUG", "PREFECT_LOGGING_TO_API_LEVEL": "DEBUG",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        },
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # one film failed, as intended
    _check(
        result.stdout, result.stderr, result.stderr, prefect_home, archive, film_server, catalogue
    )
