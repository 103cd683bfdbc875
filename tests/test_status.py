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


def _ledger_with_copies_at(archive: Path, locations: list[str]) -> None:
    """A ledger of one bag, its copy recorded good at each of ``locations``."""
    from cifa_ingest.archive.ledger import BagRecord, CopyState, Ledger

    ledger = Ledger(archive / "ledger.sqlite")
    ledger.register_bag(
        BagRecord(
            work_id="cifa-0001",
            bag_path="bags/cifa-0001",
            placed_at="2026-01-01T00:00:00+00:00",
            payload_oxum="0.0",
            manifest_digests={},
            source_keys=[],
            software="cifa-ingest",
        )
    )
    for location in locations:
        ledger.record_copy("cifa-0001", location, CopyState.GOOD, software="cifa-ingest")


def test_status_says_what_a_location_not_in_the_settings_is(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    """The demo's replica (named by the marker `cifa demo` writes) is called that, at its
    folder, not a location removed from the settings; any other undeclared location is said to be
    retired or removed, and neither to have ever been in the settings."""
    from cifa_ingest.demo import replica
    from cifa_ingest.reports.status import archive_status, render

    archive = tmp_path / "archive"
    archive.mkdir()
    _ledger_with_copies_at(archive, ["demo-replica", "old-disk"])
    before = {loc["name"]: loc for loc in archive_status(Archive(archive), []).locations}
    assert before["demo-replica"]["note"] == replica.UNDECLARED  # no marker: nothing to go on

    replica.remember(archive, tmp_path / "demo" / "replica")
    status = archive_status(Archive(archive), [])
    found = {location["name"]: location for location in status.locations}
    assert found["demo-replica"]["declared"] is False
    assert found["demo-replica"]["note"] == (
        f"the demo's replica at {tmp_path / 'demo' / 'replica'}, made by `cifa demo`;"
        " not in the settings"
    )
    assert found["old-disk"]["note"] == replica.UNDECLARED
    text = render(status)
    assert f"demo-replica (the demo's replica at {tmp_path / 'demo' / 'replica'}" in text
    assert f"old-disk ({replica.UNDECLARED})" in text
    assert "no longer in the settings" not in text

    # A marker that does not read, or names another location, is ignored.
    (archive / replica.MARKER).write_text("{not json", encoding="utf-8")
    assert replica.undeclared_note(archive, "demo-replica") == replica.UNDECLARED
    (archive / replica.MARKER).write_text('{"location": "old-disk", "path": "/x"}', "utf-8")
    assert replica.undeclared_note(archive, "old-disk") == replica.UNDECLARED

    # And a declared location has no note.
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "cifa.toml"
    config.write_text(
        f'[[storage.locations]]\nname = "old-disk"\nkind = "filesystem"\npath = "{tmp_path}"\n'
        'zone = "here"\n',
        "utf-8",
    )
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    capsys.readouterr()
    assert cli.main(["status", "--archive", str(archive), "--json", "--quiet"]) == 0
    shown = {loc["name"]: loc for loc in json.loads(capsys.readouterr().out)["locations"]}
    assert shown["old-disk"]["declared"] is True and shown["old-disk"]["note"] is None
    assert shown["demo-replica"]["note"] == replica.UNDECLARED
