"""Where the catalogue and a preserved bag no longer agree (cifa_ingest.catalogue.drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cifa_ingest.bag.package import descriptive_record, write_json
from cifa_ingest.catalogue.drift import Difference, Record, UnreadableRecord, differences
from cifa_ingest.catalogue.model import WITHHELD, Work

ENTRY: dict[str, Any] = {
    "id": "cifa-d-0001",
    "title": {"en": "Fengming, a Chinese Memoir", "zh": "和凤鸣"},
    "director": {"en": "Wang Bing", "zh": "王兵"},
    "year": 2007,
    "source": {"url": "https://films.example.org/fengming.mp4"},
    "permission": {
        "status": "granted",
        "covers": ["preservation", "access"],
        "granted_by": "A filmmaker's name",
        "basis": "Letter of 3 March",
    },
}


def work(**changes: Any) -> Work:
    return Work.model_validate({**ENTRY, **changes})


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    """A bag's records as the packager writes them (metadata/descriptive.json, permission.json)."""
    preserved = work()
    write_json(tmp_path / "metadata" / "descriptive.json", descriptive_record(preserved, "CIFA"))
    write_json(tmp_path / "metadata" / "permission.json", preserved.permission.record())
    return tmp_path


def test_a_catalogue_entry_as_preserved_has_no_difference(bag: Path) -> None:
    assert differences(work(), "CIFA", bag) == []


def test_a_corrected_chinese_title_is_one_difference_old_and_new(bag: Path) -> None:
    corrected = work(title={"en": ENTRY["title"]["en"], "zh": "和鳳鳴"})
    [found] = differences(corrected, "CIFA", bag)
    assert found == Difference(Record.DESCRIPTIVE, "title.zh", "和凤鸣", "和鳳鳴")
    assert str(found) == 'descriptive title.zh: "和凤鸣" → "和鳳鳴"'


def test_a_field_added_and_a_collection_moved_are_named(bag: Path) -> None:
    found = differences(work(synopsis="A widow remembers."), "Another collection", bag)
    assert [(d.record, d.field, d.preserved, d.catalogue) for d in found] == [
        (Record.DESCRIPTIVE, "collection", "CIFA", "Another collection"),
        (Record.DESCRIPTIVE, "synopsis", None, "A widow remembers."),
    ]


def test_a_narrowed_and_a_withdrawn_permission_are_differences(bag: Path) -> None:
    narrowed = work(permission={**ENTRY["permission"], "covers": ["preservation"]})
    assert [d.as_dict() for d in differences(narrowed, "CIFA", bag)] == [
        {
            "record": "permission",
            "field": "covers",
            "preserved": ["preservation", "access"],
            "catalogue": ["preservation"],
        }
    ]
    withdrawn = work(permission={**ENTRY["permission"], "status": "refused"})
    assert [(d.field, d.preserved, d.catalogue) for d in differences(withdrawn, "CIFA", bag)] == [
        ("status", "granted", "refused")
    ]


def test_personal_details_in_a_permission_are_named_never_shown(bag: Path) -> None:
    changed = work(permission={**ENTRY["permission"], "granted_by": "Another person's name"})
    [found] = differences(changed, "CIFA", bag)
    assert (found.field, found.preserved, found.catalogue) == ("granted_by", WITHHELD, WITHHELD)
    shown = str(found) + json.dumps(found.as_dict())
    assert "person" not in shown and "filmmaker" not in shown
    assert str(found) == "permission granted_by changed"


def test_a_new_source_address_is_a_recapture_not_a_metadata_difference(bag: Path) -> None:
    moved = work(source={"url": "https://elsewhere.example.org/fengming.mp4"})
    assert differences(moved, "CIFA", bag) == []


def test_a_bag_whose_records_cannot_be_read_is_not_a_difference(bag: Path) -> None:
    (bag / "metadata" / "permission.json").write_text("[1, 2]", "utf-8")
    with pytest.raises(UnreadableRecord, match=r"permission\.json is not a JSON object"):
        differences(work(), "CIFA", bag)
    (bag / "metadata" / "descriptive.json").unlink()
    with pytest.raises(UnreadableRecord, match=r"descriptive\.json cannot be read"):
        differences(work(), "CIFA", bag)
