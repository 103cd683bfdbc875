"""PREMIS 3.0 (``metadata/premis.xml``): the bag's preservation record in the standard vocabulary.

The JSON tag files say everything the pipeline knows, in our own words; PREMIS says the same in
words other archives and their tools read: an object per payload file (fixity, size, format,
which original a derivative comes from), the events of its life (capture, message digest
calculation, normalization, validation, format identification, metadata extraction, ingestion),
the agents that carried them out, and the rights statement of the filmmaker's permission.

A work lives on as versions (issue 18): a later version's bag has ``metadata/versions.json``
(:mod:`cifa_ingest.metadata.versions_record`), and its record adds one event per version after
the first (a ``metadata modification``, a ``capture``, …: the version's change, dated when the
version was made, its message as the detail, cifa-ingest the executing program, the person or
body on whose word it was made the ``authorizer`` and the organisation the ``implementer``, as
LoC's eventRelatedAgentRole terms say). The events before are kept as they were: given the
previous version's ``premis.xml``, its objects, events and agents are carried over element for
element (same identifiers, same dates); without it, the first version's events are rebuilt from
the bag's records and dated by versions.json (never by today). The rights statement always
follows the current ``permission.json``: a withdrawn permission grants no act and says when it
was withdrawn, a narrowed one grants only what it still covers.

A ``migration`` version (a new master by the current format policy, :mod:`cifa_ingest.renormalise`)
changes payload files: its new masters and access copies are new objects, identified by their path
and the version that made them (``data/master/x.mkv@v2``: :func:`object_identifier`), beside the
objects of the files they replace, which are kept as they were (the earlier version keeps those
files). Its events: the normalization and validation events of its ``normalisation.json`` (the
lossless proof against the original), the digests, format identification and metadata extraction
of the files it made, and the ``migration`` event itself, the replaced masters its source and the
new ones its outcome. Later events and the rights statement name each file by its newest object.

A ``capture`` version (the source fetched again, :mod:`cifa_ingest.recapture`) changes payload
files too, its originals among them: every file it received or made that differs from the
previous record's is a new object (``data/original/x.mp4@v2``), the earlier objects kept as they
were. Its events: the normalization and validation events of its ``normalisation.json`` (the new
master proved against the new originals), the digests of the files it brought (its originals'
compared with the digests taken as the bytes arrived), their format identification and metadata
extraction, and the version's own ``capture`` event, carried out by the fetcher, its outcome the
new originals.

The record is built from the bag itself (its payload manifests and its ``metadata/*.json``), once
the payload is under ``data/`` and before the tag manifests are written, so it can only say what
the bag says. Event types, agent roles and relationship types are the terms of the Library of
Congress preservation vocabularies (id.loc.gov/vocabulary/preservation), written as plain strings
(no ``authority`` attributes). It validates against the official schema (premis-v3-0.xsd): the
tests check it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest import __version__
from cifa_ingest.bag import manifest
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.errors import PackagingError
from cifa_ingest.metadata.versions_record import (
    Version,
    VersionChange,
    recorded_versions,
)

PREMIS_NS = "http://www.loc.gov/premis/v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{PREMIS_NS} http://www.loc.gov/standards/premis/v3/premis.xsd"
ET.register_namespace("premis", PREMIS_NS)
ET.register_namespace("xsi", XSI_NS)

PAYLOAD_FOLDERS = ("original", "master", "access")
DIGEST_ORIGINATOR = "cifa-ingest"
CIFA_INGEST = f"cifa-ingest {__version__}"
#: The changes whose version may bring payload files of its own (the others keep the payload).
PAYLOAD_CHANGES = (VersionChange.MIGRATION, VersionChange.CAPTURE)
#: A file's object made by a version after the first: ``data/master/x.mkv@v2``.
_BY_VERSION = re.compile(r"^(.+)@v([1-9][0-9]*)$")

#: PRONOM identifiers, only those we are sure of; anything else gets a name and no registry key.
PRONOM = {
    "Matroska": "fmt/569",
    "MPEG-4 Media File": "fmt/199",
    "MPEG-2 Transport Stream": "fmt/585",
    "JPEG File Interchange Format 1.01": "fmt/43",
    "JPEG File Interchange Format 1.02": "fmt/44",
}

#: Codec names as the standards name them (ffprobe's long names are its own, FFV1's is
#: "FFmpeg video codec #1"); others keep ffprobe's long name.
CODEC_NAMES = {
    "ffv1": "FFV1",
    "h264": "H.264/AVC",
    "hevc": "H.265/HEVC",
    "vp8": "VP8",
    "vp9": "VP9",
    "av1": "AV1",
    "aac": "AAC",
    "flac": "FLAC",
    "wavpack": "WavPack",
    "opus": "Opus",
    "vorbis": "Vorbis",
    "mp3": "MP3",
}

#: What each use the catalogue's permission may cover lets the archive do (PREMIS act,
#: restriction or None, and what it means).
#: The namespace of the identifiers of versions' events: version N of a work has the same
#: event identifier in every later version's record, however often it is rebuilt.
VERSION_EVENTS = uuid.UUID("6f1d7c9e-1b8a-5c3e-9d2f-4a7b0e5c8d31")

ACTS = {
    "preservation": ("preserve", None, "keep, copy and migrate the work for its preservation"),
    "access": ("disseminate", "not to the public", "show the work to the archive's users"),
    "public-access": ("disseminate", None, "make the work available to the public"),
    "research": ("use", "research only", "let researchers study the work"),
}


def _q(name: str) -> str:
    return f"{{{PREMIS_NS}}}{name}"


def _add(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, _q(name), attrs)
    if text is not None:
        element.text = text
    return element


def _identifier(parent: ET.Element, name: str, kind: str, value: str) -> ET.Element:
    """``<xIdentifier><xIdentifierType/><xIdentifierValue/></xIdentifier>``, PREMIS's pattern."""
    element = _add(parent, name)
    _add(element, f"{name}Type", kind)
    _add(element, f"{name}Value", value)
    return element


@dataclass
class Agent:
    """A PREMIS agent: identified by a local identifier that events and rights link to."""

    name: str
    kind: str  # software | organization | person (LoC agentType), "" when not known
    version: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def identifier(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


@dataclass
class Event:
    """A PREMIS event, with the agents (and their roles) and the objects (and theirs)."""

    type: str
    date_time: str
    detail: str
    outcome: str
    agents: list[tuple[Agent, str]]
    objects: list[tuple[str, str]]  # (bag path, LoC eventRelatedObjectRole: source | outcome)
    outcome_detail: str | None = None
    identifier: str = field(default_factory=lambda: str(uuid.uuid4()))


def split_tool(tool: str | None, fallback: str) -> tuple[str, str | None]:
    """``"yt-dlp 2026.10.26"`` → ``("yt-dlp", "2026.10.26")``; ffmpeg's and MediaConch's longer
    version lines are reduced to name and version too."""
    if not tool:
        return fallback, None
    match = re.match(r"ffmpeg version (\S+)", tool)
    if match:
        return "ffmpeg", match.group(1)
    match = re.match(r"(.*?)\s+v?(\d[\w.+~-]*)$", tool.strip())
    if match:
        name = match.group(1)
        return ("MediaConch" if name.startswith("MediaConch") else name), match.group(2)
    return tool.strip(), None


def _software(tool: str | None, fallback: str) -> Agent:
    name, version = split_tool(tool, fallback)
    return Agent(name, "software", version)


def _mtime(path: Path, fallback: str) -> str:
    """A file's modification time (UTC, ISO 8601), or ``fallback`` when it is not there."""
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return fallback
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# Formats


def _jfif_version(path: Path) -> str | None:
    """The JFIF version in a JPEG's APP0 segment ("1.02"), which PRONOM's ids depend on."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] == b"\xff\xd8\xff\xe0" and head[6:11] == b"JFIF\x00":
        return f"{head[11]}.{head[12]:02d}"
    return None


def file_formats(
    path: Path, probe: dict[str, Any] | None, mediainfo: dict[str, Any] | None
) -> list[tuple[str, str | None, str | None]]:
    """(formatName, formatVersion, PRONOM id) of a file: the container first, then each codec
    of its streams (a file's format is both: FFV1 in Matroska)."""
    fmt = (probe or {}).get("format", {})
    streams = (probe or {}).get("streams", [])
    names = set(str(fmt.get("format_name", "")).split(","))
    codecs = [str(s.get("codec_name", "")) for s in streams]
    tracks = ((mediainfo or {}).get("media") or {}).get("track") or []
    general: dict[str, Any] = next((t for t in tracks if t.get("@type") == "General"), {})
    suffix = path.suffix.lower()

    container: tuple[str, str | None]
    if "matroska" in names and suffix != ".webm":
        container = ("Matroska", general.get("Format_Version"))
    elif "webm" in names:
        container = ("WebM", None)
    elif "mp4" in names and suffix in {".mp4", ".m4v", ".m4a"}:
        container = ("MPEG-4 Media File", None)
    elif "mov" in names:
        container = ("QuickTime", None)
    elif "mpegts" in names:
        container = ("MPEG-2 Transport Stream", None)
    elif "webvtt" in names or suffix == ".vtt":
        container = ("WebVTT", None)
    elif "srt" in names or suffix == ".srt":
        container = ("SubRip", None)
    elif codecs == ["mjpeg"] or suffix in {".jpg", ".jpeg"}:
        version = _jfif_version(path)
        container = (f"JPEG File Interchange Format {version}" if version else "JPEG", None)
    elif codecs == ["png"] or suffix == ".png":
        container = ("Portable Network Graphics", None)
    elif codecs == ["webp"] or suffix == ".webp":
        container = ("WebP", None)
    else:
        container = (str(fmt.get("format_long_name") or fmt.get("format_name") or "unknown"), None)
    formats = [(container[0], container[1], PRONOM.get(container[0]))]
    if container[0] in {
        "Matroska",
        "WebM",
        "MPEG-4 Media File",
        "QuickTime",
        "MPEG-2 Transport Stream",
    }:
        seen: set[str] = set()
        for stream in streams:
            codec = str(stream.get("codec_name") or "")
            if not codec or codec in seen:
                continue
            seen.add(codec)
            version = None
            if codec == "ffv1":
                video: dict[str, Any] = next((t for t in tracks if t.get("@type") == "Video"), {})
                version = str(video.get("Format_Version", "")).split(".")[0] or None
            name = CODEC_NAMES.get(codec) or str(stream.get("codec_long_name") or codec)
            formats.append((name, version, None))
    return formats


# ---------------------------------------------------------------------------------------------
# The document


def build_premis(
    bag_dir: Path,
    organisation: OrganisationSettings,
    *,
    packaged_at: str | None = None,
    previous: Path | None = None,
) -> ET.ElementTree[ET.Element]:
    """The PREMIS record of a bag whose payload is under ``data/`` (its payload manifests
    written) and whose ``metadata/`` holds the pipeline's JSON records.

    An original whose digest in the bag differs from the one taken as its bytes arrived is a
    PackagingError: such a bag must not enter the archive.

    ``packaged_at`` is the time of the packaging step (format identification, metadata
    extraction, digests, ingestion). normalisation.json holds no times: a normalization is
    dated by the last file it wrote, the lossless proof by the master's frame hashes, and the
    MediaConch check, which writes nothing and runs right after the proof, by the proof.
    Without it, a bag with ``metadata/versions.json`` is dated by its first version's time.

    ``previous``: the previous version's ``premis.xml`` (see the module's docstring): its
    objects, events and agents are kept as they were; a payload that differs from its objects
    is a PackagingError, unless the bag's newest version is a ``migration``, whose new master
    and access files become objects of their own with the events that made them (its
    originals must be the previous version's), or a ``capture``, whose new originals, masters
    and access files do."""
    versions = recorded_versions(bag_dir) or []
    packaged_at = (
        packaged_at
        or (versions[0].created if versions else None)
        or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    metadata = bag_dir / "metadata"
    capture = _read_json(metadata / "capture.json") or {}
    normalisation = _read_json(metadata / "normalisation.json") or {}
    technical = _read_json(metadata / "technical.json") or {}
    mediainfo = _read_json(metadata / "technical.mediainfo.json") or {}
    permission = _read_json(metadata / "permission.json") or {}

    # The one manifest reader (bagit-python 1.9 leaves %25 encoded: a name with % went missing).
    entries, problems = manifest.payload_entries(bag_dir)
    errors = [problem.detail for problem in problems if problem.is_error]
    if errors:  # a record that silently left out a file would say less than the bag
        raise PackagingError(f"{bag_dir.name}: unreadable manifest: {'; '.join(errors[:10])}")
    payload = sorted(
        (
            path
            for path in entries
            if path.split("/")[1:2] and path.split("/")[1] in PAYLOAD_FOLDERS
        ),
        key=lambda path: (PAYLOAD_FOLDERS.index(path.split("/")[1]), path),
    )

    cifa = Agent("cifa-ingest", "software", __version__)
    org_notes = [organisation.address] if organisation.address else []
    org = Agent(organisation.name, "organization", notes=org_notes)
    fetcher = _software(capture.get("tool"), "yt-dlp")
    ffmpeg = _software(normalisation.get("ffmpeg"), "ffmpeg")
    agents = [cifa, org, fetcher, ffmpeg]

    def agent_for(tool: str | None, fallback: str) -> Agent:
        wanted = _software(tool, fallback)
        for agent in agents:
            if agent.identifier == wanted.identifier:
                return agent
        agents.append(wanted)
        return wanted

    events: list[Event] = []
    events.append(_capture_event(capture, fetcher, org))
    digests = _digest_event(capture, entries, payload, packaged_at, cifa)
    if digests.outcome != "success":
        raise PackagingError(f"{bag_dir.name}: {digests.outcome_detail}")
    events.append(digests)
    derivation = _normalisation_events(bag_dir, normalisation, events, ffmpeg, cifa, agent_for)
    events.append(
        Event(
            "format identification",
            packaged_at,
            "each payload file's container and streams identified by ffprobe"
            " (metadata/technical.json)",
            "success",
            [(ffmpeg, "executing program")],
            [(path, "source") for path in payload],
        )
    )
    extractors = [(ffmpeg, "executing program")]
    library = next((d.get("creatingLibrary") for d in mediainfo.values() if d), None)
    if library:
        extractors.append(
            (agent_for(f"MediaInfo {library.get('version', '')}", "MediaInfo"), "executing program")
        )
    events.append(
        Event(
            "metadata extraction",
            packaged_at,
            "technical metadata of each payload file extracted: ffprobe (metadata/technical.json)"
            + (", MediaInfo (metadata/technical.mediainfo.json)" if library else ""),
            "success",
            extractors,
            [(path, "source") for path in payload],
        )
    )
    events.append(
        Event(
            "ingestion",
            packaged_at,
            "packaged as a BagIt 1.0 bag (RFC 8493) with sha256 and sha512 manifests; only a bag"
            " validated in full (every checksum recomputed) is placed in the archive",
            "success",
            [(org, "implementer"), (cifa, "executing program")],
            [(path, "outcome") for path in payload],
        )
    )

    work_id = str((_read_json(metadata / "descriptive.json") or {}).get("id") or bag_dir.name)
    kept = _previous_record(previous) if previous is not None else None
    ids = {path: path for path in payload}  # each payload file's newest object
    made: list[str] = []  # the payload files the newest version made (a migration's, a capture's)
    if kept is not None:
        made = _payload_changes(kept, payload, entries, versions)
        number = versions[-1].number if versions else 1
        ids = {
            path: object_identifier(path, number) if path in made else kept.current[path]
            for path in payload
        }

    def named(name: str) -> Agent:
        """The agent a version names (a person or a body, its type not recorded): one per name,
        the organisation itself when it is named."""
        for agent in agents:
            if agent.identifier == name:
                return agent
        agents.append(Agent(name, ""))
        return agents[-1]

    current = [ids[path] for path in payload]
    later = [_version_event(v, work_id, cifa, org, current, named) for v in versions[1:]]
    migration_events: list[Event] = []
    if made:
        change = versions[-1].change
        migration_events = _migration_events(
            bag_dir, normalisation, made, ids, versions[-1].created, (ffmpeg, cifa, agent_for),
            capture=capture if change is VersionChange.CAPTURE else None,
        )  # fmt: skip
        if change is VersionChange.CAPTURE:
            _recaptured(later[-1], capture, made, ids, fetcher)
        else:
            later[-1].objects = _migration_objects(kept, made, ids)

    root = ET.Element(
        _q("premis"), {"version": "3.0", f"{{{XSI_NS}}}schemaLocation": SCHEMA_LOCATION}
    )
    if kept is None:
        for path in payload:
            objects = derivation.get(path, [])
            _object(root, bag_dir, path, entries[path], technical, mediainfo, objects)
        for event in events:
            _event(root, event)
        known: set[str] = set()
    else:
        root.extend(kept.objects)
        derived = _derivation(migration_events, ids)
        for path in made:
            _object(
                root, bag_dir, path, entries[path], technical, mediainfo, derived.get(path, []),
                identifier=ids[path],
            )  # fmt: skip
        root.extend(kept.events)
        for event in migration_events:
            _event(root, event)
        known = set(kept.agents)
    for event in later:
        if event.identifier not in (kept.event_ids if kept else set()):
            _event(root, event)
    grantor = None
    if permission.get("granted_by"):
        grantor = Agent(str(permission["granted_by"]), "")
        agents.append(grantor)
    if kept is not None:
        root.extend(kept.agents.values())
    for agent in agents:
        if agent.identifier not in known:
            known.add(agent.identifier)
            _agent(root, agent)
    _rights(root, permission, current, grantor, _withdrawn_at(permission, versions))
    ET.indent(root)
    return ET.ElementTree(root)


@dataclass
class _Kept:
    """What a previous version's record hands on: its objects, events and agents, as elements."""

    objects: list[ET.Element]
    events: list[ET.Element]
    agents: dict[str, ET.Element]  # by identifier
    #: Each file's newest object: its identifier and its digests, by the file's path.
    current: dict[str, str]
    digests: dict[str, dict[str, str]]

    @property
    def event_ids(self) -> set[str]:
        return {
            event.findtext(f"{_q('eventIdentifier')}/{_q('eventIdentifierValue')}") or ""
            for event in self.events
        }


def object_identifier(path: str, number: int) -> str:
    """The local identifier of the object of the file at ``path`` (in the bag) as version
    ``number`` made it: the path itself for the first version's files (as every record before
    versions has them), ``path@vN`` for a file a later version made (a migration's master)."""
    return path if number <= 1 else f"{path}@v{number}"


def _object_path(identifier: str) -> tuple[str, int]:
    """The path and version of an object's identifier (see :func:`object_identifier`)."""
    match = _BY_VERSION.match(identifier)
    return (match.group(1), int(match.group(2))) if match else (identifier, 1)


def _previous_record(previous: Path) -> _Kept:
    """The previous version's objects, events and agents, and each file's newest object."""
    try:
        root = ET.parse(previous).getroot()
    except (OSError, ET.ParseError) as exc:
        raise PackagingError(f"the previous PREMIS record cannot be read: {exc}") from None
    if root.tag != _q("premis"):
        raise PackagingError(f"{previous}: not a PREMIS record")
    objects = root.findall(_q("object"))
    newest: dict[str, tuple[int, str]] = {}
    digests: dict[str, dict[str, str]] = {}
    for element in objects:
        identifier = (
            element.findtext(f"{_q('objectIdentifier')}/{_q('objectIdentifierValue')}") or ""
        )
        path, number = _object_path(identifier)
        if path in newest and newest[path][0] >= number:
            continue
        newest[path] = (number, identifier)
        digests[path] = {
            fixity.findtext(_q("messageDigestAlgorithm")) or "": fixity.findtext(
                _q("messageDigest")
            )
            or ""
            for fixity in element.iter(_q("fixity"))
        }
    agents = {}
    for element in root.findall(_q("agent")):
        named = element.findtext(f"{_q('agentIdentifier')}/{_q('agentIdentifierValue')}")
        agents[named or ""] = element
    current = {path: identifier for path, (_number, identifier) in newest.items()}
    return _Kept(objects, root.findall(_q("event")), agents, current, digests)


def _payload_changes(
    kept: _Kept, payload: list[str], entries: dict[str, dict[str, str]], versions: list[Version]
) -> list[str]:
    """The payload files that differ from the previous record's newest objects (other digests,
    or no object), once found to be what the bag's newest version may change: nothing, but for
    a migration its masters and access copies, for a capture any payload file (files it no
    longer makes or receives may be gone)."""
    changed = sorted(
        path
        for path in payload
        if path not in kept.digests
        or any(
            entries[path].get(alg) != kept.digests[path].get(alg) for alg in ("sha256", "sha512")
        )
    )
    gone = sorted(set(kept.digests) - set(payload))
    if not changed and not gone:
        return []
    change = versions[-1].change if versions else VersionChange.INGESTION
    if change not in PAYLOAD_CHANGES:
        raise PackagingError(
            "the payload differs from the previous version's PREMIS objects"
            f" ({', '.join((changed + gone)[:5])}): a version that changes the payload needs the"
            " events that made it"
        )
    originals = [p for p in changed + gone if p.split("/")[1:2] == ["original"]]
    if originals and change is not VersionChange.CAPTURE:
        raise PackagingError(
            f"a {change} makes new masters and access copies from the same originals, but these"
            f" differ from the previous version's: {', '.join(originals[:5])}"
        )
    return changed


def _migration_events(
    bag_dir: Path,
    normalisation: dict[str, Any],
    made: list[str],
    ids: dict[str, str],
    when: str,
    tools: tuple[Agent, Agent, Any],
    *,
    capture: dict[str, Any] | None = None,
) -> list[Event]:
    """A migration's own events, before its version's event: the normalization and validation
    events of its normalisation.json (the master made and proved against the originals), then
    the digests, format identification and metadata extraction of the files it made; every
    object named by its newest object's identifier. With ``capture`` (the record of a
    ``capture`` version), the same events of a re-capture, its originals' digests compared with
    those taken as the bytes arrived (a PackagingError where they differ)."""
    ffmpeg, cifa, agent_for = tools
    noun = "migration" if capture is None else "re-capture"
    events: list[Event] = []
    _normalisation_events(bag_dir, normalisation, events, ffmpeg, cifa, agent_for)
    sources = [(path, "source") for path in made]
    digests = Event(
        "message digest calculation",
        when,
        f"sha256 and sha512 of the {len(made)} payload file(s) the {noun} made, for the"
        " bag's manifests",
        "success",
        [(cifa, "executing program")],
        sources,
    )
    if capture is not None:
        entries, _problems = manifest.payload_entries(bag_dir)
        compared = _digest_event(capture, entries, made, when, cifa)
        if compared.outcome != "success":
            raise PackagingError(f"{bag_dir.name}: {compared.outcome_detail}")
        digests.outcome_detail = compared.outcome_detail
    events += [
        digests,
        Event(
            "format identification",
            when,
            f"each file the {noun} made identified by ffprobe (metadata/technical.json)",
            "success",
            [(ffmpeg, "executing program")],
            sources,
        ),
        Event(
            "metadata extraction",
            when,
            f"technical metadata of each file the {noun} made extracted (metadata/technical.json)",
            "success",
            [(ffmpeg, "executing program")],
            sources,
        ),
    ]
    for event in events:
        event.objects = [(ids.get(path, path), role) for path, role in event.objects]
    return events


def _derivation(events: list[Event], ids: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Each file a migration's normalization made (by path), with its sources' objects and the
    event that made it, for its object's derivation relationship."""
    by_id = {identifier: path for path, identifier in ids.items()}
    derived: dict[str, list[tuple[str, str]]] = {}
    for event in events:
        if event.type != "normalization":
            continue
        sources = [identifier for identifier, role in event.objects if role == "source"]
        for identifier, role in event.objects:
            if role == "outcome" and identifier in by_id:
                derived[by_id[identifier]] = [(source, event.identifier) for source in sources]
    return derived


def _migration_objects(
    kept: _Kept | None, made: list[str], ids: dict[str, str]
) -> list[tuple[str, str]]:
    """A migration event's objects: the masters it replaced (their objects in the previous
    record) its source, the masters it made its outcome; other files where it made no master."""
    masters = [path for path in made if path.startswith("data/master/")] or made
    before = kept.current if kept is not None else {}
    replaced = sorted(
        identifier
        for path, identifier in before.items()
        if path.startswith("data/master/") and (path in masters or path not in ids)
    )
    return [(identifier, "source") for identifier in replaced] + [
        (ids[path], "outcome") for path in masters
    ]


def _recaptured(
    event: Event, capture: dict[str, Any], made: list[str], ids: dict[str, str], fetcher: Agent
) -> None:
    """A capture version's event: the fetcher its executing program too, the originals it
    received that differ from the previous version's its outcome, and what the capture record
    says of each source (its address and the server's date) its outcome detail."""
    event.agents.insert(0, (fetcher, "executing program"))
    event.objects = [(ids[path], "outcome") for path in made if path.startswith("data/original/")]
    recorded = _capture_event(capture, fetcher, fetcher)
    event.outcome_detail = f"captured {recorded.date_time}: {recorded.detail}"


def version_event_identifier(work_id: str, number: int) -> str:
    """The identifier of version ``number``'s event in the record of work ``work_id``."""
    return str(uuid.uuid5(VERSION_EVENTS, f"{work_id}/v{number}"))


def _version_event(
    version: Version,
    work_id: str,
    cifa: Agent,
    org: Agent,
    payload: list[str],
    named: Any,
) -> Event:
    """A version after the first as a PREMIS event: its change (in LoC's words), its time, its
    message; authorised by whoever the version names, carried out by the organisation with
    cifa-ingest. Its objects are the payload files, whose description or rights it changed."""
    detail = version.message
    if version.change is VersionChange.PERMISSION_CHANGE:
        detail = f"rights: {detail}"
    detail = f"version {version.number}: {detail}"
    authorizer = named(version.agent)
    return Event(
        version.change.event_type,
        version.created,
        detail,
        "success",
        [(cifa, "executing program"), (authorizer, "authorizer"), (org, "implementer")],
        [(path, "source") for path in payload],
        outcome_detail=(f"changed: {', '.join(version.fields)}" if version.fields else None),
        identifier=version_event_identifier(work_id, version.number),
    )


def _withdrawn_at(permission: dict[str, Any], versions: list[Version]) -> str | None:
    """When a withdrawn permission was withdrawn: the time of the latest version that changed
    the permission's status (None for any other status, or when no version says)."""
    if permission.get("status") != "withdrawn":
        return None
    for version in reversed(versions[1:]):
        if "permission.status" in version.fields:
            return version.created
    return None


def write_premis(
    bag_dir: Path,
    organisation: OrganisationSettings,
    packaged_at: str | None,
    *,
    previous: Path | None = None,
) -> bytes:
    """premis.xml's bytes (UTF-8, with the XML declaration); see :func:`build_premis`."""
    tree = build_premis(bag_dir, organisation, packaged_at=packaged_at, previous=previous)
    return ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True) + b"\n"


def _capture_event(capture: dict[str, Any], fetcher: Agent, org: Agent) -> Event:
    event = capture.get("event") or {}
    sources = capture.get("sources") or []
    details = [str(event.get("detail") or "captured")]
    originals: list[tuple[str, str]] = []
    for source in sources:
        when = source.get("http_date") or "no Date header"
        details.append(f"source {source.get('index')}: {source.get('url')} (server Date: {when})")
        originals += [(f"data/original/{f['name']}", "outcome") for f in source.get("files", [])]
    return Event(
        "capture",
        str(event.get("date_time") or capture.get("finished") or capture.get("started") or ""),
        "; ".join(details),
        str(event.get("outcome") or "success"),
        [(fetcher, "executing program"), (org, "implementer")],
        originals,
    )


def _digest_event(
    capture: dict[str, Any],
    entries: dict[str, dict[str, str]],
    payload: list[str],
    packaged_at: str,
    cifa: Agent,
) -> Event:
    """sha256 and sha512 of every payload file; the originals' are compared with the digests
    taken as the bytes arrived, so the record says whether they are still the bytes received."""
    received = {
        f"data/original/{f['name']}": f
        for source in capture.get("sources") or []
        for f in source.get("files", [])
    }
    differ = [
        path
        for path, record in received.items()
        if path in entries
        and any(entries[path].get(alg) != record.get(alg) for alg in ("sha256", "sha512"))
    ]
    compared = sum(1 for path in received if path in entries)
    return Event(
        "message digest calculation",
        packaged_at,
        f"sha256 and sha512 of {len(payload)} payload file(s), for the bag's manifests",
        "fail" if differ else "success",
        [(cifa, "executing program")],
        [(path, "source") for path in payload],
        outcome_detail=(
            f"differs from the digest taken at capture: {', '.join(differ)}"
            if differ
            else f"{compared} original(s) identical to the digests taken at capture"
        ),
    )


def _normalisation_events(
    bag_dir: Path,
    normalisation: dict[str, Any],
    events: list[Event],
    ffmpeg: Agent,
    cifa: Agent,
    agent_for: Any,
) -> dict[str, list[tuple[str, str]]]:
    """Append the normalization and validation events of normalisation.json; return, per
    derivative's bag path, its sources' bag paths and the event that made it."""
    derivation: dict[str, list[tuple[str, str]]] = {}
    groups = sorted(normalisation.get("groups") or [], key=lambda g: -len(g["stem"]))
    data = bag_dir / "data"
    for recorded in normalisation.get("events") or []:
        detail = str(recorded.get("detail") or "")
        group = next((g for g in groups if detail.startswith(f"{g['stem']}: ")), None)
        if group is None:
            continue
        originals = [f"data/{o}" for o in group.get("originals", [])]
        renditions = [f"data/{r['name']}" for r in group.get("renditions", [])]
        masters = [r for r in renditions if r.startswith("data/master/")]
        proof = group.get("proof") or {}
        proof_file = bag_dir / "metadata" / "proof" / str(proof.get("master_hashes", ""))
        kind = recorded.get("type")
        if kind == "normalization":
            made = [data / r.removeprefix("data/") for r in renditions]
            latest = max((_mtime(p, "") for p in made), default="") or _mtime(data, "")
            event = Event(
                "normalization",
                latest,
                detail,
                str(recorded.get("outcome") or "success"),
                [
                    (agent_for(recorded.get("agent"), "ffmpeg"), "executing program"),
                    (cifa, "executing program"),
                ],
                [(o, "source") for o in originals] + [(r, "outcome") for r in renditions],
                # What the master could not carry, and what it keeps as metadata instead.
                outcome_detail=recorded.get("outcome_detail"),
            )
            for rendition in renditions:
                derivation[rendition] = [(o, event.identifier) for o in originals]
        elif kind == "validation":
            is_proof = "lossless proof" in detail
            agents = (
                [(cifa, "validator"), (ffmpeg, "executing program")]
                if is_proof
                else [(agent_for(recorded.get("agent"), "MediaConch"), "validator")]
            )
            event = Event(
                "validation",
                _mtime(proof_file, _mtime(data, "")),
                detail,
                str(recorded.get("outcome") or ""),
                agents,
                ([(o, "source") for o in originals] if is_proof else [])
                + [(m, "source") for m in masters],
                outcome_detail=recorded.get("outcome_detail"),
            )
        else:
            continue
        events.append(event)
    return derivation


def _object(
    root: ET.Element,
    bag_dir: Path,
    path: str,
    digests: dict[str, str],
    technical: dict[str, Any],
    mediainfo: dict[str, Any],
    sources: list[tuple[str, str]],
    *,
    identifier: str | None = None,
) -> None:
    file = bag_dir / path
    key = path.removeprefix("data/")
    element = _add(root, "object", **{f"{{{XSI_NS}}}type": "premis:file"})
    _identifier(element, "objectIdentifier", "local", identifier or path)
    characteristics = _add(element, "objectCharacteristics")
    _add(characteristics, "compositionLevel", "0")
    for algorithm in ("sha256", "sha512"):
        if algorithm in digests:
            fixity = _add(characteristics, "fixity")
            _add(fixity, "messageDigestAlgorithm", algorithm)
            _add(fixity, "messageDigest", digests[algorithm])
            _add(fixity, "messageDigestOriginator", DIGEST_ORIGINATOR)
    _add(characteristics, "size", str(file.stat().st_size))
    for name, version, pronom in file_formats(file, technical.get(key), mediainfo.get(key)):
        fmt = _add(characteristics, "format")
        designation = _add(fmt, "formatDesignation")
        _add(designation, "formatName", name)
        if version:
            _add(designation, "formatVersion", version)
        if pronom:
            registry = _add(fmt, "formatRegistry")
            _add(registry, "formatRegistryName", "PRONOM")
            _add(registry, "formatRegistryKey", pronom)
            _add(registry, "formatRegistryRole", "specification")
    if sources:
        relationship = _add(element, "relationship")
        _add(relationship, "relationshipType", "derivation")
        _add(relationship, "relationshipSubType", "has source")
        for source, _ in sources:
            _identifier(relationship, "relatedObjectIdentifier", "local", source)
        _identifier(relationship, "relatedEventIdentifier", "UUID", sources[0][1])


def _event(root: ET.Element, event: Event) -> None:
    element = _add(root, "event")
    _identifier(element, "eventIdentifier", "UUID", event.identifier)
    _add(element, "eventType", event.type)
    _add(element, "eventDateTime", event.date_time)
    _add(_add(element, "eventDetailInformation"), "eventDetail", event.detail)
    outcome = _add(element, "eventOutcomeInformation")
    _add(outcome, "eventOutcome", event.outcome)
    if event.outcome_detail:
        detail = _add(outcome, "eventOutcomeDetail")
        _add(detail, "eventOutcomeDetailNote", event.outcome_detail)
    for agent, role in event.agents:
        link = _identifier(element, "linkingAgentIdentifier", "local", agent.identifier)
        _add(link, "linkingAgentRole", role)
    for path, role in event.objects:
        link = _identifier(element, "linkingObjectIdentifier", "local", path)
        _add(link, "linkingObjectRole", role)


def _agent(root: ET.Element, agent: Agent) -> None:
    element = _add(root, "agent")
    _identifier(element, "agentIdentifier", "local", agent.identifier)
    _add(element, "agentName", agent.name)
    if agent.kind:
        _add(element, "agentType", agent.kind)
    if agent.version:
        _add(element, "agentVersion", agent.version)
    for note in agent.notes:
        _add(element, "agentNote", note)


def _rights(
    root: ET.Element,
    permission: dict[str, Any],
    payload: list[str],
    grantor: Agent | None,
    withdrawn_at: str | None = None,
) -> None:
    """The permission record as a rights statement. Its basis is a licence: a grant of
    permission by the rights holder (the filmmaker) to the archive. A withdrawn permission
    grants no act; a note says it was withdrawn and when (``withdrawn_at``, the time of the
    version that recorded it), and the licence's dates end then."""
    if not permission:
        return
    statement = _add(_add(root, "rights"), "rightsStatement")
    _identifier(statement, "rightsStatementIdentifier", "UUID", str(uuid.uuid4()))
    _add(statement, "rightsBasis", "License")
    licence = _add(statement, "licenseInformation")
    withdrawn = permission.get("status") == "withdrawn"
    terms = f"permission {permission.get('status')}"
    if permission.get("granted_by"):
        terms += (
            f" (granted by {permission['granted_by']})"
            if withdrawn
            else (f" by {permission['granted_by']}")
        )
    if permission.get("basis"):
        terms += f": {permission['basis']}"
    _add(licence, "licenseTerms", terms)
    if withdrawn:
        when = f" on {withdrawn_at}" if withdrawn_at else " (when: not recorded)"
        _add(
            licence,
            "licenseNote",
            f"withdrawn by the rights holder{when}: no act is granted any more; the preservation"
            " files are kept unless a deaccession is requested",
        )
    if permission.get("notes"):
        _add(licence, "licenseNote", str(permission["notes"]))
    if permission.get("date"):
        dates = _add(licence, "licenseApplicableDates")
        _add(dates, "startDate", str(permission["date"]))
        if withdrawn and withdrawn_at:
            _add(dates, "endDate", withdrawn_at[:10])
    if permission.get("status") == "granted":
        for use in permission.get("covers") or []:
            act, restriction, meaning = ACTS.get(use, (use, None, use))
            granted = _add(statement, "rightsGranted")
            _add(granted, "act", act)
            if restriction:
                _add(granted, "restriction", restriction)
            if permission.get("date"):
                _add(_add(granted, "termOfGrant"), "startDate", str(permission["date"]))
            _add(granted, "rightsGrantedNote", f"covers {use}: {meaning}")
    for path in payload:
        _identifier(statement, "linkingObjectIdentifier", "local", path)
    if grantor is not None:
        link = _identifier(statement, "linkingAgentIdentifier", "local", grantor.identifier)
        _add(link, "linkingAgentRole", "grantor")
