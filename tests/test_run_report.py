"""The run report (``ARCHIVE/reports/ingest-*.html``): written by every nightly run, opened in a
real headless Chromium (Debian's ``chromium``, installed by ``make test``), read back from the DOM
the browser rendered, and photographed.

The end-to-end test runs a real ingest (real HTTP server, yt-dlp, ffmpeg, Prefect) of a preserved
film, a film that fails (404) under a hostile title, and a film without permission."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.preserve import Outcome, WorkReport
from cifa_ingest.reports import ingest_report as run_report
from tests.browser import chromium, run_chromium

#: A title no source should be trusted with: markup, a script, a path, a colon.
HOSTILE_TITLE = "<script>alert(1)</script> ../../etc/passwd: <b>bold</b> & <img src=x>"
#: Worse, as yt-dlp's info of a remote source could hold it (the catalogue refuses these).
WORSE_TITLE = "Evil\x00 title\nsecond line \u202eRLO txt.exe <script>alert('x')</script>"
#: Personal details of a filmmaker: they live in the bag's permission.json and nowhere else.
GRANTOR = "Zhang Xiaoming-Secret (director), +86 138 0013 8000"
BASIS = "Signed letter kept at the archive, ref. PRIVATE-7741"
NOTES = "Home address: 12 Hidden Lane, Songzhuang"


def _rendered_dom(page: Path) -> str:
    """The DOM Chromium built from the page (not the file's text)."""
    return run_chromium("--dump-dom", page.as_uri()).stdout


def _images_as_loaded(page: Path, tmp_path: Path) -> list[dict[str, object]]:
    """Each <img> of ``page`` as the browser loaded it (complete, natural size), read by a test
    harness page that frames the report: the report itself has no script and allows none."""
    harness = tmp_path / "harness.html"
    harness.write_text(
        "<!DOCTYPE html><html><body><iframe id='f' width='1200' height='800'"
        f" src='{page.as_uri()}'></iframe><script>"
        "document.getElementById('f').addEventListener('load', () => {"
        " const doc = document.getElementById('f').contentDocument;"
        " const found = [...doc.images].map(i => ({alt: i.alt, complete: i.complete,"
        "  width: i.naturalWidth, height: i.naturalHeight}));"
        " const out = document.createElement('pre'); out.id = 'images';"
        " out.textContent = JSON.stringify(found); document.body.appendChild(out); });"
        "</script></body></html>",
        "utf-8",
    )
    dom = run_chromium(
        "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
        harness.as_uri(),
    ).stdout  # fmt: skip
    match = re.search(r"<pre id=\"images\">(.*?)</pre>", dom, re.DOTALL)
    assert match, f"the harness saw no images: {dom[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def _screenshot(page: Path, target: Path) -> Path:
    run_chromium(f"--screenshot={target}", "--window-size=1280,2000", page.as_uri())
    return target


def _artifacts_of_run(run_name: str) -> dict[str, dict[str, object]]:
    """The Prefect artifacts of the flow run named ``run_name``, read back from the server.

    Prefect 3.8.8's ``read_artifacts`` sends ``null`` for the filters it was not given, which
    this server (with fastapi < 0.155) refuses with 422; the same API, asked with only the
    filters we mean, answers. So this posts to ``/artifacts/filter`` through Prefect's client."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> dict[str, dict[str, object]]:
        async with get_client() as client:
            runs = await client._client.post(
                "/flow_runs/filter", json={"flow_runs": {"name": {"any_": [run_name]}}}
            )
            run_ids = [run["id"] for run in runs.json()]
            assert len(run_ids) == 1, runs.json()
            found = await client._client.post(
                "/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": run_ids}}, "limit": 50},
            )
            return {artifact["key"]: artifact for artifact in found.json()}

    return asyncio.run(read())


def _catalogue(path: Path, base_url: str) -> Path:
    """A catalogue of our own: one film that fails (404) under a hostile title, with a grantor
    whose details must never leave the bag."""
    granted = {"status": "granted", "granted_by": GRANTOR, "basis": BASIS}
    works = [
        {
            "id": "cifa-hostile",
            "title": {"en": HOSTILE_TITLE, "zh": "恶意标题"},
            "source": {"url": f"{base_url}/films/no-such-film.mp4"},
            "permission": dict(granted),
            "notes": NOTES,
        },
        {
            "id": "cifa-kept",
            "title": {"en": "Kept: a film with a colon"},
            "source": {"url": f"{base_url}/films/three-days-day-1.mp4"},
            "permission": dict(granted),
            "notes": NOTES,
        },
    ]
    path.write_text(yaml.safe_dump({"works": works}, allow_unicode=True), "utf-8")
    return path


def test_nightly_run_writes_an_html_report_that_chromium_shows_problems_first(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    demo_catalogue: Path,
    archive_dir: Path,
    film_server: LocalFileServer,
) -> None:
    chromium()  # before the ingest: a missing browser is said at once
    ours = _catalogue(tmp_path / "ours.yaml", film_server.base_url)
    args = ["ingest", str(demo_catalogue), str(ours), "--archive", str(archive_dir)]
    args += ["--allow-private-sources", "--quiet"]
    for work_id in ("cifa-demo-0002", "cifa-demo-0004", "cifa-hostile", "cifa-kept"):
        args += ["--only", work_id]
    status = cli.main(args)
    captured = capsys.readouterr()
    out = captured.out
    assert status == 1, captured.err

    reports = archive_dir / "reports"
    pages = sorted(reports.glob("ingest-2*.html"))
    assert len(pages) == 1, list(reports.iterdir())
    page = pages[0]
    assert f"Report: {page}" in out  # the CLI names it at the end of its summary
    assert (reports / run_report.LATEST).read_bytes() == page.read_bytes()
    assert not [p.name for p in reports.iterdir() if p.name.startswith(".")]  # no temp left
    document = json.loads(page.with_suffix(".json").read_text("utf-8"))
    by_id = {work["id"]: work for work in document["works"]}
    assert [w["id"] for w in document["works"]] == [
        "cifa-hostile",
        "cifa-demo-0002",
        "cifa-kept",
        "cifa-demo-0004",
    ]
    assert by_id["cifa-hostile"]["outcome"] == "failed"
    assert by_id["cifa-hostile"]["error_kind"] == "not-found"
    assert by_id["cifa-hostile"]["title"] == f"{HOSTILE_TITLE} / 恶意标题"  # the truth, in JSON
    assert by_id["cifa-demo-0002"]["outcome"] == "preserved"
    assert 2.9 < by_id["cifa-demo-0002"]["duration_seconds"] < 3.2  # a 3 s film
    assert by_id["cifa-kept"]["poster"] is True
    assert document["counts"]["failed"] == 1 and document["counts"]["not-permitted"] == 1

    # What a person sees: the DOM Chromium rendered.
    dom = _rendered_dom(page)
    rows = re.findall(r"<tr class=\"([a-z-]+)\" id=\"work-([a-z0-9-]+)\">", dom)
    assert rows == [
        ("failed", "cifa-hostile"),
        ("preserved", "cifa-demo-0002"),
        ("preserved", "cifa-kept"),
        ("not-permitted", "cifa-demo-0004"),
    ]
    assert "<script" not in dom.lower()  # the title's script is text, not an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt; ../../etc/passwd: &lt;b&gt;bold&lt;/b&gt;" in dom
    assert "<b>" not in dom and '<img src="x"' not in dom
    assert "Colour Bars / 彩条" in dom and "Kept: a film with a colon" in dom
    assert "not found" in dom.lower() or "404" in dom
    kept = re.search(r"<tr class=\"preserved\" id=\"work-cifa-kept\">(.*?)</tr>", dom, re.S)
    assert kept and "0:00:02" in kept.group(1)  # duration of the 2 s film
    assert re.search(r"\d+(\.\d)? (KB|MB)", kept.group(1))  # sizes
    images = _images_as_loaded(page, tmp_path)
    assert {image["alt"] for image in images} == {
        "poster of cifa-demo-0002",
        "poster of cifa-kept",
    }
    for image in images:  # decoded by the browser: a real picture, 320 pixels wide
        assert image["complete"] and image["width"] == 320 and image["height"] > 100, image

    # Personal details of the permission never leave the bag.
    published = [page.read_text("utf-8"), page.with_suffix(".json").read_text("utf-8"), out]
    for secret in (GRANTOR, "Zhang Xiaoming", BASIS, NOTES, "CIFA Ingest (demo)"):
        assert not any(secret in text for text in published), secret
    permission = archive_dir / "bags" / "cifa-kept" / "metadata" / "permission.json"
    assert GRANTOR in permission.read_text("utf-8")  # ... where they are kept

    # The Prefect artifacts of the run: a table (one row per work, problems first), a summary.
    artifacts = _artifacts_of_run(document["run"])
    table = json.loads(artifacts["nightly-ingest"]["data"])
    assert [row["id"] for row in table] == [w["id"] for w in document["works"]]
    assert table[0]["outcome"] == "failed" and table[0]["error"] == "not-found"
    summary = artifacts["nightly-ingest-summary"]["data"]
    assert "1 failed" in summary and "cifa-hostile" in summary and str(page) in summary
    assert "<script" not in summary
    published += [json.dumps(table, ensure_ascii=False), summary]
    for secret in (GRANTOR, "Zhang Xiaoming", BASIS, NOTES, "CIFA Ingest (demo)"):
        assert not any(secret in text for text in published), secret

    shot = _screenshot(page, tmp_path / "run-report.png")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    # The next night: a report of its own; the first stays; ingest-latest.html is the new one.
    assert cli.main(args) == 1
    newer = [p for p in sorted(reports.glob("ingest-2*.html")) if p != page]
    assert len(newer) == 1 and page.is_file()
    assert (reports / run_report.LATEST).read_bytes() == newer[0].read_bytes()
    again = json.loads(newer[0].with_suffix(".json").read_text("utf-8"))
    kept_again = next(w for w in again["works"] if w["id"] == "cifa-kept")
    assert kept_again["outcome"] == "already-preserved" and kept_again["poster"] is True
    assert kept_again["duration_seconds"] == by_id["cifa-kept"]["duration_seconds"]


def _hostile_reports() -> list[WorkReport]:
    return [
        WorkReport("cifa-0001", "Preserved film", Outcome.PRESERVED, bytes={"original": 10}),
        WorkReport("cifa-0002", "Awaiting", Outcome.AWAITING_SOURCE),
        WorkReport(
            "cifa-0003",
            WORSE_TITLE,
            Outcome.FAILED,
            error="ffmpeg said:\n<script>alert(2)</script>\x00",
            error_kind="unsupported",
        ),
        WorkReport("cifa-0004", "Already", Outcome.ALREADY_PRESERVED),
        WorkReport("cifa-0005", "No permission", Outcome.NOT_PERMITTED, error="permission pending"),
    ]


def test_html_writer_shows_hostile_text_and_obeys_none_of_it(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    _run, written = run_report.write_run_report(_hostile_reports(), archive)
    text = written.html.read_text("utf-8")
    assert "<script" not in text.lower()
    assert "\x00" not in text and "\u202e" not in text
    assert "Evil[U+0000] title[U+000A]second line [U+202E]RLO txt.exe" in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;[U+0000]" in text  # the error: newline kept
    assert "default-src 'none'" in text  # no script, no request, even if escaping failed
    order = [m for m in re.findall(r"id='work-([a-z0-9-]+)'", text)]
    assert order == ["cifa-0003", "cifa-0001", "cifa-0004", "cifa-0005", "cifa-0002"]
    # The JSON keeps the title as it came.
    document = json.loads(written.json.read_text("utf-8"))
    assert document["works"][0]["title"] == WORSE_TITLE
    assert written.latest.read_bytes() == written.html.read_bytes()
    assert run_report.report_of(archive.root, _hostile_reports()) == written.html
    # A second report in the same second does not replace the first.
    _run, again = run_report.write_run_report(_hostile_reports(), archive)
    assert again.html != written.html and written.html.is_file()


def test_html_writer_output_in_chromium_has_no_script_element(tmp_path: Path) -> None:
    chromium()
    _run, written = run_report.write_run_report(_hostile_reports(), Archive(tmp_path / "a"))
    dom = _rendered_dom(written.html)
    assert "<script" not in dom.lower() and "<img" not in dom
    assert "Evil[U+0000] title[U+000A]second line [U+202E]RLO txt.exe" in dom


def test_prefect_artifacts_name_the_problems_and_hold_no_markup(tmp_path: Path) -> None:
    run = run_report.build(_hostile_reports(), Archive(tmp_path / "archive"))
    rows = run_report.table_rows(run)
    assert [row["id"] for row in rows] == [f"cifa-000{n}" for n in (3, 1, 4, 5, 2)]
    assert rows[0]["outcome"] == "failed" and rows[0]["error"] == "unsupported"
    assert "\n" not in rows[0]["title"] and "\u202e" not in rows[0]["title"]
    page = tmp_path / "archive" / "reports" / "ingest-x.html"
    markdown = run_report.markdown_summary(run, page)
    assert "1 failed" in markdown and "cifa\\-0003" not in markdown
    assert "| cifa-0003 |" in markdown and "<script" not in markdown
    assert str(page) in markdown
    problems = markdown.split("## Problems")[1]
    assert problems.count("\n|") == 3  # header, rule, one failed work: no line broken by a title


def test_a_work_that_took_hundredths_of_a_second_is_not_shown_as_zero() -> None:
    """A new version of a record takes hundredths of a second: "0.0 s" would read as nothing
    done, so the table and the report say "<0.1 s"; nothing timed is "-"."""
    from cifa_ingest.sizes import took

    assert [took(s) for s in (0.0, 0.004, 0.049, 0.05, 4.71)] == [
        "-", "<0.1 s", "<0.1 s", "0.1 s", "4.7 s"
    ]  # fmt: skip
