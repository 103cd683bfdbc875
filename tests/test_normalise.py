"""Normalisation with the real ffmpeg on odd sources made with ffmpeg: the master keeps every
picture and sound exactly (proved frame by frame), the access copy is playable, and what cannot be
normalised fails clearly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cifa_ingest.config import format_policy_path, load_settings, mediaconch_policy_path
from cifa_ingest.errors import FFmpegError, InsufficientSpace, ProofFailed
from cifa_ingest.normalise import encode as normalise
from cifa_ingest.normalise.audio import LOSSLESS_AUDIO
from cifa_ingest.normalise.format_policy import Action, Profile, Rule, load_policy
from cifa_ingest.normalise.proof import compare, read_framemd5
from cifa_ingest.normalise.results import GroupResult
from cifa_ingest.tools import runner
from tests.helpers import ffprobe

SETTINGS = load_settings().normalise
POLICY = load_policy(format_policy_path(load_settings()))
DEFAULT = POLICY.profile("default")
MEDIACONCH_POLICY = mediaconch_policy_path(load_settings())

TONE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]


def _make(path: Path, *args: str, seconds: float = 1.5) -> Path:
    """A source film made by ffmpeg from the arguments (inputs, filters, codecs)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args,
         "-t", str(seconds), str(path)],
        check=True,
    )  # fmt: skip
    return path


def _pattern(size: str = "160x120", rate: str = "25") -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]


def _normalise(tmp_path: Path, *sources: Path, profile: Profile = DEFAULT) -> GroupResult:
    bag = tmp_path / "bag"
    (bag / "original").mkdir(parents=True, exist_ok=True)
    placed = []
    for source in sources:
        target = bag / "original" / source.name
        os.replace(source, target)
        placed.append(target)
    return normalise.normalise_group(
        "film", placed, bag, tmp_path / "proof", SETTINGS, profile, MEDIACONCH_POLICY
    )


def _master(tmp_path: Path) -> dict:
    return ffprobe(tmp_path / "bag" / "master" / "film.mkv")


def _access(tmp_path: Path) -> dict:
    return ffprobe(tmp_path / "bag" / "access" / "film.mp4")


def _video(probe: dict) -> dict:
    return next(s for s in probe["streams"] if s["codec_type"] == "video")


def test_aac_float_audio_is_kept_exactly_and_proved(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    result = _normalise(tmp_path, source)
    assert result.action == "ffv1"
    assert result.proof is not None and result.proof.passed, result.proof
    assert {s["kind"] for s in result.proof.streams} == {"video", "audio"}
    master = _master(tmp_path)
    video = _video(master)
    assert video["codec_name"] == "ffv1" and video["pix_fmt"] == "yuv420p"
    audio = next(s for s in master["streams"] if s["codec_type"] == "audio")
    assert audio["codec_name"] == "wavpack" and audio["sample_fmt"] == "fltp"
    assert result.storage_factor and result.storage_factor > 1
    access = _access(tmp_path)
    assert {s["codec_name"] for s in access["streams"]} == {"h264", "aac"}
    assert (tmp_path / "bag" / "access" / "film.poster.jpg").stat().st_size > 0
    assert (tmp_path / "bag" / "access" / "film.contact-sheet.jpg").stat().st_size > 0
    certificate = read_framemd5(tmp_path / "proof" / "film.master.framemd5")
    assert len(certificate[0].frames) == 37 or len(certificate[0].frames) == 38


def test_flac_from_a_float_decode_is_caught_by_the_proof(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mistake the proof exists for: FLAC cannot hold float samples, so the master's sound
    differs from the source's, and the work must fail naming the first differing block."""
    monkeypatch.setitem(LOSSLESS_AUDIO, "fltp", "flac")
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    with pytest.raises(
        ProofFailed, match=r"stream 1 \(audio\) block 0 at 0\.\d+ s: content differs"
    ):
        _normalise(tmp_path, source)


def test_integer_audio_becomes_flac(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.mkv", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "pcm_s16le")
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed
    codecs = {s["codec_type"]: s["codec_name"] for s in _master(tmp_path)["streams"]}
    assert codecs["audio"] == "flac"


@pytest.mark.parametrize(
    ("name", "args", "check"),
    [
        ("no audio", [*_pattern(), "-c:v", "libx264"], lambda m: len(m["streams"]) == 1),
        ("29.97 fps", [*_pattern(rate="30000/1001"), "-c:v", "libx264"],
         lambda m: _video(m)["r_frame_rate"] == "30000/1001"),
        ("odd dimensions", [*_pattern(), "-vf", "scale=175:143,format=yuv444p", "-c:v", "ffv1"],
         lambda m: (_video(m)["width"], _video(m)["height"]) == (175, 143)),
        ("10-bit 4:2:2", [*_pattern(), "-pix_fmt", "yuv422p10le", "-c:v", "ffv1"],
         lambda m: _video(m)["pix_fmt"] == "yuv422p10le"),
        ("two audio tracks",
         [*_pattern(), *TONE, "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100",
          "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-c:a", "aac"],
         lambda m: [s["sample_rate"] for s in m["streams"] if s["codec_type"] == "audio"]
         == ["48000", "44100"]),
        ("colour properties",
         [*_pattern(), "-vf", "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709"
          ":range=pc", "-pix_fmt", "yuvj420p", "-c:v", "libx264"],
         lambda m: (_video(m).get("color_primaries"), _video(m).get("color_transfer"),
                    _video(m).get("color_space"), _video(m).get("color_range"))
         == ("bt709", "bt709", "bt709", "pc")),
        ("one frame", [*_pattern(), "-frames:v", "1", "-c:v", "libx264"],
         lambda m: _video(m)["codec_name"] == "ffv1"),
    ],
)  # fmt: skip
def test_odd_sources_are_kept_exactly(tmp_path: Path, name: str, args: list[str], check) -> None:
    suffix = ".mkv" if "ffv1" in args else ".mp4"
    source = _make(tmp_path / f"s{suffix}", *args)
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed, result.proof.first_difference
    assert check(_master(tmp_path)), name


def test_audio_only(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.m4a", *TONE, "-c:a", "aac")
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed
    assert [s["codec_type"] for s in _master(tmp_path)["streams"]] == ["audio"]
    assert [s["codec_name"] for s in _access(tmp_path)["streams"]] == ["aac"]
    assert not (tmp_path / "bag" / "access" / "film.poster.jpg").exists()


def test_variable_frame_rate_keeps_its_timestamps(tmp_path: Path) -> None:
    source = _make(
        tmp_path / "s.mkv",
        *_pattern(),
        "-vf", "settb=1/1000,setpts='if(lt(N,10),N*0.04/TB,0.4/TB+(N-10)*0.1/TB)'",
        "-fps_mode", "vfr", "-enc_time_base:v", "1:1000", "-c:v", "libx264",
        seconds=3,
    )  # fmt: skip
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed, result.proof.first_difference
    hashes = read_framemd5(tmp_path / "proof" / "film.master.framemd5")[0]
    gaps = {round(float((b - a) * hashes.time_base), 2) for (a, *_), (b, *_) in
            zip(hashes.frames, hashes.frames[1:], strict=False)}  # fmt: skip
    assert {0.04, 0.1} <= gaps


def test_interlaced_source_keeps_its_fields_and_the_access_copy_is_deinterlaced(
    tmp_path: Path,
) -> None:
    source = _make(
        tmp_path / "s.mp4",
        *_pattern(size="320x240"),
        "-vf", "tinterlace=mode=interleave_top,setfield=tff",
        "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264opts", "tff=1",
    )  # fmt: skip
    assert _video(ffprobe(source))["field_order"] == "tt"
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed
    assert _video(_master(tmp_path))["field_order"] == "tt"
    assert _video(_access(tmp_path)).get("field_order", "progressive") == "progressive"


def test_rotated_phone_video_keeps_its_pixels_and_the_access_copy_stands_upright(
    tmp_path: Path,
) -> None:
    shot = _make(tmp_path / "shot.mp4", *_pattern(size="320x180"), "-c:v", "libx264")
    # As a phone writes it: landscape pixels, and a display matrix saying "turn 90 degrees".
    source = _make(
        tmp_path / "s.mp4", "-i", str(shot), "-c", "copy", "-metadata:s:v:0", "rotate=90"
    )
    assert _video(ffprobe(source))["side_data_list"][0]["rotation"] == 90
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed
    master = _video(_master(tmp_path))
    assert (master["width"], master["height"]) == (320, 180)
    assert master["tags"].get("ROTATION") == "90"  # ffmpeg's convention: counter-clockwise
    access = _video(_access(tmp_path))
    assert (access["width"], access["height"]) == (180, 320)


def test_anamorphic_source_gets_square_pixels_in_the_access_copy(tmp_path: Path) -> None:
    source = _make(
        tmp_path / "s.mp4", *_pattern(size="720x576"), "-vf", "setsar=16/15", "-c:v", "libx264"
    )
    _normalise(tmp_path, source)
    assert _video(_master(tmp_path))["sample_aspect_ratio"] == "16:15"
    access = _video(_access(tmp_path))
    assert access["width"] == 768 and access["sample_aspect_ratio"] in {"1:1", "N/A"}


def test_embedded_subtitles_are_kept_in_the_master(tmp_path: Path) -> None:
    srt = tmp_path / "sub.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\n你好\n", "utf-8")
    source = _make(
        tmp_path / "s.mp4", *_pattern(), "-i", str(srt), "-map", "0", "-map", "1",
        "-c:v", "libx264", "-c:s", "mov_text",
    )  # fmt: skip
    result = _normalise(tmp_path, source)
    assert result.proof is not None and result.proof.passed
    kinds = [s["codec_type"] for s in _master(tmp_path)["streams"]]
    assert kinds == ["video", "subtitle"]
    webvtt = tmp_path / "bag" / "access" / "film.s0.vtt"
    assert "你好" in webvtt.read_text("utf-8")
    assert any(r.name == "access/film.s0.vtt" for r in result.renditions)


def test_storage_saving_profile_remuxes_h264_bit_for_bit(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    result = _normalise(tmp_path, source, profile=POLICY.profile("storage-saving"))
    assert result.action == "remux" and "sustainable" in result.reason
    assert result.proof is not None and result.proof.passed
    assert result.proof.method.startswith("packets")
    assert {s["codec_name"] for s in _master(tmp_path)["streams"]} == {"h264", "aac"}
    assert result.storage_factor is not None and result.storage_factor < 1.2


def test_storage_saving_profile_decodes_at_risk_codecs_to_ffv1(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.avi", *_pattern(), "-c:v", "mpeg4")
    result = _normalise(tmp_path, source, profile=POLICY.profile("storage-saving"))
    assert result.action == "ffv1" and "at-risk" in result.reason
    assert _video(_master(tmp_path))["codec_name"] == "ffv1"


def test_keep_makes_no_master(tmp_path: Path) -> None:
    keep = Profile(rules=[Rule(name="keep all", codecs=["h264"], action=Action.KEEP)])
    source = _make(tmp_path / "s.mp4", *_pattern(), "-c:v", "libx264")
    result = _normalise(tmp_path, source, profile=keep)
    assert result.action == "keep" and result.proof is None
    assert not (tmp_path / "bag" / "master" / "film.mkv").exists()
    assert _access(tmp_path)["streams"][0]["codec_name"] == "h264"


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_unreadable_source_fails_clearly(tmp_path: Path, damage: str) -> None:
    source = _make(tmp_path / "s.mp4", *_pattern(), "-c:v", "libx264")
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    with pytest.raises(FFmpegError) as caught:
        _normalise(tmp_path, source)
    assert "ffprobe" in str(caught.value) or "ffmpeg" in str(caught.value)


def test_a_master_the_disk_cannot_hold_is_refused_before_encoding(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.mp4", *_pattern(), "-c:v", "libx264", seconds=3)
    bag = tmp_path / "bag"
    (bag / "original").mkdir(parents=True)
    os.replace(source, bag / "original" / "s.mp4")
    settings = SETTINGS.model_copy(
        update={"estimate_sample_seconds": 0.1, "free_space_margin_bytes": 10**18}
    )
    with pytest.raises(InsufficientSpace, match="the master would take about"):
        normalise.normalise_group(
            "film", [bag / "original" / "s.mp4"], bag, tmp_path / "proof", settings, DEFAULT
        )
    assert not (bag / "master" / "film.mkv").exists()


def test_proof_names_frames_lost_at_the_end(tmp_path: Path) -> None:
    """The failure a zip()-based comparison misses: the master lost its last frame."""
    source = _make(tmp_path / "s.mkv", *_pattern(), "-c:v", "ffv1", seconds=1)

    def hashes(name: str, *extra: str) -> Path:
        target = tmp_path / name
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(source), *extra,
             "-c:v", "rawvideo", "-f", "framemd5", str(target)],
            check=True,
        )  # fmt: skip
        return target

    full, short = hashes("full.framemd5"), hashes("short.framemd5", "-frames:v", "24")
    result = compare(full, short, "test")
    assert not result.passed
    assert result.first_difference == (
        "stream 0 (video): the source has 25 frames, the master 24; they differ from frame 24"
    )
    assert compare(full, full, "test").passed


def test_a_hung_ffmpeg_is_killed_and_reported(tmp_path: Path) -> None:
    """ffmpeg reading a pipe nobody writes to: it makes no progress and is killed."""
    import ffmpeg

    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    progress = runner.Progress("hung", None, stall_seconds=1.5, interval=60)
    stream = ffmpeg.input(str(fifo), f="mpegts").output(str(tmp_path / "out.mkv"))
    with pytest.raises(FFmpegError, match="ffmpeg killed: no progress for 2 s"):
        runner.run_ffmpeg(stream, progress=progress)


def test_every_ffv1_master_is_checked_against_the_mediaconch_policy(tmp_path: Path) -> None:
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    result = _normalise(tmp_path, source)
    assert result.conformance is not None
    assert result.conformance.outcome == "pass", result.conformance
    assert result.conformance.tool and "MediaConch" in result.conformance.tool


def test_mediaconch_outcome_is_read_from_its_report_not_its_exit_code(tmp_path: Path) -> None:
    """An H.264 file fails our FFV1 policy, though mediaconch exits 0 for it."""
    from cifa_ingest.normalise.mediaconch import check_master

    source = _make(tmp_path / "s.mkv", *_pattern(), "-c:v", "libx264")
    check = check_master(source, MEDIACONCH_POLICY)
    assert check.outcome == "fail"
    assert (
        "Video is FFV1" in check.failed_rules and "Container is Matroska" not in check.failed_rules
    )


def test_mediaconch_checks_side_by_side_neither_lock_nor_hang(tmp_path: Path) -> None:
    """MediaConch keeps one database per user: with the user's home shared, eight checks at once
    failed with "database is locked" or hung (seen here: one still waiting after ten minutes).
    Each check now has a home of its own; sixteen checks of eight masters, eight at a time, all
    pass within a minute, and a path whose file was replaced is judged on the new file."""
    from concurrent.futures import ThreadPoolExecutor

    from cifa_ingest.normalise.mediaconch import check_master

    ffv1 = ["-c:v", "ffv1", "-level", "3", "-g", "1"]
    masters = [_make(tmp_path / f"m{i}.mkv", *_pattern(), *ffv1) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(check_master, m, MEDIACONCH_POLICY) for m in masters * 2]
        checks = [future.result(timeout=60) for future in futures]
    assert [check.outcome for check in checks] == ["pass"] * 16, checks
    _make(tmp_path / "h.mkv", *_pattern(), "-c:v", "libx264").replace(masters[0])
    assert check_master(masters[0], MEDIACONCH_POLICY).outcome == "fail"


def test_the_poster_is_the_first_frame_a_tenth_of_the_way_in(tmp_path: Path) -> None:
    """A film black for its first 0.12 s, then white: the poster (from 0.2 s of 2 s) is white,
    a single frame, and the contact sheet is made from frames across the whole film."""
    graph = "color=c=black:s=160x120:r=25:d=0.12[a];color=c=white:s=160x120:r=25:d=1.88[b];"
    source = _make(
        tmp_path / "s.mkv", "-f", "lavfi", "-i", graph + "[a][b]concat", "-c:v", "ffv1",
        seconds=2,
    )  # fmt: skip
    _normalise(tmp_path, source)
    poster = tmp_path / "bag" / "access" / "film.poster.jpg"
    pixels = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(poster),
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert len(pixels) == 160 * 120, "one frame of the film's size"
    assert min(pixels) > 200, "the poster is white: not the black opening"


# The proof beside the encode: an FFV1 master is decoded for its proof as it is written (a tee
# to a pipe), and the file's packets, read back, are bound to the stream that was decoded.

BESIDE = "the master decoded for its proof as it is written"


def test_the_proof_beside_the_encode_is_bound_to_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="cifa_ingest")
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    result = _normalise(tmp_path, source)
    assert BESIDE in caplog.text
    assert result.proof is not None and result.proof.passed, result.proof
    assert result.proof.binding and "packets, read back, are identical" in result.proof.binding
    assert "pipe:0" in (result.proof.master_hashes_command or [])
    # The certificate is what decoding the file itself gives.
    again = tmp_path / "again.framemd5"
    master = tmp_path / "bag" / "master" / "film.mkv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(master), "-map", "0:V",
         "-map", "0:a", "-c:v", "rawvideo", "-c:a", "pcm_f32le", "-filter:a",
         "asetnsamples=n=1024:p=0", "-fps_mode", "passthrough", "-enc_time_base:v", "-1",
         "-f", "framemd5", str(again)],
        check=True,
    )  # fmt: skip
    assert compare(tmp_path / "proof" / "film.master.framemd5", again, "test").passed
    assert not list(tmp_path.glob("proof-*")), "the packet lists are scratch, not kept"


def test_a_lossy_master_is_caught_by_the_proof_beside_the_encode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Float samples squeezed into 16-bit PCM (not FLAC, so the proof runs beside the encode)."""
    caplog.set_level("INFO", logger="cifa_ingest")
    monkeypatch.setitem(LOSSLESS_AUDIO, "fltp", "pcm_s16le")
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    with pytest.raises(ProofFailed, match=r"stream 1 \(audio\) block 0 at 0\.\d+ s"):
        _normalise(tmp_path, source)
    assert BESIDE in caplog.text


@pytest.mark.parametrize(
    "odd",
    ["chapters", "FLAC audio"],
)
def test_masters_whose_headers_change_at_the_end_are_decoded_from_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, odd: str
) -> None:
    """The tee muxer of ffmpeg 5.1 drops chapters, and FLAC's header is completed at the end:
    these masters are written first, then decoded, and keep everything."""
    caplog.set_level("INFO", logger="cifa_ingest")
    if odd == "chapters":
        chapters = tmp_path / "chapters.txt"
        chapters.write_text(
            ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=第一\n"
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1500\ntitle=Two\n",
            "utf-8",
        )
        args = ["-i", str(chapters), "-map", "0", "-map", "1", "-map_chapters", "2",
                "-c:v", "libx264", "-c:a", "aac"]  # fmt: skip
    else:
        args = ["-c:v", "libx264", "-c:a", "pcm_s16le"]
    source = _make(tmp_path / "s.mkv", *_pattern(), *TONE, *args)
    result = _normalise(tmp_path, source)
    assert BESIDE not in caplog.text
    assert result.proof is not None and result.proof.passed and result.proof.binding is None
    master_file = str(tmp_path / "bag" / "master" / "film.mkv")
    assert master_file in (result.proof.master_hashes_command or [])
    master = subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-show_streams", "-of", "json",
         str(tmp_path / "bag" / "master" / "film.mkv")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if odd == "chapters":
        assert "第一" in master and '"Two"' in master
    else:
        assert '"codec_name": "flac"' in master


def test_a_master_differing_from_the_stream_decoded_is_decoded_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If the file's packets are not those decoded beside the encode (here: FLAC's header,
    completed in the file only, let through on purpose), the proof is taken from the file."""
    caplog.set_level("INFO", logger="cifa_ingest")
    monkeypatch.setattr(normalise, "proof_beside_the_encode", lambda probes, options: True)
    source = _make(tmp_path / "s.mkv", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "pcm_s16le")
    result = _normalise(tmp_path, source)
    assert BESIDE in caplog.text
    assert "the file's packets differ from the stream decoded beside the encode" in caplog.text
    assert "#extradata 1" in caplog.text  # FLAC's header, as predicted
    assert result.proof is not None and result.proof.passed and result.proof.binding is None


def test_a_master_path_the_tee_list_could_misread_is_written_where_it_belongs(
    tmp_path: Path,
) -> None:
    """The tee muxer reads its outputs as a list with its own syntax (| [ ] quotes, escapes)."""
    odd = tmp_path / "a [b] | c's \\ 片 "
    odd.mkdir()
    source = _make(odd / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac")
    result = _normalise(odd, source)
    assert result.proof is not None and result.proof.passed and result.proof.binding
    assert _video(_master(odd))["codec_name"] == "ffv1"
    assert sorted(p.name for p in (odd / "bag" / "master").iterdir()) == ["film.mkv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [odd.name]


def test_typed_normalisation_errors_keep_their_messages_and_stored_kinds() -> None:
    """What the runner and the audio choice know is carried by the error's type (a stalled
    ffmpeg, a missing program, a sample format with no lossless codec), not read back from its
    words; the messages stored for them, and their kind, are as they were."""
    from cifa_ingest.errors import ToolMissing, ToolStalled, UnknownSampleFormat
    from cifa_ingest.normalise.audio import audio_codec
    from cifa_ingest.preserve import _failure

    with pytest.raises(UnknownSampleFormat) as caught:
        audio_codec({"sample_fmt": "s64"}, 1)
    unknown = caught.value
    assert str(unknown) == "ffmpeg exited with 0: ffprobe\naudio 1: unknown sample format 's64'"
    assert (unknown.stream, unknown.sample_fmt) == (1, "s64")
    assert _failure(unknown, "normalise") == (str(unknown), "normalisation")

    stalled = ToolStalled("ffmpeg -i film.mp4", -9, "no progress for 600 s", "last words")
    assert str(stalled) == (
        "ffmpeg exited with -9: ffmpeg -i film.mp4\n"
        "ffmpeg killed: no progress for 600 s\nlast words"
    )
    assert _failure(stalled, "normalise") == (
        f"ffmpeg killed: no progress for 600 s, during normalise: {stalled}",
        "normalisation",
    )
    missing = ToolMissing("ffmpeg", "install ffmpeg (make setup does)")
    assert _failure(missing, "normalise") == (str(missing), "normalisation")
