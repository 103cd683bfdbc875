"""The OCFL storage root, ``ARCHIVE/objects/``: where every work's versions are kept, one OCFL
object per work (https://ocfl.io/1.1/spec/#storage-root).

Layout::

    objects/0=ocfl_1.1            the root's declaration (NAMASTE): "this folder is OCFL 1.1"
    objects/ocfl_layout.json      how an id becomes a folder: extension 0002, flat direct
    objects/ocfl_1.1.md           what an OCFL storage root is, for a reader without this program
    objects/<work id>/            one OCFL object per work (cifa_ingest.versions.object)
    objects/.<work id>.lock       the lock of one writer per object (held by readers too)

Why flat direct (extension 0002-flat-direct-storage-layout): the archive's work ids are already
short, safe folder names (``WORK_ID_PATTERN``: lower-case letters, digits, single hyphens), so the
object of ``cifa-0001`` is ``objects/cifa-0001/``, which a person with a file browser finds
without a program; a hashed layout (0003, 0004) spreads objects over many folders, which only pays
for millions of objects. The id is still checked against the pattern before it becomes a path:
an id is typed by people, and ``../x`` must never be one.

Files directly in the storage root that OCFL does not define (the locks, and an interrupted
replacement's temporary file, which the recovery removes) are allowed there: a validator MUST
ignore them (OCFL E087). Nothing else is ever written into the object hierarchy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

from cifa_ingest.archive.layout import write_atomically
from cifa_ingest.catalogue.model import WORK_ID_RULE, is_work_id
from cifa_ingest.errors import ArchiveStateError, InputError, NoSuchVersion

#: The storage root's declaration: the file's name, and its text.
ROOT_DECLARATION = "0=ocfl_1.1"
#: An object's declaration: the file's name, and its text.
OBJECT_DECLARATION = "0=ocfl_object_1.1"
#: What the object's declaration holds (OCFL 1.1 §4.3: its name after ``0=``, and a newline).
OBJECT_DECLARATION_TEXT = f"{OBJECT_DECLARATION[2:]}\n".encode("ascii")
LAYOUT_FILE = "ocfl_layout.json"
LAYOUT_EXTENSION = "0002-flat-direct-storage-layout"
SPEC_FILE = "ocfl_1.1.md"

#: What ``ocfl_layout.json`` says (OCFL 1.1 §4.1: both keys required).
LAYOUT = {
    "extension": LAYOUT_EXTENSION,
    "description": (
        "Flat direct layout (OCFL extension 0002): each object's root is the folder named"
        " exactly by its id, the archive's work id (lower-case letters, digits and single"
        " hyphens), directly under this storage root."
    ),
}

#: The storage root's self-description. OCFL 1.1 §4.1: a storage root MAY hold a human-readable
#: copy of the specification, to be self-documenting; ocfl-py does not ship its text, so this
#: is a short account and where the full text is.
SPEC_TEXT = """\
# Oxford Common File Layout (OCFL) 1.1: this storage root

This folder is an OCFL 1.1 storage root (the file `0=ocfl_1.1` says so). The specification is
published at https://ocfl.io/1.1/spec/ (its source, in Markdown, is in
https://github.com/OCFL/spec, folder 1.1/spec/).

- `ocfl_layout.json` names the layout: extension 0002, flat direct
  (https://ocfl.github.io/extensions/0002-flat-direct-storage-layout.html): each folder here
  named by a work id is the OCFL object of that work.
- In an object: `0=ocfl_object_1.1` declares it; `inventory.json` lists every version (when, why,
  who, and which files it has: their sha512 digests, `state`) and where each file's bytes are
  stored (`manifest`: digest -> path in the object); `inventory.json.sha512` is the inventory's
  own digest. `v1/`, `v2/`, ... are the versions: each holds a copy of the inventory as it was
  when that version was made, and in `content/` only the files that no earlier version had.
- A version's files, put at their logical paths, are a complete BagIt bag (RFC 8493): the work as
  the archive held it at that version.
- Files whose names begin with a dot are locks and temporary files of the program that writes
  here (cifa-ingest); they are not part of any object.
"""


def check_work_id(work_id: str) -> str:
    """``work_id``, if it is an archive identifier: checked before it becomes a folder's name."""
    if not isinstance(work_id, str) or not is_work_id(work_id):
        raise InputError(f"{work_id!r}: not a work id ({WORK_ID_RULE})")
    return work_id


def replace_file(target: Path, data: bytes, temporary_dir: Path, prefix: str) -> None:
    """Put ``data`` at ``target`` atomically, read-only (0444): written to a temporary file in
    ``temporary_dir`` (on the same file system; named ``prefix…tmp``, so that the recovery knows
    its debris), flushed, renamed over ``target``, and the rename flushed. A crash leaves the old
    file or the new one, never half of one; readers never meet a partial file."""
    write_atomically(
        target, data, mode=0o444, temporary_dir=temporary_dir, prefix=prefix, suffix=".tmp"
    )


class StorageRoot:
    """One OCFL storage root: the archive's ``objects/`` folder (or a copy of it elsewhere)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()

    def __repr__(self) -> str:
        return f"StorageRoot({str(self.path)!r})"

    @property
    def declared(self) -> bool:
        """Whether this folder is an OCFL storage root (its declaration is in place)."""
        return (self.path / ROOT_DECLARATION).is_file()

    def ensure(self) -> StorageRoot:
        """Make the storage root if it is not one yet (its declaration, its layout, its
        self-description), each file written atomically; a root made earlier is checked, never
        rewritten. A folder that declares another OCFL version or layout is refused."""
        self.path.mkdir(parents=True, exist_ok=True)
        others = [
            p.name for p in self.path.glob("0=*") if p.name != ROOT_DECLARATION
        ]  # a root of another OCFL version, or not a storage root at all
        if others:
            raise ArchiveStateError(f"{self.path}: declares {others[0]}, not {ROOT_DECLARATION}")
        layout = json.dumps(LAYOUT, indent=2).encode("utf-8") + b"\n"
        wanted = {
            LAYOUT_FILE: layout,
            SPEC_FILE: SPEC_TEXT.encode("utf-8"),
            # The declaration last: a root is a root only once its other files are there.
            ROOT_DECLARATION: f"{ROOT_DECLARATION[2:]}\n".encode("ascii"),
        }
        for debris in self.path.glob(".storage-root.*.tmp"):  # an earlier ensure, interrupted
            debris.unlink(missing_ok=True)
        for name, data in wanted.items():
            if not (self.path / name).exists():
                replace_file(self.path / name, data, self.path, ".storage-root.")
        self.check_layout()
        return self

    def check_layout(self) -> None:
        """The layout this program writes by: another one would put objects elsewhere."""
        try:
            layout = json.loads((self.path / LAYOUT_FILE).read_text("utf-8"))
            extension = layout["extension"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArchiveStateError(f"{self.path / LAYOUT_FILE}: unreadable ({exc})") from None
        if extension != LAYOUT_EXTENSION:
            raise ArchiveStateError(
                f"{self.path}: laid out by {extension!r}; this program knows {LAYOUT_EXTENSION}"
            )

    def existing(self) -> StorageRoot:
        """This storage root, for a reader: a folder that is none is refused, never created."""
        if not self.declared:
            raise NoSuchVersion(f"{self.path}: no versioned works here (no {ROOT_DECLARATION})")
        self.check_layout()
        return self

    def object_path(self, work_id: str) -> Path:
        """The folder of a work's OCFL object (flat direct: the id is the folder's name)."""
        return self.path / check_work_id(work_id)

    def ids(self) -> list[str]:
        """The work ids of the objects in this storage root, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.path.iterdir()
            if is_work_id(entry.name) and (entry / OBJECT_DECLARATION).is_file()
        )

    @contextlib.contextmanager
    def locked(self, work_id: str) -> Iterator[None]:
        """Hold the lock of one work's object (``objects/.<id>.lock``): one writer at a time,
        and no reader while a writer is at work. A second holder waits; the lock dies with its
        process, so a killed writer never leaves the object locked (the next holder recovers
        what it left)."""
        check_work_id(work_id)
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / f".{work_id}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def temporary_prefix(self, work_id: str) -> str:
        """The name prefix of a work's temporary files in the storage root (the recovery's)."""
        return f".{work_id}.inventory-"
