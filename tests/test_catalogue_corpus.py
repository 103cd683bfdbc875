"""The bad-input corpus: every catalogue in ``tests/data/catalogues/invalid/`` (refused by the
schema or the YAML loader) and ``hostile/`` (syntax the schema accepts, addresses the source
policy refuses) is run through ``cifa ingest`` as a user would, against a live test server.

Each must give exit code 2, a message naming the file, the entry and the field (the fixture's
first line, ``# expect: …``), no traceback, no archive directory, and not one request to the
server. The server is real: a fixture's ``http://cifa-test-server.invalid`` becomes its address,
and fixtures with ``# cli: --allow-private-sources`` also hold a valid, permitted work pointing at
it, so that a catalogue accepted by mistake, even in part, would show up in the request log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cifa_ingest import cli
from cifa_ingest.catalogue.model import MAX_CATALOGUE_BYTES, load_catalogue
from cifa_ingest.demo.http_server import LocalFileServer

DATA = Path(__file__).parent / "data" / "catalogues"
CORPUS = sorted((DATA / "invalid").glob("*.yaml")) + sorted((DATA / "hostile").glob("*.yaml"))
PLACEHOLDER = "http://cifa-test-server.invalid"


@pytest.fixture(scope="module")
def film_server(served_root: Path) -> Iterator[LocalFileServer]:
    """One server for the whole corpus (stopping one takes half a second): its request log must
    stay empty from the first case to the last."""
    with LocalFileServer(served_root) as server:
        yield server


def _header(path: Path) -> tuple[str, list[str]]:
    """The expected message and the extra command-line options of a corpus file."""
    lines = path.read_bytes().decode("utf-8").splitlines()
    assert lines[0].startswith("# expect: "), f"{path.name} must start with '# expect: '"
    options = (
        lines[1].removeprefix("# cli: ").split()
        if lines[1:2] and lines[1].startswith("# cli: ")
        else []
    )
    return lines[0].removeprefix("# expect: "), options


def _refused(
    catalogue: Path,
    options: list[str],
    tmp_path: Path,
    server: LocalFileServer,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run ``cifa ingest``; assert exit 2, no traceback, nothing written, nothing requested.
    Returns stderr."""
    archive = tmp_path / "archive"
    status = cli.main(["ingest", str(catalogue), "--archive", str(archive), *options])
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert err.startswith("cifa: error: "), err
    assert "Traceback" not in out + err
    assert not archive.exists()
    assert server.requests == []
    return err


def test_the_corpus_has_every_case_the_issue_lists() -> None:
    names = {path.stem for path in CORPUS}
    assert len(CORPUS) >= 30
    for required in (
        "yaml-syntax-error", "year-wrong-type", "covers-not-a-list", "works-not-a-list",
        "duplicate-id", "duplicate-url-key", "id-with-slash", "id-with-dot-dot",
        "id-upper-case", "id-look-alike-unicode", "unknown-permission-status",
        "granted-without-granted-by", "file-url", "ftp-url", "javascript-url-in-part",
        "data-url", "private-10", "private-192-168", "link-local-cloud-metadata",
        "ipv6-loopback", "very-long-title", "very-long-url", "very-long-synopsis",
        "title-with-nul-escape", "synopsis-with-terminal-escape", "yaml-alias-bomb",
        "deep-nesting", "empty-file", "tab-indented",
    ):  # fmt: skip
        assert required in names, required


@pytest.mark.parametrize("path", CORPUS, ids=[f"{p.parent.name}/{p.stem}" for p in CORPUS])
def test_bad_catalogue_exits_2_naming_file_entry_and_field_before_any_request(
    path: Path,
    tmp_path: Path,
    film_server: LocalFileServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected, options = _header(path)
    # The same bytes, with the live server's address for the placeholder.
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes().replace(PLACEHOLDER.encode(), film_server.base_url.encode()))
    err = _refused(copy, options, tmp_path, film_server, capsys)
    assert f"{copy}: " in err
    assert expected.replace(PLACEHOLDER, film_server.base_url) in err
    # Nothing the catalogue holds reaches the terminal raw: no escape sequence, no NUL.
    assert not any(ch in err for ch in "\x00\x1b\x07\u202e"), repr(err)


def test_without_the_live_work_each_fixture_is_still_refused_for_its_own_error() -> None:
    """The live sibling works are valid: each file's error is its own (and the schema alone, with
    no server, refuses every invalid/ file)."""
    for path in sorted((DATA / "invalid").glob("*.yaml")):
        expected, _options = _header(path)
        with pytest.raises(Exception) as caught:
            load_catalogue(path)
        assert expected in str(caught.value), path.name
        assert "cifa-live-0001" not in str(caught.value), path.name


def test_a_20_mb_catalogue_is_refused_without_being_read_whole(
    tmp_path: Path, film_server: LocalFileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "twenty-megabytes.yaml"
    work = (
        "- id: cifa-NUMBER\n  title: {en: A film}\n"
        f"  source: {{url: '{film_server.base_url}/films/colour-bars.mkv'}}\n"
        "  permission: {status: granted, granted_by: Test}\n"
    )
    with big.open("w", encoding="utf-8") as fh:
        fh.write("works:\n")
        number = 0
        while fh.tell() < 20 * 1024 * 1024:
            fh.write(work.replace("NUMBER", f"{number:07d}"))
            number += 1
    err = _refused(big, ["--allow-private-sources"], tmp_path, film_server, capsys)
    assert f"{big}: more than {MAX_CATALOGUE_BYTES // 2**20} MiB, too large for a catalogue" in err


def test_an_endless_file_is_refused_after_the_cap(
    tmp_path: Path, film_server: LocalFileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/zero says it is 0 bytes long and never ends: the loader reads one byte past the cap."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    err = _refused(Path("/dev/zero"), [], tmp_path, film_server, capsys)
    assert "/dev/zero: more than" in err


def test_a_directory_and_a_missing_file_are_input_errors(
    tmp_path: Path, film_server: LocalFileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "folder.yaml").mkdir()
    err = _refused(tmp_path / "folder.yaml", [], tmp_path, film_server, capsys)
    assert "folder.yaml: cannot read: Is a directory" in err
    err = _refused(tmp_path / "absent.yaml", [], tmp_path, film_server, capsys)
    assert "absent.yaml: cannot read: No such file or directory" in err


def test_a_byte_order_mark_is_accepted() -> None:
    """Windows editors write one; it is not an error, and the catalogue reads as without it."""
    with_bom = load_catalogue(DATA / "valid" / "with-byte-order-mark.yaml")
    assert (DATA / "valid" / "with-byte-order-mark.yaml").read_bytes().startswith(b"\xef\xbb\xbf")
    assert with_bom == load_catalogue(DATA / "valid" / "minimal.yaml")


def test_granted_for_access_only_is_valid_and_not_fetched() -> None:
    """A permission that does not cover preservation is not an error in the register (it is
    what the filmmaker agreed to): the work is reported ``not-permitted`` and never fetched.
    (tests/test_personal_details.py runs it through a real ingest and checks the server's log.)"""
    catalogue = load_catalogue(DATA / "valid" / "granted-for-access-only.yaml")
    (work,) = catalogue.works
    assert work.permission.status == "granted" and not work.is_permitted
    assert not work.may_be_fetched
