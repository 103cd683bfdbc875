"""The catalogue schema: valid files load; each invalid fixture is refused with the file, the
entry and the field named. Fixtures are named after the error they trigger; the first line of
each invalid one says (``# expect: …``) what the message must contain."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifa_ingest.catalogue.model import PermissionStatus, load_catalogue, load_catalogues
from cifa_ingest.errors import CatalogueError

DATA = Path(__file__).parent / "data" / "catalogues"
INVALID = sorted((DATA / "invalid").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: '"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_catalogue_is_refused_naming_file_entry_and_field(path: Path) -> None:
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    message = str(caught.value)
    assert str(path) in message
    assert _expected(path) in message


def test_full_catalogue_loads_every_field() -> None:
    catalogue = load_catalogue(DATA / "valid" / "full.yaml")
    first, wukan = catalogue.works
    assert first.title.zh == "流浪北京"
    assert first.director is not None and first.director.zh == "吴文光"
    assert first.is_permitted and first.has_source_address
    assert first.permission.date is not None and first.permission.date.isoformat() == "2019-05-01"
    assert [part.label for part in wukan.sources] == ["Day One", "Day Two", "Day Three"]
    assert not wukan.is_permitted and not wukan.has_source_address
    assert wukan.permission.status is PermissionStatus.PENDING


def test_minimal_and_empty_catalogues_load() -> None:
    assert len(load_catalogue(DATA / "valid" / "minimal.yaml").works) == 1
    assert load_catalogue(DATA / "valid" / "empty.yaml").works == []


def test_an_id_used_in_two_files_is_refused(tmp_path: Path) -> None:
    second = tmp_path / "second.yaml"
    second.write_text((DATA / "valid" / "minimal.yaml").read_text("utf-8"), "utf-8")
    with pytest.raises(CatalogueError, match=r"second.yaml: works\[0\] \(cifa-0001\): id: already"):
        load_catalogues([DATA / "valid" / "minimal.yaml", second])


def test_missing_file_and_non_utf8_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "absent.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("works: []\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(CatalogueError, match="not UTF-8"):
        load_catalogue(latin1)


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "two-errors.yaml"
    path.write_text(
        "works:\n"
        "- {id: cifa-0001, title: {en: A}, source: {url: null}, permission: {status: maybe}}\n"
        "- {id: Bad, title: {en: B}, source: {url: null}, permission: {status: pending}}\n",
        "utf-8",
    )
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    lines = str(caught.value).splitlines()
    assert any("works[0] (cifa-0001): permission.status" in line for line in lines)
    assert any("works[1]: id" in line for line in lines)


def test_a_withdrawn_or_narrowed_permission_is_expressible_and_gives_no_access() -> None:
    withdrawn, research, public = load_catalogue(
        DATA / "valid" / "withdrawn-and-narrowed.yaml"
    ).works
    assert withdrawn.permission.status is PermissionStatus.WITHDRAWN
    assert not withdrawn.is_permitted and not withdrawn.access_permitted
    assert research.is_permitted and not research.access_permitted
    assert public.is_permitted and public.access_permitted
