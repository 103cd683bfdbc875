"""The master's sound: which lossless codec holds each audio stream, by its decoded samples
(:data:`LOSSLESS_AUDIO`), how its channel layout and bit depth are declared, the end trim an
MP4's edit list asks for, and the count of the master's samples against those its source
declares, checked after the proof.

FLAC where it holds the decoded samples (integers of up to 24 bits), else WavPack (float, 32-bit
and 8-bit integers: FLAC from a float decode would not be lossless, and the proof would catch it),
PCM only for 64-bit float.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifa_ingest.errors import ProofFailed, UnknownSampleFormat
from cifa_ingest.normalise import proof
from cifa_ingest.normalise.proof import PCM_OF
from cifa_ingest.normalise.streams import streams_of

#: Decoded sample format -> lossless audio codec in the master (see :func:`audio_codec`): FLAC
#: for 16-bit integers (and 32-bit ones holding at most 24 bits); WavPack for float, 32-bit and
#: 8-bit integers, which FLAC cannot hold; PCM for 64-bit float, which neither holds. Both FLAC
#: and WavPack declare the channel layout and the bit depth, which PCM in Matroska does not.
LOSSLESS_AUDIO = {
    **{sample_fmt: "wavpack" for sample_fmt in PCM_OF},
    "s16": "flac",
    "s16p": "flac",
    "dbl": PCM_OF["dbl"],
    "dblp": PCM_OF["dblp"],
}

#: Where MediaInfo (23.04) reads a Matroska track's channel layout: FLAC's channel mask, not
#: WavPack's (ffprobe reads both).
MEDIAINFO_READS_LAYOUT = {"flac"}

#: Samples per WavPack block in a master (see :func:`cifa_ingest.normalise.master.master_options`).
WAVPACK_BLOCK_SAMPLES = 4096


def declares_layout(codec: str) -> bool:
    """Whether an audio codec in Matroska declares its channel layout (ffprobe reads it back):
    all but PCM, which Matroska describes by its channel count only."""
    return not codec.startswith("pcm_")


def audio_bits(stream: dict[str, Any]) -> int | None:
    """The bit depth an audio stream declares (a lossless codec's: a lossy one has none)."""
    for key in ("bits_per_raw_sample", "bits_per_sample"):
        value = str(stream.get(key) or "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def audio_codec(stream: dict[str, Any], index: int = 0) -> str:
    """The master's codec for an audio stream, by its decoded samples (:data:`LOSSLESS_AUDIO`):
    FLAC where it holds them (16-bit integers; 32-bit integers of at most 24 significant bits,
    a 24-bit source's, which FLAC stores and declares as 24 bits where PCM would say 32; at most
    8 channels), WavPack where FLAC cannot (float, 32 bits, 8 bits, more channels)."""
    sample_fmt = stream.get("sample_fmt", "")
    codec = LOSSLESS_AUDIO.get(sample_fmt)
    if codec is None:
        raise UnknownSampleFormat(index, sample_fmt)
    bits = audio_bits(stream)
    if codec == "wavpack" and sample_fmt in ("s32", "s32p") and bits and 16 < bits <= 24:
        codec = "flac"
    if codec == "flac" and int(stream.get("channels") or 0) > 8:
        codec = "wavpack"
    return codec


def declared_layout(stream: dict[str, Any]) -> str | None:
    """The channel layout a source declares (ffprobe's name: ``5.1``, ``stereo``,
    ``FL+FR+LFE``), None where it declares none."""
    layout = str(stream.get("channel_layout") or "")
    return None if layout in ("", "unknown") or "channels" in layout else layout


def audio_trims(probes: list[dict[str, Any]]) -> dict[str, str]:
    """Each audio stream cut after the samples its source declares (an MP4's edit list trims
    the encoder's padding, and ffmpeg 5.1's decode does not: :class:`proof.HashPlan`)."""
    return {
        f"filter:a:{index}": f"atrim=end_sample={end}"
        for index, end in enumerate(proof.HashPlan.audio_ends(probes))
        if end is not None
    }


#: Bytes per sample of the PCM the proof hashes audio as.
PCM_BYTES = {"pcm_u8": 1, "pcm_s16le": 2, "pcm_s32le": 4, "pcm_f32le": 4, "pcm_f64le": 8}


def audio_samples(
    hashes: proof.HashPlan, master_hashes: Path, probes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The master's samples, counted in its decode's hash list, against the samples its source
    declares (:meth:`proof.HashPlan.declared`: an MP4's edit list), for each audio stream that
    declares them. ProofFailed if the master holds more: the end trim was not applied. Fewer
    is the source's own shortfall (its decode ends early, and the proof compared the master
    with it), and is recorded."""
    decoded = proof.read_framemd5(master_hashes)
    video = len(streams_of(probes, "video"))
    counts = []
    for index, (stream, declared) in enumerate(
        zip(streams_of(probes, "audio"), hashes.declared_samples, strict=False)
    ):
        if declared is None:
            continue
        width = int(stream.get("channels") or 1) * PCM_BYTES.get(
            PCM_OF.get(stream.get("sample_fmt", ""), "pcm_f64le"), 8
        )
        held = decoded.get(video + index)
        samples = sum(size for _, size, _ in held.frames) // width if held else 0
        record = {
            "stream": video + index,
            "declared": declared,
            "declared_by": "the source's container (an MP4 or MOV: its edit list, which trims"
            " the encoder's priming and padding)",
            "master": samples,
        }
        if samples > declared:
            raise ProofFailed(
                f"stream {video + index} (audio): the source declares {declared} samples, the"
                f" master holds {samples}"
            )
        if samples < declared:
            record["note"] = "the source decodes to fewer samples than it declares"
        counts.append(record)
    return counts
