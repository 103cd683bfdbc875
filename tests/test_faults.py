"""Faults of the tools a work depends on: the real ffmpeg crashing or hanging mid-encode, yt-dlp
raising what it does not document. That work fails with a clear, classified reason naming the
tool, its staging is cleared, no traceback reaches the user, and the other works go on.

ffmpeg is found on PATH (:func:`cifa_ingest.tools.runner.executable`), so the test puts first on
PATH a wrapper that execs the real ffmpeg and, for one work's master encode, has the kernel
deliver SIGSEGV to it half a second in (a crash), or SIGSTOP (a hang: alive, silent, never
finishing, until the runner's stall detection kills it). yt-dlp meets an HLS playlist with a
malformed ``#EXT-X-BYTERANGE`` served on 127.0.0.1, on which it raises a bare ``ValueError``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.demo.http_server import LocalFileServer
from tests.conftest import REPO
from tests.helpers import assert_valid_preserved_bag, processes_naming

WRAPPER = """#!/bin/sh
# ffmpeg, except for the master encodes of two works: one crashes, one hangs, in mid-encode.
# Those encodes read their source at its own speed (-re), so that the signal always finds them
# working: a demo film encodes in less than the delay otherwise, and other calls (WebVTT
# conversion) read the same originals.
case "$*" in
  *cifa-fault-crash/bag/original/*"-c:v ffv1"*) (sleep 0.5; kill -SEGV $$) & exec {real} -re "$@" ;;
  *cifa-fault-hang/bag/original/*"-c:v ffv1"*) (sleep 0.3; kill -STOP $$) & exec {real} -re "$@" ;;
esac
exec {real} "$@"
"""

BAD_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:4
#EXT-X-TARGETDURATION:1
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:1.0,
#EXT-X-BYTERANGE:abc@xyz
seg-000.ts
#EXT-X-ENDLIST
"""

STALL_SECONDS = 2


def _work(work_id: str, url: str) -> dict[str, object]:
    return {
        "id": work_id,
        "title": {"en": f"Fault test {work_id}"},
        "source": {"url": url},
        "permission": {"status": "granted", "granted_by": "Test"},
    }


@pytest.fixture
def faulty_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH whose ffmpeg crashes or hangs for the fault works, and settings whose stall
    detection gives up after STALL_SECONDS."""
    real = shutil.which("ffmpeg")
    assert real
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ffmpeg"
    wrapper.write_text(WRAPPER.format(real=real), "utf-8")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = (REPO / "tests" / "data" / "test-config.toml").read_text("utf-8")
    config = config.replace("[normalise]\n", f"[normalise]\nstall_seconds = {STALL_SECONDS}\n")
    settings = tmp_path / "faults-config.toml"
    settings.write_text(config, "utf-8")
    monkeypatch.setenv("CIFA_CONFIG", str(settings))
    return wrapper


def test_a_crashing_or_hanging_ffmpeg_and_a_raising_yt_dlp_fail_their_work_only(
    faulty_ffmpeg: Path,
    film_server: LocalFileServer,
    tmp_path: Path,
    archive_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad_site = tmp_path / "bad-site" / "films"
    bad_site.mkdir(parents=True)
    (bad_site / "byterange.m3u8").write_text(BAD_PLAYLIST, "utf-8")
    films = f"{film_server.base_url}/films"
    with LocalFileServer(bad_site.parent) as bad_server:
        works = [
            _work("cifa-fault-crash", f"{films}/test-card-beijing.mp4"),
            _work("cifa-fault-hang", f"{films}/subtitled.mp4"),
            _work("cifa-fault-yt-dlp", f"{bad_server.base_url}/films/byterange.m3u8"),
            _work("cifa-fault-ok", f"{films}/colour-bars.mkv"),
        ]
        catalogue = tmp_path / "catalogue.yaml"
        catalogue.write_text(yaml.safe_dump({"works": works}), "utf-8")
        args = ["ingest", str(catalogue), "--archive", str(archive_dir), "--allow-private-sources"]
        status = cli.main([*args, "--json"])
        assert any(r.path.endswith("byterange.m3u8") for r in bad_server.requests)
    captured = capsys.readouterr()
    report = {w["id"]: w for w in json.loads(captured.out)["works"]}
    assert status == 1

    crash = report["cifa-fault-crash"]
    assert (crash["outcome"], crash["error_kind"]) == ("failed", "normalisation")
    assert crash["error"].startswith("ffmpeg was killed by SIGSEGV during normalise"), crash
    assert "cifa-fault-crash.mp4" in crash["error"]  # ffmpeg's command line, to re-run by hand

    hang = report["cifa-fault-hang"]
    assert (hang["outcome"], hang["error_kind"]) == ("failed", "normalisation")
    assert hang["error"].startswith(f"ffmpeg killed: no progress for {STALL_SECONDS} s, during"), (
        hang
    )
    assert processes_naming("cifa-fault-hang") == []  # the stopped ffmpeg was killed, not left

    raising = report["cifa-fault-yt-dlp"]
    assert (raising["outcome"], raising["error_kind"]) == ("failed", "unexpected")
    assert raising["error"].startswith("fetch failed unexpectedly (yt-dlp raised ValueError)")

    assert report["cifa-fault-ok"]["outcome"] == "preserved", report["cifa-fault-ok"]
    assert_valid_preserved_bag(archive_dir / "bags" / "cifa-fault-ok", "cifa-fault-ok")
    assert sorted(p.name for p in (archive_dir / "bags").iterdir()) == ["cifa-fault-ok"]
    assert list((archive_dir / "staging").iterdir()) == []
    assert "Traceback" not in captured.err
    for line in ("SIGSEGV", "no progress", "yt-dlp raised ValueError"):
        assert line in captured.err, captured.err  # the terminal says why each work failed
    with sqlite3.connect(archive_dir / "ledger.sqlite") as conn:
        kinds = dict(conn.execute("SELECT work_id, error_kind FROM work_outcomes"))
    assert kinds == {
        "cifa-fault-crash": "normalisation",
        "cifa-fault-hang": "normalisation",
        "cifa-fault-yt-dlp": "unexpected",
        "cifa-fault-ok": None,
    }
