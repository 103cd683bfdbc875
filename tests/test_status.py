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
