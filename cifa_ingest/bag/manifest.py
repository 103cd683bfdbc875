"""The one reader (and line writer) of BagIt manifests: ``manifest-ALG.txt`` and
``tagmanifest-ALG.txt`` (RFC 8493 §2.1.3, §2.2.1).

Why one: the validator, :func:`cifa_ingest.bag.package.payload_files` (the ledger's and the
audit's list of files) and the PREMIS record each read manifests their own way, and the three
disagreed on the same bytes. ``str.splitlines`` cut a name at U+2028 or NEL, which RFC 8493 does
not encode; ``partition("  ")`` needed exactly two spaces; bagit-python 1.9 decodes neither %25
nor a lower-case %0a, and it too ends a line at U+2028, so a film called "100% 流浪北京" was a
file PREMIS could not find. Every consumer now reads through this module, so a path is the same
path everywhere, and the encoding of a path (:func:`encode_path`) sits beside its decoding
(:func:`decode_path`).

The rules, as the validator has always applied them:

* The text is decoded in the bag's declared Tag-File-Character-Encoding (bagit.txt); a leading
  byte-order mark is dropped. A file that does not decode is E016.
* Lines end at CR LF, LF or CR, and nothing else. Blank lines are skipped.
* A line is ``DIGEST<white space>PATH``: hexadecimal digits (read in lower case), white space,
  then the path to the end of the line, trailing spaces included (they are part of a name).
  Anything else is E007. A ``*`` before the path (md5sum's binary mode) is dropped, W101.
* In a BagIt 1.0 bag, %0A, %0D and %25 in a path (either case) are decoded, in one pass, and no
  other escape: the inverse of what our writer encodes. Earlier versions had no such rule.
* A leading ``./`` is dropped (W102); an absolute path, a drive letter, ``~`` or a ``..`` part is
  out of the bag (E008) and the entry is left out.
* A path listed twice keeps its first digest: E012, or W105 where a pre-1.0 bag repeats it with
  the same digest.

Each problem carries the code under which :mod:`cifa_ingest.bag.check` reports it, so the strict
validator turns problems into findings while lenient readers (the ledger's file list, PREMIS)
take the entries and leave the judging to the validator. Where bagit.txt cannot be read, lenient
readers fall back on what our writer declares (BagIt 1.0, UTF-8); the validator stops there.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

#: Checksum algorithms a manifest may be named after (manifest-ALGORITHM.txt).
ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})
#: BagIt versions whose rules we know.
KNOWN_VERSIONS = frozenset({(0, 93), (0, 94), (0, 95), (0, 96), (0, 97), (1, 0)})
#: What our writer declares, and what lenient readers assume where bagit.txt says nothing usable.
DEFAULT_VERSION = (1, 0)
DEFAULT_ENCODING = "UTF-8"

_MANIFEST_NAME = re.compile(r"^(tag)?manifest-([a-z0-9]+)\.txt$")
_LINE = re.compile(r"^([0-9A-Fa-f]+)(\s+)(\*?)(.+)$")
_LINE_END = re.compile(r"\r\n|\n|\r")
_BAGIT_LINES = (
    re.compile(r"^BagIt-Version: (\d+)\.(\d+)$"),
    re.compile(r"^Tag-File-Character-Encoding: (\S+)$"),
)
_ENCODED = re.compile(r"%(0[aAdD]|25)")
_DECODED = {"0a": "\n", "0d": "\r", "25": "%"}


@dataclass(frozen=True)
class Problem:
    """Something wrong in a bag's declaration or a manifest, under the code (a key of
    :data:`cifa_ingest.bag.check.CODES`) the validator reports it with."""

    code: str
    detail: str
    path: str | None = None

    @property
    def is_error(self) -> bool:
        return self.code.startswith("E")


# ---------------------------------------------------------------------------------------------
# Paths: RFC 8493 §2.1.3's percent-encoding, written and read here only


def encode_path(path: str) -> str:
    """A manifest path per RFC 8493 §2.1.3: %, CR and LF percent-encoded."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def decode_path(path: str) -> str:
    """The inverse of :func:`encode_path`, in one pass (so that a decoded % never starts a new
    escape): %0A, %0D and %25 only, as RFC 8493 §2.1.3 defines."""
    return _ENCODED.sub(lambda match: _DECODED[match.group(1).lower()], path)


def format_manifest(entries: dict[str, str]) -> str:
    """A manifest's text: one ``DIGEST  PATH`` line per entry, sorted by path, paths encoded.
    Written with the same module that reads it, so that the two cannot drift apart."""
    return "".join(f"{digest}  {encode_path(name)}\n" for name, digest in sorted(entries.items()))


def normalise_path(
    raw: str, source: str, *, percent_encoded: bool = True
) -> tuple[str | None, list[Problem]]:
    """A path as a manifest or fetch.txt (``source``) writes it, as a path inside the bag; None
    where it points outside. ``percent_encoded``: the bag is BagIt 1.0, whose paths are."""
    problems = []
    path = decode_path(raw) if percent_encoded else raw
    if path.startswith("./"):
        problems.append(Problem("W102", f"{source}: {raw!r}", raw))
        path = path[2:]
    parts = path.split("/")
    if path.startswith(("/", "~")) or ".." in parts or re.match(r"^[A-Za-z]:", path):
        problems.append(Problem("E008", f"{source}: {raw!r}", raw))
        return None, problems
    return path, problems


# ---------------------------------------------------------------------------------------------
# Tag file text: the bag's declaration and its character encoding


@dataclass
class Declaration:
    """What bagit.txt declares, as far as it could be read; ``problems`` say what could not."""

    version: tuple[int, int] | None = None
    encoding: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def label(self) -> str | None:
        return f"{self.version[0]}.{self.version[1]}" if self.version else None

    @property
    def reading_encoding(self) -> str:
        """The encoding to read tag files in: the declared one, or our writer's if none is
        declared or it is unknown (where the validator stops, lenient readers go on)."""
        if self.encoding:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                return DEFAULT_ENCODING
            return self.encoding
        return DEFAULT_ENCODING

    @property
    def percent_encoded(self) -> bool:
        """Whether manifest paths are percent-encoded: BagIt 1.0 on (RFC 8493 §2.1.3)."""
        return _percent_encoded(self.version)


def _percent_encoded(version: tuple[int, int] | None) -> bool:
    return (version or DEFAULT_VERSION) >= (1, 0)


def split_lines(text: str) -> list[str]:
    """A tag file's lines: ended by CR LF, LF or CR only (``str.splitlines`` also ends a line at
    U+2028, NEL and others, which may be part of a file name)."""
    return _LINE_END.split(text)


def read_declaration(bag: Path) -> Declaration:
    """bagit.txt (RFC 8493 §2.1.1): exactly a version line and an encoding line, UTF-8, no BOM.
    The problems are E001, E002, E003, E004 and E016; after any of them the validator reads on no
    further, so at most one is reported."""
    declaration = Declaration()
    path = bag / "bagit.txt"
    if not path.is_file():
        declaration.problems.append(Problem("E001", "bagit.txt is missing"))
        return declaration
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        declaration.problems.append(Problem("E003", "bagit.txt starts with a byte-order mark"))
        return declaration
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        declaration.problems.append(Problem("E002", "bagit.txt is not UTF-8 text"))
        return declaration
    lines = [line for line in split_lines(text) if line != ""]
    matches = [p.match(line) for p, line in zip(_BAGIT_LINES, lines, strict=False)]
    if len(lines) != 2 or not matches[0] or not matches[1]:
        declaration.problems.append(Problem("E002", f"bagit.txt reads {text.strip()!r}"))
        return declaration
    declaration.version = (int(matches[0].group(1)), int(matches[0].group(2)))
    declaration.encoding = matches[1].group(1)
    if declaration.version not in KNOWN_VERSIONS:
        declaration.problems.append(Problem("E004", f"BagIt-Version {declaration.label}"))
        return declaration
    try:
        codecs.lookup(declaration.encoding)
    except LookupError:
        declaration.problems.append(Problem("E016", f"unknown encoding {declaration.encoding}"))
    return declaration


def read_tag_text(path: Path, encoding: str) -> tuple[str | None, list[Problem]]:
    """A tag file's text in the bag's encoding, a leading byte-order mark dropped; None (E016)
    where the bytes are not text in that encoding."""
    try:
        text = path.read_bytes().decode(encoding)
    except UnicodeDecodeError:
        return None, [Problem("E016", f"{path.name} is not {encoding}", path.name)]
    return text.removeprefix("\ufeff"), []


# ---------------------------------------------------------------------------------------------
# Manifests


@dataclass
class Manifest:
    """One manifest file as read: its entries (path inside the bag -> digest, lower case) and
    every problem found. ``readable`` is False where the file did not decode (no entries)."""

    name: str
    algorithm: str
    tag: bool
    entries: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True


def manifest_kind(name: str) -> tuple[bool, str] | None:
    """(is a tag manifest, algorithm) of a manifest's file name; None where the name is not
    ``(tag)manifest-ALGORITHM.txt`` with an algorithm we know (the validator's E018)."""
    match = _MANIFEST_NAME.match(name)
    if not match or match.group(2) not in ALGORITHMS:
        return None
    return bool(match.group(1)), match.group(2)


def manifest_paths(bag: Path) -> list[Path]:
    """Every file at the top of the bag named like a manifest, sorted; see :func:`manifest_kind`
    for which of them are manifests."""
    return sorted(bag.glob("*manifest-*.txt"))


def parse_manifest(text: str, name: str, *, version: tuple[int, int] | None = None) -> Manifest:
    """A manifest's decoded text, read by the rules above. ``name`` is the manifest's file name
    (it gives the algorithm, and the problems cite it); ``version`` the bag's BagIt version."""
    kind = manifest_kind(name)
    tag, algorithm = kind if kind else (name.startswith("tag"), "")
    manifest = Manifest(name, algorithm, tag)
    percent_encoded = _percent_encoded(version)
    problems = manifest.problems
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            problems.append(Problem("E007", f"{name} line {number}: {line!r}"))
            continue
        digest, _gap, star, raw_path = match.groups()
        if star:
            problems.append(Problem("W101", f"{name} line {number}", raw_path))
        path, path_problems = normalise_path(raw_path, name, percent_encoded=percent_encoded)
        problems += path_problems
        if path is None:
            continue
        if path in manifest.entries:
            same = manifest.entries[path] == digest.lower()
            code = "W105" if same and not percent_encoded else "E012"  # before 1.0: a warning
            problems.append(Problem(code, f"{name}: {path}", path))
            continue
        manifest.entries[path] = digest.lower()
    return manifest


def read_manifest(path: Path, declaration: Declaration) -> Manifest:
    """The manifest file at ``path``, read in the encoding ``declaration`` gives."""
    text, problems = read_tag_text(path, declaration.reading_encoding)
    if text is None:
        kind = manifest_kind(path.name)
        tag, algorithm = kind if kind else (path.name.startswith("tag"), "")
        return Manifest(path.name, algorithm, tag, problems=problems, readable=False)
    return parse_manifest(text, path.name, version=declaration.version)


def read_manifests(bag: Path, *, tag: bool = False) -> dict[str, Manifest]:
    """The bag's payload manifests (``tag``: its tag manifests) by algorithm, leniently: files
    named like manifests with an unknown algorithm are passed over, and bagit.txt's problems
    leave our writer's defaults in place. The validator reports all of that."""
    declaration = read_declaration(bag)
    manifests = {}
    for path in manifest_paths(bag):
        kind = manifest_kind(path.name)
        if kind is not None and kind[0] == tag:
            manifests[kind[1]] = read_manifest(path, declaration)
    return manifests


def payload_entries(bag: Path) -> tuple[dict[str, dict[str, str]], list[Problem]]:
    """Each payload file the payload manifests list (a path under ``data/``) with its digest by
    algorithm, as bagit-python's ``Bag.payload_entries`` gives them but by RFC 8493's decoding;
    and the problems met, for a caller that must not go on past an error."""
    entries: dict[str, dict[str, str]] = {}
    problems: list[Problem] = []
    for algorithm, manifest in read_manifests(bag).items():
        problems += manifest.problems
        for path, digest in manifest.entries.items():
            if path.startswith("data/"):
                entries.setdefault(path, {})[algorithm] = digest
    return entries, problems
