"""`cifa status`: the archive at a glance, from the ledger and the catalogues, without Prefect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO


def test_status_after_an_ingest_and_an_audit(
    capsys, tmp_path: Path, archive_dir: Path, film_server: LocalFileServer
) -> None:
    granted = {"status": "granted", "granted_by": "T"}
    catalogue = tmp_path / "c.yaml"
    catalogue.write_text(
        yaml.safe_dump(
            {
                "works": [
                    {"id": "cifa-s-0001", "title": {"en": "Kept"}, "permission": dict(granted),
                     "source": {"url": f"{film_server.base_url}/films/colour-bars.mkv"}},
                    {"id": "cifa-s-0002", "title": {"en": "Gone"}, "permission": dict(granted),
                     "source": {"url": f"{film_server.base_url}/status/410/films/x.mkv"}},
                    {"id": "cifa-s-0003", "title": {"en": "Lost address"},
                     "permission": dict(granted), "source": {"url": None}},
                    {"id": "cifa-s-0004", "title": {"en": "Asked"},
                     "permission": {"status": "pending"}, "source": {"url": None}},
                ]
            }
        ),
        "utf-8",
    )  # fmt: skip
    args = ["--archive", str(archive_dir), "--quiet"]
    assert cli.main(["ingest", str(catalogue), *args, "--allow-private-sources"]) == 1
    audit_archive(Archive(archive_dir))
    capsys.readouterr()
    code = (
        "import sys; from cifa_ingest import cli; s = cli.main(sys.argv[1:]);"
        "assert 'prefect' not in sys.modules; sys.exit(s)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "status", str(catalogue), *args, "--json"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["bags"] == 1 and status["payload_bytes"] > 0
    assert status["last_ingest"]["failed"] == 1 and status["last_ingest"]["outcome"] == "failed"
    assert status["last_audit"]["outcome"] == "intact"
    assert [(f["id"], f["kind"]) for f in status["failing"]] == [("cifa-s-0002", "gone")]
    assert status["awaiting_source"] == ["cifa-s-0003"]
    assert status["awaiting_permission"] == ["cifa-s-0004"]
    # No storage location declared: none listed, no holdings report written unless asked.
    assert status["locations"] == [] and status["holdings_report"] is None


def test_status_holdings_writes_the_report_beside_the_audit_reports(
    capsys, tmp_path: Path, archive_dir: Path, film_server: LocalFileServer
) -> None:
    catalogue = tmp_path / "c.yaml"
    catalogue.write_text(
        yaml.safe_dump(
            {"works": [{"id": "cifa-s-0101", "title": {"en": "Kept"},
                        "permission": {"status": "granted", "granted_by": "T"},
                        "source": {"url": f"{film_server.base_url}/films/colour-bars.mkv"}}]}
        ),
        "utf-8",
    )  # fmt: skip
    args = ["--archive", str(archive_dir), "--quiet"]
    assert cli.main(["ingest", str(catalogue), *args, "--allow-private-sources"]) == 0
    capsys.readouterr()
    assert cli.main(["status", str(catalogue), *args, "--holdings"]) == 0
    out = capsys.readouterr().out
    page = archive_dir / "reports" / "holdings.html"
    assert f"Holdings report: {page}" in out and "Storage locations: none declared" in out
    holdings = json.loads((archive_dir / "reports" / "holdings.json").read_text("utf-8"))
    [work] = holdings["works"]
    # One copy only, the primary: no NDSA storage level; integrity 1, verified at ingest.
    assert (work["id"], work["storage_level"], work["integrity_level"]) == ("cifa-s-0101", 0, 1)
    assert "level 1 needs two good copies in separate locations" in work["storage_reasons"]
    # A report that cannot be written: the status is shown, and the exit says so.
    page.unlink()
    page.mkdir()
    assert cli.main(["status", str(catalogue), *args, "--holdings"]) == 1
    captured = capsys.readouterr()
    assert "Archive:" in captured.out and "holdings report could not be written" in captured.err
