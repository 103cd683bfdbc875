"""The audit report for auditors (``ARCHIVE/reports/audit-*.html``, ``.json``, the latest)
and the ``fixity-audit`` flow run through Prefect.

Real bags made by the pipeline (real HTTP server, ffmpeg) are damaged as a fault or an insider
would: a master's bytes overwritten in the middle of a frame, an original deleted. Then ``cifa
audit`` (a subprocess) and the ``fixity-audit`` flow (real Prefect, its embedded server) must each
write the same reports; the HTML is opened in headless Chromium and read back from the DOM it
built; the poster is checked as the browser decoded it; the task runs' states are read back from
Prefect's server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cifa_ingest import sizes
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.reports import audit_report
from cifa_ingest.reports.ingest_report import CSP, THUMBNAIL_WIDTH
from tests.browser import chromium
from tests.conftest import REPO
from tests.helpers import preserve_films
from tests.test_run_report import (
    _artifacts_of_run,
    _images_as_loaded,
    _rendered_dom,
    _screenshot,
)

#: The damaged work's title: markup, a script, an entity; Chinese beside it.
HOSTILE_EN = "<script>alert(1)</script> Broken & <img src=x onerror=alert(2)> 'reel'"
HOSTILE_ZH = "损坏的胶片"
DAMAGED, INTACT = "cifa-r-0001", "cifa-r-0002"
WORKS = {
    DAMAGED: ({"en": HOSTILE_EN, "zh": HOSTILE_ZH}, "colour-bars.mkv"),
    INTACT: ({"en": "Three Days", "zh": "三天"}, "three-days-day-1.mp4"),
}


@pytest.fixture(scope="module")
def pristine(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of two real bags, made once for this module."""
    root = tmp_path_factory.mktemp("audit-report") / "archive"
    with LocalFileServer(served_root) as server:
        preserve_films(root, server.base_url, WORKS)
    return root


@pytest.fixture
def damaged(pristine: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A copy of the archive, audited once intact, whose first bag is then damaged twice: four
    bytes of the master's 31st video frame overwritten (size and modification time kept), and
    the original deleted. Yields the archive and what an auditor must be shown, computed here
    from the files themselves."""
    root = tmp_path / "archive"
    shutil.copytree(pristine, root)
    assert audit_archive(Archive(root)).ok  # the last time the bag was found intact
    for path in root.rglob("*"):  # placed bags are read-only: the damage is an insider's
        if path.is_file():
            path.chmod(0o644)
    bag = root / "bags" / DAMAGED
    manifest = _manifest(bag)
    master = bag / "data" / "master" / f"{DAMAGED}.mkv"
    packets = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pos,size",
         "-of", "json", str(master)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    packet = json.loads(packets)["packets"][30]
    stat = master.stat()
    with master.open("r+b") as fh:
        fh.seek(int(packet["pos"]) + int(packet["size"]) // 2)
        fh.write(b"\xde\xad\xbe\xef")
    os.utime(master, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (original,) = (bag / "data" / "original").iterdir()
    original.unlink()
    master_path = master.relative_to(bag).as_posix()
    original_path = original.relative_to(bag).as_posix()
    assert manifest[master_path] != hashlib.sha256(master.read_bytes()).hexdigest()
    yield {
        "root": root,
        "master": master_path,
        "master_expected": manifest[master_path],
        "master_found": hashlib.sha256(master.read_bytes()).hexdigest(),
        "original": original_path,
        "original_expected": manifest[original_path],
    }


def _manifest(bag: Path) -> dict[str, str]:
    lines = (bag / "manifest-sha256.txt").read_text("utf-8").splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def _payload_size(bag: Path) -> str:
    """The bag's payload as the report must say it: Payload-Oxum, in decimal units."""
    info = (bag / "bag-info.txt").read_text("utf-8")
    octets, count = re.search(r"^Payload-Oxum: (\d+)\.(\d+)$", info, re.M).groups()  # type: ignore[union-attr]
    return f"{sizes.decimal(int(octets))} in {count} files"


def _reports(root: Path) -> tuple[Path, Path, Path]:
    """The one dated HTML report, its JSON and audit-latest.html, each checked to be there."""
    folder = root / "reports"
    pages = sorted(folder.glob("audit-2*.html"))
    assert len(pages) == 1, sorted(p.name for p in folder.iterdir())
    latest = folder / audit_report.LATEST
    assert latest.is_file() and latest.read_bytes() == pages[0].read_bytes()
    assert pages[0].with_suffix(".json").is_file()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left
    return pages[0], pages[0].with_suffix(".json"), latest


def _check_json(document: dict[str, Any], case: dict[str, Any]) -> None:
    assert document["ok"] is False and (document["checked"], document["intact"]) == (2, 1)
    problems = {(p["bag"], p["kind"], p["path"]): p for p in document["problems"]}
    assert set(problems) == {
        (DAMAGED, "checksum_mismatch", case["master"]),
        (DAMAGED, "missing_file", case["original"]),
    }
    flipped = problems[(DAMAGED, "checksum_mismatch", case["master"])]
    assert (flipped["algorithm"], flipped["expected"], flipped["found"]) == (
        "sha256",
        case["master_expected"],
        case["master_found"],
    )
    assert flipped["damaged_frames"] == [30]
    gone = problems[(DAMAGED, "missing_file", case["original"])]
    assert (gone["algorithm"], gone["expected"], gone["found"]) == (
        "sha256",
        case["original_expected"],
        None,
    )
    bags = {bag["bag"]: bag for bag in document["bags"]}
    assert bags[DAMAGED]["title"] == f"{HOSTILE_EN} / {HOSTILE_ZH}"  # the truth, in JSON
    assert bags[DAMAGED]["outcome"] == "damaged" and bags[DAMAGED]["poster"] is True
    assert bags[INTACT]["title"] == "Three Days / 三天" and bags[INTACT]["poster"] is False


def _check_page(page: Path, case: dict[str, Any], tmp_path: Path) -> str:
    """What a person sees, read from the DOM Chromium built; returns that DOM."""
    root: Path = case["root"]
    dom = _rendered_dom(page)
    # No script, none allowed: the CSP meta as the ingest report has it.
    assert "<script" not in dom.lower()
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in dom
    assert "default-src 'none'" in CSP
    # The hostile title is shown as text, never obeyed.
    shown = "&lt;script&gt;alert(1)&lt;/script&gt; Broken &amp; &lt;img src=x onerror=alert(2)&gt;"
    assert dom.count(f"{shown} 'reel' / {HOSTILE_ZH}") == 2  # problems, and the bags' table
    assert '<img src="x"' not in dom and "onerror=alert(2)>" not in dom
    assert "Three Days / 三天" in dom
    # Problems first: the damaged work's section, with every piece of evidence.
    section = re.search(rf'<section class="damaged" id="bag-{DAMAGED}">(.*?)</section>', dom, re.S)
    assert section, dom[:3000]
    damaged = section.group(1)
    assert dom.index('id="problems"') < dom.index('id="bags"')
    assert re.search(r"<h1>Fixity audit: <span[^>]*>2 problems in 1 bag</span></h1>", dom)
    for value in (case["master"], case["master_expected"], case["master_found"]):
        assert value in damaged, value
    assert case["original"] in damaged and case["original_expected"] in damaged
    gone = re.search(rf"{re.escape(case['original'])}.*?<td class=\"found\">(.*?)</td>", damaged)
    assert gone and gone.group(1) == "gone"
    assert "<td>30</td>" in damaged  # the damaged frame
    # Dates: ingested (the ledger's), last verified and last found intact (the audit log's).
    ledger = Ledger(root / "ledger.sqlite")
    history = AuditLog(root / "ledger.sqlite").history(DAMAGED)
    assert history[-1].outcome == "damaged"
    assert f"<th>ingested</th><td>{ledger.bag(DAMAGED).placed_at}</td>" in damaged  # type: ignore[union-attr]
    assert f"<th>last verified</th><td>{history[-1].checked_at}</td>" in damaged
    intact_before = [c.checked_at for c in history if c.outcome == "intact"]
    assert intact_before and intact_before[-1] <= history[-1].checked_at
    assert f"<th>last found intact</th><td>{intact_before[-1]}</td>" in damaged
    # Readable sizes: the payload of each bag, what the audit read.
    assert f"<th>payload</th><td>{_payload_size(root / 'bags' / DAMAGED)}</td>" in damaged
    row = re.search(rf'<tr class="bag intact" id="row-{INTACT}">(.*?)</tr>', dom, re.S)
    assert row and _payload_size(root / "bags" / INTACT) in row.group(1)
    assert re.search(r"\d+(\.\d)? (KB|MB) read in", dom)
    # The poster, as the browser decoded it: the damaged work's only, 320 pixels wide.
    images = _images_as_loaded(page, tmp_path)
    assert [image["alt"] for image in images] == [f"poster of {DAMAGED}"]
    assert images[0]["complete"] and images[0]["width"] == THUMBNAIL_WIDTH, images
    assert images[0]["height"] > 100  # type: ignore[operator]
    src = re.search(r'<img class="poster" alt="[^"]*" src="data:image/jpeg;base64,([^"]+)"', dom)
    assert src and base64.b64decode(src.group(1)).startswith(b"\xff\xd8")
    # Its link to the JSON works from where the page is (the dated page and audit-latest).
    link = re.search(r'<a href="([^"]+)">', dom)
    assert link and (page.parent / link.group(1)).is_file()
    assert json.loads((page.parent / link.group(1)).read_text("utf-8"))["ok"] is False
    return dom


def test_cifa_audit_writes_a_report_an_auditor_can_read(
    damaged: dict[str, Any], tmp_path: Path
) -> None:
    chromium()  # before the audit: a missing browser is said at once
    root: Path = damaged["root"]
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "audit", str(root)],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    page, json_path, latest = _reports(root)
    _check_json(json.loads(json_path.read_text("utf-8")), damaged)
    _check_page(latest, damaged, tmp_path)  # the stable address, as a bookmark opens it
    shot = _screenshot(latest, tmp_path / "audit-report.png")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    # The next audit: a report of its own; audit-latest.html is the new one.
    assert subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "audit", str(root), "--json"],
        capture_output=True, cwd=REPO, timeout=300, check=False,
    ).returncode == 1  # fmt: skip
    pages = sorted((root / "reports").glob("audit-2*.html"))
    assert len(pages) == 2 and page in pages
    assert latest.read_bytes() == pages[-1].read_bytes() != page.read_bytes()


def _flow_run(flow_run_id: Any) -> tuple[Any, list[Any], list[Any]]:
    """The flow run, its task runs and its logs, read back from Prefect's server."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort, TaskRunSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # the run's logs, sent in the background, are stored
    with get_client(sync_client=True) as client:
        # Sort and offset given: Prefect's client sends null for them otherwise (see
        # tests/test_deployments.py), which this server refuses.
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=50,
            offset=0,
        )
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            limit=200,
            offset=0,
            sort=LogSort.TIMESTAMP_ASC,
        )
    return run, tasks, logs


def test_fixity_audit_flow_writes_the_same_report_and_fails_the_damaged_bags_task(
    damaged: dict[str, Any], tmp_path: Path
) -> None:
    from cifa_ingest.pipelines.flows import fixity_audit

    chromium()
    root: Path = damaged["root"]
    state = fixity_audit(str(root), return_state=True)
    # The run: Failed, its message naming the problems; every bag's result collected.
    assert state.is_failed()
    message = state.message or ""
    for named in (DAMAGED, "checksum_mismatch", damaged["master"], "missing_file"):
        assert named in message, message
    report = state.result(raise_on_failure=False).data  # the RunFailed carries the report
    assert {bag.bag: bag.intact for bag in report.bags} == {DAMAGED: False, INTACT: True}

    # The same reports as cifa audit, through the same writer.
    page, json_path, latest = _reports(root)
    _check_json(json.loads(json_path.read_text("utf-8")), damaged)
    _check_page(latest, damaged, tmp_path)

    # Prefect's record of the run: the damaged bag's task Failed, the intact one's Completed.
    run, tasks, logs = _flow_run(state.state_details.flow_run_id)
    by_name = {task.name: task for task in tasks}
    assert set(by_name) == {f"audit-{DAMAGED}", f"audit-{INTACT}"}, sorted(by_name)
    failed = by_name[f"audit-{DAMAGED}"].state
    assert failed.type.value == "FAILED", failed
    assert "checksum_mismatch" in (failed.message or "") and "missing_file" in failed.message
    assert by_name[f"audit-{INTACT}"].state.type.value == "COMPLETED"
    assert run.state.type.value == "FAILED"
    # Its log: the report named; a damaged bag is a finding, not a bug: no traceback.
    text = "\n".join(log.message for log in logs)
    assert f"audit report: {page}" in text, text
    assert "Traceback" not in text and "NoneType: None" not in text, text
    assert any(
        log.task_run_id == by_name[f"audit-{DAMAGED}"].id and log.level >= 40 for log in logs
    )  # Prefect says the task failed, at ERROR
    # The artifacts: the markdown summary names the report.
    artifacts = _artifacts_of_run(run.name)
    assert str(page) in artifacts["fixity-audit-summary"]["data"]
    table = json.loads(artifacts["fixity-audit"]["data"])
    flipped = next(row for row in table if row["kind"] == "checksum_mismatch")
    assert (flipped["expected"], flipped["found"]) == (
        damaged["master_expected"],
        damaged["master_found"],
    )


def test_a_report_that_cannot_be_written_changes_no_outcome(pristine: Path, tmp_path: Path) -> None:
    from cifa_ingest.pipelines.flows import fixity_audit

    root = tmp_path / "archive"
    shutil.copytree(pristine, root)
    (root / "reports").write_text("not a folder", "utf-8")  # reports/ cannot be made
    state = fixity_audit(str(root), return_state=True)
    assert state.is_completed(), state.message
    assert state.result().ok
    _run, tasks, logs = _flow_run(state.state_details.flow_run_id)
    assert all(task.state.type.value == "COMPLETED" for task in tasks) and len(tasks) == 2
    warnings = [log.message for log in logs if log.level == 30]
    assert any("the audit report could not be written" in m for m in warnings), warnings
    assert not any("Traceback" in log.message for log in logs)
    assert (root / "reports").read_text("utf-8") == "not a folder"


def test_a_forged_description_is_shown_and_obeyed_in_nothing(
    pristine: Path, tmp_path: Path
) -> None:
    """A bag's description rewritten with a lone surrogate, a right-to-left override and markup
    in its title: the report shows the title as text, controls written out, and is written."""
    root = tmp_path / "archive"
    shutil.copytree(pristine, root)
    descriptive = root / "bags" / INTACT / "metadata" / "descriptive.json"
    descriptive.chmod(0o644)
    descriptive.write_text('{"title": {"en": "\\ud800<b>x</b>\\u202eexe.txt"}}', "utf-8")
    report = audit_archive(Archive(root))
    assert {(p.bag, p.kind) for p in report.problems} == {(INTACT, "tag_checksum_mismatch")}
    (problem,) = report.problems
    assert problem.algorithm == "sha256" and problem.expected and problem.found
    assert problem.expected != problem.found
    written = audit_report.write(report, Archive(root))
    page = written.latest.read_text("utf-8")
    assert page == written.html.read_text("utf-8")
    assert "[U+D800]&lt;b&gt;x&lt;/b&gt;[U+202E]exe.txt" in page
    assert "<b>x" not in page and "\u202e" not in page
    assert problem.expected in page and problem.found in page
    document = json.loads(written.json.read_text("utf-8"))
    titles = {bag["bag"]: bag["title"] for bag in document["bags"]}
    assert titles[INTACT] == "\ud800<b>x</b>\u202eexe.txt"  # the JSON keeps what the bag says
