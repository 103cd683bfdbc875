"""Hostile catalogue entries that only the source policy can judge (the schema accepts their
syntax): each is refused before any request, with exit 2 and the file, entry and field named,
without a traceback and without writing anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/film.mp4", "not a public address"),
        ("http://192.168.1.20/film.mp4", "not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://[::1]:8080/film.mp4", "not a public address"),
        ("http://[fe80::1]/film.mp4", "not a public address"),
        ("http://localhost/film.mp4", "local machine"),
        ("http://films.example.localhost/film.mp4", "local machine"),
        ("http://0.0.0.0/film.mp4", "not a public address"),
        ("https://films.not-on-the-allow-list.example/film.mp4", "allow-list"),
        ("https://evil.example/?next=youtube.com", "allow-list"),
    ],
)
def test_a_source_the_policy_forbids_is_refused_before_anything_happens(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, reason: str
) -> None:
    catalogue = tmp_path / "hostile.yaml"
    catalogue.write_text(
        yaml.safe_dump(
            {
                "works": [
                    {
                        "id": "cifa-h-0001",
                        "title": {"en": "Hostile"},
                        "source": {"url": url},
                        "permission": {"status": "granted", "granted_by": "X"},
                    }
                ]
            }
        ),
        "utf-8",
    )
    archive = tmp_path / "archive"
    status = cli.main(["ingest", str(catalogue), "--archive", str(archive), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert "hostile.yaml: works[0] (cifa-h-0001): source.url:" in err and reason in err
    assert "Traceback" not in err
    assert not archive.exists()
