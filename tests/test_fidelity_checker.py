"""The fidelity checker's own tests: good masters (made by ffmpeg directly, not by the pipeline)
have no findings, and masters damaged in one way each give exactly that kind of finding."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fidelity import corpus
from tests.fidelity.checker import Kind, check
from tests.fidelity.damage import DAMAGES, Damage, make_film, make_hdr10, make_rotated

FIDELITY = Path(__file__).parent / "fidelity"
FILMS = {"film": make_film, "hdr10": make_hdr10, "rotated": make_rotated}
NEEDS = {"hdr10": ("libx265",)}


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each source and its good master, made once."""
    made = {}
    for name, make in FILMS.items():
        if all(encoder in corpus.encoders() for encoder in NEEDS.get(name, ())):
            made[name] = make(tmp_path_factory.mktemp(name))
    return made


def _film(films: dict[str, tuple[Path, Path]], name: str) -> tuple[Path, Path]:
    if name not in films:
        pytest.skip(f"this ffmpeg lacks {', '.join(NEEDS[name])}")
    return films[name]


@pytest.mark.parametrize("name", list(FILMS))
def test_a_good_master_has_no_findings(films: dict[str, tuple[Path, Path]], name: str) -> None:
    source, good = _film(films, name)
    assert check(source, good) == []


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.name for d in DAMAGES])
def test_each_damage_gives_exactly_its_kind_of_finding(
    films: dict[str, tuple[Path, Path]], damage: Damage, tmp_path: Path
) -> None:
    source, good = _film(films, damage.film)
    damaged = tmp_path / f"damaged{damage.suffix}"
    damage.apply(good, damaged)
    findings = check(source, damaged)
    kinds = {finding.kind for finding in findings}
    assert damage.expected <= kinds, findings
    assert kinds == damage.expected, findings


def test_every_kind_of_finding_is_shown_by_a_damage() -> None:
    assert set().union(*(d.expected for d in DAMAGES)) == set(Kind)


def _damaged(films: dict[str, tuple[Path, Path]], name: str, tmp_path: Path) -> list:
    damage = next(d for d in DAMAGES if d.name == name)
    source, good = _film(films, damage.film)
    tmp_path.mkdir()
    damaged = tmp_path / f"damaged{damage.suffix}"
    damage.apply(good, damaged)
    return check(source, damaged)


def test_findings_name_the_first_differing_frame_and_block(
    films: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    (picture,) = _damaged(films, "one frame changed", tmp_path / "picture")
    assert (picture.kind, picture.stream, picture.property) == (
        Kind.PICTURE, "video 0", "frame 5 at 0.200 s (1 of 25)"
    )  # fmt: skip
    (sound,) = _damaged(films, "samples changed", tmp_path / "sound")
    assert (sound.kind, sound.stream, sound.property) == (
        Kind.SOUND, "audio 0", "block 5 at 0.500 s (1 of 10)"
    )  # fmt: skip
    (frames,) = _damaged(films, "last frame dropped", tmp_path / "frames")
    assert (frames.stream, frames.property, frames.source, frames.master) == (
        "video 0", "frames", 25, 24
    )  # fmt: skip
    offsets = _damaged(films, "audio 100 ms late", tmp_path / "offset")
    assert [(f.stream, f.source, f.master) for f in offsets] == [
        ("audio 0", 0.0, 0.1), ("audio 1", 0.0, 0.1)
    ]  # fmt: skip


def test_padding_after_identical_samples_is_a_duration_not_a_sound(
    films: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """The source's last block is partial, the padded master's is full there: the samples both
    have are compared as a whole, and found the same."""
    (padded,) = _damaged(films, "samples padded", tmp_path / "padded")
    assert (padded.kind, padded.stream, padded.property, padded.source, padded.master) == (
        Kind.DURATION, "audio 1", "samples", 48000, 72000
    )  # fmt: skip


@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=pytest.mark.slow) if k.slow else k for k in corpus.KINDS],
    ids=[k.name for k in corpus.KINDS],
)
def test_a_copy_of_each_corpus_source_has_no_findings(
    kind: corpus.SourceKind, tmp_path: Path
) -> None:
    """The checker finds nothing between a source and a byte-identical copy of it: whatever
    it finds in a master, the master differs there."""
    if kind.missing_encoders():
        pytest.skip(f"this ffmpeg lacks {', '.join(kind.missing_encoders())}")
    source = kind.generate(tmp_path / "made")
    copy = tmp_path / f"copy{source.suffix}"
    shutil.copyfile(source, copy)
    assert check(source, copy) == []


def test_the_checker_does_not_use_the_pipeline() -> None:
    """Independent: no module of tests/fidelity imports cifa_ingest, and importing them loads
    none of it."""
    for module in sorted(FIDELITY.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] in ("cifa_ingest", "pipelines") for n in names), (
                f"{module.name}:{node.lineno} imports {names}"
            )
    code = (
        "import sys, tests.fidelity.checker, tests.fidelity.corpus, tests.fidelity.damage;"
        "sys.exit(1 if any(m.split('.')[0] == 'cifa_ingest' for m in sys.modules) else 0)"
    )
    repo = FIDELITY.parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=repo, check=False).returncode == 0
