"""The one manifest reader (cifa_ingest.bag.manifest): the same manifest bytes read the same way by
every consumer (the validator, the ledger's and the audit's list of files, the PREMIS record),
whatever the names and however the lines are written, and a malformed line is the same problem,
under the validator's code, wherever it is read."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import bagit
import pytest

from cifa_ingest.bag import manifest
from cifa_ingest.bag.check import CODES, validate
from cifa_ingest.bag.package import payload_files
from cifa_ingest.bag.write import make_bag_in_place, write_tag_manifests
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.errors import PackagingError
from cifa_ingest.metadata.premis import build_premis

PREMIS = {"p": "http://www.loc.gov/premis/v3"}

#: Names each reader once got wrong: % (bagit-python 1.9 leaves %25 encoded), line breaks (which
#: RFC 8493 percent-encodes), U+2028 and NEL (str.splitlines ends a line at them, RFC 8493 does
#: not), a literal "%0A" (must not be decoded twice), a trailing space, and Chinese.
TRICKY = [
    "100% 流浪北京.mkv",
    "line\nbreak.txt",
    "carriage\rreturn.txt",
    "para\u2028sep.txt",
    "nel\x85.txt",
    "%0A-literal.txt",
    "trailing space ",
    "中文/字幕 zh-Hans.vtt",
]
#: Those bagit-python 1.9 reads right too: the independent reference for the rest.
BAGIT_PYTHON_READS = ["line\nbreak.txt", "carriage\rreturn.txt", "流浪北京.mkv", "中文/字幕.vtt"]


def _bag(tmp: Path, names: list[str]) -> Path:
    """A bag by our writer with ``names`` under data/original/ (where PREMIS looks)."""
    root = tmp / "bag"
    for name in names:
        path = root / "original" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode("utf-8"))
    make_bag_in_place(root)
    return root


def _on_disk(bag: Path) -> dict[str, str]:
    """Every payload file, and its sha256, as the file system has them: the truth."""
    return {
        p.relative_to(bag).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (bag / "data").rglob("*")
        if p.is_file()
    }


def _premis_objects(bag: Path) -> dict[str, str]:
    """Each PREMIS object's identifier (a payload path) and sha256, as the record says."""
    root = build_premis(bag, OrganisationSettings(), packaged_at="2026-01-01T00:00:00+00:00")
    objects = {}
    for element in root.getroot().findall("p:object", PREMIS):
        path = element.findtext("p:objectIdentifier/p:objectIdentifierValue", namespaces=PREMIS)
        for fixity in element.iterfind("p:objectCharacteristics/p:fixity", PREMIS):
            if fixity.findtext("p:messageDigestAlgorithm", namespaces=PREMIS) == "sha256":
                objects[str(path)] = str(fixity.findtext("p:messageDigest", namespaces=PREMIS))
    return objects


def _every_reading(bag: Path) -> dict[str, dict[str, str]]:
    """The payload (path -> sha256) as each consumer reads it from the bag's manifests."""
    entries, _problems = manifest.payload_entries(bag)
    return {
        "reader": {path: digests["sha256"] for path, digests in entries.items()},
        "payload_files": {path: str(sha256) for path, _size, sha256, _ in payload_files(bag)},
        "premis": _premis_objects(bag),
    }


def _assert_all_agree(bag: Path) -> None:
    report = validate(bag)
    assert report.findings == [], report.findings
    truth = _on_disk(bag)
    for consumer, reading in _every_reading(bag).items():
        assert reading == truth, consumer


def test_every_consumer_reads_tricky_names_as_the_files_are_named(tmp_path: Path) -> None:
    _assert_all_agree(_bag(tmp_path, TRICKY))


def _rewrite(bag: Path, change: Callable[[bytes], bytes], *, names: str = "manifest-*.txt") -> None:
    """Rewrite the bag's manifests' bytes with ``change``, then its tag manifests over them."""
    for path in bag.glob(names):
        path.write_bytes(change(path.read_bytes()))
    write_tag_manifests(bag)


#: Ways other tools write the same manifest, every one of them RFC 8493 conformant.
SPELLINGS: dict[str, Callable[[bytes], bytes]] = {
    "CRLF line ends": lambda b: b.replace(b"\n", b"\r\n"),
    "CR line ends": lambda b: b.replace(b"\n", b"\r"),
    "one space": lambda b: b.replace(b"  data/", b" data/"),
    "a tab": lambda b: b.replace(b"  data/", b"\tdata/"),
    "upper-case digests": lambda b: b"\n".join(
        line[: line.index(b" ")].upper() + line[line.index(b" ") :] if line else line
        for line in b.split(b"\n")
    ),
    "lower-case escapes": lambda b: b.replace(b"%0A", b"%0a").replace(b"%0D", b"%0d"),
    "no final line end": lambda b: b.rstrip(b"\n"),
    "blank lines": lambda b: b"\n" + b.replace(b"\n", b"\n\n"),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_consumer_reads_each_spelling_alike(tmp_path: Path, spelling: str) -> None:
    bag = _bag(tmp_path, TRICKY)
    _rewrite(bag, SPELLINGS[spelling])
    _assert_all_agree(bag)


@pytest.mark.parametrize("spelling", ["CRLF line ends", "one space", "a tab", "blank lines"])
def test_bagit_python_reads_the_same_entries(tmp_path: Path, spelling: str) -> None:
    """bagit-python, the independent reference, on the names and spellings it handles."""
    bag = _bag(tmp_path, BAGIT_PYTHON_READS)
    _rewrite(bag, SPELLINGS[spelling])
    entries, problems = manifest.payload_entries(bag)
    assert problems == []
    reference = bagit.Bag(str(bag))
    reference.validate()
    assert entries == reference.payload_entries()


def test_a_bag_declaring_another_encoding_is_read_in_it(tmp_path: Path) -> None:
    """RFC 8493 §2.1.1: tag files are in the declared Tag-File-Character-Encoding. The same
    Chinese names in GB18030 (whose bytes are not UTF-8) read the same as in UTF-8."""
    bag = _bag(tmp_path, ["流浪北京.mkv", "中文/字幕.vtt", "line\nbreak"])
    (bag / "bagit.txt").write_text(
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: GB18030\n", "utf-8"
    )
    for path in [*bag.glob("manifest-*.txt"), bag / "bag-info.txt"]:
        path.write_bytes(path.read_text("utf-8").encode("gb18030"))
    write_tag_manifests(bag)  # its paths are ASCII: the same bytes in GB18030
    with pytest.raises(UnicodeDecodeError):
        (bag / "manifest-sha256.txt").read_bytes().decode("utf-8")
    _assert_all_agree(bag)
    reference = bagit.Bag(str(bag))
    reference.validate()
    assert set(reference.payload_entries()) == set(_on_disk(bag))


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path: Path) -> None:
    bag = _bag(tmp_path, ["a.mkv"])
    _rewrite(bag, lambda b: b"\xef\xbb\xbf" + b)
    _assert_all_agree(bag)


# Malformed lines: the reader's problems are the validator's findings, code for code.

_ZEROS = "0" * 64
MALFORMED: dict[str, tuple[str, set[str]]] = {
    "not a manifest line": ("not a manifest line\n", {"E007"}),
    "a digest without a path": (f"{_ZEROS}\n", {"E007"}),
    "a path outside the bag": (f"{_ZEROS}  ../outside\n", {"E008"}),
    "an absolute path": (f"{_ZEROS}  /etc/passwd\n", {"E008"}),
    "a path listed twice": (f"{_ZEROS}  data/original/a.mkv\n", {"E012"}),
    "md5sum's binary mode": (f"{_ZEROS} *data/original/b.mkv\n", {"W101", "E011"}),
    "a leading ./": (f"{_ZEROS}  ./data/original/c.mkv\n", {"W102", "E011"}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_line_is_one_problem_under_the_validators_code(
    tmp_path: Path, case: str
) -> None:
    line, codes = MALFORMED[case]
    bag = _bag(tmp_path, ["a.mkv", "b.mkv", "c.mkv"])
    manifest_sha256 = bag / "manifest-sha256.txt"
    if "data/original/b.mkv" in line or "data/original/c.mkv" in line:  # instead of the entry
        name = line.split("/")[-1].strip()
        kept = [x for x in manifest_sha256.read_text("utf-8").splitlines() if not x.endswith(name)]
        manifest_sha256.write_text("\n".join(kept) + "\n" + line, "utf-8")
    else:
        manifest_sha256.write_text(manifest_sha256.read_text("utf-8") + line, "utf-8")
    write_tag_manifests(bag)

    read = manifest.read_manifests(bag)["sha256"]
    found = {f.code for f in validate(bag).findings}
    assert found == codes, validate(bag).findings
    assert {p.code for p in read.problems} == codes - {"E011"}  # E011: the zeros differ
    assert {p.code for p in read.problems} <= set(CODES)
    assert [p.detail for p in read.problems] == [
        f.message.split(" [")[0] for f in validate(bag).findings if f.code != "E011"
    ]
    # The lenient readers take the well-formed entries; PREMIS refuses to leave a file out.
    assert {p for p, *_ in payload_files(bag)} <= set(_on_disk(bag))
    if any(code.startswith("E") for code in codes - {"E011"}):
        with pytest.raises(PackagingError, match="unreadable manifest"):
            build_premis(bag, OrganisationSettings())
    else:
        assert set(_premis_objects(bag)) == set(_on_disk(bag))


def test_an_undecodable_manifest_is_e016_and_no_entries(tmp_path: Path) -> None:
    bag = _bag(tmp_path, ["a.mkv"])
    (bag / "manifest-sha256.txt").write_bytes(b"\xff\xfe not utf-8\n")
    write_tag_manifests(bag)
    read = manifest.read_manifests(bag)["sha256"]
    assert not read.readable and read.entries == {}
    assert [p.code for p in read.problems] == ["E016"]
    assert "E016" in {f.code for f in validate(bag).findings}


def test_a_declaration_the_validator_refuses_leaves_lenient_readers_our_writers_rules(
    tmp_path: Path,
) -> None:
    """Without bagit.txt the validator stops (E001); the ledger's reading still finds the files,
    read as our writer wrote them (BagIt 1.0, UTF-8)."""
    bag = _bag(tmp_path, TRICKY)
    (bag / "bagit.txt").unlink()
    assert [f.code for f in validate(bag).findings] == ["E001"]
    assert [p.code for p in manifest.read_declaration(bag).problems] == ["E001"]
    assert {p for p, *_ in payload_files(bag)} == set(_on_disk(bag))


def test_encoding_and_decoding_are_one_pair() -> None:
    for name in TRICKY:
        encoded = manifest.encode_path(name)
        assert "\n" not in encoded and "\r" not in encoded
        assert manifest.decode_path(encoded) == name
    assert manifest.decode_path("%250A") == "%0A"  # one pass: a decoded % starts no escape
    assert manifest.decode_path("%20%2F") == "%20%2F"  # RFC 8493 encodes three characters only


def test_paths_before_bagit_1_0_are_not_decoded() -> None:
    text = f"{_ZEROS}  data/100%25.txt\n"
    assert manifest.parse_manifest(text, "manifest-sha256.txt", version=(0, 97)).entries == {
        "data/100%25.txt": _ZEROS
    }
    assert manifest.parse_manifest(text, "manifest-sha256.txt", version=(1, 0)).entries == {
        "data/100%.txt": _ZEROS
    }


def test_the_writer_writes_what_the_reader_reads() -> None:
    entries = {f"data/{name}": hashlib.sha256(name.encode()).hexdigest() for name in TRICKY}
    text = manifest.format_manifest(entries)
    read = manifest.parse_manifest(text, "manifest-sha256.txt")
    assert read.entries == entries and read.problems == []


def test_unknown_manifest_names_are_the_validators_e018_and_not_read() -> None:
    assert manifest.manifest_kind("manifest-sha256.txt") == (False, "sha256")
    assert manifest.manifest_kind("tagmanifest-md5.txt") == (True, "md5")
    assert manifest.manifest_kind("manifest-crc32.txt") is None
    assert manifest.manifest_kind("manifest-SHA256.txt") is None
