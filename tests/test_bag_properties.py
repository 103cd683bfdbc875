"""Property-based tests (hypothesis): whatever text a source sends, a bag-info value stays one
field, and whatever a file is called, its manifest path round-trips through RFC 8493's encoding
and every reader of the manifests names it as it is named."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifa_ingest.bag import manifest
from cifa_ingest.bag.check import Report, _bag_info, validate
from cifa_ingest.bag.manifest import encode_path
from cifa_ingest.bag.package import payload_files
from cifa_ingest.bag.write import make_bag_in_place, tag_value

ANY_TEXT = st.text(min_size=1, max_size=200)
FILE_NAMES = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda name: name not in {".", ".."} and len(name.encode("utf-8")) < 200)


@given(title=ANY_TEXT, director=ANY_TEXT)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_bag_info_value_never_forges_a_field(title: str, director: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp)
        lines = [f"Title: {tag_value(title)}\n", f"Director: {tag_value(director)}\n"]
        (bag / "bag-info.txt").write_text("".join(lines), "utf-8")
        info = _bag_info(bag, "utf-8", Report(bag=tmp))
    assert set(info) <= {"Title", "Director"}
    assert all(len(values) == 1 for values in info.values())
    if tag_value(title):
        assert info["Title"] == [tag_value(title)]


@given(name=FILE_NAMES)
def test_manifest_paths_round_trip(name: str) -> None:
    encoded = encode_path(f"data/{name}")
    assert "\n" not in encoded and "\r" not in encoded
    assert manifest.normalise_path(encoded, "manifest-sha256.txt") == (f"data/{name}", [])


@given(names=st.lists(FILE_NAMES, min_size=1, max_size=4, unique_by=lambda n: n.casefold()))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_bags_of_any_file_names_validate(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bag"
        root.mkdir()
        for index, name in enumerate(names):
            (root / name).write_bytes(f"file {index}".encode())
        make_bag_in_place(root)
        report = validate(root)
        assert report.valid, report.errors
        # The lenient reader (the ledger's, the audit's, PREMIS's) finds the same files.
        on_disk = {
            p.relative_to(root).as_posix() for p in (root / "data").rglob("*") if p.is_file()
        }
        assert {path for path, *_ in payload_files(root)} == on_disk
