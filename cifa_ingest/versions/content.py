"""A bag becoming a version's content: every file read once, its digests verified, and only the
bytes the object does not hold yet copied into the version's ``content/``.

Each file of the bag is a file of the version, at the same path (``bagit.txt``,
``data/master/x.mkv``, ``metadata/premis.xml``: the version's *logical paths*), so that a version
put back at its logical paths is the bag again, byte for byte.

Digests are never taken on trust. The bag's manifests (``manifest-sha512.txt``,
``tagmanifest-sha512.txt``, and the sha256 ones) say what each file's digests should be, and
decide which files need copying (a file whose sha512 the object holds already is not copied:
deduplication); then each file is read once, and hashed as it is read (copied too, where it is
new), and every digest every manifest gives is compared with what was read. A single difference
refuses the whole version, naming the files, before anything is kept. Files the manifests do not
list (the tag manifests themselves) are hashed the same way. The bag's structure (its declaration,
a complete payload, Payload-Oxum) is checked first by the project's validator
(:mod:`cifa_ingest.bag.check`), which with these digests makes a full validation of the bag from
one read of each file.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cifa_ingest.bag import check as bagcheck
from cifa_ingest.bag import fixity, manifest
from cifa_ingest.errors import VersionRefused
from cifa_ingest.storage.digests import copy_hashed_with
from cifa_ingest.versions.inventory import DIGEST_ALGORITHM, FIXITY_ALGORITHM

#: The digests every file gets, whatever its manifests list.
_ALWAYS = (DIGEST_ALGORITHM, FIXITY_ALGORITHM)
#: Problems named in a refusal, at most (the first of them).
_NAMED = 10


@dataclass(frozen=True)
class BagFile:
    """One file of the bag: its logical path, size, and verified digests."""

    path: str
    size: int
    sha512: str
    sha256: str


@dataclass(frozen=True)
class TakenBag:
    """What a bag gave its version: every file (``files``, by logical path), and the digests whose
    bytes were copied into the content folder (``stored``: sha512 -> the logical path, under
    content/, of the one copy kept)."""

    files: dict[str, BagFile]
    stored: dict[str, str]


def _bag_files(bag_dir: Path) -> dict[str, Path]:
    """Every file of the bag by its path inside the bag. What OCFL cannot keep as it is, or what
    an export would not give back, is refused: links, devices, empty folders (OCFL stores
    files only), names that are not UTF-8."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(bag_dir):
        folder = Path(dirpath)
        if not dirnames and not filenames and folder != bag_dir:
            raise VersionRefused(
                f"{folder}: an empty folder; a version keeps files only, and its export would"
                " not have it"
            )
        for name in [*dirnames, *filenames]:
            path = folder / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise VersionRefused(f"{path}: not a plain file or folder (a link?); refused")
            if stat.S_ISREG(mode):
                relative = path.relative_to(bag_dir).as_posix()
                try:
                    relative.encode("utf-8")
                except UnicodeEncodeError:
                    raise VersionRefused(f"{path!r}: a file name that is not UTF-8") from None
                files[relative] = path
    return files


def _claims(bag_dir: Path) -> dict[str, dict[str, str]]:
    """What the bag's manifests (payload and tag) say each file's digests are."""
    claims: dict[str, dict[str, str]] = {}
    for tag in (False, True):
        for algorithm, read in manifest.read_manifests(bag_dir, tag=tag).items():
            for path, digest in read.entries.items():
                claims.setdefault(path, {})[algorithm] = digest
    return claims


def _copy_hashing(source: Path, target: Path, algorithms: Collection[str]) -> fixity.Digests:
    """Copy ``source`` to ``target``, hashing what is read as it passes, and flush the copy: what
    is hashed is what is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader, target.open("xb") as out:
        digests, size = copy_hashed_with(reader, out, algorithms)
    return fixity.Digests(size, digests)


def _check_structure(bag_dir: Path) -> None:
    """The bag's declaration, manifests, completeness and Payload-Oxum (no digest: those are
    compared as the files are read), by the project's validator."""
    report = bagcheck.validate(bag_dir, fast=True)
    problems = report.errors + [f for f in report.warnings if f.code == "W107"]
    if problems:
        named = "; ".join(f.message for f in problems[:_NAMED])
        raise VersionRefused(f"{bag_dir}: not a complete, valid bag: {named}")


def _remove_empty_folders(content_dir: Path) -> None:
    """Folders emptied by dropping duplicate copies, and ``content/`` itself if nothing was new:
    OCFL forbids empty folders in content (E024) and advises against an empty content/ (W003)."""
    if not content_dir.exists():
        return
    for dirpath, _dirnames, _filenames in sorted(os.walk(content_dir), reverse=True):
        folder = Path(dirpath)
        if not any(folder.iterdir()):
            folder.rmdir()


def _link_hashing(source: Path, target: Path, algorithms: Collection[str]) -> fixity.Digests:
    """Hard-link ``source`` as ``target`` (the same bytes, the same inode: no second copy) and
    hash it; a copy where the two cannot share an inode (another file system, a file system
    without links). Used for a placed bag, whose files are sealed read-only: nothing writes
    into one of them, so the version's content cannot change through the bag."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        return _copy_hashing(source, target, algorithms)
    return fixity.digest_file(target, algorithms)


def take_bag(
    bag_dir: Path,
    known: Collection[str],
    content_dir: Path,
    workers: int | None = None,
    *,
    link: bool = False,
) -> TakenBag:
    """Verify the bag at ``bag_dir`` and copy into ``content_dir`` every file whose sha512 is not
    in ``known`` (the object's manifest), once per digest (``link``: hard-link it instead, for a
    bag placed in the archive, sealed read-only). VersionRefused, naming the files, where the bag
    is not complete and valid; the caller discards ``content_dir`` then."""
    if not bag_dir.is_dir():
        raise VersionRefused(f"{bag_dir}: not a folder (a bag is one)")
    _check_structure(bag_dir)
    files = _bag_files(bag_dir)
    claims = _claims(bag_dir)

    # Which files to copy: one per claimed digest the object does not hold. A file with no
    # claim (a tag manifest) is copied, and dropped below if its digest turns out to be known.
    copy: dict[str, bool] = {}
    planned: set[str] = set()
    for path in sorted(files):
        claimed = claims.get(path, {}).get(DIGEST_ALGORITHM)
        if claimed is not None and (claimed in known or claimed in planned):
            copy[path] = False
        else:
            copy[path] = True
            if claimed is not None:
                planned.add(claimed)

    def read(path: str) -> fixity.Digests:
        algorithms = dict.fromkeys([*_ALWAYS, *claims.get(path, {})])
        if copy[path]:
            keep = _link_hashing if link else _copy_hashing
            return keep(files[path], content_dir / path, algorithms)
        return fixity.digest_file(files[path], algorithms)

    ordered = sorted(files, key=lambda p: files[p].stat().st_size, reverse=True)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        digests = dict(zip(ordered, pool.map(read, ordered), strict=True))

    wrong = [
        f"{path}: {algorithm} is {digests[path].digests[algorithm]}, the manifest says {digest}"
        for path, claimed in sorted(claims.items())
        if path in digests
        for algorithm, digest in claimed.items()
        if digests[path].digests[algorithm] != digest
    ]
    if wrong:
        more = f" (and {len(wrong) - _NAMED} more)" if len(wrong) > _NAMED else ""
        raise VersionRefused(
            f"{bag_dir}: files differ from the bag's manifests: {'; '.join(wrong[:_NAMED])}{more}"
        )

    taken = {
        path: BagFile(path, d.size, d.digests[DIGEST_ALGORITHM], d.digests[FIXITY_ALGORITHM])
        for path, d in digests.items()
    }
    stored: dict[str, str] = {}
    for path in sorted(files):
        if not copy[path]:
            continue
        digest = taken[path].sha512
        if digest in known or digest in stored:  # a duplicate, found only now
            (content_dir / path).unlink()
        else:
            stored[digest] = path
    _remove_empty_folders(content_dir)
    return TakenBag(taken, stored)


def discard(folder: Path) -> None:
    """Remove a staging folder (its files may be sealed read-only: the folders are not)."""
    shutil.rmtree(folder, ignore_errors=True)
