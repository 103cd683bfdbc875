"""The master's frame hashes for its proof: an FFV1 master is decoded as it is written, fed by a
tee to a pipe, so that the proof uses the cores the encode leaves idle instead of following it,
and the file's packets are then bound to the stream decoded (:func:`bind`); a remux, or a master
whose headers are not final from its first byte, is decoded from the file once written.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.config import NormaliseSettings
from cifa_ingest.normalise import proof
from cifa_ingest.normalise.run_limits import run_progress, run_timeout
from cifa_ingest.normalise.streams import select
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)


def tee_list(master: Path, pipe_url: str) -> str:
    """The tee muxer's outputs: the master file, and the same Matroska stream to the pipe. The
    file name is escaped as the tee list reads it (a backslash before any character but letters,
    digits and ``/._-``), so that no character of a path (``|``, ``[``, a quote, a space) is
    taken for the list's syntax."""
    escaped = re.sub(r"([^A-Za-z0-9/._-])", r"\\\1", str(master.resolve()))
    return f"[f=matroska]{escaped}|[f=matroska]{pipe_url}"


def proof_reader(
    probes: list[dict[str, Any]], hashes: proof.HashPlan, master_hashes: Path, packets: Path
) -> Any:
    """The graph that reads the master's Matroska stream from the pipe: its frame hashes (the
    proof) and its packets' hashes (to bind them to the file, :func:`bind`)."""
    piped = ffmpeg.input("pipe:0", f="matroska", threads=proof_decoder_threads(), noautorotate=None)
    # The master holds the source's streams, in the same order: the sources' probes select them.
    streams = {"streams": [s for probe in probes for s in probe.get("streams", [])]}
    return ffmpeg.merge_outputs(
        hashes.output(select([piped], [streams], "Va"), master_hashes),
        ffmpeg.output(piped, str(packets), f="framemd5", c="copy"),
    )


def proof_beside_the_encode(probes: list[dict[str, Any]], options: dict[str, Any]) -> bool:
    """Whether an FFV1 master can be decoded for its proof as it is written, beside the encode,
    on the cores the encode leaves idle (a tee to a pipe; see the README's benchmark), rather
    than read back and decoded once it is written.

    Only where the master's headers are final from its first byte, so that the stream decoded
    is the file's (:func:`bind` checks it): not with chapters, which the tee muxer of our
    ffmpeg (5.1) drops; not with FLAC audio, whose header (STREAMINFO: the sample count and the
    MD5 of the sound) the encoder completes at the end, into the file but not into the pipe."""
    if any(probe.get("chapters") for probe in probes):
        return False
    return not any(
        value == "flac" for key, value in options.items() if key.split(":")[0] in ("c", "codec")
    )


def proof_decoder_threads() -> int:
    """Threads for the decode beside the encode: about its share of the work (a quarter of the
    CPU time, measured on 1080p), at least one. More would only take turns from the encode,
    which is the longer path: on 2 cores one thread made the whole run 2% faster than ffmpeg's
    default of one per core (median of 7 runs each, see the README's benchmark)."""
    return max(1, len(os.sched_getaffinity(0)) // 4)


def bind(master: Path, decoded_packets: Path, file_packets: Path) -> str | None:
    """Tie the proof, taken from the master's packets as the encoder wrote them to the pipe, to
    the master file: the file's packets, read back, must be those same packets, headers and
    all. Hashing packets costs a read of the file, a fraction of its decode. None, with a
    warning, if they differ: the master file is then decoded for the proof after all."""
    runner.run_ffmpeg(
        ffmpeg.output(ffmpeg.input(str(master)), str(file_packets), f="framemd5", c="copy")
    )
    difference, count = proof.same_packets(decoded_packets, file_packets)
    if difference:
        log.warning(
            "%s: the file's packets differ from the stream decoded beside the encode (%s);"
            " decoding the file for the proof",
            master.name,
            difference,
        )
        return None
    return (
        f"decoded from the encoder's output as it was written; the file's {count} packets,"
        " read back, are identical to those decoded (framemd5 of the packets)"
    )


def decode_master(
    master: Path,
    hashes: proof.HashPlan,
    master_hashes: Path,
    probes: list[dict[str, Any]],
    settings: NormaliseSettings,
) -> list[str]:
    """The master's frame hashes, from the file once it is written: remuxes, masters not decoded
    beside their encode (:func:`proof_beside_the_encode`), and masters whose file differs from
    the stream decoded beside it (:func:`bind`)."""
    log.info("%s: decoding the master for the proof", master.stem)
    master_probe = runner.probe(master)
    master_input = ffmpeg.input(str(master))
    return runner.run_ffmpeg(
        hashes.output(select([master_input], [master_probe], "Va"), master_hashes),
        input_args=["-noautorotate"],
        progress=run_progress(f"{master.stem} proof", probes, settings),
        timeout=run_timeout(probes, settings),
    )
