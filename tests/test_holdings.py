"""The holdings report (``cifa status --holdings``) and ``cifa status``'s storage locations, on
real bags replicated to a filesystem location and to a real S3 server (SeaweedFS): per work its
copies, zones, media and last verification, and the NDSA storage and integrity levels with the
reasons, read back from the DOM headless Chromium built; no endpoint nor credential in it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cifa_ingest import cli
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.reports.holdings import (
    CopyView,
    Place,
    _copy_row,
    integrity_level,
    storage_level,
)
from tests.browser import chromium
from tests.conftest import TEST_CONFIG
from tests.helpers import preserve_films
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_run_report import _rendered_dom, _screenshot

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

WHOLE, HURT = "cifa-h-0001", "cifa-h-0002"
WORKS = {
    WHOLE: ({"en": "Whole <b>reel</b>", "zh": "完整"}, "colour-bars.mkv"),
    HURT: ({"en": "Hurt", "zh": "受损"}, "three-days-day-1.mp4"),
}


@pytest.fixture(scope="module")
def pristine(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("holdings") / "archive"
    with LocalFileServer(served_root) as server:
        preserve_films(root, server.base_url, WORKS)
    return root


@pytest.fixture
def archive(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "archive"
    shutil.copytree(pristine, copy)
    return copy


def _settings(tmp_path: Path, replica: Path, s3: S3Server | None, bucket: str | None) -> Path:
    """The primary in zone ``newcastle``; a second disk in the same building; S3 in London."""
    text = '[archive]\nzone = "newcastle"\n\n' + TEST_CONFIG.read_text("utf-8")
    text += (
        f'\n[[storage.locations]]\nname = "replica"\nkind = "filesystem"\npath = "{replica}"\n'
        'zone = "newcastle"\naudit_every_days = 30\n'
    )
    if s3 is not None:
        text += (
            f'\n[[storage.locations]]\nname = "offsite"\nkind = "s3"\nendpoint = "{s3.endpoint}"\n'
            f'region = "us-east-1"\nbucket = "{bucket}"\nzone = "london"\naudit_every_days = 90\n'
        )
    config = tmp_path / "cifa.toml"
    config.write_text(text, "utf-8")
    return config


def _cifa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main([*args, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, json.loads(captured.out)


def _row(dom: str, work_id: str) -> str:
    match = re.search(rf'<tr class="work" id="work-{work_id}">(.*?)</table></td>(.*?)</tr>', dom,
                      re.DOTALL)  # fmt: skip
    assert match, f"no row of {work_id} in the page"
    return match.group(0)


def _level(row: str, area: str) -> int:
    match = re.search(rf'<td class="{area}"><div class="level" data-level="(\d)">', row)
    assert match, area
    return int(match.group(1))


def test_the_holdings_report_shows_copies_zones_and_ndsa_levels_in_chromium(
    archive: Path,
    tmp_path: Path,
    s3_server: S3Server,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chromium()  # a missing browser is said at once
    replica = tmp_path / "replica"
    replica.mkdir()
    bucket = s3_server.create_bucket()
    monkeypatch.setenv("CIFA_CONFIG", str(_settings(tmp_path, replica, s3_server, bucket)))
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    # The second disk's copy of HURT was found damaged by an audit of the location.
    Ledger(archive / "ledger.sqlite").record_copy(
        HURT, "replica", CopyState.DAMAGED, software="test", detail="data/master: sha256 differs"
    )
    code, status = _cifa(capsys, "status", "--archive", str(archive), "--holdings")
    assert code == 0, status
    page = Path(status["holdings_report"])
    assert page == archive / "reports" / "holdings.html"
    data = json.loads((archive / "reports" / "holdings.json").read_text("utf-8"))
    levels = {w["id"]: (w["storage_level"], w["integrity_level"]) for w in data["works"]}
    # WHOLE: three good copies, two zones, two media: storage 3 (not 4: two zones only);
    # every copy verified on time and good: integrity 4.
    # HURT: two good copies (the primary, S3): storage 1; its damaged copy keeps integrity at 3.
    assert levels == {WHOLE: (3, 4), HURT: (1, 3)}

    dom = _rendered_dom(page)  # the DOM Chromium built, not the file's text
    assert '<span id="works">2</span>' in dom
    whole, hurt = _row(dom, WHOLE), _row(dom, HURT)
    assert (_level(whole, "storage"), _level(whole, "integrity")) == (3, 4)
    assert (_level(hurt, "storage"), _level(hurt, "integrity")) == (1, 3)
    # Each copy: where, which zone, its state, when it was last verified.
    for location, zone in (
        ("primary", "newcastle"),
        ("replica", "newcastle"),
        ("offsite", "london"),
    ):
        cells = re.search(rf'<tr class="copy" data-location="{location}">(.*?)</tr>', whole)
        assert cells, location
        assert f'<td class="zone">{zone}</td>' in cells.group(1)
        assert re.search(
            r'<td class="state good">good</td><td class="verified">20\d\d-', cells.group(1)
        )
    assert re.search(r'data-location="replica">.*?<td class="state bad">damaged<br>'
                     r'<span class="detail">data/master: sha256 differs', hurt)  # fmt: skip
    assert "level 4 needs good copies in three different zones" in whole
    assert "level 2 needs three good copies, one in another zone" in hurt
    assert "level 4 needs every copy good, two at least (replica damaged)" in hurt
    # The title from the bag, escaped: shown, never markup.
    assert "Whole &lt;b&gt;reel&lt;/b&gt; / 完整" in whole
    # No endpoint, bucket or credential anywhere in the report.
    for text in (page.read_text("utf-8"), (archive / "reports" / "holdings.json").read_text()):
        assert s3_server.endpoint not in text and bucket not in text
        assert all(value not in text for value in s3_env.values() if "SECRET" in value)
    shot = _screenshot(page, tmp_path / "holdings.png")
    assert shot.read_bytes().startswith(b"\x89PNG")

    # `cifa status` says the same per location, for people too.
    locations = {loc["name"]: loc for loc in status["locations"]}
    assert locations["replica"]["copies"] == {
        "good": 1, "pending": 0, "missing": 0, "damaged": 1, "absent": 0
    }  # fmt: skip
    assert locations["replica"]["problems"] == [
        {"id": HURT, "state": "damaged", "detail": "data/master: sha256 differs"}
    ]
    assert locations["offsite"]["copies"]["good"] == 2 and locations["offsite"]["problems"] == []
    assert locations["offsite"]["kind"] == "s3" and locations["offsite"]["zone"] == "london"
    assert locations["offsite"]["last_verified"] and locations["offsite"]["overdue"] == 0
    capsys.readouterr()
    assert cli.main(["status", "--archive", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "replica (filesystem, zone newcastle): 1 good, 0 pending, 0 missing, 1 damaged" in out
    assert f"{HURT}: damaged: data/master: sha256 differs" in out


def test_the_levels_as_the_ndsa_matrix_reads() -> None:
    """The rules, one condition at a time (the report's reasons say which is lacking)."""
    disk = Place("primary", "filesystem", "here", 90)
    second = Place("second", "filesystem", "here", 30)
    far = Place("far", "filesystem", "there", 30)
    cloud = Place("cloud", "s3", "elsewhere", 30)

    def good(place: Place, on_time: bool = True) -> CopyView:
        return CopyView(place, CopyState.GOOD, "2026-11-27T00:00:00+00:00", on_time)

    assert storage_level([good(disk)])[0] == 0
    assert integrity_level([good(disk)])[0] == 1  # backed up nowhere
    assert storage_level([good(disk), good(second)])[0] == 1
    assert storage_level([good(disk), good(second), good(far)])[0] == 2
    assert storage_level([good(disk), good(second), good(cloud)])[0] == 3
    assert storage_level([good(disk), good(far), good(cloud)])[0] == 4
    pending = CopyView(far, CopyState.PENDING, None, False)
    assert storage_level([good(disk), good(second), pending])[0] == 1
    assert integrity_level([good(disk), good(second)])[0] == 4
    assert integrity_level([good(disk, on_time=False), good(second)])[0] == 1
    level, reasons = integrity_level([good(disk), good(second, on_time=False)])
    assert level == 2 and "late: second" in reasons[-1]
    assert integrity_level([good(disk), good(second), pending])[0] == 3


def test_a_copy_at_a_location_no_longer_declared_is_not_called_overdue() -> None:
    """A location the settings do not declare (any more, or not yet: the demo's replica) has no
    audit interval: its copies cannot count as verified on time, and the report says why
    instead of calling a copy verified a minute ago overdue."""
    undeclared = Place("old-disk", None, None, None)
    declared = Place("disk2", "filesystem", "here", 30)
    verified = "2026-11-27T00:00:00+00:00"
    unknown = _copy_row(CopyView(undeclared, CopyState.GOOD, verified, False))
    assert "not in the settings" in unknown and "overdue" not in unknown
    assert "(overdue)" in _copy_row(CopyView(declared, CopyState.GOOD, verified, False))


def test_status_lists_each_location_with_what_is_absent(
    archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replica = tmp_path / "replica"
    replica.mkdir()
    monkeypatch.setenv("CIFA_CONFIG", str(_settings(tmp_path, replica, None, None)))
    code, status = _cifa(capsys, "status", "--archive", str(archive))
    assert code == 0 and status["holdings_report"] is None
    [replica_status] = status["locations"]
    assert replica_status["copies"]["absent"] == 2 and replica_status["last_verified"] is None
    assert {p["id"] for p in replica_status["problems"]} == set(WORKS)
    assert not (archive / "reports" / "holdings.html").exists()
    assert AuditLog(archive / "ledger.sqlite").verify() == []


def test_the_demo_replica_is_named_so_and_another_undeclared_location_retired(
    tmp_path: Path,
) -> None:
    """Holdings of a location the settings do not declare: the demo's replica, at the folder its
    marker names, or a retired or removed location; never said to be no longer declared."""
    from cifa_ingest.archive.layout import Archive
    from cifa_ingest.demo import replica
    from cifa_ingest.reports.holdings import gather, render_html
    from tests.test_status import _ledger_with_copies_at

    archive = tmp_path / "archive"
    archive.mkdir()
    _ledger_with_copies_at(archive, ["demo-replica", "old-disk"])
    replica.remember(archive, tmp_path / "demo" / "replica")
    holdings = gather(Archive(archive), [], primary_zone="here", primary_every_days=90)
    notes = {place["name"]: place["note"] for place in holdings.as_dict()["locations"]}
    assert notes == {
        "primary": None,
        "demo-replica": f"the demo's replica at {tmp_path / 'demo' / 'replica'}, made by"
        " `cifa demo`; not in the settings",
        "old-disk": replica.UNDECLARED,
    }
    page = render_html(holdings)
    assert "the demo&#x27;s replica at" in page and "a retired location" in page
    assert "no longer" not in page
