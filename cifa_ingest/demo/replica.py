"""The demo's second copy: where ``cifa demo`` put it, remembered in the archive.

With no ``[[storage.locations]]`` in the settings, ``cifa demo`` replicates every bag to
``WORKDIR/replica`` as the filesystem location :data:`NAME`, declared for its own run only. The
ledger then names a location the settings do not declare, and ``cifa status`` and the holdings
report would call it retired. So the demo writes :data:`MARKER` in the archive's root (the
location's name, its folder, what made it), and those reports say what it is: the demo's
replica, at that folder. A marker that cannot be read is ignored: the location is then described
as any location the settings do not declare.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

#: The storage location the demo declares when the settings declare none.
NAME = "demo-replica"
#: The file in the archive's root that says where the demo's replica is.
MARKER = "demo-replica.json"
#: Said of a location the ledger names and the settings do not declare (not the demo's).
UNDECLARED = "not in the settings: a retired location, or one removed from them"


def remember(archive_root: Path, replica: Path) -> Path:
    """Write :data:`MARKER` in ``archive_root`` (made if absent): the demo's replica is at
    ``replica``."""
    from cifa_ingest.archive.layout import write_atomically

    archive_root.mkdir(parents=True, exist_ok=True)
    document = {"location": NAME, "path": str(replica), "made_by": "cifa demo"}
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return write_atomically(archive_root / MARKER, data)


def replica_path(archive_root: Path) -> str | None:
    """The folder of the demo's replica, as the demo recorded it in ``archive_root``; None when
    the demo wrote no marker there (or one that does not read)."""
    with contextlib.suppress(OSError, ValueError):
        document = json.loads((archive_root / MARKER).read_text(encoding="utf-8"))
        if isinstance(document, dict) and document.get("location") == NAME:
            path = document.get("path")
            return path if isinstance(path, str) and path else None
    return None


def undeclared_note(archive_root: Path, name: str) -> str:
    """What to say of the location ``name`` that the ledger names and the settings do not
    declare: the demo's replica, if the demo made it, else a retired or removed location."""
    if name == NAME and (path := replica_path(archive_root)) is not None:
        return f"the demo's replica at {path}, made by `cifa demo`; not in the settings"
    return UNDECLARED
