"""Writing bags with our fixity engine: ``cifa bag DIR`` turns a directory into a BagIt 1.0 bag in
place, as ``bagit.py`` does, hashing every file once for sha256 and sha512 in parallel.

Manifest paths are percent-encoded where RFC 8493 §2.1.3 asks (CR, LF and %), by
:mod:`cifa_ingest.bag.manifest`, which reads them back for every consumer; bag-info values are
folded to one clean line (no field can be forged by a value), and the tag manifests cover every
tag file. bagit-python validates what this writes, and this module's validator validates what
bagit-python writes (see the tests).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from pathlib import Path

from cifa_ingest import __version__
from cifa_ingest.bag import fixity
from cifa_ingest.bag.manifest import format_manifest

ALGORITHMS = ("sha256", "sha512")
_MAX_TAG_VALUE = 1000
DECLARATION = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


def tag_value(text: str) -> str:
    """A value safe for one bag-info line: no line breaks or control characters (they could
    start a forged field), bidi overrides removed, white space folded, length bounded."""
    cleaned = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\r\n\t" or category in {"Cc", "Cf", "Zl", "Zp"}:
            cleaned.append(" ")
        else:
            cleaned.append(ch)
    folded = re.sub(r"\s+", " ", "".join(cleaned)).strip()
    return folded[:_MAX_TAG_VALUE]


def _write_manifest(target: Path, entries: dict[str, str]) -> None:
    target.write_text(format_manifest(entries), encoding="utf-8")


def make_bag_in_place(
    directory: Path,
    info: dict[str, str] | None = None,
    algorithms: tuple[str, ...] = ALGORITHMS,
    workers: int | None = None,
) -> dict[Path, fixity.Digests]:
    """Move the contents of ``directory`` into ``data/`` and write the bag's tag files."""
    directory = directory.absolute()
    if (directory / "bagit.txt").exists():
        raise FileExistsError(f"{directory} is a bag already")
    temporary = directory / f".data-{os.getpid()}"
    temporary.mkdir()
    for entry in list(directory.iterdir()):
        if entry != temporary:
            entry.rename(temporary / entry.name)
    temporary.rename(directory / "data")
    payload = {
        p.relative_to(directory).as_posix(): p
        for p in (directory / "data").rglob("*")
        if p.is_file()
    }
    digests = fixity.digest_files({p: algorithms for p in payload.values()}, workers=workers)
    for algorithm in algorithms:
        entries = {name: digests[path].digests[algorithm] for name, path in payload.items()}
        _write_manifest(directory / f"manifest-{algorithm}.txt", entries)
    (directory / "bagit.txt").write_text(DECLARATION, encoding="utf-8")
    size = sum(d.size for d in digests.values())
    fields = {
        "Bagging-Date": dt.date.today().isoformat(),
        "Bag-Software-Agent": f"cifa-ingest {__version__}",
        "Payload-Oxum": f"{size}.{len(payload)}",
        **(info or {}),
    }
    lines = [f"{tag_value(k)}: {tag_value(v)}\n" for k, v in fields.items() if tag_value(v)]
    (directory / "bag-info.txt").write_text("".join(lines), encoding="utf-8")
    write_tag_manifests(directory, algorithms)
    return digests


def write_tag_manifests(directory: Path, algorithms: tuple[str, ...] = ALGORITHMS) -> None:
    """(Re)write the tag manifests over every tag file: everything outside data/ but the tag
    manifests themselves."""
    tag_files = {
        p.relative_to(directory).as_posix(): p
        for p in directory.rglob("*")
        if p.is_file()
        and not p.relative_to(directory).as_posix().startswith("data/")
        and not p.name.startswith("tagmanifest-")
    }
    digests = fixity.digest_files({p: algorithms for p in tag_files.values()})
    for algorithm in algorithms:
        entries = {name: digests[path].digests[algorithm] for name, path in tag_files.items()}
        _write_manifest(directory / f"tagmanifest-{algorithm}.txt", entries)
