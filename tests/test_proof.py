"""The proof compares presentation times relative to each stream's first frame, and the streams'
start offsets against each other: a container's start offset (Opus's pre-skip in a WebM) is no
difference, a shift of sound against picture is one.

Unit tests on hand-written framemd5 lists, and end to end with the real ffmpeg on a VP9+Opus WebM
(issue 14)."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import ffmpeg
import pytest

from cifa_ingest.config import format_policy_path, load_settings, mediaconch_policy_path
from cifa_ingest.normalise import encode as normalise
from cifa_ingest.normalise.format_policy import Action, load_policy
from cifa_ingest.normalise.proof import HashPlan, Proof, compare, read_framemd5
from cifa_ingest.normalise.results import GroupResult
from tests.helpers import ffprobe

VIDEO, AUDIO = Fraction(1, 1000), Fraction(1, 48000)
#: Per stream index: its kind, time base and frames' presentation times.
Streams = dict[int, tuple[str, Fraction, list[int]]]


def _framemd5(path: Path, streams: Streams) -> Path:
    """A framemd5 list as ffmpeg writes it: per stream its kind, time base and frames' pts; the
    frames' content is derived from stream and frame number, so equal in source and master."""
    lines = ["#format: frame checksums", "#version: 2", "#hash: MD5"]
    for index, (kind, time_base, _) in sorted(streams.items()):
        lines += [f"#tb {index}: {time_base.numerator}/{time_base.denominator}"]
        lines += [f"#media_type {index}: {kind}"]
    lines.append("#stream#, dts,        pts, duration,     size, hash")
    rows = [
        (pts * time_base, index, number, pts)
        for index, (_, time_base, times) in streams.items()
        for number, pts in enumerate(times)
    ]
    for _, index, number, pts in sorted(rows):
        lines.append(f"{index}, {pts}, {pts}, 1, 4096, {index:04x}{number:028x}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _film(video_start_ms: int, audio_start_samples: int) -> Streams:
    """25 fps picture and 1024-sample blocks of 48 kHz sound, each from its own start."""
    return {
        0: ("video", VIDEO, [video_start_ms + 40 * n for n in range(25)]),
        1: ("audio", AUDIO, [audio_start_samples + 1024 * n for n in range(47)]),
    }


def _compare(tmp_path: Path, source: Streams, master: Streams) -> Proof:
    return compare(
        _framemd5(tmp_path / "source.framemd5", source),
        _framemd5(tmp_path / "master.framemd5", master),
        "test",
    )


@pytest.mark.parametrize("offset_ms", [-7, 7, 1000])
def test_a_container_start_offset_on_every_stream_is_no_difference(
    tmp_path: Path, offset_ms: int
) -> None:
    """What a WebM with Opus looks like next to its master: every stream starts `offset_ms`
    earlier or later in one file than in the other (the source's 14 ms and 7 ms are the real
    VP9+Opus WebM's)."""
    source = _film(14, 336)
    master = _film(14 + offset_ms, 336 + 48 * offset_ms)
    result = _compare(tmp_path, source, master)
    assert result.passed, result.first_difference
    assert result.summary == "video 25, audio 47 frames identical"


def test_a_shift_within_the_tolerance_is_no_difference(tmp_path: Path) -> None:
    """A Matroska master counts in milliseconds: a start rounded by 1 ms is the same start."""
    result = _compare(tmp_path, _film(14, 336), _film(7, 0 + 48))
    assert result.passed, result.first_difference


@pytest.mark.parametrize(
    ("audio_shift_ms", "expected"),
    [
        (
            200,
            "stream 1 (audio) is shifted by +0.200 s against stream 0 (video): its block 0 is"
            " at 0.007 s in the source, 0.207 s in the master; stream 0's frame 0 at 0.014 s"
            " and 0.014 s",
        ),
        (
            -200,
            "stream 0 (video) is shifted by +0.200 s against stream 1 (audio): its frame 0 is"
            " at 0.014 s in the source, 0.014 s in the master; stream 1's block 0 at 0.007 s"
            " and -0.193 s",
        ),
    ],
)
def test_sound_shifted_against_picture_fails_naming_both_streams(
    tmp_path: Path, audio_shift_ms: int, expected: str
) -> None:
    """Every frame and block identical, each stream's own timing identical: only where the
    sound starts against the picture changed, by more than the tolerance."""
    source = _film(14, 336)
    master = _film(14, 336 + 48 * audio_shift_ms)
    result = _compare(tmp_path, source, master)
    assert not result.passed
    assert result.first_difference == expected


def test_a_remux_is_held_to_the_same_alignment(tmp_path: Path) -> None:
    """A remux once had ``shift_allowed``, which let each stream move on its own: every master,
    remuxed or decoded, is now held to the same rule: a constant shift passes, and a shift of
    one stream fails."""
    source = _film(14, 336)
    assert _compare(tmp_path, source, _film(7, 0)).passed
    shifted = _compare(tmp_path, source, _film(14, 336 + 4800))
    assert not shifted.passed
    assert shifted.first_difference is not None
    assert shifted.first_difference.startswith("stream 1 (audio) is shifted by +0.100 s")


def test_a_frame_moved_within_its_stream_fails_naming_stream_frame_and_times(
    tmp_path: Path,
) -> None:
    source = _film(14, 336)
    master = _film(7, 0)
    kind, time_base, times = master[0]
    master[0] = (kind, time_base, [*times[:3], times[3] + 20, *times[4:]])
    result = _compare(tmp_path, source, master)
    assert result.first_difference == (
        "stream 0 (video) frame 3: at 0.134 s in the source, 0.147 s in the master"
        " (0.120 s and 0.140 s after the stream's first frame)"
    )


def test_packets_listed_in_decoding_order(tmp_path: Path) -> None:
    """A remux's lists are packets in decoding order (a B-frame after the later frame it refers
    to); with every stream moved alike they pass, with the sound moved alone they fail."""
    order = [0, 3, 1, 2, 6, 4, 5]
    source = {
        0: ("video", VIDEO, [80 + 40 * n for n in order]),
        1: ("audio", AUDIO, [48 * 80 + 1024 * n for n in range(10)]),
    }
    master = {
        0: ("video", VIDEO, [40 * n for n in order]),
        1: ("audio", AUDIO, [1024 * n for n in range(10)]),
    }
    assert _compare(tmp_path, source, master).passed
    late = {**master, 1: ("audio", AUDIO, [48 * 80 + 1024 * n for n in range(10)])}
    result = _compare(tmp_path, source, late)
    assert result.first_difference is not None
    assert result.first_difference.startswith("stream 1 (audio) is shifted by +0.080 s against")


# End to end: a real VP9+Opus WebM, normalised by the real ffmpeg.

SETTINGS = load_settings()


def _webm(path: Path) -> Path:
    """VP9 (lossless) and Opus in WebM: Opus's pre-skip starts the file at -0.007 s."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", "1", "-c:v", "libvpx-vp9", "-lossless", "1", "-c:a", "libopus", str(path)],
        check=True,
    )  # fmt: skip
    return path


def _normalise_webm(tmp_path: Path, profile: str = "default") -> tuple[Path, GroupResult]:
    source = _webm(tmp_path / "s.webm")
    assert float(ffprobe(source)["format"]["start_time"]) < 0  # the start the proof tripped on
    bag = tmp_path / "bag"
    (bag / "original").mkdir(parents=True)
    placed = bag / "original" / source.name
    os.replace(source, placed)
    policy = load_policy(format_policy_path(SETTINGS))
    result = normalise.normalise_group(
        "film",
        [placed],
        bag,
        tmp_path / "proof",
        SETTINGS.normalise,
        policy.profile(profile),
        mediaconch_policy_path(SETTINGS),
    )
    return placed, result


def test_a_vp9_opus_webm_is_normalised_and_proved(tmp_path: Path) -> None:
    _, result = _normalise_webm(tmp_path)
    assert result.action == "ffv1"
    assert result.proof is not None and result.proof.passed, result.proof.first_difference
    assert {s["kind"] for s in result.proof.streams} == {"video", "audio"}
    assert all(s["source_frames"] == s["master_frames"] > 0 for s in result.proof.streams)


def test_a_master_whose_sound_was_delayed_fails_the_proof(tmp_path: Path) -> None:
    """The same master with its sound delayed by 200 ms (every frame and sample unchanged) is
    refused: the proof names the shifted streams."""
    source, result = _normalise_webm(tmp_path)
    assert result.proof is not None and result.proof.passed
    master = tmp_path / "bag" / "master" / "film.mkv"
    delayed = tmp_path / "delayed.mkv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(master),
         "-itsoffset", "0.2", "-i", str(master), "-map", "0:v", "-map", "1:a", "-c", "copy",
         str(delayed)],
        check=True,
    )  # fmt: skip
    plan = HashPlan.for_action(Action.FFV1, [ffprobe(source)])
    hashes = tmp_path / "delayed.framemd5"
    node = ffmpeg.input(str(delayed))
    plan.output([node["V"], node["a"]], hashes).run(quiet=True)
    source_hashes = tmp_path / "proof" / "film.source.framemd5"
    assert [len(s.frames) for s in read_framemd5(hashes).values()] == [
        len(s.frames) for s in read_framemd5(source_hashes).values()
    ]
    proof = compare(source_hashes, hashes, plan.method)
    assert not proof.passed
    assert proof.first_difference is not None
    assert proof.first_difference.startswith(
        "stream 1 (audio) is shifted by +0.200 s against stream 0 (video): its block 0 is at"
    ), proof.first_difference


def test_a_remux_refused_by_its_proof_is_decoded_to_ffv1_instead(tmp_path: Path) -> None:
    """The storage-saving profile remuxes VP9; ffmpeg 5.1's Matroska muxer moves the WebM's
    picture 7 ms against its Opus sound, which the proof refuses (rightly: that copy is not the
    source). The film is not lost for it: it is decoded to FFV1, proved, and the record says
    why, with the remux's refusal quoted."""
    placed, result = _normalise_webm(tmp_path, "storage-saving")
    assert result.action == "ffv1", result.reason
    assert "the remux failed its proof" in result.reason
    assert "is shifted by" in result.reason  # the refusal, quoted
    assert any(note.startswith("remux refused by its proof") for note in result.notes)
    assert result.proof is not None and result.proof.passed, result.proof.first_difference
    master = ffprobe(tmp_path / "bag" / "master" / "film.mkv")
    assert master["streams"][0]["codec_name"] == "ffv1"
    assert placed.is_file()
