"""Restore: one bag brought back from any of its copies into a folder, every file verified
against the ledger's chain, so that what comes out is the bag that was ingested (bagit-python
validates it) or nothing.

Why it works as it does:

- **The ledger's chain decides, as for repair**: the digests come from manifests that hash to
  what the ledger recorded at ingest (:func:`cifa_ingest.storage.repair.expected_files`), and a
  ledger whose hash chain is broken is refused.
- **All or nothing.** The bag is assembled in a hidden folder beside the destination, each file
  hashed while written; only when every file verified is that folder renamed to the
  destination (same parent: atomic). A copy that does not verify, or a run killed part-way,
  leaves no half bag under the destination's name (a hidden ``.NAME.restore-*`` folder at most,
  removed by the next restore to the same place).
- **Never over something.** A destination that exists and is not an empty folder is refused
  (bad usage): a restore never mixes its files with others or replaces them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive.layout import Archive, fsync_dir
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.errors import CifaError, InputError
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, S3Location
from cifa_ingest.storage.repair import (
    Copy,
    LocationCopy,
    PrimaryCopy,
    check_chain,
    expected_files,
    stage,
)
from cifa_ingest.storage.replicate import SourceDamaged
from cifa_ingest.storage.store import LocationUnreachable, ObjectMissing, Store
from cifa_ingest.storage.stores import open_store

log = logging.getLogger("cifa_ingest.restore")


class RestoreFailed(CifaError):
    """No copy asked for gives the bag whole, as the ledger records it: nothing was restored."""


@dataclass
class RestoreReport:
    """What one restore did."""

    work_id: str
    target: str
    source: str = ""
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    #: Why each copy tried was not used, by copy name.
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.source)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "to": self.target,
            "from": self.source or None,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "refused": self.refused,
            "ok": self.ok,
        }


def _usable_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"--to {target}: exists and is not a folder; nothing restored")
    if target.is_dir() and any(target.iterdir()):
        raise InputError(f"--to {target}: not empty; a restore never writes among other files")
    if not target.parent.is_dir():
        raise InputError(f"--to {target}: its parent folder {target.parent} does not exist")


def restore_work(
    archive: Archive,
    work_id: str,
    target: Path,
    locations: Sequence[FilesystemLocation | S3Location],
    *,
    source: str | None = None,
    stores: Callable[[FilesystemLocation | S3Location], Store] = open_store,
) -> RestoreReport:
    """Restore ``work_id``'s bag into the folder ``target`` (absent or empty) from the copy
    named ``source`` (``primary`` or a location), or from the first copy that verifies: the
    primary, then the locations in the order of the settings. Raises :class:`InputError` for a
    target or name that cannot be used, :class:`RestoreFailed` when no copy tried verifies
    (``target`` left as it was)."""
    started = time.monotonic()
    target = target.absolute()
    _usable_target(target)
    ledger = Ledger(archive.ledger_path)
    record = ledger.bag(work_id)
    if record is None:
        raise InputError(f"{work_id}: no such bag in the ledger of {archive.root}")
    check_chain(archive)
    names = [PRIMARY, *(location.name for location in locations)]
    if source is not None and source not in names:
        raise InputError(f"--from: no copy named {source!r} (the copies: {', '.join(names)})")
    report = RestoreReport(work_id, str(target))
    work = target.with_name(f".{target.name}.restore-{os.getpid()}")
    for debris in target.parent.glob(f".{target.name}.restore-*"):
        shutil.rmtree(debris, ignore_errors=True)  # a killed restore's
    for name in names if source is None else [source]:
        copy: Copy
        if name == PRIMARY:
            copy = PrimaryCopy(archive, record)
        else:
            location = next(loc for loc in locations if loc.name == name)
            copy = LocationCopy(stores(location), record)
        try:
            files, size = _assemble(record_copy=copy, record=record, work=work)
        except (CifaError, OSError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            report.refused[name] = str(exc)
            log.warning("%s: not restored from %s: %s", work_id, name, exc)
            continue
        with contextlib.suppress(FileNotFoundError):
            target.rmdir()  # empty (checked), so a rename can take its place
        os.rename(work, target)
        fsync_dir(target.parent)
        report.source, report.files, report.bytes = name, files, size
        break
    report.seconds = time.monotonic() - started
    if not report.ok:
        why = "; ".join(f"{name}: {reason}" for name, reason in report.refused.items())
        raise RestoreFailed(f"{work_id}: no copy verifies, nothing restored ({why})")
    return report


def _assemble(record_copy: Copy, record: Any, work: Path) -> tuple[int, int]:
    """Every file of the bag from one copy into the new folder ``work``, each verified."""
    work.mkdir()
    try:
        expected, _notes = expected_files(record, [record_copy], work / ".declaration")
    finally:
        shutil.rmtree(work / ".declaration", ignore_errors=True)
    size = 0
    try:
        for path, sha256 in expected.items():
            size += stage(record_copy, path, sha256, work.joinpath(*path.split("/")))
    except ObjectMissing as exc:
        raise SourceDamaged(f"{exc}") from None
    except LocationUnreachable:
        raise
    for dirpath, _dirs, _files in os.walk(work):
        fsync_dir(Path(dirpath))
    return len(expected), size
