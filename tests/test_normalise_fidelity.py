"""Issue 14, fidelity without exceptions: what a master keeps of its source, checked on the master
itself with ffprobe and MediaInfo (never with the pipeline's own records alone), on sources
made with ffmpeg; and, where Matroska or FFV1 cannot carry something, that normalisation.json
(and PREMIS) say so and why."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest

from cifa_ingest.bag.package import make_bag
from cifa_ingest.config import OrganisationSettings
from cifa_ingest.metadata.premis import write_premis
from cifa_ingest.normalise.results import GroupResult, Normalised
from cifa_ingest.preserve import normalisation_record
from tests.helpers import ffprobe
from tests.test_normalise import POLICY, TONE, _make, _master, _normalise, _pattern

MASTER = Path("bag") / "master" / "film.mkv"


def _run(*args: str) -> bytes:
    return subprocess.run(args, capture_output=True, check=True).stdout


def _mediainfo(path: Path) -> dict[str, list[dict]]:
    """MediaInfo's description of a file: its tracks by type (General, Video, Audio...)."""
    tracks = json.loads(_run("mediainfo", "--Output=JSON", str(path)))["media"]["track"]
    found: dict[str, list[dict]] = {}
    for track in tracks:
        found.setdefault(track["@type"], []).append(track)
    return found


def _packet_bytes(path: Path, stream: str) -> bytes:
    """The bytes of a stream's packets, as they are in the file (an attached picture's: the
    picture file)."""
    return _run(
        "ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", stream, "-c", "copy",
        "-f", "data", "-",
    )  # fmt: skip


def _record(result: GroupResult) -> dict:
    """normalisation.json as the pipeline writes it, for this one film."""
    normalised = Normalised(ffmpeg_version="ffmpeg", profile="default", groups=[result])
    return json.loads(json.dumps(normalisation_record(normalised)))


# 1. Attachments and attached pictures


def test_attachments_and_cover_pictures_are_kept_in_the_master(tmp_path: Path) -> None:
    """An MKV with a text attachment and a cover picture (a Matroska image attachment, which
    ffmpeg reads as an attached picture): the master has both as attachments, with their file
    names, MIME types and bytes; the cover is not hashed as a frame of the film."""
    cover = _make(tmp_path / "cover.jpg", *_pattern(size="64x48"), "-frames:v", "1")
    notes = tmp_path / "notes.txt"
    notes.write_text("Shot on Hi8 in 1998; 字幕 by the director.\n", "utf-8")
    source = _make(
        tmp_path / "s.mkv", *_pattern(), *TONE,
        "-attach", str(notes), "-metadata:s:t:0", "mimetype=text/plain",
        "-attach", str(cover), "-metadata:s:t:1", "mimetype=image/jpeg",
        "-c:v", "libx264", "-c:a", "aac",
    )  # fmt: skip
    streams = ffprobe(source)["streams"]
    kinds = [(s["codec_type"], s["disposition"]["attached_pic"]) for s in streams]
    assert kinds == [("video", 0), ("audio", 0), ("attachment", 0), ("video", 1)]
    cover_bytes = cover.read_bytes()

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    assert [s["kind"] for s in result.proof.streams] == ["video", "audio"], "the cover is no frame"
    master = _master(tmp_path)
    streams = master["streams"]
    assert [s["codec_name"] for s in streams if s["codec_type"] == "video"] == ["ffv1", "mjpeg"]
    attachment = next(s for s in streams if s["codec_type"] == "attachment")
    assert attachment["tags"] == {"filename": "notes.txt", "mimetype": "text/plain"}
    picture = next(s for s in streams if s["disposition"]["attached_pic"])
    assert picture["tags"] == {"filename": "cover.jpg", "mimetype": "image/jpeg"}
    assert _packet_bytes(tmp_path / MASTER, f"0:{picture['index']}") == cover_bytes
    dumped = tmp_path / "dumped.txt"
    _run("ffmpeg", "-nostdin", "-v", "error", "-dump_attachment:t:0", str(dumped),
         "-i", str(tmp_path / MASTER), "-f", "null", "-")  # fmt: skip
    assert dumped.read_text("utf-8") == notes.read_text("utf-8")
    general = _mediainfo(tmp_path / MASTER)["General"][0]
    assert general["Cover"] == "Yes"
    assert set(general["extra"]["Attachments"].split(" / ")) == {"notes.txt", "cover.jpg"}
    assert len(_mediainfo(tmp_path / MASTER)["Video"]) == 1, "the cover is no video track"
    assert result.conformance is not None and result.conformance.outcome == "pass"

    record = _record(result)["groups"][0]["fidelity"]
    placed = {s["type"]: s["master"] for s in record["streams"]}
    assert placed["attachment"] == "attachment 'notes.txt' (text/plain)"
    assert placed["attached picture"].startswith("attachment 'cover.jpg' (image/jpeg)")
    assert any("attachments with their file names" in line for line in record["checked"])


def test_mp4_cover_art_is_attached_and_a_data_stream_is_recorded_as_not_kept(
    tmp_path: Path,
) -> None:
    """An MP4 with cover art and a timecode track (a data stream, which Matroska cannot hold):
    the cover becomes an attachment; the timecode track is not in the master, and
    normalisation.json and the PREMIS normalization event say why."""
    cover = _make(tmp_path / "cover.png", *_pattern(size="64x48"), "-frames:v", "1")
    source = _make(
        tmp_path / "s.mp4", *_pattern(), "-i", str(cover), "-map", "0", "-map", "1",
        "-c:v:0", "libx264", "-c:v:1", "copy", "-disposition:v:1", "attached_pic",
        "-timecode", "01:00:00:00",
    )  # fmt: skip
    kinds = [s["codec_type"] for s in ffprobe(source)["streams"]]
    assert kinds.count("video") == 2 and "data" in kinds  # a timecode track per video stream

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    streams = _master(tmp_path)["streams"]
    assert [s["codec_type"] for s in streams] == ["video", "video"]
    picture = streams[1]
    assert picture["disposition"]["attached_pic"] == 1
    assert picture["tags"] == {"filename": "cover.png", "mimetype": "image/png"}
    assert _packet_bytes(tmp_path / MASTER, "0:1") == cover.read_bytes()
    assert _mediainfo(tmp_path / MASTER)["General"][0]["Cover"] == "Yes"

    record = _record(result)
    data = next(s for s in record["groups"][0]["fidelity"]["streams"] if s["type"] == "data")
    assert data["master"] is None and "Matroska holds no data streams" in data["why"]
    assert data["tags"]["timecode"] == "01:00:00:00"
    event = next(e for e in record["events"] if e["type"] == "normalization")
    assert "is not in the master: Matroska holds no data streams" in event["outcome_detail"]

    # The PREMIS normalization event carries the same note.
    bag, metadata = tmp_path / "bag", tmp_path / "metadata"
    original = bag / "original" / "s.mp4"
    digests = {
        "sha256": hashlib.sha256(original.read_bytes()).hexdigest(),
        "sha512": hashlib.sha512(original.read_bytes()).hexdigest(),
    }
    documents = {
        "capture.json": {"sources": [{"index": 1, "files": [{"name": "s.mp4", **digests}]}]},
        "normalisation.json": record,
    }
    make_bag(
        bag, {}, metadata, documents,
        lambda d: {"premis.xml": write_premis(d, OrganisationSettings(), "2026-01-01")},
    )  # fmt: skip
    premis = ET.parse(bag / "metadata" / "premis.xml").getroot()
    ns = "{http://www.loc.gov/premis/v3}"
    notes = [
        note.text or ""
        for event in premis.iter(f"{ns}event")
        if event.findtext(f"{ns}eventType") == "normalization"
        for note in event.iter(f"{ns}eventOutcomeDetailNote")
    ]
    assert any("Matroska holds no data streams" in note for note in notes), notes


# 2. Channel layouts


def _surround(layout: str, sample_fmt: str = "fltp") -> list[str]:
    return [
        "-f", "lavfi",
        "-i", f"sine=sample_rate=48000,aformat=sample_fmts={sample_fmt}:channel_layouts={layout}",
    ]  # fmt: skip


def test_a_float_master_declares_its_channel_layout(tmp_path: Path) -> None:
    """5.1 AAC decodes to float, which FLAC cannot hold: WavPack does, and declares the layout
    (ffprobe reads it from the master; PCM in Matroska would say "unknown"). MediaInfo does not
    read WavPack's channel mask in Matroska: for it the layout is the CHANNEL_LAYOUT tag, and
    normalisation.json says why."""
    source = _make(tmp_path / "s.mp4", *_pattern(), *_surround("5.1"), "-c:v", "libx264",
                   "-c:a", "aac")  # fmt: skip
    audio = next(s for s in ffprobe(source)["streams"] if s["codec_type"] == "audio")
    assert audio["channel_layout"] == "5.1"

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    master = next(s for s in _master(tmp_path)["streams"] if s["codec_type"] == "audio")
    assert master["codec_name"] == "wavpack" and master["channels"] == 6
    assert master["channel_layout"] == "5.1" and master["tags"]["CHANNEL_LAYOUT"] == "5.1"
    described = _mediainfo(tmp_path / MASTER)["Audio"][0]
    assert described["Channels"] == "6" and described["extra"]["CHANNEL_LAYOUT"] == "5.1"
    kept = _record(result)["groups"][0]["fidelity"]["kept_as_metadata"]
    assert kept == [
        {
            "stream": 1, "what": "stream 1 (audio): channel layout 5.1", "value": "5.1",
            "how": "tag CHANNEL_LAYOUT=5.1 on the master's stream 1",
            "why": "WavPack declares it (ffprobe reads it), but MediaInfo does not read"
            " WavPack's channel mask in Matroska",
        }
    ]  # fmt: skip


def test_a_flac_master_declares_its_channel_layout_itself(tmp_path: Path) -> None:
    """16-bit 5.1 (side) becomes FLAC, whose channel mask ffmpeg writes: ffprobe and MediaInfo
    read the layout from the master's FLAC, and no tag is needed."""
    source = _make(tmp_path / "s.mov", *_pattern(), *_surround("5.1(side)", "s16"),
                   "-c:v", "libx264", "-c:a", "pcm_s16le")  # fmt: skip
    audio = next(s for s in ffprobe(source)["streams"] if s["codec_type"] == "audio")
    assert audio["channel_layout"] == "5.1(side)"  # a MOV declares it (a PCM MKV could not)

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    master = next(s for s in _master(tmp_path)["streams"] if s["codec_type"] == "audio")
    assert master["codec_name"] == "flac" and master["channel_layout"] == "5.1(side)"
    assert "CHANNEL_LAYOUT" not in master.get("tags", {})
    described = _mediainfo(tmp_path / MASTER)["Audio"][0]
    assert described["ChannelPositions"] == "Front: L C R, Side: L R, LFE"
    assert described["ChannelLayout"] == "L R C LFE Ls Rs"
    checked = _record(result)["groups"][0]["fidelity"]["checked"]
    assert "audio channel layouts: 5.1(side) (declared by flac)" in checked


# 3. Precision: the master declares the source's bit depth


@pytest.mark.parametrize(
    ("pcm", "sample_fmt", "codec", "bits"),
    [
        ("pcm_s24le", "s32", "flac", 24),  # decoded as s32: PCM would declare 32 bits
        ("pcm_s32le", "s32", "wavpack", 32),
        ("pcm_f32le", "flt", "wavpack", 32),
        ("pcm_u8", "u8", "wavpack", 8),
    ],
)
def test_the_master_declares_the_sources_audio_bit_depth(
    tmp_path: Path, pcm: str, sample_fmt: str, codec: str, bits: int
) -> None:
    """PCM of 24, 32 (integer and float) and 8 bits in a MOV (which declares its stereo
    layout): the master's codec declares the same depth and layout, for ffprobe and MediaInfo,
    and decodes to the same samples (the proof)."""
    source = _make(tmp_path / "s.mov", *_pattern(), *_surround("stereo", "s32"),
                   "-c:v", "libx264", "-c:a", pcm)  # fmt: skip
    audio = next(s for s in ffprobe(source)["streams"] if s["codec_type"] == "audio")
    assert audio["sample_fmt"] == sample_fmt and audio["channel_layout"] == "stereo"
    assert int(audio["bits_per_sample"]) == bits

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    master = next(s for s in _master(tmp_path)["streams"] if s["codec_type"] == "audio")
    assert master["codec_name"] == codec
    assert int(master["bits_per_raw_sample"]) == bits
    assert master["channel_layout"] == "stereo"
    described = _mediainfo(tmp_path / MASTER)["Audio"][0]
    assert described["BitDepth"] == str(bits)
    checked = _record(result)["groups"][0]["fidelity"]["checked"]
    assert f"audio bit depths: {bits} ({codec})" in checked


def _picture_md5(path: Path, pix_fmt: str) -> str:
    """The MD5 of every decoded frame of the first video stream, as ``pix_fmt``."""
    return _run(
        "ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:V:0",
        "-pix_fmt", pix_fmt, "-f", "md5", "-",
    ).decode().strip()  # fmt: skip


def test_a_pixel_format_ffv1_cannot_hold_is_kept_as_tags(tmp_path: Path) -> None:
    """ProRes 4444 decodes to 12-bit 4:4:4 with alpha, which FFV1 in ffmpeg 5.1 cannot hold:
    the master holds the same samples as 16 bits, and says so: its stream's SOURCE_PIX_FMT and
    BITS_PER_RAW_SAMPLE tags (ffprobe, MediaInfo), and normalisation.json."""
    source = _make(tmp_path / "s.mov", *_pattern(), "-c:v", "prores_ks", "-profile:v", "4444",
                   "-pix_fmt", "yuva444p10le", seconds=0.5)  # fmt: skip
    video = ffprobe(source)["streams"][0]
    assert (video["pix_fmt"], video["bits_per_raw_sample"]) == ("yuva444p12le", "12")

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    master = _master(tmp_path)["streams"][0]
    assert (master["codec_name"], master["pix_fmt"]) == ("ffv1", "yuva444p16le")
    assert master["tags"]["SOURCE_PIX_FMT"] == "yuva444p12le"
    assert master["tags"]["BITS_PER_RAW_SAMPLE"] == "12"
    described = _mediainfo(tmp_path / MASTER)["Video"][0]["extra"]
    assert (described["SOURCE_PIX_FMT"], described["BITS_PER_RAW_SAMPLE"]) == ("yuva444p12le", "12")
    # The same samples: the master, decoded to the source's format, is the source.
    original = tmp_path / "bag" / "original" / "s.mov"
    assert _picture_md5(tmp_path / MASTER, "yuva444p12le") == _picture_md5(original, "yuva444p12le")
    fidelity = _record(result)["groups"][0]["fidelity"]
    kept = {k["what"]: k["value"] for k in fidelity["kept_as_metadata"]}
    assert kept == {
        "stream 0 (video): pixel format yuva444p12le": "yuva444p12le",
        "stream 0 (video): 12 bits per sample": "12",
    }
    assert (
        "video 0: pixel format yuva444p12le, held as yuva444p16le (tag SOURCE_PIX_FMT,"
        " tag BITS_PER_RAW_SAMPLE=12)" in fidelity["checked"]
    )


# 4. HDR10 metadata

#: A BT.2020 grade's mastering display (0.005 to 1000 cd/m2), MaxCLL 1000, MaxFALL 400, as
#: x265 takes them (chromaticities in 1/50000, luminances in 1/10000).
HDR10_X265 = (
    "log-level=error:hdr-opt=1:repeat-headers=1:colorprim=bt2020:transfer=smpte2084"
    ":colormatrix=bt2020nc:master-display=G(8500,39850)B(6550,2300)R(35400,14600)"
    "WP(15635,16450)L(10000000,50):max-cll=1000,400"
)


def _encoders() -> str:
    return _run("ffmpeg", "-hide_banner", "-encoders").decode()


def _numbers(entry: dict) -> dict:
    """A side data entry's values as numbers to 5 decimals (Matroska stores floats)."""
    return {
        key: round(float(Fraction(str(value))), 5)
        for key, value in entry.items()
        if key != "side_data_type"
    }


@pytest.mark.skipif(" libx265 " not in _encoders(), reason="this ffmpeg has no libx265")
@pytest.mark.skipif(shutil.which("mkvpropedit") is None, reason="mkvtoolnix is not installed")
def test_hdr10_metadata_in_the_sources_frames_is_in_the_masters_colour_element(
    tmp_path: Path,
) -> None:
    """10-bit BT.2020/PQ HEVC whose mastering display and content light level are in its
    frames (SEI), as x265 writes them, not in its container: the master, FFV1, has them in its
    Matroska Colour element (ffprobe's stream side data, MediaInfo's HDR fields), written by
    mkvpropedit before the proof; the encoder's own SEI message is recorded as not kept."""
    source = _make(
        tmp_path / "s.mp4", *_pattern(), "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
        "-x265-params", HDR10_X265, "-color_primaries", "bt2020", "-color_trc", "smpte2084",
        "-colorspace", "bt2020nc", seconds=0.5,
    )  # fmt: skip
    assert "side_data_list" not in ffprobe(source)["streams"][0], "not in the container"
    frame = json.loads(
        _run("ffprobe", "-v", "error", "-read_intervals", "%+#1", "-show_frames",
             "-show_entries", "frame=side_data_list", "-of", "json", str(source))
    )["frames"][0]["side_data_list"]  # fmt: skip
    in_frame = {d["side_data_type"]: _numbers(d) for d in frame}
    display = in_frame["Mastering display metadata"]
    assert (display["red_x"], display["min_luminance"], display["max_luminance"]) == (
        0.708, 0.005, 1000.0,
    )  # fmt: skip
    assert in_frame["Content light level metadata"] == {"max_content": 1000, "max_average": 400}

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    assert result.proof.binding is None, "an edited master is proved from the file"
    video = _master(tmp_path)["streams"][0]
    assert (video["codec_name"], video["pix_fmt"]) == ("ffv1", "yuv420p10le")
    assert (video["color_primaries"], video["color_transfer"], video["color_space"]) == (
        "bt2020", "smpte2084", "bt2020nc",
    )  # fmt: skip
    in_master = {d["side_data_type"]: _numbers(d) for d in video["side_data_list"]}
    assert in_master["Mastering display metadata"] == display
    assert in_master["Content light level metadata"] == {"max_content": 1000, "max_average": 400}
    described = _mediainfo(tmp_path / MASTER)["Video"][0]
    assert described["HDR_Format"] == "SMPTE ST 2086"
    assert described["MasteringDisplay_ColorPrimaries"] == "BT.2020"
    assert described["MasteringDisplay_Luminance"] == "min: 0.0050 cd/m2, max: 1000 cd/m2"
    assert (described["MaxCLL"].split()[0], described["MaxFALL"].split()[0]) == ("1000", "400")
    assert result.conformance is not None and result.conformance.outcome == "pass"

    fidelity = _record(result)["groups"][0]["fidelity"]
    (edit,) = fidelity["master_edits"]
    assert edit["tool"].startswith("mkvpropedit") and "max-content-light=1000" in edit["command"]
    placed = {d["type"]: d for d in fidelity["side_data"]}
    assert placed["Mastering display metadata"]["in"] == "first frame"
    assert placed["Mastering display metadata"]["master"] is not None
    assert placed["Content light level metadata"]["master"] is not None
    encoder_message = placed["H.26[45] User Data Unregistered SEI message"]
    assert encoder_message["master"] is None and "no place for it" in encoder_message["why"]
    assert (
        "video 0: Mastering display metadata, as in the source's first frame"
        in (fidelity["checked"])
    )


# 5. AAC priming and padding: an MP4's edit list


def _decoded_samples(path: Path) -> int:
    """The samples ffprobe decodes from a file's first audio stream."""
    frames = json.loads(
        _run("ffprobe", "-v", "error", "-select_streams", "a:0", "-show_frames",
             "-show_entries", "frame=nb_samples", "-of", "json", str(path))
    )["frames"]  # fmt: skip
    return sum(int(frame["nb_samples"]) for frame in frames)


def _sound_md5(path: Path, *filters: str) -> str:
    return _run(
        "ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", *filters,
        "-c:a", "pcm_f32le", "-f", "md5", "-",
    ).decode().strip()  # fmt: skip


def test_the_master_holds_the_samples_an_mp4s_edit_list_declares(tmp_path: Path) -> None:
    """3 s of AAC at 48 kHz in MP4: the edit list skips the encoder's 1024 samples of priming
    and declares 144000 samples, which ffmpeg 5.1 decodes as 144384 (the last frame's padding).
    The master holds exactly the 144000, the same as the source's first 144000, and the proof's
    record says so."""
    source = _make(tmp_path / "s.mp4", *_pattern(), *TONE, "-c:v", "libx264", "-c:a", "aac",
                   seconds=3)  # fmt: skip
    audio = next(s for s in ffprobe(source)["streams"] if s["codec_type"] == "audio")
    assert (audio["duration_ts"], audio["time_base"]) == (144000, "1/48000")
    assert _decoded_samples(source) == 144384

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    assert _decoded_samples(tmp_path / MASTER) == 144000
    original = tmp_path / "bag" / "original" / "s.mp4"
    assert _sound_md5(tmp_path / MASTER) == _sound_md5(original, "-af", "atrim=end_sample=144000")
    assert float(_mediainfo(tmp_path / MASTER)["Audio"][0]["Duration"]) == 3.0
    record = _record(result)
    assert record["groups"][0]["proof"]["audio_samples"] == [
        {
            "stream": 1, "declared": 144000, "master": 144000,
            "declared_by": "the source's container (an MP4 or MOV: its edit list, which trims the"
            " encoder's priming and padding)",
        }
    ]  # fmt: skip
    proved = next(e for e in record["events"] if "lossless proof" in e["detail"])
    assert (
        "stream 1 (audio): 144000 samples in the master, 144000 declared"
        in (proved["outcome_detail"])
    )


# Tags ffmpeg does not read


def test_mp4_track_titles_ffmpeg_does_not_read_are_kept(tmp_path: Path) -> None:
    """ffmpeg's MP4 muxer writes a track's title (udta/name), which its demuxer (5.1) does not
    read back: ffprobe shows none, MediaInfo the title. The master's tracks are named."""
    source = _make(
        tmp_path / "s.mp4", *_pattern(), *TONE, "-f", "lavfi", "-i", "sine=frequency=660",
        "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-c:a", "aac",
        "-metadata:s:a:0", "title=普通话", "-metadata:s:a:1", "title=Director's commentary",
    )  # fmt: skip
    assert all("title" not in s.get("tags", {}) for s in ffprobe(source)["streams"])
    titles = [t.get("Title") for t in _mediainfo(source)["Audio"]]
    assert titles == ["普通话", "Director's commentary"]

    result = _normalise(tmp_path, source)

    assert result.proof is not None and result.proof.passed, result.proof
    audio = [s for s in _master(tmp_path)["streams"] if s["codec_type"] == "audio"]
    assert [s["tags"].get("title") for s in audio] == titles
    assert [t.get("Title") for t in _mediainfo(tmp_path / MASTER)["Audio"]] == titles


@pytest.mark.skipif(" libx265 " not in _encoders(), reason="this ffmpeg has no libx265")
def test_a_remuxed_hdr10_source_keeps_its_metadata_in_the_copied_stream(tmp_path: Path) -> None:
    """The storage-saving profile remuxes HEVC: the SEI, HDR10 metadata included, is in the
    copied stream, whose first frame has it as the source's has; nothing is edited."""
    source = _make(
        tmp_path / "s.mp4", *_pattern(), "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
        "-x265-params", HDR10_X265, "-color_primaries", "bt2020", "-color_trc", "smpte2084",
        "-colorspace", "bt2020nc", seconds=0.5,
    )  # fmt: skip
    result = _normalise(tmp_path, source, profile=POLICY.profile("storage-saving"))

    assert result.action == "remux" and result.proof is not None and result.proof.passed
    frame = json.loads(
        _run("ffprobe", "-v", "error", "-read_intervals", "%+#1", "-show_frames",
             "-show_entries", "frame=side_data_list", "-of", "json", str(tmp_path / MASTER))
    )["frames"][0]["side_data_list"]  # fmt: skip
    in_master = {d["side_data_type"]: _numbers(d) for d in frame}
    assert in_master["Content light level metadata"] == {"max_content": 1000, "max_average": 400}
    assert in_master["Mastering display metadata"]["max_luminance"] == 1000.0
    fidelity = _record(result)["groups"][0]["fidelity"]
    assert fidelity["master_edits"] == []
    assert all(d["master"] for d in fidelity["side_data"])
