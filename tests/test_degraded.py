"""Degraded captures (issue 17): the verdict on yt-dlp-shaped info, yt-dlp's warnings as
capture.json keeps them, and a degraded capture through the real preserve path: flagged
``preserved-degraded`` (ledger, --json, table), or refused as ``degraded``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cifa_ingest import preserve
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.fetch import degraded, signin
from cifa_ingest.fetch.capture import SourceKey
from cifa_ingest.fetch.failures import FetchErrorKind
from cifa_ingest.fetch.ytdlp import _YtdlpLogger
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.reports import summary

#: YouTube-shaped formats: a storyboard, audio, 360p (itag 18, progressive), 720p and 1080p.
FORMATS: list[dict[str, Any]] = [
    {"format_id": "sb0", "ext": "mhtml", "vcodec": "none", "height": 90},
    {"format_id": "140", "ext": "m4a", "vcodec": "none", "acodec": "mp4a.40.2", "tbr": 129.5},
    {"format_id": "18", "ext": "mp4", "vcodec": "avc1", "height": 360, "tbr": 600.0},
    {"format_id": "136", "ext": "mp4", "vcodec": "avc1", "height": 720, "tbr": 1500.0},
    {"format_id": "137", "ext": "mp4", "vcodec": "avc1", "height": 1080, "tbr": 4400.0},
]


def test_a_chosen_format_far_below_the_best_listed_is_degraded() -> None:
    verdict = degraded.assess(FORMATS, ["18"], 0.5)
    assert verdict.degraded
    assert verdict.chosen == {"format_id": "18", "height": 360, "tbr": 600.0}
    assert verdict.best_listed == {"format_id": "137", "height": 1080, "tbr": 4400.0}
    assert verdict.reasons == ["chosen 360p is below 0.5 of the best listed 1080p"]
    # 720p of 1080p is not below half; the best itself is not degraded.
    assert not degraded.assess(FORMATS, ["136", "140"], 0.5).degraded
    best = degraded.assess(FORMATS, ["137", "140"], 0.5)
    assert not best.degraded and best.reasons == []


def test_without_heights_or_bitrates_nothing_is_guessed() -> None:
    bare = [{"format_id": "0", "ext": "mp4", "vcodec": "avc1"}, {"format_id": "1", "ext": "mp4"}]
    verdict = degraded.assess(bare, ["0"], 0.5)
    assert not verdict.degraded
    assert verdict.reasons and verdict.reasons[0].startswith("unknown")
    # Heights unknown, bitrates known: compared by bitrate.
    rates = [
        {"format_id": "a", "vcodec": "vp9", "tbr": 300.0},
        {"format_id": "b", "vcodec": "vp9", "tbr": 3000.0},
    ]
    assert degraded.assess(rates, ["a"], 0.5).reasons == [
        "chosen 300 kbit/s is below 0.5 of the best listed 3000 kbit/s"
    ]


def test_below_an_earlier_capture_of_the_same_source_is_degraded() -> None:
    # Now the source lists 720p at best (the 1080p is gone): not far below the best listed, but
    # below the earlier capture's 1080p.
    now = [f for f in FORMATS if f["format_id"] != "137"]
    earlier_record = {
        "sources": [
            {
                "extractor": "Youtube",
                "source_id": "abc",
                "formats_chosen": ["137", "140"],
                "formats_available": FORMATS,
            }
        ]
    }
    earlier = degraded.earlier_chosen(earlier_record, "Youtube:abc")
    assert earlier == {"format_id": "137", "height": 1080, "tbr": 4400.0}
    assert degraded.earlier_chosen(earlier_record, "Youtube:other") is None
    verdict = degraded.assess(now, ["136", "140"], 0.5, earlier)
    assert verdict.degraded
    assert verdict.reasons == ["chosen 720p is below the earlier capture's 1080p"]


def test_warnings_are_kept_uncoloured_scrubbed_once_and_bounded() -> None:
    kept: list[str] = []
    logger = _YtdlpLogger(signin.SignIn(secret_values=("s3cret",)).scrub, kept)
    logger.warning("\x1b[0;33mWARNING:\x1b[0m [youtube] abc: Some formats are missing s3cret")
    logger.warning("\x1b[0;33mWARNING:\x1b[0m [youtube] abc: Some formats are missing s3cret")
    logger.warning("x" * 2000)
    warnings = degraded.kept_warnings(kept)
    assert warnings[0] == "[youtube] abc: Some formats are missing [redacted]"
    assert len(warnings) == 2 and len(warnings[1]) == degraded.MAX_WARNING_CHARS
    assert len(degraded.kept_warnings([str(n) for n in range(200)])) == degraded.MAX_WARNINGS


def _work(url: str, work_id: str) -> Work:
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": "Degraded test"},
            "source": {"url": url},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )


def test_a_capture_below_an_earlier_one_is_flagged_or_refused(
    archive_dir: Path,
    film_server: LocalFileServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """colour-bars.mkv is 640x360; the earlier capture of the same source (the record the
    archive reads, made here to say 1080p) was better: preserved-degraded, with the reasons in
    capture.json, the ledger, --json and the table; refused as ``degraded`` when asked to."""
    archive = Archive(archive_dir)
    url = f"{film_server.base_url}/films/colour-bars.mkv"
    earlier_record = {
        "sources": [
            {
                "extractor": "Generic",
                "source_id": "colour-bars",
                "address": SourceKey.of("Generic", "colour-bars", url).address,
                "degraded": {"degraded": False, "chosen": {"format_id": "0", "height": 1080}},
            }
        ]
    }
    looked_up: list[str] = []

    def earlier(ledger: Ledger, archive: Archive, key: SourceKey) -> dict[str, Any] | None:
        looked_up.append(key.key)
        return degraded.earlier_chosen(earlier_record, key.key)

    real_lookup = preserve.earlier_capture
    monkeypatch.setattr(preserve, "earlier_capture", earlier)
    settings = load_settings()
    report = preserve_work(
        _work(url, "cifa-deg-0001"), archive, settings, allow_private_sources=True
    )
    assert report.outcome is Outcome.PRESERVED_DEGRADED, report.error
    assert looked_up, "the earlier capture was looked up"
    assert report.error == "degraded capture: chosen 360p is below the earlier capture's 1080p"
    capture = json.loads((archive_dir / "bags/cifa-deg-0001/metadata/capture.json").read_text())
    source = capture["sources"][0]
    assert isinstance(source["warnings"], list)
    assert source["degraded"]["degraded"] is True
    assert source["degraded"]["chosen"]["height"] == 360
    assert source["degraded"]["earlier"]["height"] == 1080
    ledger = Ledger(archive.ledger_path)
    # The bag is now the earlier capture of its source, as the archive finds it.
    key = SourceKey.of("Generic", "colour-bars", url)
    assert (real_lookup(ledger, archive, key) or {})["height"] == 360
    assert [o for _at, o, _k, _e in ledger.outcomes("cifa-deg-0001")] == [
        Outcome.PRESERVED_DEGRADED
    ]
    document = json.loads(summary.as_json(str(archive_dir), [report]))
    assert document["works"][0]["outcome"] == "preserved-degraded" and document["ok"]
    table = summary.table([report])
    assert "preserved (degraded)" in table and "1 preserved (1 degraded)" in table

    refusing = settings.model_copy(
        update={"fetch": settings.fetch.model_copy(update={"refuse_degraded": True})}
    )
    earlier_record["sources"][0]["address"] = SourceKey.of(
        "Generic", "three-days-day-1", f"{film_server.base_url}/films/three-days-day-1.mp4"
    ).address
    earlier_record["sources"][0]["source_id"] = "three-days-day-1"
    refused = preserve_work(
        _work(f"{film_server.base_url}/films/three-days-day-1.mp4", "cifa-deg-0002"),
        archive,
        refusing,
        allow_private_sources=True,
    )
    assert refused.outcome is Outcome.FAILED
    assert refused.error_kind is FetchErrorKind.DEGRADED
    assert "240p is below the earlier capture's 1080p" in (refused.error or "")
    assert not (archive_dir / "bags/cifa-deg-0002").exists()
    assert ledger.outcomes("cifa-deg-0002")[0][2] == "degraded"
