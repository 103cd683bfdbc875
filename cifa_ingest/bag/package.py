"""Packaging: a BagIt bag (RFC 8493) per work, with sha256 and sha512 manifests and the work's
metadata as tag files under ``metadata/``.

Our fixity engine builds and validates the bag (cifa_ingest.bag.write, cifa_ingest.bag.check;
bagit-python checks the same bags in the tests). Values that come from outside (titles, names) are
sanitised before they reach ``bag-info.txt``: a title with a newline and a colon must not be able
to forge a field of its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifa_ingest import __version__, sizes
from cifa_ingest.bag import check as bagcheck
from cifa_ingest.bag import manifest
from cifa_ingest.bag import write as bagwrite
from cifa_ingest.bag.write import tag_value
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.errors import PackagingError

SOFTWARE_AGENT = f"cifa-ingest {__version__}"
#: The CIFA BagIt profile (cifa_ingest/policies/cifa-bagit-profile.json) every bag follows.
PROFILE_IDENTIFIER = "urn:cifa:bagit-profile:1.0"
#: What a field the profile requires says when the catalogue or the settings do not record it:
#: "unknown" would claim a fact (a director may be anonymous), an invented value would be false.
NOT_RECORDED = "not recorded"
#: Bag-Group-Identifier of a work that belongs to no named collection.
DEFAULT_GROUP = "CIFA"


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
    return sizes.decimal(size, "bytes")


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
) -> None:
    """Turn ``bag_dir`` (holding original/, master/ and access/) into a BagIt 1.0 bag.

    The payload folders move under ``data/``; ``metadata_dir`` (files gathered by the earlier
    steps) becomes the bag's ``metadata/`` tag directory, with ``tag_documents`` (a path under
    metadata/ to a JSON-able document) written beside them. ``derived_tag_files`` is then called
    with the bag's folder, payload manifests and JSON metadata in place, for the tag files made
    from them (PREMIS); all are listed in the tag manifests, written last."""
    payload_bytes = sum(p.stat().st_size for p in bag_dir.rglob("*") if p.is_file())
    info = {**info, "Bag-Size": info.get("Bag-Size") or human_size(payload_bytes)}
    try:
        bagwrite.make_bag_in_place(bag_dir, info)  # our fixity engine: one read, in parallel
    except OSError as exc:
        raise PackagingError(f"could not make the bag: {exc}") from None
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
        bagwrite.write_tag_manifests(bag_dir)  # last: they cover metadata/ too
    except OSError as exc:
        raise PackagingError(f"could not write the tag manifests: {exc}") from None


def validate_bag(bag_dir: Path) -> None:
    """Full validation (every checksum recomputed, RFC 8493 rules) with our validator, or
    PackagingError naming every problem. bagit-python checks the same bags in the tests."""
    report = bagcheck.validate(bag_dir)
    if not report.valid:
        problems = "; ".join(f.message for f in report.errors[:10])
        raise PackagingError(f"bag {bag_dir.name} is invalid: {problems}")


@dataclass(frozen=True)
class BagSummary:
    """Sizes and digests of a placed bag, for the ledger and the report."""

    payload_oxum: str
    manifest_digests: dict[str, str]
    bytes_by_role: dict[str, int]


def payload_files(bag_dir: Path) -> list[tuple[str, int, str | None, str | None]]:
    """Each payload file's (path, size, sha256, sha512), read from the bag's manifests by the
    one manifest reader, so the ledger and the audit name a file as the validator does. Lenient:
    a malformed line is the validator's to report (the audit reads this of valid bags only)."""
    entries, _problems = manifest.payload_entries(bag_dir)
    return [
        (path, (bag_dir / path).stat().st_size, found.get("sha256"), found.get("sha512"))
        for path, found in sorted(entries.items())
        if "sha256" in found or "sha512" in found
    ]


def summarise_bag(bag_dir: Path) -> BagSummary:
    """Read a bag's Payload-Oxum, the sha256 of its manifests, and its payload size per folder."""
    info = (bag_dir / "bag-info.txt").read_text("utf-8")
    oxum = re.search(r"^Payload-Oxum:\s*(\S+)", info, re.MULTILINE)
    digests = {}
    for path in manifest.manifest_paths(bag_dir):
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    by_role: dict[str, int] = {}
    for path in (bag_dir / "data").rglob("*"):
        if path.is_file():
            role = path.relative_to(bag_dir / "data").parts[0]
            by_role[role] = by_role.get(role, 0) + path.stat().st_size
    return BagSummary(oxum.group(1) if oxum else "", digests, by_role)
