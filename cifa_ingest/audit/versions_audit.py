"""The fixity audit of a work's versions: its OCFL 1.1 object (``ARCHIVE/objects/<id>/``,
:mod:`cifa_ingest.versions`) checked together with its bag, every version of it.

What is checked, each rule with the section of OCFL 1.1 (https://ocfl.io/1.1/spec/) it enforces
and its validation code, as ocfl-py cites them:

* the object's declaration is there (§3.2, E003);
* the root inventory against its digest file, and every version folder's inventory against its
  own (§3.6 Inventory Digest, E058, E060, E061); each is an inventory of this object (§3.5,
  §3.5.1: E033, E036, E040);
* the root inventory is the same file as the newest version's (§3.7 Version Inventory, E064),
  and every older version's inventory records the same state of each version as the root's
  (§3.7, E066);
* every version the inventory lists has its folder, and every digest a state names is in the
  manifest (§3.3 Version Directories, E009, E010; §3.5.3.1 Version, E050);
* every content path of the manifest is a file of the object, under a version's ``content/``
  (§3.5.2 Manifest, E042, E099, E100), present, and its bytes have the sha512 the manifest
  records (§3.5.2, E092) and the sha256 of the fixity block (§3.5.4 Fixity, E093): every byte
  read;
* no file in a version's ``content/`` that the manifest does not list (§3.3.1 Content
  Directory, E023), nor anything else in the object that OCFL does not define (§3.1 Object
  Structure, E001; §3.3, E015);
* ``bags/<id>`` holds exactly the head version's logical state: each of its files' sha512
  against ``inventory.state(head)`` (the archive's own rule, not OCFL's: the placed bag is the
  newest version).

**Each byte is read once.** The files of version 1 are hard links to the placed bag's (the same
inodes), and the bag's check (:func:`cifa_ingest.bag.check.validate`) has just read every file
its manifests list and compared its sha256 and sha512 with them. Those digests are taken back
(:func:`digests_of_bag_check`): a file the check found matching has the digests its manifests
give; one it found different, the digest it found. A content file is not read again when it is
the same file as one of them: the same device and inode, and the same size, modification time
and change time before the bag's check, after it, and when the object is checked (a write
changes the change time, which no program can set back). Everything else is read: the bag's
tag manifests (no manifest lists them), the content of later versions, a content file that is
not the bag's (a copy, where links could not be made). A 150 GB film is read once, not twice.

The audit changes nothing in the object. It holds the object's lock while it reads the
inventories (so that it never sees a version being added half way) but does not run the
recovery: the recovery would put the newest version's inventory at the root, and so hide a root
inventory found damaged; the audit names it instead.

A work registered in the ledger that has no object yet is no problem of the audit: the next
ingest records its bag as version 1. Its check says so (``versions`` null, and a note).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive.layout import Archive
from cifa_ingest.audit.fixity_audit import Problem, ProblemKind
from cifa_ingest.bag import check as bagcheck
from cifa_ingest.bag import fixity, manifest
from cifa_ingest.errors import ObjectDamaged
from cifa_ingest.versions.inventory import (
    DIGEST_ALGORITHM,
    FIXITY_ALGORITHM,
    INVENTORY,
    SIDECAR,
    Inventory,
    version_name,
    version_number,
)
from cifa_ingest.versions.storage_root import OBJECT_DECLARATION, StorageRoot

#: A file's identity and what shows a change of its bytes: device, inode, size, modification
#: and change times (nanoseconds).
Identity = tuple[int, int, int, int, int]

_SIDECAR_LINE = re.compile(r"([0-9a-f]{128})[ \t]+inventory\.json\r?\n?")
_CONTENT_PATH = re.compile(r"(v[1-9][0-9]*)/content/(.+)")
#: Entries of an object's folder that OCFL 1.1 defines (§3.1), besides the version folders.
_OBJECT_ENTRIES = {OBJECT_DECLARATION, INVENTORY, SIDECAR, "logs", "extensions"}
_VERSION_ENTRIES = {INVENTORY, SIDECAR, "content"}
_NO_OBJECT = (
    "no versions recorded yet: the next ingest that covers this work records its bag as version 1"
)


def _identity(status: os.stat_result) -> Identity:
    return (
        status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns
    )  # fmt: skip


def _files(folder: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every entry under ``folder`` that is not a folder, with its path relative to ``folder``
    and its own status (a link is not followed)."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                yield path.relative_to(folder).as_posix(), path, path.lstat()


def _is_folder(path: Path) -> bool:
    """A folder, not a link to one (OCFL 1.1 §4.6, E090: no links; none is followed)."""
    return path.is_dir() and not path.is_symlink()


def identities(bag_dir: Path) -> dict[str, Identity]:
    """The identity of each plain file of a bag, by its path in the bag: taken before the bag's
    check, so that :func:`digests_of_bag_check` knows the files it read were not changed."""
    return {
        name: _identity(status)
        for name, _path, status in _files(bag_dir)
        if stat.S_ISREG(status.st_mode)
    }


class KnownDigests:
    """Digests of files read in this audit, by the files' identities: a file that is the same
    file, unchanged, is not read again."""

    def __init__(self) -> None:
        self._digests: dict[Identity, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, identity: Identity, digests: dict[str, str]) -> None:
        self._digests.setdefault(identity, {}).update(digests)

    def get(self, identity: Identity, algorithms: list[str]) -> dict[str, str] | None:
        """The digests of the file, if every one of ``algorithms`` is known."""
        known = self._digests.get(identity, {})
        return known if all(a in known for a in algorithms) else None


def digests_of_bag_check(
    bag_dir: Path, before: dict[str, Identity], report: bagcheck.Report
) -> KnownDigests:
    """The digests the bag's check read (its report says only where they differed from the
    manifests: a file it found matching has its manifests' digests, one it found different
    the digest it found). Only files the check hashed and that did not change from before it
    (``before``, :func:`identities`) to now, and only when the manifests themselves did not
    change: else nothing is known, and the object's check reads every byte itself."""
    known = KnownDigests()
    if report.files_checked == 0 or any(
        f.code == "E009" and f.path is None
        for f in report.errors  # a file it could not read
    ):
        return known
    claims: dict[str, dict[str, str]] = {}
    for tag in (False, True):
        for algorithm, read in manifest.read_manifests(bag_dir, tag=tag).items():
            if read.readable:
                for name, digest in read.entries.items():
                    claims.setdefault(name, {})[algorithm] = digest
    after = identities(bag_dir)

    def manifests(files: dict[str, Identity]) -> dict[str, Identity]:
        return {n: i for n, i in files.items() if "/" not in n and "manifest-" in n}

    if manifests(before) != manifests(after):  # one changed, came or went: trust none
        return known
    found: dict[str, list[bagcheck.Finding]] = {}
    for finding in report.findings:
        if finding.path is not None:
            found.setdefault(finding.path, []).append(finding)
    for name, claimed in claims.items():
        identity = before.get(name)
        if identity is None or after.get(name) != identity:
            continue
        digests = dict(claimed)
        trusted = True
        for finding in found.get(name, []):
            if finding.code in {"E011", "E013"} and finding.algorithm in digests and finding.found:
                digests[finding.algorithm] = finding.found
            else:  # a finding that says nothing of what was read: read it again
                trusted = False
        if trusted:
            known.add(identity, digests)
    return known


@dataclass
class ObjectCheck:
    """The check of one work's object. ``versions``: how many versions the object has, each of
    them checked (None: the work has no object yet; 0: no inventory of it could be read)."""

    #: The object's folder relative to the archive (``objects/cifa-0001``), None without one.
    object: str | None
    versions: int | None
    #: Content bytes read for the object (and the bag's files its bag check did not read), and
    #: content bytes whose digests were the bag check's (the same files: not read again).
    bytes_read: int = 0
    bytes_reused: int = 0
    files: int = 0
    note: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self, work_id: str) -> dict[str, Any]:
        return {
            "bag": work_id,
            "object": self.object,
            "versions": self.versions,
            "bytes_read": self.bytes_read,
            "bytes_reused": self.bytes_reused,
            "note": self.note,
        }


class _Checker:
    """One object's check, its problems gathered as it goes."""

    def __init__(self, archive: Archive, work_id: str, known: KnownDigests) -> None:
        self.work_id = work_id
        self.root = StorageRoot(archive.objects_dir)
        self.path = self.root.object_path(work_id)
        self.where = archive.relative(self.path)
        self.known = known
        self.check = ObjectCheck(self.where, 0)

    def problem(
        self,
        kind: ProblemKind,
        path: str,
        detail: str,
        versions: list[int],
        *,
        algorithm: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        self.check.problems.append(
            Problem(
                self.work_id, kind, path, detail,
                algorithm=algorithm, expected=expected, found=found,
                object=self.where, versions=[version_name(n) for n in sorted(set(versions))],
            )
        )  # fmt: skip

    # -- inventories ---------------------------------------------------------------------------

    def inventory(self, number: int | None) -> tuple[Inventory, bytes] | None:
        """The inventory of the object's root (``number`` None) or of a version's folder, with
        its bytes; None, and the problem named, where it is missing, does not match its digest
        file or is not an inventory of this object."""
        folder = self.path if number is None else self.path / version_name(number)
        prefix = "" if number is None else f"{version_name(number)}/"
        concerned = [number] if number is not None else []
        name = f"{prefix}{INVENTORY}"
        try:
            data = (folder / INVENTORY).read_bytes()
        except OSError as exc:
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, name,
                f"{name} is missing or unreadable ({exc.strerror}) [OCFL 1.1 §3.7, E063;"
                " §3.6, E058]", concerned,
            )  # fmt: skip
            return None
        actual = hashlib.sha512(data).hexdigest()
        try:
            recorded = (folder / SIDECAR).read_bytes().decode("ascii", "replace")
        except OSError as exc:
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, f"{prefix}{SIDECAR}",
                f"the digest file of {name} is missing or unreadable ({exc.strerror})"
                " [OCFL 1.1 §3.6, E058: every inventory has its digest file]", concerned,
                algorithm=DIGEST_ALGORITHM, found=actual,
            )  # fmt: skip
            return None
        match = _SIDECAR_LINE.fullmatch(recorded)
        if match is None or match.group(1) != actual:
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, name,
                f"{name} does not match its digest file {prefix}{SIDECAR} [OCFL 1.1 §3.6, E060,"
                " E061: the digest file states the inventory's digest]", concerned,
                algorithm=DIGEST_ALGORITHM, expected=match.group(1) if match else None,
                found=actual,
            )  # fmt: skip
            return None
        try:
            inventory = Inventory.from_bytes(data, f"{self.where}/{prefix}".rstrip("/"))
        except ObjectDamaged as exc:
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, name,
                f"{exc} [OCFL 1.1 §3.5, E033; §3.5.1, E036, E040]", concerned,
            )  # fmt: skip
            return None
        if inventory.id != self.work_id or (number is not None and inventory.head != number):
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, name,
                f"{name} is the inventory of {inventory.id!r} {version_name(inventory.head)}"
                " [OCFL 1.1 §3.5.1, E037, E040]", concerned,
            )  # fmt: skip
            return None
        return inventory, data

    def reference(self, numbers: list[int]) -> Inventory | None:
        """The inventory the object's content is checked against: the root's, or, where the
        root's is damaged or behind, the newest version's (the version was whole from its
        rename: the recovery would put its inventory at the root). Every inventory is checked
        on the way: each against its digest file, the root's against the newest version's
        (OCFL 1.1 §3.7, E064), every older one's versions against the root's (E066)."""
        root = self.inventory(None)
        own = {n: self.inventory(n) for n in numbers}
        newest = own.get(max(numbers)) if numbers else None
        # A root inventory ahead of the newest folder: the folders gone are named below.
        differs = root is not None and newest is not None and root[1] != newest[1]
        if root is not None and newest is not None and differs and max(numbers) >= root[0].head:
            behind = root[0].head < newest[0].head
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, INVENTORY,
                f"the object's {INVENTORY} is not the newest version's"
                f" ({version_name(newest[0].head)}/{INVENTORY})"
                + (f": it is {version_name(root[0].head)}'s, a version add was interrupted after"
                   " its placement (the recovery, which runs before the next read or write of"
                   " the object, completes it)" if behind else "")
                + " [OCFL 1.1 §3.7, E064: the root inventory is the same file as the most"
                " recent version's]", [newest[0].head],
            )  # fmt: skip
            chosen: tuple[Inventory, bytes] | None = newest
        else:
            chosen = root or newest
        if chosen is None:
            return None
        reference = chosen[0]
        for number, found in own.items():
            if found is None or found[0] is reference:
                continue
            for earlier, block in found[0].versions.items():
                kept = reference.versions.get(earlier)
                if kept is None or kept.state != block.state:
                    name = f"{version_name(number)}/{INVENTORY}"
                    self.problem(
                        ProblemKind.VERSION_INVENTORY_INVALID, name,
                        f"its {version_name(earlier)} is not the {version_name(earlier)} of the"
                        " object's inventory [OCFL 1.1 §3.7, E066: every inventory records the"
                        " same state of each version]", [number, earlier],
                    )  # fmt: skip
                    break
        return reference

    # -- structure -----------------------------------------------------------------------------

    def structure(self, reference: Inventory, numbers: list[int]) -> None:
        """Version folders 1 to the head, each digest of a state in the manifest, content paths
        inside the object, and nothing OCFL does not define in the object's folders."""
        wanted = set(range(1, reference.head + 1))
        for number in sorted(wanted - set(numbers)):
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, f"{version_name(number)}/{INVENTORY}",
                f"the folder of {version_name(number)} is gone [OCFL 1.1 §3.3, E009, E010:"
                " version folders v1 to the head, none missing]", [number],
            )  # fmt: skip
        for version, block in sorted(reference.versions.items()):
            for logical, digest in sorted(block.state.items()):
                if digest not in reference.manifest:
                    self.problem(
                        ProblemKind.VERSION_INVENTORY_INVALID, INVENTORY,
                        f"{version_name(version)}'s {logical} has sha512 {digest}, which no"
                        " manifest entry stores [OCFL 1.1 §3.5.3.1, E050]",
                        self.users(reference, digest),
                    )  # fmt: skip
        for entry in sorted(self.path.iterdir()):
            named = version_number(entry.name)
            if entry.name in _OBJECT_ENTRIES or (named in wanted and _is_folder(entry)):
                continue
            self.unexpected(entry, entry.name, [], "in the object's folder [OCFL 1.1 §3.1, E001]")
        for number in sorted(wanted & set(numbers)):
            folder = self.path / version_name(number)
            for entry in sorted(folder.iterdir()):
                if entry.name not in _VERSION_ENTRIES:
                    self.unexpected(
                        entry, f"{version_name(number)}/{entry.name}", [number],
                        "in a version's folder [OCFL 1.1 §3.3, E015]",
                    )  # fmt: skip

    def unexpected(self, entry: Path, name: str, versions: list[int], where: str) -> None:
        if _is_folder(entry):
            for relative, _path, _status in _files(entry):
                self.unexpected_file(f"{name}/{relative}", versions, where)
        else:
            self.unexpected_file(name, versions, where)

    def unexpected_file(self, name: str, versions: list[int], why: str) -> None:
        self.problem(
            ProblemKind.VERSION_UNEXPECTED_FILE, name,
            f"{name}: listed in no manifest, {why}", versions,
        )  # fmt: skip

    @staticmethod
    def users(reference: Inventory, digest: str) -> list[int]:
        """Every version whose state has a file of ``digest``: what its damage damages."""
        return [n for n, block in sorted(reference.versions.items()) if digest in
                block.state.values()]  # fmt: skip

    # -- content -------------------------------------------------------------------------------

    def content(self, reference: Inventory, bag_identities: dict[Identity, str]) -> None:
        """Every content file of the manifest present, with its sha512 and sha256 (every byte
        read, or its digests the bag check's where it is the same file); no other file in any
        version's ``content/``."""
        listed: dict[str, str] = {}  # content path -> sha512
        for digest, paths in reference.manifest.items():
            for content_path in paths:
                if self.safe_content_path(reference, content_path, digest):
                    listed[content_path] = digest
        jobs: dict[Path, list[str]] = {}
        found: dict[str, dict[str, str]] = {}
        identities: dict[str, Identity] = {}
        for content_path, digest in sorted(listed.items()):
            path = self.path / content_path
            try:
                status = path.lstat()
            except FileNotFoundError:
                status = None
            if status is None or not stat.S_ISREG(status.st_mode):
                self.problem(
                    ProblemKind.VERSION_MISSING_FILE, content_path,
                    f"{content_path} is {'gone' if status is None else 'not a plain file'}"
                    f"{self.logical(reference, digest)} [OCFL 1.1 §3.5.2, E092]",
                    self.users(reference, digest), algorithm=DIGEST_ALGORITHM, expected=digest,
                )  # fmt: skip
                continue
            algorithms = [DIGEST_ALGORITHM]
            if content_path in reference.fixity:
                algorithms.append(FIXITY_ALGORITHM)
            identities[content_path] = _identity(status)
            self.check.files += 1
            known = self.known.get(_identity(status), algorithms)
            if known is not None:
                found[content_path] = known
                self.check.bytes_reused += status.st_size
            else:
                jobs[path] = algorithms

        unreadable: list[tuple[Path, OSError]] = []
        read = fixity.digest_files(
            dict[Path, Iterable[str]](jobs),
            on_error=lambda p, e: unreadable.append((p, e)),
        )  # fmt: skip
        for path, error in unreadable:
            content_path = path.relative_to(self.path).as_posix()
            digest = listed[content_path]
            self.problem(
                ProblemKind.VERSION_MISSING_FILE, content_path,
                f"{content_path} cannot be read ({error.strerror})"
                f"{self.logical(reference, digest)} [OCFL 1.1 §3.5.2, E092]",
                self.users(reference, digest), algorithm=DIGEST_ALGORITHM, expected=digest,
            )  # fmt: skip
        for path, result in read.items():
            content_path = path.relative_to(self.path).as_posix()
            found[content_path] = result.digests
            self.check.bytes_read += result.size
            self.known.add(identities[content_path], result.digests)

        for content_path, digests in sorted(found.items()):
            digest = listed[content_path]
            same = bag_identities.get(identities[content_path])
            shared = f"; the same file as the bag's {same}" if same else ""
            wanted = [(DIGEST_ALGORITHM, digest, "§3.5.2, E092: the manifest's digest")]
            if content_path in reference.fixity:
                wanted.append(
                    (FIXITY_ALGORITHM, reference.fixity[content_path],
                     "§3.5.4, E093: the fixity block's digest")
                )  # fmt: skip
            for algorithm, expected, rule in wanted:
                if digests[algorithm] != expected:
                    self.problem(
                        ProblemKind.VERSION_CHECKSUM_MISMATCH, content_path,
                        f"{content_path}: {algorithm} is {digests[algorithm]}, the inventory"
                        f" says {expected}{self.logical(reference, digest)}{shared}"
                        f" [OCFL 1.1 {rule}]", self.users(reference, digest),
                        algorithm=algorithm, expected=expected, found=digests[algorithm],
                    )  # fmt: skip
                    break  # one problem per file, as for a bag's files

        for number in range(1, reference.head + 1):
            folder = self.path / version_name(number) / "content"
            if not _is_folder(folder):
                continue
            for relative, _path, _status in _files(folder):
                content_path = f"{version_name(number)}/content/{relative}"
                if content_path not in listed:
                    self.unexpected_file(
                        content_path, [number], "in a version's content [OCFL 1.1 §3.3.1, E023]"
                    )

    def safe_content_path(self, reference: Inventory, content_path: str, digest: str) -> bool:
        """A content path inside a version's ``content/`` of this object (never read outside
        it); else a problem of the inventory."""
        match = _CONTENT_PATH.fullmatch(content_path)
        number = version_number(match.group(1)) if match else None
        parts = content_path.split("/")
        if (
            match is None or number is None or number > reference.head
            or any(part in {"", ".", ".."} for part in parts)
        ):  # fmt: skip
            self.problem(
                ProblemKind.VERSION_INVENTORY_INVALID, INVENTORY,
                f"the manifest stores sha512 {digest} at {content_path!r}, not a path in a"
                " version's content [OCFL 1.1 §3.5.2, E042, E099, E100]",
                self.users(reference, digest),
            )  # fmt: skip
            return False
        return True

    @staticmethod
    def logical(reference: Inventory, digest: str) -> str:
        """`` (the bag's data/x.mkv)``: what the content file is in the versions' bags."""
        names = sorted({p for b in reference.versions.values() for p, d in b.state.items()
                        if d == digest})  # fmt: skip
        return f" (the bag's {', '.join(names)})" if names else ""

    # -- the bag -------------------------------------------------------------------------------

    def current_head(self) -> int | None:
        """The head the object's inventory names now (read again, its digest checked), or None
        where it cannot be read."""
        try:
            data = (self.path / INVENTORY).read_bytes()
            recorded = (self.path / SIDECAR).read_bytes().decode("ascii", "replace")
        except OSError:
            return None
        match = _SIDECAR_LINE.fullmatch(recorded)
        if match is None or match.group(1) != hashlib.sha512(data).hexdigest():
            return None
        try:
            return Inventory.from_bytes(data, self.where).head
        except ObjectDamaged:
            return None

    def bag_is_head(self, reference: Inventory, bag_dir: Path, bag_name: str) -> None:
        """``bags/<id>`` against the head version's logical state, file by file (sha512)."""
        head = reference.state(reference.head)
        files = {name: (path, status) for name, path, status in _files(bag_dir)}
        jobs: dict[Path, Iterable[str]] = {}
        digests: dict[str, str | None] = {}
        for name, (path, status) in files.items():
            if not stat.S_ISREG(status.st_mode):
                digests[name] = None
                continue
            known = self.known.get(_identity(status), [DIGEST_ALGORITHM])
            if known is not None:
                digests[name] = known[DIGEST_ALGORITHM]
            else:
                jobs[path] = [DIGEST_ALGORITHM]
        read = fixity.digest_files(jobs, on_error=lambda _p, _e: None)
        for path, result in read.items():
            name = path.relative_to(bag_dir).as_posix()
            digests[name] = result.digests[DIGEST_ALGORITHM]
            self.check.bytes_read += result.size
            self.known.add(_identity(files[name][1]), result.digests)
        state = {name: digest for name, digest in digests.items() if digest is not None}
        if state == head:
            return
        newer = self.current_head()
        if newer is not None and newer != reference.head:
            # A revision made the next version (and put its bag in place) while this audit read
            # the object: the bag is compared with a head that is no longer the head.
            self.check.note = (
                f"{version_name(newer)} was made while the audit ran: {bag_name} was not"
                " compared with it (the next audit compares it)"
            )
            return
        same = [n for n, block in sorted(reference.versions.items()) if dict(block.state) == state]
        head_name = version_name(reference.head)
        which = (
            f"{bag_name} is {version_name(same[-1])}, not the head {head_name}" if same
            else f"{bag_name} is not the head version {head_name}"
        )  # fmt: skip
        for name in sorted(set(state) | set(head) | set(files)):
            expected, actual = head.get(name), digests.get(name)
            if name in head and expected == actual:
                continue
            how = (
                f"not in {head_name}" if expected is None
                else "absent from the bag" if name not in files
                else f"differs from {head_name}'s"
            )  # fmt: skip
            self.problem(
                ProblemKind.HEAD_MISMATCH, name, f"{which}: {name} {how}", [reference.head],
                algorithm=DIGEST_ALGORITHM, expected=expected, found=actual,
            )  # fmt: skip


@contextlib.contextmanager
def _locked(root: StorageRoot, work_id: str) -> Iterator[None]:
    """The object's lock, held while its inventories are read; none where the lock cannot be
    taken because nothing can be written there (an archive on read-only storage, a restored
    copy mounted read-only): no writer can be at work on it either."""
    try:
        lock = root.locked(work_id)
        lock.__enter__()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def audit_object(
    archive: Archive,
    work_id: str,
    known: KnownDigests,
    bag_dir: Path | None = None,
    bag_files: dict[str, Identity] | None = None,
) -> ObjectCheck:
    """Check the object of ``work_id`` (every version, every byte; the module says what), with
    the digests ``known`` from its bag's check; and, given ``bag_dir`` (an intact bag), that
    ``bags/<id>`` is its head version. ``bag_files``: the bag's files' identities (a content
    file that is one of them is named as the same file)."""
    checker = _Checker(archive, work_id, known)
    if not checker.path.is_dir():
        return ObjectCheck(None, None, note=_NO_OBJECT)
    try:
        with _locked(checker.root, work_id):  # no writer half way through adding a version
            numbers = sorted(
                n for e in checker.path.iterdir()
                if (n := version_number(e.name)) is not None and _is_folder(e)
            )  # fmt: skip
            if not (checker.path / OBJECT_DECLARATION).is_file():
                checker.problem(
                    ProblemKind.VERSION_MISSING_FILE, OBJECT_DECLARATION,
                    f"the object's declaration {OBJECT_DECLARATION} is gone [OCFL 1.1 §3.2,"
                    " E003]", [],
                )  # fmt: skip
            reference = checker.reference(numbers)
        if reference is None:
            return checker.check
        checker.check.versions = reference.head
        checker.structure(reference, numbers)
        by_identity = {identity: name for name, identity in (bag_files or {}).items()}
        checker.content(reference, by_identity)
        if bag_dir is not None and bag_dir.is_dir():
            checker.bag_is_head(reference, bag_dir, archive.relative(bag_dir))
    except OSError as exc:
        checker.problem(
            ProblemKind.VERSION_INVENTORY_INVALID, checker.where,
            f"the object could not be read: {exc}", [],
        )  # fmt: skip
    return checker.check
