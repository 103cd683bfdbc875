"""The bag of a work's next version, made from the bag of its latest (issue 18).

A preserved bag is never changed. When the catalogue's entry for a work no longer agrees with its
bag (:mod:`cifa_ingest.catalogue.drift`: a corrected title, a narrowed or withdrawn permission),
:func:`revise` makes a second, complete bag in staging: the next version, which the versions
store (:mod:`cifa_ingest.versions`) then keeps beside the first.

What it costs: kilobytes. The payload does not change in a metadata version (``metadata/`` is a
tag directory), so every file of the head bag is hard-linked into the new one, not copied: a
placed bag's files are read-only (0444), so a link is safe. Only across file systems, where a
link cannot be made, is a file copied, and the log says so. The files that change are then
replaced, never written through: each is unlinked first and written as a new file, so the head
bag's copy (the same inode as the link) keeps its bytes. They are

* ``metadata/descriptive.json`` and ``metadata/descriptive.xml`` (Dublin Core) and
  ``metadata/permission.json``, from the catalogue's entry, as the packager writes them;
* ``metadata/versions.json``: the history, one entry more
  (:mod:`cifa_ingest.metadata.versions_record`);
* ``metadata/premis.xml``: the head's objects, events and agents as they were (their dates and
  identifiers), one event more for the new version, the rights statement of the permission as it
  now is (:mod:`cifa_ingest.metadata.premis`);
* ``bag-info.txt``: the fields the catalogue gives (title, director, description, collection)
  and the settings (the organisation) as they now are, the ``Bagging-Date`` of the new version
  (RFC 8493: when the bag was prepared) and the software that made it; ``Payload-Oxum`` and
  ``Bag-Size`` are the head's, as the payload and its manifests are;
* the tag manifests, over every tag file.

The bag is built in a hidden folder beside its final name, validated in full (every checksum
recomputed, :func:`~cifa_ingest.bag.package.validate_bag`) and only then renamed to
``staging/<id>.v<N>`` (a dot: no work id has one), so that name holds a complete bag or nothing.

A revision with nothing to say is refused (:class:`RevisionRefused`): no difference and no
explicit change. So is a message given that would carry a permission's personal details. The
changes that replace payload files (``capture``, ``migration``) or remove them
(``deaccession``) are versions too, but not made here: they are refused by name. Each brings its
payload step and its events, and shares the rest of this module: the head linked
(:func:`link_head`), files replaced never written through (:func:`replace_file`), the history
one entry more (:func:`next_version`), and the new bag's records, tag manifests and validation
(:func:`seal_version`). A ``migration`` (a new master by the current format policy) is
:mod:`cifa_ingest.renormalise`'s, a ``capture`` (a changed source fetched again)
:mod:`cifa_ingest.recapture`'s.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from cifa_ingest.bag import write as bagwrite
from cifa_ingest.bag.package import SOFTWARE_AGENT, bag_info, descriptive_record, validate_bag
from cifa_ingest.bag.write import tag_value
from cifa_ingest.catalogue import drift
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.errors import InputError, PackagingError
from cifa_ingest.metadata import dublin_core, premis
from cifa_ingest.metadata.versions_record import (
    VERSIONS_FILE,
    Version,
    VersionChange,
    one_line,
    parse_time,
    read_versions,
    rfc3339,
    versions_document,
)

log = logging.getLogger(__name__)

#: The changes :func:`revise` makes (the others change the payload: they come later).
MADE_HERE = (VersionChange.METADATA_MODIFICATION, VersionChange.PERMISSION_CHANGE)
#: Bag-info fields :func:`~cifa_ingest.bag.package.bag_info` may write (Director-Zh only when
#: the catalogue has the name): a revised bag has them as the catalogue now says.
_FROM_CATALOGUE = ("Director-Zh",)
#: The permission record's fields that may hold personal details (see Permission).
_PERSONAL = ("granted_by", "basis", "notes")


class RevisionRefused(InputError):
    """A revision that must not be made: nothing changed, an unknown change, a message with
    personal details, a bag that is not the work's."""


def json_bytes(document: Any) -> bytes:
    """A JSON tag file's bytes, exactly as :func:`~cifa_ingest.bag.package.write_json` writes."""
    return (json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n").encode()


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` as a new file: whatever is there (a hard link to the head
    bag's file) is unlinked first, and the new file is created exclusively, so that nothing is
    ever written through a link into another version."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def link_tree(source: Path, target: Path) -> int:
    """Make ``target`` (absent) the tree of ``source`` with every file hard-linked; a file that
    cannot be linked because it is on another file system is copied instead (its time kept).
    Returns how many were copied. A symbolic link is refused: no bag has one."""
    copied = 0
    for folder, dirnames, filenames in os.walk(source):
        here = Path(folder)
        there = target / here.relative_to(source)
        there.mkdir(parents=there != target, exist_ok=False)
        for name in sorted(dirnames) + sorted(filenames):
            if (here / name).is_symlink():
                raise PackagingError(f"{here / name}: a symbolic link in a bag")
        for name in filenames:
            try:
                os.link(here / name, there / name)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.copy2(here / name, there / name)
                copied += 1
    return copied


def link_head(head_bag: Path, building: Path, work_id: str) -> None:
    """Make ``building`` the head bag's tree, every file hard-linked (:func:`link_tree`); the
    log says where files had to be copied."""
    copied = link_tree(head_bag, building)
    if copied:
        log.warning(
            "%s: %d file(s) copied, not linked: the staging folder is on another file"
            " system than the head bag",
            work_id,
            copied,
        )


def read_bag_info(bag_dir: Path) -> dict[str, str]:
    """bag-info.txt's fields in order (a folded value joined to one line; a repeated field
    keeps its last value: the CIFA profile repeats none)."""
    fields: dict[str, str] = {}
    label = None
    for line in (bag_dir / "bag-info.txt").read_text("utf-8").splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and label is not None:
            fields[label] += " " + line.strip()
            continue
        match = re.match(r"^([^:\s][^:]*?)\s*:\s*(.*)$", line)
        if match is None:
            raise PackagingError(f"{bag_dir.name}: bag-info.txt line {line!r} is malformed")
        label = match.group(1)
        fields[label] = match.group(2).strip()
    return fields


def revised_bag_info(
    head: dict[str, str],
    work: Work,
    organisation: OrganisationSettings,
    collection: str | None,
    created: str,
) -> bytes:
    """The new version's bag-info.txt: the head's fields, those the catalogue and settings give
    as they now are, the new Bagging-Date and software; Payload-Oxum and Bag-Size kept."""
    now = bag_info(work, organisation, collection)
    fields = {k: v for k, v in head.items() if k not in now and k not in _FROM_CATALOGUE}
    fields = {"Bagging-Date": "", **fields, **now}  # Bagging-Date first, as bags are made
    fields["Bagging-Date"] = created[:10]
    fields["Bag-Software-Agent"] = SOFTWARE_AGENT
    lines = [f"{tag_value(k)}: {tag_value(v)}\n" for k, v in fields.items() if tag_value(v)]
    return "".join(lines).encode("utf-8")


def _personal_details(*records: dict[str, Any]) -> list[str]:
    return [
        str(record[name]).strip()
        for record in records
        for name in _PERSONAL
        if record.get(name) and len(str(record[name]).strip()) >= 3
    ]


def _decide(
    differences: list[drift.Difference], change: VersionChange | None, message: str | None
) -> tuple[VersionChange, str]:
    """The version's change and message, or RevisionRefused."""
    permission = [d for d in differences if d.record is drift.Record.PERMISSION]
    if change is not None and change not in MADE_HERE:
        raise RevisionRefused(
            f"a {change} version changes the payload: it is not made by a revision of the"
            " records (not yet supported)"
        )
    if not differences and (change is None or not message):
        raise RevisionRefused(
            "nothing to revise: the catalogue's entry agrees with the bag's records, and no"
            " change was asked for with a message saying why"
        )
    if change is VersionChange.PERMISSION_CHANGE and differences and not permission:
        raise RevisionRefused("a permission change, but the permission record is unchanged")
    if change is VersionChange.METADATA_MODIFICATION and permission:
        raise RevisionRefused(
            "the permission record changed: that version is a permission change"
            f" ({', '.join(f'permission.{d.field}' for d in permission)})"
        )
    if change is None:
        change = (
            VersionChange.PERMISSION_CHANGE if permission else VersionChange.METADATA_MODIFICATION
        )
    if message is None or not message.strip():
        message = "; ".join(str(d) for d in differences)
    return change, one_line(message)


def check_agent(agent: str) -> str:
    """The name a version is made on the word of, stripped; RevisionRefused where it is empty
    or not one clean bag-info line."""
    if not agent or not tag_value(agent) or tag_value(agent) != agent.strip():
        raise RevisionRefused(
            "a version needs the name of whoever it is made on the word of: one line, no"
            " control characters, at most 1000 characters"
        )
    return agent.strip()


def next_version(
    head_bag: Path,
    change: VersionChange,
    message: str,
    agent: str,
    *,
    fields: tuple[str, ...] = (),
    created: str | None = None,
) -> tuple[list[Version], Version]:
    """The head bag's history and the version after it: ``change``, the one-line ``message``,
    on the word of ``agent``, at ``created`` (RFC 3339; now by default, never before the
    head)."""
    history = read_versions(head_bag)
    version = Version(
        number=history[-1].number + 1,
        created=_created(created, history[-1]),
        change=change,
        message=one_line(message),
        agent=check_agent(agent),
        fields=fields,
    )
    return history, version


def building_folder(staging: Path, target: Path) -> Path:
    """The hidden folder a version's bag is built in, beside its final name ``target`` (in
    ``staging``), emptied of what a killed attempt left."""
    building = staging / f".{target.name}.building-{os.getpid()}"
    if building.exists():
        shutil.rmtree(building)
    return building


def seal_version(
    building: Path,
    head_bag: Path,
    organisation: OrganisationSettings,
    versions: list[Version],
    info: bytes,
) -> None:
    """Finish the bag of a new version in ``building`` (its payload and its payload manifests
    in place, its other records written): ``metadata/versions.json`` (``versions``, the new one
    last), ``metadata/premis.xml`` (the head's record carried on, and the new version's
    events), ``bag-info.txt`` (``info``), the tag manifests; then validate it in full."""
    replace_file(building / VERSIONS_FILE, json_bytes(versions_document(versions)))
    previous = head_bag / "metadata" / "premis.xml"
    replace_file(
        building / "metadata" / "premis.xml",
        premis.write_premis(
            building, organisation, None, previous=previous if previous.is_file() else None
        ),
    )
    replace_file(building / "bag-info.txt", info)
    for algorithm in bagwrite.ALGORITHMS:
        (building / f"tagmanifest-{algorithm}.txt").unlink(missing_ok=True)
    bagwrite.write_tag_manifests(building)
    validate_bag(building)


def _created(created: str | None, last: Version) -> str:
    try:
        moment = parse_time(created) if created else dt.datetime.now(dt.UTC)
    except ValueError as exc:
        raise RevisionRefused(f"created: {exc}") from None
    if moment < parse_time(last.created):
        raise RevisionRefused(f"created {created} is before version {last.number} ({last.created})")
    return rfc3339(moment)


def revise(
    head_bag: Path,
    staging: Path,
    work: Work,
    collection: str | None,
    organisation: OrganisationSettings,
    *,
    agent: str,
    change: VersionChange | None = None,
    message: str | None = None,
    created: str | None = None,
) -> Path:
    """Make ``staging/<work id>.v<N>``, the complete, validated bag of the work's next version
    (N: one more than ``head_bag``'s latest), from the head bag and the catalogue's ``work`` (in
    ``collection``); the head bag is not changed. Returns the new bag's folder.

    ``agent``: on whose word (the operator's name, or a label). ``change``: by default a
    ``permission change`` when the permission record differs, else a ``metadata modification``.
    ``message``: one line, by default the differences as :mod:`~cifa_ingest.catalogue.drift`
    words them (personal details named, never shown); a message holding a permission's
    personal details is refused. ``created``: RFC 3339 (now by default), not before the head.
    Raises RevisionRefused (nothing to revise, and the other refusals above) or
    PackagingError (the head unreadable, the new bag invalid)."""
    head_bag = Path(head_bag)
    if not (head_bag / "bagit.txt").is_file():
        raise RevisionRefused(f"{head_bag}: not a bag")
    check_agent(agent)
    try:
        differences = drift.differences(work, collection, head_bag)
        preserved_permission = json.loads(
            (head_bag / drift.Record.PERMISSION.file).read_text("utf-8")
        )
        preserved_id = json.loads((head_bag / drift.Record.DESCRIPTIVE.file).read_text("utf-8"))
    except (drift.UnreadableRecord, OSError, ValueError) as exc:
        raise PackagingError(f"{head_bag.name}: {exc}") from None
    if preserved_id.get("id") != work.id:
        raise RevisionRefused(
            f"{head_bag.name} is the bag of {preserved_id.get('id')!r}, not {work.id}"
        )
    change, text = _decide(differences, change, message)
    # The default message is drift's, which names personal details and never shows them; a
    # message given is checked (a director's name may also be a grantor's: drift's is not).
    if message and any(
        detail in text
        for detail in _personal_details(preserved_permission, work.permission.record())
    ):
        raise RevisionRefused(
            "the message holds a permission's personal details (granted_by, basis or notes):"
            " they belong in permission.json only"
        )
    history, version = next_version(
        head_bag,
        change,
        text,
        agent,
        fields=tuple(f"{d.record}.{d.field}" for d in differences),
        created=created,
    )

    staging.mkdir(parents=True, exist_ok=True)
    target = staging / f"{work.id}.v{version.number}"
    if target.exists():
        raise RevisionRefused(f"{target} exists already")
    building = building_folder(staging, target)
    try:
        link_head(head_bag, building, work.id)
        metadata = building / "metadata"
        replace_file(
            metadata / "descriptive.json", json_bytes(descriptive_record(work, collection))
        )
        replace_file(metadata / "descriptive.xml", dublin_core.descriptive_xml(work, collection))
        replace_file(metadata / "permission.json", json_bytes(work.permission.record()))
        info = revised_bag_info(
            read_bag_info(head_bag), work, organisation, collection, version.created
        )
        seal_version(building, head_bag, organisation, [*history, version], info)
        building.rename(target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)  # links and new files only: the head stays
        raise
    log.info("%s: version %d made (%s): %s", work.id, version.number, change, text)
    return target
