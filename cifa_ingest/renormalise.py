"""A better master: a preserved work normalised again by the format policy now in force, as a
new version of the work, a PREMIS ``migration`` (issue 18; ``cifa renormalise ID``).

The format policy changes (a profile that remuxed H.264 now decodes it to FFV1; a site's own
rules), and so does ffmpeg. A master made by an earlier policy is never overwritten: the work gets
a new version whose master is made from its originals, as they were received, by the current
policy and settings (:func:`cifa_ingest.normalise.encode.normalise_work`, the ingest's own step),
and **proved** against them frame by frame (packet by packet for a remux); a proof that fails
makes nothing (:class:`~cifa_ingest.errors.ProofFailed`). The access copy comes out of the same
ffmpeg run, so it is new too. The earlier version keeps its master: the versions store keeps
every version's files.

The new version's bag is built in a private folder of ``staging/`` from the head bag:

* ``data/original/``: hard links to the head's originals (verified first against the head's
  manifests: a damaged original is an audit's business, never normalised);
* ``data/master/``, ``data/access/``: the new files (a file byte for byte the head's keeps the
  head's link); the files of the head's own are unlinked from the new bag only;
* ``metadata/normalisation.json`` (the policy's decisions, commands, proof), ``metadata/proof/``
  (the new certificate), ``metadata/technical.json`` and ``technical.mediainfo.json`` (the new
  files described, the originals' descriptions kept);
* the payload manifests (the originals' digests the head's, the new files hashed),
  ``bag-info.txt`` (Payload-Oxum, Bag-Size, Bagging-Date, software), ``metadata/versions.json``
  one entry more (a ``migration``, on the word of ``agent``), ``metadata/premis.xml`` (the head's
  objects and events kept, the new files' objects and the migration's events:
  :mod:`cifa_ingest.metadata.premis`), the tag manifests; validated in full.

Then, holding the placement slot, after :func:`cifa_ingest.revision.reconcile`, and only if the
work is still at the version it was built from, it is renamed to ``staging/<id>.v<N>`` and
:func:`cifa_ingest.revision.commit` makes it the work's newest version and its ``bags/<id>``.
The encode itself does not hold the slot: a long film does not stop other works' placements.

Where the current policy gives the head's master again (every master file the same bytes, or
the same streams packet for packet: Matroska writes a random segment identifier and the date
into every file it makes, so an encode by the same policy is never the same bytes), nothing is
made: :class:`AlreadyCurrent`.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest import revision
from cifa_ingest.archive import slots
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.bag import fixity, manifest, package
from cifa_ingest.bag import write as bagwrite
from cifa_ingest.bag.revise import (
    check_agent,
    json_bytes,
    link_head,
    next_version,
    read_bag_info,
    replace_file,
    seal_version,
)
from cifa_ingest.bag.write import tag_value
from cifa_ingest.config import Settings, format_policy_path, locks_dir, mediaconch_policy_path
from cifa_ingest.errors import ArchiveStateError, CifaError, InputError, PackagingError
from cifa_ingest.metadata.versions_record import Version, VersionChange, rfc3339
from cifa_ingest.normalise import encode
from cifa_ingest.normalise import proof as proofs
from cifa_ingest.normalise.format_policy import load_policy
from cifa_ingest.tools import mediainfo, runner
from cifa_ingest.versions import StorageRoot, head

log = logging.getLogger(__name__)

#: The payload folders a migration makes anew (the originals are never touched).
MADE = ("master", "access")


class AlreadyCurrent(CifaError):
    """The current format policy gives the head's master again: no version is made."""


@dataclass(frozen=True)
class Renormalised:
    """A migration made: the version, why, on whose word, the files it replaced and made."""

    work_id: str
    version: Version
    profile: str
    #: Per film or part: its stem, the head's action and the new one, and the policy's reason.
    actions: list[dict[str, str]]
    replaced: list[str]
    made: list[str]
    master_bytes_before: int
    master_bytes_after: int
    proof: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "version": self.version.number,
            "change": str(self.version.change),
            "message": self.version.message,
            "agent": self.version.agent,
            "created": self.version.created,
            "profile": self.profile,
            "actions": self.actions,
            "replaced": self.replaced,
            "made": self.made,
            "master_bytes_before": self.master_bytes_before,
            "master_bytes_after": self.master_bytes_after,
            "proof": self.proof,
        }


def renormalise_work(
    archive: Archive,
    settings: Settings,
    work_id: str,
    *,
    agent: str,
    message: str | None = None,
) -> Renormalised:
    """Make the next version of the preserved ``work_id``: a new master (and access copy) by the
    current format policy and settings, proved against the originals (the module says how).

    Raises InputError (not preserved, no versions yet, an agent that is no name),
    :class:`AlreadyCurrent` (the current policy gives the head's master), ProofFailed (the new
    master is not lossless: nothing made), ArchiveStateError (the head bag missing or damaged,
    or changed while the master was made), or another CifaError of the encode. Whatever is
    raised, nothing of the archive has changed."""
    agent = check_agent(agent)
    built_from = payload_head(archive, settings, work_id, "a new master")
    head_bag = built_from.bag
    _discard_stale(archive, work_id)
    workdir = archive.staging_dir / f".{work_id}.renormalise-{os.getpid()}"
    workdir.mkdir(parents=True)
    try:
        built, made = _build(archive, settings, head_bag, workdir, agent, message)
        commit_next(
            archive, settings, built_from, built, made.version.number, agent,
            during="its new master was made from", command="renormalise",
        )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info(
        "%s: version %d (%s): %s",
        work_id,
        made.version.number,
        made.version.change,
        made.version.message,
    )
    return made


@dataclass(frozen=True)
class Head:
    """A work's newest version, as a version that changes the payload is built from it: its bag
    in ``bags/``, its number, and its manifests' digests (what says it is still the head)."""

    bag: Path
    number: int
    manifest_digests: dict[str, str]

    @classmethod
    def of(cls, bag: Path) -> Head:
        return cls(bag, revision.bag_version(bag), package.summarise_bag(bag).manifest_digests)


def payload_head(archive: Archive, settings: Settings, work_id: str, what: str) -> Head:
    """The head of ``work_id``, for the next version of its payload (``what``: the version's
    words, for the messages): what a crash left finished first (:func:`revision.reconcile`,
    holding the placement slot). InputError where the work is not preserved or has no version
    yet, ArchiveStateError where its bag is missing."""
    ledger = Ledger(archive.ledger_path)
    if ledger.bag(work_id) is None:
        raise InputError(f"{work_id}: not preserved in {archive.root} (no bag in its ledger)")
    if head(StorageRoot(archive.objects_dir), work_id) is None:
        raise InputError(
            f"no versions recorded for {work_id} yet: the next ingest records its first, and"
            f" {what} is a version after it"
        )
    with revision.placement_slot(archive, settings).hold(work_id):
        revision.reconcile(archive, ledger, work_id)
    head_bag = archive.bag_path(work_id)
    if not head_bag.is_dir():
        raise ArchiveStateError(
            f"{archive.relative(head_bag)} is missing: registered, but no bag; run an audit"
        )
    return Head.of(head_bag)


def commit_next(
    archive: Archive,
    settings: Settings,
    built_from: Head,
    built: Path,
    number: int,
    person: str,
    *,
    during: str,
    command: str,
) -> None:
    """Make ``built`` (the complete, validated bag of version ``number``, in staging) the
    work's newest version and its ``bags/<id>`` (:func:`revision.commit`, on the word of
    ``person``): holding the placement slot, after :func:`revision.reconcile`, and only if the
    work is still at ``built_from``; else ArchiveStateError (``during``, ``command``: what was
    done meanwhile, and what to run again), nothing made."""
    work_id = built_from.bag.name
    ledger = Ledger(archive.ledger_path)
    with revision.placement_slot(archive, settings).hold(work_id):
        revision.reconcile(archive, ledger, work_id)
        now = Head.of(built_from.bag)
        if now != built_from:
            raise ArchiveStateError(
                f"{work_id} became version {now.number} while {during} version"
                f" {built_from.number}: nothing made; run cifa {command} again"
            )
        target = archive.staging_dir / f"{work_id}.v{number}"
        if target.exists():
            shutil.rmtree(target)
        built.rename(target)
        revision.commit(archive, ledger, settings, target, person)


def default_agent() -> str:
    """Whoever runs the command: the login name (``--agent`` names someone else)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.getuid()}"


def _discard_stale(archive: Archive, work_id: str) -> None:
    """What a killed renormalisation of the work left in staging (its process gone)."""
    for debris in archive.staging_dir.glob(f".{work_id}.renormalise-*"):
        pid = debris.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(debris, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise PackagingError(
            f"{path.parent.parent.name}: {path.name} cannot be read: {exc}"
        ) from None


def _groups(head_bag: Path, originals: Path) -> list[encode.Group]:
    """The films or parts of the work as its capture record has them (``normalise_step``'s)."""
    capture = _read_json(head_bag / "metadata" / "capture.json")
    groups = []
    for source in capture.get("sources") or []:
        files = source.get("files") or []
        media = [f["name"] for f in files if f.get("role") in {"video+audio", "video", "audio"}]
        if not source.get("stem") or not media:
            raise PackagingError(
                f"{head_bag.name}: capture.json names no stem or media for source"
                f" {source.get('index')}: made before this program could renormalise it"
            )
        groups.append(
            encode.Group(
                stem=str(source["stem"]),
                media=[originals / name for name in media],
                subtitles=[
                    (originals / f["name"], f.get("language"))
                    for f in files
                    if f.get("role") == "subtitle"
                ],
            )
        )
    if not groups:
        raise PackagingError(f"{head_bag.name}: capture.json names no source")
    return groups


def _link_originals(head_bag: Path, target: Path, entries: dict[str, dict[str, str]]) -> None:
    """Hard links to the head's originals in ``target``, each verified against the head's
    sha512 first: a damaged original is never normalised."""
    source = head_bag / "data" / "original"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    digests = fixity.digest_files({p: ("sha512",) for p in files})
    for path in files:
        name = path.relative_to(head_bag).as_posix()
        if entries.get(name, {}).get("sha512") != digests[path].digests["sha512"]:
            raise ArchiveStateError(
                f"{head_bag.name}: {name} is not the file its manifest names: run an audit"
                " (a repair restores it from a copy); nothing made"
            )
        there = target / path.relative_to(source)
        there.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, there)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copy2(path, there)


def _packets(master: Path, out: Path) -> Path:
    """The packets of every stream of ``master`` but its attachments (framemd5 of ``-c copy``:
    codecs, extradata, time bases, every packet's timestamps, size and MD5)."""
    runner.run(
        [
            runner.executable("ffmpeg"), "-nostdin", "-v", "error", "-i", str(master),
            "-map", "0", "-map", "-0:t?", "-c", "copy", "-f", "framemd5", "-y", str(out),
        ]
    )  # fmt: skip
    return out


def _described(master: Path) -> dict[str, Any]:
    """ffprobe's description of a master but what the muxer invents for each file (the date)."""
    probe = runner.probe(master)
    fmt = probe.get("format") or {}
    tags = {k: v for k, v in (fmt.get("tags") or {}).items() if k.lower() != "creation_time"}
    return {
        "streams": probe.get("streams"),
        "chapters": probe.get("chapters"),
        "tags": tags,
        "format": fmt.get("format_name"),
    }


def _same_master(old: Path, new: Path, scratch: Path) -> bool:
    """Whether ``new`` is the master ``old`` is: the same bytes, or the same streams, packet for
    packet, and the same description (Matroska's segment identifier and date aside)."""
    if fixity.digest_file(old, ("sha512",)).digests == fixity.digest_file(new, ("sha512",)).digests:
        return True
    if _described(old) != _described(new):
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    difference, _count = proofs.same_packets(
        _packets(old, scratch / f"{old.name}.head.framemd5"),
        _packets(new, scratch / f"{new.name}.new.framemd5"),
    )
    return difference is None


def _build(
    archive: Archive,
    settings: Settings,
    head_bag: Path,
    workdir: Path,
    agent: str,
    message: str | None,
) -> tuple[Path, Renormalised]:
    """Normalise the head's originals by the current policy, prove the master, and build the
    complete, validated bag of the next version in ``workdir/bag``."""
    work_id = head_bag.name
    entries, problems = manifest.payload_entries(head_bag)
    if any(problem.is_error for problem in problems):
        raise ArchiveStateError(f"{head_bag.name}: its manifests cannot be read; run an audit")
    if not (head_bag / "metadata" / "premis.xml").is_file():
        raise PackagingError(f"{work_id}: the head bag has no PREMIS record to carry on")
    normalising = workdir / "normalise"
    _link_originals(head_bag, normalising / "original", entries)
    groups = _groups(head_bag, normalising / "original")
    profile_name = settings.normalise.profile
    profile = load_policy(format_policy_path(settings)).profile(profile_name)
    encodes = slots.encode_slots(locks_dir(settings, archive.root), settings.execution.max_encodes)
    log.info("%s: normalising the originals again by the format policy's %r", work_id, profile_name)
    normalised = encode.normalise_work(
        groups,
        normalising,
        workdir / "proof",
        settings.normalise,
        profile_name,
        profile,
        mediaconch_policy_path(settings),
        encode_slot=lambda stem: encodes.hold(stem),
    )  # raises ProofFailed where a master is not lossless: nothing is made

    new = {
        f"data/{p.relative_to(normalising).as_posix()}": p
        for folder in MADE
        for p in sorted((normalising / folder).glob("*"))
        if p.is_file()
    }
    old = {
        path: head_bag / path
        for path in entries
        if path.split("/")[1:2] and path.split("/")[1] in MADE
    }
    old_masters = sorted(p for p in old if p.startswith("data/master/"))
    new_masters = sorted(p for p in new if p.startswith("data/master/"))
    before = _head_record(head_bag)
    actions = [
        {
            "stem": group.stem,
            "before": before.get(group.stem, "not recorded"),
            "now": group.action,
            "reason": group.reason,
        }
        for group in normalised.groups
    ]
    if old_masters == new_masters and all(
        _same_master(old[path], new[path], workdir / "packets") for path in new_masters
    ):
        which = ", ".join(new_masters) or "no master (the originals are kept as they are)"
        raise AlreadyCurrent(
            f"{work_id}: already the current policy's master: the format policy's profile"
            f" {profile_name!r} gives {which} as version {revision.bag_version(head_bag)} has"
            " it; nothing made"
        )

    digests = fixity.digest_files({p: bagwrite.ALGORITHMS for p in new.values()})
    made = sorted(
        path
        for path, file in new.items()
        if entries.get(path, {}).get("sha512") != digests[file].digests["sha512"]
    )
    bag = workdir / "bag"
    link_head(head_bag, bag, work_id)
    for path in old:
        if path in made or path not in new:
            (bag / path).unlink()
    for path in made:
        (bag / path).parent.mkdir(parents=True, exist_ok=True)
        os.rename(new[path], bag / path)
    for folder in MADE:  # a folder the new policy leaves empty (``keep``, no access copy)
        if (bag / "data" / folder).is_dir() and not any((bag / "data" / folder).iterdir()):
            (bag / "data" / folder).rmdir()
    payload = dict(entries)
    for path in old:
        if path not in new:
            del payload[path]
    for path in made:
        payload[path] = dict(digests[new[path]].digests)
    for algorithm in bagwrite.ALGORITHMS:
        replace_file(
            bag / f"manifest-{algorithm}.txt",
            manifest.format_manifest({p: d[algorithm] for p, d in payload.items()}).encode(),
        )

    metadata = bag / "metadata"
    proof_dir = metadata / "proof"
    if proof_dir.is_dir():
        for stale in proof_dir.iterdir():
            stale.unlink()
    proof_dir.mkdir(exist_ok=True)
    for certificate in sorted((workdir / "proof").glob("*")):
        os.rename(certificate, proof_dir / certificate.name)
    from cifa_ingest.preserve import normalisation_record  # the ingest's record, word for word

    replace_file(metadata / "normalisation.json", json_bytes(normalisation_record(normalised)))
    _describe_payload(bag, head_bag, made, payload)

    created = rfc3339(dt.datetime.now(dt.UTC))
    text = message.strip() if message and message.strip() else None
    why = "; ".join(f"{a['stem']}: {a['before']} → {a['now']}" for a in actions)
    history, version = next_version(
        head_bag,
        VersionChange.MIGRATION,
        text or f"a new master by the current format policy (profile {profile_name}): {why}",
        agent,
        created=created,
    )
    size = sum((bag / path).stat().st_size for path in payload)
    info = read_bag_info(head_bag)
    info.update(
        {
            "Bagging-Date": created[:10],
            "Bag-Software-Agent": package.SOFTWARE_AGENT,
            "Payload-Oxum": f"{size}.{len(payload)}",
            "Bag-Size": package.human_size(size),
        }
    )
    lines = [f"{tag_value(k)}: {tag_value(v)}\n" for k, v in info.items() if tag_value(v)]
    seal_version(bag, head_bag, settings.organisation, [*history, version], "".join(lines).encode())
    return bag, Renormalised(
        work_id=work_id,
        version=version,
        profile=profile_name,
        actions=actions,
        replaced=[p for p in old_masters if p in made or p not in new],
        made=made,
        master_bytes_before=sum(old[p].stat().st_size for p in old_masters),
        master_bytes_after=sum((bag / p).stat().st_size for p in new_masters),
        proof=[
            f"{group.stem}: {group.proof.summary}" for group in normalised.groups if group.proof
        ],
    )


def _head_record(head_bag: Path) -> dict[str, str]:
    """The head's action per film or part (its normalisation.json), for the message."""
    try:
        record = json.loads((head_bag / "metadata" / "normalisation.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(g.get("stem")): str(g.get("action")) for g in record.get("groups") or []}


def _describe_payload(
    bag: Path, head_bag: Path, made: list[str], payload: dict[str, dict[str, str]]
) -> None:
    """technical.json (ffprobe) and technical.mediainfo.json (MediaInfo) of the new bag: the
    head's descriptions of the files it keeps, the files made described afresh."""
    keys = {path.removeprefix("data/") for path in payload}
    fresh = {path.removeprefix("data/") for path in made}
    for name in ("technical.json", "technical.mediainfo.json"):
        recorded = head_bag / "metadata" / name
        before = _read_json(recorded) if recorded.is_file() else {}
        document = {k: v for k, v in before.items() if k in keys and k not in fresh}
        for key in sorted(keys - set(document)):
            file = bag / "data" / key
            document[key] = (
                runner.probe(file) if name == "technical.json" else mediainfo.describe(file)
            )
        if recorded.is_file() or any(document.values()):
            replace_file(bag / "metadata" / name, json_bytes(dict(sorted(document.items()))))
