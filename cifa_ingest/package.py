"""Packaging: a BagIt bag (RFC 8493) per work, with sha256 and sha512 manifests and the work's
metadata as tag files under ``metadata/``.

bagit-python builds and validates the bag. Values that come from outside (titles, names) are
sanitised before they reach ``bag-info.txt``: a title with a newline and a colon must not be able
to forge a field of its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit

from cifa_ingest import __version__
from cifa_ingest.catalogue import Work
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.errors import PackagingError

CHECKSUMS = ["sha256", "sha512"]
BAGIT_DECLARATION = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
SOFTWARE_AGENT = f"cifa-ingest {__version__} (bagit-python {bagit.VERSION})"
_MAX_TAG_VALUE = 1000
#: The CIFA BagIt profile (config/cifa-bagit-profile.json) every bag declares it follows.
PROFILE_IDENTIFIER = "urn:cifa:bagit-profile:1.0"
#: What a field the profile requires says when the catalogue or the settings do not record it:
#: "unknown" would claim a fact (a director may be anonymous), an invented value would be false.
NOT_RECORDED = "not recorded"
#: Bag-Group-Identifier of a work that belongs to no named collection.
DEFAULT_GROUP = "CIFA"


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


def bag_info(
    work: Work, organisation: OrganisationSettings, collection: str | None
) -> dict[str, str]:
    """bag-info.txt fields for a work: every field the CIFA BagIt profile requires, with
    NOT_RECORDED where nothing is known (Payload-Oxum and Bagging-Date are added by bagit,
    Bag-Size by :func:`make_bag`)."""
    info = {
        "Source-Organization": organisation.name,
        "Organization-Address": organisation.address,
        "Contact-Email": organisation.contact_email,
        "External-Identifier": work.id,
        "External-Description": _description(work),
        "Bag-Software-Agent": SOFTWARE_AGENT,
        "Bag-Group-Identifier": collection or DEFAULT_GROUP,
        "BagIt-Profile-Identifier": PROFILE_IDENTIFIER,
        "Title": work.title.en,
        "Title-Zh": work.title.zh or "",
        "Director": work.director.en if work.director else "",
        "Year": str(work.year) if work.year else "",
    }
    if work.director and work.director.zh:
        info["Director-Zh"] = work.director.zh
    cleaned = {key: tag_value(value) for key, value in info.items()}
    return {key: value or NOT_RECORDED for key, value in cleaned.items()}


def human_size(size: int) -> str:
    """Bag-Size as people read it (RFC 8493 suggests e.g. "260 GB"); decimal units."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _description(work: Work) -> str:
    parts = [work.display_title]
    if work.director:
        parts.append(f"directed by {work.director.en}")
    if work.year:
        parts.append(str(work.year))
    return ", ".join(parts)


def descriptive_record(work: Work, collection: str | None) -> dict[str, Any]:
    """metadata/descriptive.json: what the film is, in both languages."""
    return {
        "id": work.id,
        "title": work.title.model_dump(exclude_none=True),
        "director": work.director.model_dump(exclude_none=True) if work.director else None,
        "year": work.year,
        "kind": work.kind,
        "synopsis": work.synopsis,
        "collection": collection,
        "sources": [source.model_dump(exclude_none=True) for source in work.sources],
        "parts": len(work.sources) if work.parts else None,
    }


def write_json(path: Path, document: Any) -> None:
    """A UTF-8 JSON tag file; Chinese text is written as it is, not escaped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")


def make_bag(
    bag_dir: Path,
    info: dict[str, str],
    metadata_dir: Path,
    tag_documents: dict[str, Any],
    derived_tag_files: Callable[[Path], dict[str, bytes]] | None = None,
) -> bagit.Bag:
    """Turn ``bag_dir`` (holding original/, master/ and access/) into a bag.

    The payload folders move under ``data/``; ``metadata_dir`` (files gathered by the earlier
    steps) becomes the bag's ``metadata/`` tag directory, with ``tag_documents`` (a path under
    metadata/ to a JSON-able document) written beside them. ``derived_tag_files`` is then called
    with the bag's folder, payload manifests and JSON metadata in place, for the tag files made
    from them (PREMIS); all are listed in the tag manifests, written last."""
    payload_bytes = sum(p.stat().st_size for p in bag_dir.rglob("*") if p.is_file())
    info = {**info, "Bag-Size": info.get("Bag-Size") or human_size(payload_bytes)}
    try:
        bag = bagit.make_bag(str(bag_dir), bag_info=info, checksums=CHECKSUMS)
    except (bagit.BagError, OSError) as exc:
        raise PackagingError(f"bagit could not make the bag: {exc}") from None
    # bagit-python writes version 0.97; our bags follow RFC 8493, BagIt 1.0.
    (bag_dir / "bagit.txt").write_text(BAGIT_DECLARATION, encoding="utf-8")
    target = bag_dir / "metadata"
    if metadata_dir.exists():
        metadata_dir.rename(target)
    for name, document in tag_documents.items():
        write_json(target / name, document)
    if derived_tag_files is not None:
        target.mkdir(exist_ok=True)
        for name, content in derived_tag_files(bag_dir).items():
            (target / name).write_bytes(content)
    try:
        bag.save(manifests=False)  # rewrites the tag manifests so that they cover metadata/
    except (bagit.BagError, OSError) as exc:
        raise PackagingError(f"bagit could not save the bag: {exc}") from None
    return bag


def validate_bag(bag_dir: Path) -> bagit.Bag:
    """Full validation with bagit-python (every checksum recomputed), or PackagingError."""
    try:
        bag = bagit.Bag(str(bag_dir))
        bag.validate(processes=1)
    except bagit.BagValidationError as exc:
        details = "; ".join(str(d) for d in exc.details[:10]) if exc.details else ""
        raise PackagingError(f"bag {bag_dir.name} is invalid: {exc.message} {details}") from None
    except bagit.BagError as exc:
        raise PackagingError(f"bag {bag_dir.name} is invalid: {exc}") from None
    return bag


@dataclass(frozen=True)
class BagSummary:
    """Sizes and digests of a placed bag, for the ledger and the report."""

    payload_oxum: str
    manifest_digests: dict[str, str]
    bytes_by_role: dict[str, int]


def summarise_bag(bag_dir: Path) -> BagSummary:
    """Read a bag's Payload-Oxum, the sha256 of its manifests, and its payload size per folder."""
    bag = bagit.Bag(str(bag_dir))
    digests = {}
    for manifest in sorted(bag_dir.glob("*manifest-*.txt")):
        digests[manifest.name] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    by_role: dict[str, int] = {}
    for path in (bag_dir / "data").rglob("*"):
        if path.is_file():
            role = path.relative_to(bag_dir / "data").parts[0]
            by_role[role] = by_role.get(role, 0) + path.stat().st_size
    return BagSummary(str(bag.info.get("Payload-Oxum", "")), digests, by_role)
