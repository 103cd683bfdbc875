"""Packaging: bag-info values cannot forge fields; bags are BagIt 1.0 and valid for bagit-python."""

from __future__ import annotations

from pathlib import Path

import bagit
import pytest

from cifa_ingest.bag.package import bag_info, make_bag, tag_value, validate_bag
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.errors import PackagingError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bumming in Beijing", "Bumming in Beijing"),
        ("流浪北京", "流浪北京"),
        ("A title\nPayload-Oxum: 1.1", "A title Payload-Oxum: 1.1"),
        ("Tab\tand\r\nCRLF", "Tab and CRLF"),
        ("NUL\x00byte", "NUL byte"),
        ("bidi \u202eevil", "bidi evil"),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_tag_value_is_one_clean_line(raw: str, expected: str) -> None:
    assert tag_value(raw) == expected


def _work() -> Work:
    return Work.model_validate(
        {
            "id": "cifa-0001",
            "title": {"en": "Bumming in Beijing", "zh": "流浪北京"},
            "director": {"en": "Wu Wenguang", "zh": "吴文光"},
            "year": 1990,
            "source": {"url": None},
            "permission": {"status": "not-sought"},
        }
    )


def test_bag_is_bagit_1_0_with_metadata_in_tag_manifests(tmp_path: Path) -> None:
    bag_dir = tmp_path / "bag"
    (bag_dir / "original").mkdir(parents=True)
    (bag_dir / "original" / "film.bin").write_bytes(b"film bytes")
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    (metadata / "source.info.json").write_text('{"title": "流浪北京"}', "utf-8")
    info = bag_info(_work(), OrganisationSettings(), "CIFA")
    make_bag(bag_dir, info, metadata, {"descriptive.json": {"title": "流浪北京"}})
    validate_bag(bag_dir)

    assert (bag_dir / "bagit.txt").read_text() == (
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    )
    tagmanifest = (bag_dir / "tagmanifest-sha256.txt").read_text()
    assert "metadata/source.info.json" in tagmanifest
    assert "metadata/descriptive.json" in tagmanifest
    bag = bagit.Bag(str(bag_dir))
    assert bag.info["Title-Zh"] == "流浪北京"
    assert bag.info["Payload-Oxum"] == "10.1"

    # A changed metadata file is caught by the tag manifest.
    (bag_dir / "metadata" / "descriptive.json").write_text("{}", "utf-8")
    with pytest.raises(PackagingError, match="invalid"):
        validate_bag(bag_dir)


def test_hostile_title_cannot_forge_a_bag_info_field(tmp_path: Path) -> None:
    work = _work().model_copy(
        update={"title": _work().title.model_copy(update={"en": "X\nExternal-Identifier: forged"})}
    )
    bag_dir = tmp_path / "bag"
    (bag_dir / "original").mkdir(parents=True)
    (bag_dir / "original" / "f").write_bytes(b"x")
    make_bag(bag_dir, bag_info(work, OrganisationSettings(), None), tmp_path / "none", {})
    bag = bagit.Bag(str(bag_dir))
    assert bag.info["External-Identifier"] == "cifa-0001"
    assert bag.info["Title"] == "X External-Identifier: forged"
