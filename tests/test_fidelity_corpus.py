"""The independent fidelity test: each odd source of the corpus (tests/fidelity/corpus.py) is
normalised by the real pipeline, as tests/test_normalise.py does it, and its master is compared
with it by the independent checker (tests/fidelity/checker.py), which must find nothing lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cifa_ingest.config import format_policy_path, load_settings, mediaconch_policy_path
from cifa_ingest.normalise import encode as normalise
from cifa_ingest.normalise.format_policy import load_policy
from tests.fidelity import corpus
from tests.fidelity.checker import check

SETTINGS = load_settings()
DEFAULT = load_policy(format_policy_path(SETTINGS)).profile("default")


@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=pytest.mark.slow) if k.slow else k for k in corpus.KINDS],
    ids=[k.name for k in corpus.KINDS],
)
def test_the_master_keeps_everything_of_its_source(kind: corpus.SourceKind, tmp_path: Path) -> None:
    if missing := kind.missing_encoders():
        said = f"this ffmpeg lacks {', '.join(missing)}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{said}: CI's ffmpeg (Debian's) must make every kind of the corpus")
        pytest.skip(said)
    made = kind.generate(tmp_path / "made")
    bag = tmp_path / "bag"
    original = bag / "original" / made.name
    original.parent.mkdir(parents=True)
    os.replace(made, original)
    normalise.normalise_group(
        "film", [original], bag, tmp_path / "proof", SETTINGS.normalise, DEFAULT,
        mediaconch_policy_path(SETTINGS),
    )  # fmt: skip
    findings = check(original, bag / "master" / "film.mkv")
    assert findings == [], "\n".join(map(str, findings))
