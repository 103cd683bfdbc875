"""Bag validation, every rule with a stable code and the RFC 8493 section it enforces.

As ocfl-py does for OCFL, each problem found is a :class:`Finding` with a code (``E…`` errors make
a bag invalid, ``W…`` warnings do not) whose message cites the specification, so that an auditor
in fifty years can look the rule up. Digests come from :mod:`cifa_ingest.bag.fixity` (one read per
file, every algorithm, in parallel). bagit-python stays the independent reference in the tests;
this validator also passes the whole Library of Congress conformance suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.bag import fixity, manifest

#: code -> (severity, RFC 8493 section, what the rule says)
CODES: dict[str, tuple[str, str, str]] = {
    "E001": ("error", "2.1.1", "a bag MUST contain a bag declaration, bagit.txt"),
    "E002": ("error", "2.1.1", "bagit.txt MUST consist of exactly 'BagIt-Version: M.N' and "
             "'Tag-File-Character-Encoding: ENCODING', in that order"),
    "E003": ("error", "2.1.1", "bagit.txt MUST NOT begin with a byte-order mark"),
    "E004": ("error", "2.1.1", "the BagIt version is not one this validator knows"),
    "E005": ("error", "2.1.2", "a bag MUST contain a payload directory named data"),
    "E006": ("error", "2.1.3", "a bag MUST contain at least one payload manifest"),
    "E007": ("error", "2.1.3", "each manifest line is 'CHECKSUM FILEPATH', one per line"),
    "E008": ("error", "2.1.3", "a manifest path MUST be relative to the bag and stay inside it "
             "(no '..', no absolute path, no '~'); see also section 4"),
    "E009": ("error", "3", "every file listed in every manifest MUST be present (complete bag)"),
    "E010": ("error", "3", "every payload file MUST be listed in every payload manifest"),
    "E011": ("error", "3", "every file's checksum MUST match its manifest entry (valid bag)"),
    "E012": ("error", "2.1.3", "a manifest MUST NOT list a file more than once"),
    "E013": ("error", "2.2.1", "a tag manifest MUST NOT list payload files or other manifests'"
             " tag manifests; listed tag files must exist and match"),
    "E014": ("error", "2.2.2", "Payload-Oxum MUST equal the payload's octet count and file count"),
    "E015": ("error", "2.2.3", "fetch.txt lines are 'URL LENGTH FILEPATH', FILEPATH inside data/"),
    "E016": ("error", "2.1.1", "tag files MUST be readable in the declared character encoding"),
    "E017": ("error", "2.2.2", "bag-info.txt lines are 'LABEL: VALUE' or indented continuations"),
    "E018": ("error", "2.1.3", "a manifest file name is manifest-ALGORITHM.txt, with an algorithm"
             " this validator knows"),
    "E000": ("error", "2", "the bag is a directory"),
    "W101": ("warning", "2.1.3", "manifest lines separate checksum and path with white space; a"
             " '*' before the path (md5sum's binary mode) is not part of BagIt"),
    "W102": ("warning", "2.1.3", "manifest paths are relative to the bag without a leading './'"),
    "W103": ("warning", "4", "two paths differ only in letter case: they collide on"
             " case-insensitive file systems"),
    "W104": ("warning", "4", "two paths differ only in Unicode normalisation: they may collide"),
    "W105": ("warning", "2.1.3", "the same file is listed twice (with the same checksum)"),
    "W106": ("warning", "4", "operating-system debris in the payload (.DS_Store, Thumbs.db, …)"),
    "W107": ("warning", "2.2.3", "files listed in fetch.txt are not present yet: the bag is not"
             " complete until they are fetched"),
    "W108": ("warning", "2.4", "md5 and sha1 are weak; RFC 8493 recommends sha256 or sha512"),
}  # fmt: skip

SYSTEM_DEBRIS = {".ds_store", "thumbs.db", "desktop.ini", ".spotlight-v100", ".trashes"}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    path: str | None = None
    #: The evidence of a fixity finding, for auditors: what was compared (a checksum algorithm,
    #: or ``Payload-Oxum``), what the bag says it should be, and what was found (None: nothing,
    #: the file is gone).
    algorithm: str | None = None
    expected: str | None = None
    found: str | None = None

    @classmethod
    def of(
        cls,
        code: str,
        detail: str,
        path: str | None = None,
        *,
        algorithm: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> Finding:
        severity, section, rule = CODES[code]
        message = f"{detail} [{code}: RFC 8493 §{section}: {rule}]"
        return cls(code, severity, message, path, algorithm, expected, found)


@dataclass
class Report:
    bag: str
    version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "bag": self.bag,
            "valid": self.valid,
            "version": self.version,
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }


class _Invalid(Exception):
    """Stops validation where nothing further can be read."""


def _report(problems: list[manifest.Problem], report: Report) -> None:
    """The reader's problems as findings: the reader names the code, this module the rule."""
    report.findings += [Finding.of(p.code, p.detail, p.path) for p in problems]


def _read_declaration(bag: Path, report: Report) -> manifest.Declaration:
    """bagit.txt, or _Invalid: without a known version and encoding nothing else can be read."""
    declaration = manifest.read_declaration(bag)
    report.version = declaration.label
    if declaration.problems:
        _report(declaration.problems, report)
        raise _Invalid
    return declaration


def _read_tag_text(path: Path, encoding: str, report: Report) -> str | None:
    text, problems = manifest.read_tag_text(path, encoding)
    _report(problems, report)
    return text


def _payload_files(bag: Path) -> dict[str, Path]:
    return {p.relative_to(bag).as_posix(): p for p in (bag / "data").rglob("*") if p.is_file()}


def _fetch_paths(bag: Path, declaration: manifest.Declaration, report: Report) -> set[str]:
    """The payload paths fetch.txt lists; its paths follow the manifests' rules (RFC 8493 §2.2.3
    refers to §2.1.3), so the manifest reader normalises them."""
    path = bag / "fetch.txt"
    if not path.is_file():
        return set()
    text = _read_tag_text(path, declaration.reading_encoding, report) or ""
    listed = set()
    for number, line in enumerate(manifest.split_lines(text), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            report.findings.append(Finding.of("E015", f"fetch.txt line {number}: {line!r}"))
            continue
        name, problems = manifest.normalise_path(
            parts[2], "fetch.txt", percent_encoded=declaration.percent_encoded
        )
        _report(problems, report)
        if name is None:
            continue
        if not name.startswith("data/"):
            report.findings.append(Finding.of("E015", f"fetch.txt line {number}: {name!r}"))
            continue
        listed.add(name)
    return listed


def _bag_info(bag: Path, encoding: str, report: Report) -> dict[str, list[str]]:
    path = bag / "bag-info.txt"
    info: dict[str, list[str]] = defaultdict(list)
    if not path.is_file():
        return info
    text = _read_tag_text(path, encoding, report) or ""
    label = None
    for number, line in enumerate(manifest.split_lines(text), start=1):
        if not line.strip():
            continue
        if line[0] in " \t" and label is not None:
            info[label][-1] += " " + line.strip()
            continue
        match = re.match(r"^([^:\s][^:]*?)\s*:\s*(.*)$", line)
        if not match:
            report.findings.append(Finding.of("E017", f"bag-info.txt line {number}: {line!r}"))
            continue
        label = match.group(1)
        info[label].append(match.group(2).strip())
    return info


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def validate(bag: Path, *, fast: bool = False, workers: int | None = None) -> Report:
    """Validate ``bag`` (a directory). With ``fast``, completeness and Payload-Oxum only, no
    checksum is computed."""
    report = Report(bag=str(bag))
    if not bag.is_dir():
        report.findings.append(Finding.of("E000", f"{bag} is not a directory"))
        return report
    with contextlib.suppress(_Invalid):  # a finding says why nothing more could be read
        _validate(bag, report, fast, workers)
    return report


def _validate(bag: Path, report: Report, fast: bool, workers: int | None) -> None:
    declaration = _read_declaration(bag, report)
    encoding = declaration.reading_encoding  # the declared one: known, or _Invalid above
    if not (bag / "data").is_dir():
        report.findings.append(Finding.of("E005", "no data/ directory"))
        raise _Invalid
    manifests: dict[str, dict[str, str]] = {}
    tag_manifests: dict[str, dict[str, str]] = {}
    for path in manifest.manifest_paths(bag):
        kind = manifest.manifest_kind(path.name)
        if kind is None:
            report.findings.append(Finding.of("E018", path.name, path.name))
            continue
        read = manifest.read_manifest(path, declaration)
        _report(read.problems, report)
        if not read.readable:
            continue
        (tag_manifests if read.tag else manifests)[read.algorithm] = read.entries
        if read.algorithm in {"md5", "sha1"}:
            report.findings.append(Finding.of("W108", path.name, path.name))
    if not manifests:
        report.findings.append(Finding.of("E006", "no manifest-ALGORITHM.txt"))
        raise _Invalid

    payload = _payload_files(bag)
    fetchable = _fetch_paths(bag, declaration, report)
    present_folded = defaultdict(list)
    for name in payload:
        present_folded[_folded(name)].append(name)
        if Path(name).name.lower() in SYSTEM_DEBRIS or Path(name).name.startswith("._"):
            report.findings.append(Finding.of("W106", name, name))
    for names in present_folded.values():
        if len(names) > 1:
            report.findings.append(Finding.of("W103", ", ".join(sorted(names))))

    lost_debris: set[str] = set()
    jobs: dict[Path, set[str]] = defaultdict(set)
    expected: list[tuple[str, str, str, bool]] = []  # path, algorithm, digest, is_tag
    for is_tag, group in ((False, manifests), (True, tag_manifests)):
        for algorithm, entries in group.items():
            manifest_name = f"{'tag' if is_tag else ''}manifest-{algorithm}.txt"
            for name, digest in entries.items():
                if not is_tag and not name.startswith("data/"):
                    report.findings.append(Finding.of("E008", f"{manifest_name}: {name}", name))
                    continue
                target = bag / name
                if not target.is_file():
                    twin = [n for n in present_folded.get(_folded(name), []) if n != name]
                    if twin and unicodedata.normalize("NFC", twin[0]) == unicodedata.normalize(
                        "NFC", name
                    ):
                        report.findings.append(Finding.of("W104", f"{name} ~ {twin[0]}", name))
                    elif twin:
                        report.findings.append(Finding.of("W103", f"{name} ~ {twin[0]}", name))
                    elif name in fetchable:
                        report.findings.append(Finding.of("W107", name, name))
                    elif _is_empty_debris(name, algorithm, digest):
                        # Empty OS debris (.DS_Store …) is routinely dropped by copying tools.
                        report.findings.append(Finding.of("W106", f"{name} is missing", name))
                        lost_debris.add(name)
                    else:
                        code = "E013" if is_tag else "E009"
                        report.findings.append(
                            Finding.of(
                                code, f"{name} is missing", name,
                                algorithm=algorithm, expected=digest,
                            )
                        )  # fmt: skip
                    continue
                jobs[target].add(algorithm)
                expected.append((name, algorithm, digest, is_tag))

    for algorithm, entries in manifests.items():
        listed = {unicodedata.normalize("NFC", n) for n in entries}
        for name in payload:
            if unicodedata.normalize("NFC", name) in listed:
                continue
            if report.version == "1.0" or not any(
                unicodedata.normalize("NFC", name) in {unicodedata.normalize("NFC", x) for x in e}
                for e in manifests.values()
            ):
                report.findings.append(
                    Finding.of("E010", f"{name} is not in manifest-{algorithm}.txt", name)
                )

    _check_oxum(payload, _bag_info(bag, encoding, report), report, len(lost_debris))
    if fast:
        return
    unreadable: list[tuple[Path, OSError]] = []
    digests = fixity.digest_files(
        dict(jobs), workers=workers, on_error=lambda p, e: unreadable.append((p, e))
    )
    for path, error in unreadable:
        report.findings.append(Finding.of("E009", f"{path.name}: {error.strerror}"))
    report.files_checked = len(digests)
    report.bytes_checked = sum(d.size for d in digests.values())
    for name, algorithm, digest, is_tag in expected:
        found = digests.get(bag / name)
        if found is None:
            continue
        actual = found.digests[algorithm]
        if actual != digest:
            code = "E013" if is_tag else "E011"
            detail = f"{name}: {algorithm} is {actual}, the manifest says {digest}"
            report.findings.append(
                Finding.of(code, detail, name, algorithm=algorithm, expected=digest, found=actual)
            )


def _is_empty_debris(name: str, algorithm: str, digest: str) -> bool:
    is_debris = Path(name).name.lower() in SYSTEM_DEBRIS or Path(name).name.startswith("._")
    return is_debris and digest == hashlib.new(algorithm).hexdigest()


def _check_oxum(
    payload: dict[str, Path], info: dict[str, list[str]], report: Report, lost_empty: int
) -> None:
    """Payload-Oxum against the payload; empty debris files already reported as lost count."""
    values = info.get("Payload-Oxum")
    if not values:
        return
    match = re.match(r"^(\d+)\.(\d+)$", values[0])
    size = sum(p.stat().st_size for p in payload.values())
    counts = {len(payload), len(payload) + lost_empty}
    if not match or int(match.group(1)) != size or int(match.group(2)) not in counts:
        found = f"{size}.{len(payload)}"
        detail = f"Payload-Oxum {values[0]!r}, the payload is {found}"
        report.findings.append(
            Finding.of("E014", detail, algorithm="Payload-Oxum", expected=values[0], found=found)
        )
