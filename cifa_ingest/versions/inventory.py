"""The OCFL inventory (https://ocfl.io/1.1/spec/#inventory): the one file that says what an object
is: every version (when it was made, why, by whom, and its ``state``: each file's logical path,
the path inside the bag, under its sha512 digest) and where the bytes of each digest are stored
(``manifest``: digest -> content path, ``v2/content/metadata/descriptive.json``).

Content is addressed by digest, so a file that an earlier version already stored is named again,
not stored again: a corrected title on a 150 GB film adds kilobytes. sha512 is the digest OCFL
asks for (and our bags' manifests carry it); every content file's sha256 is kept in the
``fixity`` block too, the digest the ledger, the bags' other manifest and the S3 copies use.

Every inventory is written with its digest beside it (``inventory.json.sha512``, as ``sha512sum``
prints it) and read only after that digest is checked: an inventory is trusted, never a damaged
one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cifa_ingest.errors import ObjectDamaged

INVENTORY = "inventory.json"
SIDECAR = "inventory.json.sha512"
TYPE = "https://ocfl.io/1.1/spec/#inventory"
#: The content-addressing digest (OCFL's SHOULD), and the extra one kept in the fixity block.
DIGEST_ALGORITHM = "sha512"
FIXITY_ALGORITHM = "sha256"
_VERSION = re.compile(r"v([1-9][0-9]*)")
_SIDECAR_LINE = re.compile(r"([0-9a-f]{128})[ \t]+inventory\.json\r?\n?")


def version_name(number: int) -> str:
    """A version's name and folder: ``v1``, ``v2``, … (OCFL: no zero padding, so that no number
    of versions is ever too many for the padding chosen at the first)."""
    return f"v{number}"


def version_number(name: str) -> int | None:
    """The number of a version's name (``v12`` -> 12), or None for any other name."""
    match = _VERSION.fullmatch(name)
    return int(match.group(1)) if match else None


def rfc3339(moment: dt.datetime) -> str:
    """A version's ``created``: RFC 3339, in UTC, to the second (``2026-11-27T21:04:56Z``)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r}: a version's time needs its time zone")
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sidecar(data: bytes) -> bytes:
    """The digest file of an inventory's bytes: ``<sha512>  inventory.json``."""
    return f"{hashlib.sha512(data).hexdigest()}  {INVENTORY}\n".encode("ascii")


def check_sidecar(data: bytes, recorded: bytes, where: str) -> None:
    """An inventory's bytes against its digest file, or ObjectDamaged naming ``where``."""
    match = _SIDECAR_LINE.fullmatch(recorded.decode("ascii", "replace"))
    if match is None:
        raise ObjectDamaged(f"{where}/{SIDECAR}: not an inventory digest")
    actual = hashlib.sha512(data).hexdigest()
    if match.group(1) != actual:
        raise ObjectDamaged(
            f"{where}/{INVENTORY}: sha512 {actual}, its {SIDECAR} says {match.group(1)}"
        )


@dataclass(frozen=True)
class User:
    """Who made a version: a name, and an address that SHOULD be a URI (``mailto:``…)."""

    name: str
    address: str | None = None

    def as_json(self) -> dict[str, str]:
        return {"name": self.name} | ({"address": self.address} if self.address else {})


@dataclass(frozen=True)
class VersionBlock:
    """One version as the inventory records it. ``state``: each logical path (a path inside the
    bag: ``bagit.txt``, ``data/master/x.mkv``) with its sha512."""

    created: str
    message: str
    user: User
    state: Mapping[str, str]

    def as_json(self) -> dict[str, Any]:
        by_digest: dict[str, list[str]] = {}
        for path, digest in sorted(self.state.items()):
            by_digest.setdefault(digest, []).append(path)
        return {
            "created": self.created,
            "message": self.message,
            "user": self.user.as_json(),
            "state": dict(sorted(by_digest.items())),
        }


@dataclass(frozen=True)
class Inventory:
    """An object's inventory. ``manifest``: each stored digest and the content path(s) holding
    its bytes; ``fixity``: the sha256 of each content path; ``versions`` by number."""

    id: str
    head: int
    manifest: Mapping[str, tuple[str, ...]]
    versions: Mapping[int, VersionBlock]
    fixity: Mapping[str, str] = field(default_factory=dict)  # content path -> sha256

    @classmethod
    def empty(cls, work_id: str) -> Inventory:
        """The inventory of an object before its first version."""
        return cls(work_id, 0, {}, {})

    def state(self, number: int | None = None) -> dict[str, str]:
        """A version's files (logical path -> sha512); the head's by default."""
        return dict(self.versions[number or self.head].state)

    def content_path(self, digest: str) -> str:
        """Where the bytes of ``digest`` are stored, relative to the object's folder."""
        return self.manifest[digest][0]

    def with_version(
        self, block: VersionBlock, stored: Mapping[str, str], sha256: Mapping[str, str]
    ) -> Inventory:
        """This inventory with one more version, ``block``, whose new bytes are ``stored``
        (digest -> content path) with their sha256 (digest -> sha256)."""
        manifest = dict(self.manifest)
        fixity = dict(self.fixity)
        for digest, content_path in stored.items():
            manifest[digest] = (content_path,)
            fixity[content_path] = sha256[digest]
        number = self.head + 1
        return Inventory(self.id, number, manifest, {**self.versions, number: block}, fixity)

    def to_bytes(self) -> bytes:
        """The inventory as OCFL writes it: JSON, UTF-8, names as they are (not escaped)."""
        fixity: dict[str, list[str]] = {}
        for content_path, digest in sorted(self.fixity.items()):
            fixity.setdefault(digest, []).append(content_path)
        document = {
            "id": self.id,
            "type": TYPE,
            "digestAlgorithm": DIGEST_ALGORITHM,
            "head": version_name(self.head),
            "manifest": {d: sorted(paths) for d, paths in sorted(self.manifest.items())},
            "versions": {
                version_name(n): block.as_json() for n, block in sorted(self.versions.items())
            },
            "fixity": {FIXITY_ALGORITHM: dict(sorted(fixity.items()))},
        }
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Inventory:
        """An inventory this program wrote, or ObjectDamaged naming ``where`` (its digest was
        checked first: a file that fails to parse here was written by something else)."""
        try:
            document = json.loads(data.decode("utf-8"))
            if document["type"] != TYPE or document["digestAlgorithm"] != DIGEST_ALGORITHM:
                raise ValueError(f"{document['type']}, {document['digestAlgorithm']}")
            versions = {}
            for name, block in document["versions"].items():
                number = version_number(name)
                if number is None:
                    raise ValueError(f"version {name!r}")
                state = {p: d for d, paths in block["state"].items() for p in paths}
                user = User(block["user"]["name"], block["user"].get("address"))
                versions[number] = VersionBlock(block["created"], block["message"], user, state)
            head = version_number(document["head"])
            if head is None or sorted(versions) != list(range(1, head + 1)):
                raise ValueError(f"head {document['head']!r}, versions {sorted(versions)}")
            manifest = {d: tuple(paths) for d, paths in document["manifest"].items()}
            fixity = {
                p: d
                for d, paths in document.get("fixity", {}).get(FIXITY_ALGORITHM, {}).items()
                for p in paths
            }
            return cls(str(document["id"]), head, manifest, versions, fixity)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ObjectDamaged(f"{where}/{INVENTORY}: not an inventory ({exc})") from None
