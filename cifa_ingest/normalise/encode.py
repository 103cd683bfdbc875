"""Normalisation's entry point: for each film (or part) of a work, a preservation master (by the
format policy: FFV1 in Matroska, a bit-for-bit remux, or the original kept), an access copy
(H.264 + AAC in MP4, WebVTT subtitles, a poster and a contact sheet), and the proof that the
master is lossless (:mod:`cifa_ingest.normalise.proof`).

One decode of the source feeds every output: the master, the access copy, the poster, the contact
sheet and the source's frame hashes come out of a single ffmpeg run, built here from the parts
each module of this package gives: :mod:`~cifa_ingest.normalise.master` (the master's options),
:mod:`~cifa_ingest.normalise.audio` (its lossless sound),
:mod:`~cifa_ingest.normalise.kept_metadata` and :mod:`~cifa_ingest.normalise.side_data` (what it
keeps as metadata, its HDR metadata), :mod:`~cifa_ingest.normalise.attached_pictures` (cover
art), :mod:`~cifa_ingest.normalise.access` and :mod:`~cifa_ingest.normalise.subtitles` (the
access files), :mod:`~cifa_ingest.normalise.master_hashes` (the master decoded for its proof,
beside the encode where it can be) and :mod:`~cifa_ingest.normalise.fidelity` (the record, and
the check of the master file).

The master changes nothing about the picture or the sound: FFV1 version 3, intra-only, slice CRCs
(RFC 9043), the source's pixel format, timestamps (``-fps_mode passthrough``), orientation
(``-noautorotate``) and colour properties; audio in a lossless codec that declares its channel
layout and bit depth (:func:`cifa_ingest.normalise.audio.audio_codec`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.config import NormaliseSettings
from cifa_ingest.errors import ProofFailed
from cifa_ingest.normalise import mediaconch as conformance
from cifa_ingest.normalise import proof
from cifa_ingest.normalise.access import access_options, access_role, picture_outputs
from cifa_ingest.normalise.attached_pictures import (
    attached_pictures,
    extract_pictures,
    picture_options,
)
from cifa_ingest.normalise.audio import audio_samples
from cifa_ingest.normalise.fidelity import check_master_file, inventory
from cifa_ingest.normalise.format_policy import Action, Profile
from cifa_ingest.normalise.kept_metadata import kept_as_tags, missed_titles
from cifa_ingest.normalise.master import (
    check_space,
    estimate_master_bytes,
    master_options,
    remux_options,
    with_options,
)
from cifa_ingest.normalise.master_hashes import (
    bind,
    decode_master,
    proof_beside_the_encode,
    proof_reader,
    tee_list,
)
from cifa_ingest.normalise.results import GroupResult, Normalised, Rendition
from cifa_ingest.normalise.run_limits import run_progress, run_timeout
from cifa_ingest.normalise.side_data import edit_master, hdr_edits, sources_side_data
from cifa_ingest.normalise.streams import master_streams, select
from cifa_ingest.normalise.subtitles import subtitle_outputs, subtitles_to_webvtt
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """One film or one part to normalise: its stem (``<id>`` or ``<id>-part-NN``), its received
    media (one progressive file, or separate video and audio streams) and subtitle files with
    their languages."""

    stem: str
    media: list[Path]
    subtitles: list[tuple[Path, str | None]] = field(default_factory=list)


def normalise_work(
    groups: list[Group],
    bag_root: Path,
    proof_dir: Path,
    settings: NormaliseSettings,
    profile_name: str,
    profile: Profile,
    mediaconch_policy: Path | None = None,
    encode_slot: Callable[[str], AbstractContextManager[object]] | None = None,
) -> Normalised:
    """Normalise every film or part of a work (see :func:`normalise_group`).

    ``encode_slot(stem)`` is held around each film's or part's encodes and proof (the machine's
    limit of encodes at once, :func:`cifa_ingest.archive.slots.encode_slots`); taken per part, so
    that a long work in parts does not keep a slot between its parts' encodes."""
    result = Normalised(ffmpeg_version=runner.ffmpeg_version(), profile=profile_name)
    for group in groups:
        with encode_slot(group.stem) if encode_slot else nullcontext():
            done = normalise_group(
                group.stem, group.media, bag_root, proof_dir, settings, profile, mediaconch_policy
            )
        if profile.access and group.subtitles:
            done.renditions += subtitles_to_webvtt(
                group.subtitles, bag_root / "access", group.stem, done.notes
            )
        result.groups.append(done)
    return result


def normalise_group(
    stem: str,
    originals: list[Path],
    bag_root: Path,
    proof_dir: Path,
    settings: NormaliseSettings,
    profile: Profile,
    mediaconch_policy: Path | None = None,
) -> GroupResult:
    """Make the master, the access copy and the proof for one film (or part): ``originals`` is
    one progressive file, or the separately received video and audio streams. An FFV1 master is
    then checked against ``mediaconch_policy`` (not run without one).

    A remux whose proof fails is not the end of the film: the copy is not the source (ffmpeg
    5.1's Matroska muxer moves a WebM's picture 7 ms against its Opus sound, say), but a decode
    to FFV1 is lossless whatever the container did, so the film is normalised again that way,
    and the record says why."""
    probes = [runner.probe(original) for original in originals]
    action, reason = profile.decide(probes)
    job = _Job(stem, originals, bag_root, proof_dir, settings, profile, mediaconch_policy)
    if action is not Action.REMUX:
        return _normalise_as(action, reason, probes, job)
    try:
        return _normalise_as(action, reason, probes, job)
    except ProofFailed as refused:
        log.warning("%s: the remux failed its proof; decoding to FFV1 instead: %s", stem, refused)
        (bag_root / "master" / f"{stem}.mkv").unlink(missing_ok=True)
        instead = f"{reason}; the remux failed its proof ({refused}), so decoded to FFV1 instead"
        result = _normalise_as(Action.FFV1, instead, probes, job)
        result.notes.append(f"remux refused by its proof, decoded to FFV1 instead: {refused}")
        return result


@dataclass(frozen=True)
class _Job:
    """What :func:`normalise_group` was asked, as each attempt (a remux, then FFV1) takes it."""

    stem: str
    originals: list[Path]
    bag_root: Path
    proof_dir: Path
    settings: NormaliseSettings
    profile: Profile
    mediaconch_policy: Path | None


def _normalise_as(
    action: Action, reason: str, probes: list[dict[str, Any]], job: _Job
) -> GroupResult:
    """:func:`normalise_group` by ``action``, for the reason given."""
    stem, originals, bag_root, proof_dir = job.stem, job.originals, job.bag_root, job.proof_dir
    settings, profile, mediaconch_policy = job.settings, job.profile, job.mediaconch_policy
    result = GroupResult(
        stem=stem,
        action=str(action),
        reason=reason,
        originals=[o.relative_to(bag_root).as_posix() for o in originals],
        original_bytes=sum(o.stat().st_size for o in originals),
    )
    master = bag_root / "master" / f"{stem}.mkv"
    access_dir = bag_root / "access"
    master.parent.mkdir(parents=True, exist_ok=True)
    access_dir.mkdir(parents=True, exist_ok=True)
    proof_dir.mkdir(parents=True, exist_ok=True)
    if action is Action.FFV1:
        check_space(
            estimate_master_bytes(originals, probes, master.parent, settings),
            bag_root,
            settings,
            stem,
        )

    inputs = [ffmpeg.input(str(o)) for o in originals]
    hashes = proof.HashPlan.for_action(action, probes)
    source_hashes = proof_dir / f"{stem}.source.framemd5"
    master_hashes = proof_dir / f"{stem}.master.framemd5"
    outputs: list[Any] = []
    if action is not Action.KEEP:
        outputs.append(hashes.output(select(inputs, probes, "Va"), source_hashes, source=True))
    if profile.access:
        access = access_dir / f"{stem}.mp4"
        outputs.append(
            ffmpeg.output(
                *select(inputs, probes, "V", first_only=True),
                *select(inputs, probes, "a"),
                str(access),
                **access_options(probes, settings),
            )
        )
        outputs += picture_outputs(inputs, probes, access_dir, stem, settings.contact_sheet_tiles)
        outputs += subtitle_outputs(inputs, probes, access_dir, stem)
    if action is Action.KEEP and not outputs:
        result.notes.append("format policy: keep, and no access copy")
        return result

    options = master_options(probes, settings) if action is Action.FFV1 else remux_options(probes)
    pictures = attached_pictures(probes) if action is not Action.KEEP else []
    side_data: list[dict[str, Any]] = []
    if action is not Action.KEEP:
        result.fidelity.streams = inventory(probes, result.originals, pictures)
        kept = kept_as_tags(probes, remux=action is Action.REMUX)
        result.fidelity.kept_as_metadata = [tag.record() for tag in kept]
        side_data = result.fidelity.side_data = sources_side_data(originals, probes)
        options = with_options(options, missed_titles(originals, probes))
    # A remux copies the codec's own stream, its side data (SEI) in it.
    edits = hdr_edits(side_data) if action is Action.FFV1 else {}

    def graph(master_target: str | None = None) -> Any:
        """The one decode's outputs; the master's to ``master_target`` (a tee list) if given."""
        if action is Action.KEEP:
            return ffmpeg.merge_outputs(*outputs)
        master_output = ffmpeg.output(
            *master_streams(inputs, probes),
            master_target or str(master),
            **options,
            **({"f": "tee"} if master_target else {}),
        )
        return ffmpeg.merge_outputs(master_output, *outputs)

    # An edited master is decoded for its proof once edited: its packets then carry the HDR
    # metadata as side data, which the stream decoded beside the encode has not.
    beside = action is Action.FFV1 and proof_beside_the_encode(probes, options) and not edits
    with tempfile.TemporaryDirectory(prefix="proof-", dir=bag_root.parent) as scratch:
        decoded_packets = Path(scratch) / f"{stem}.decoded-packets.framemd5"
        if pictures:
            mapped = sum(
                s.get("codec_type") == "attachment" for p in probes for s in p.get("streams", [])
            )
            files = extract_pictures(originals, pictures, Path(scratch))
            options = with_options(options, picture_options(pictures, files, mapped))
        log.info(
            "%s: %s (%s): one decode for master, access copy and source hashes%s",
            stem,
            action,
            reason,
            "; the master decoded for its proof as it is written" if beside else "",
        )
        if beside:
            piped = runner.run_ffmpeg_piped(
                lambda url: graph(tee_list(master, url)),
                proof_reader(probes, hashes, master_hashes, decoded_packets),
                input_args=["-noautorotate"],
                progress=run_progress(stem, probes, settings),
                timeout=run_timeout(probes, settings),
                reader_grace=settings.stall_seconds,
            )
            command, hashes_command = piped.writer, piped.reader
            log.debug("%s: as one shell line: %s", stem, piped.shell_line)
        else:
            command = runner.run_ffmpeg(
                graph(),
                input_args=["-noautorotate"],
                progress=run_progress(stem, probes, settings),
                timeout=run_timeout(probes, settings),
            )
        sources = ", ".join(result.originals)
        if edits:
            result.fidelity.master_edits = edit_master(master, edits)
        if action is not Action.KEEP:
            result.master_bytes = master.stat().st_size
            result.renditions.append(
                Rendition(
                    f"master/{master.name}", f"preservation master ({action})", sources, command
                )
            )
        for path in sorted(access_dir.glob(f"{stem}.*")):
            result.renditions.append(
                Rendition(f"access/{path.name}", access_role(path), sources, command)
            )
        if action is Action.KEEP:
            return result
        binding = None
        if beside:
            binding = bind(master, decoded_packets, Path(scratch) / "file-packets.framemd5")
        if binding is None:
            hashes_command = decode_master(master, hashes, master_hashes, probes, settings)
    result.proof = proof.compare(source_hashes, master_hashes, hashes.method)
    result.proof.binding = binding
    result.proof.master_hashes_command = hashes_command
    if not result.proof.passed:
        raise ProofFailed(f"{stem}: the master is not lossless: {result.proof.first_difference}")
    result.audio_samples = audio_samples(hashes, master_hashes, probes)
    log.info("%s: proof passed (%s)", stem, result.proof.summary)
    result.fidelity.checked = check_master_file(
        master, probes, pictures, side_data, copied=action is Action.REMUX
    )
    if action is Action.FFV1:
        result.conformance = conformance.check_master(master, mediaconch_policy)
        if result.conformance.outcome == "fail":
            log.warning("%s: MediaConch policy failed: %s", stem, result.conformance.failed_rules)
    return result
