"""Cover pictures (an MP4's cover art, a Matroska image attachment) as attachments of the master:
ffmpeg 5.1's Matroska muxer would write one as a one-frame video track, so its bytes are copied
out of the original and attached (``-attach``), with its file name and MIME type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.normalise.streams import is_attached_picture
from cifa_ingest.tools import runner

#: Attached pictures' (cover art's) codecs and the MIME type of their Matroska attachment.
PICTURE_MIMETYPES = {
    "mjpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "webp": "image/webp",
}


@dataclass(frozen=True)
class AttachedPicture:
    """A cover picture of an original (a video stream with the disposition ``attached_pic``: an
    MP4's cover art, a Matroska image attachment), to become an attachment of the master.
    ffmpeg 5.1's Matroska muxer would write it as a one-frame video track, so its bytes are
    taken out of the original (``-c copy``) and attached (``-attach``)."""

    original: int  # which of the originals
    index: int  # its stream index there
    filename: str
    mimetype: str


def attached_pictures(probes: list[dict[str, Any]]) -> list[AttachedPicture]:
    """Every original's attached pictures, each with a file name (the original's, where it
    names one, else ``cover.jpg``, ``cover-2.png``, ...) unique among the master's attachments."""
    taken = {
        str(s.get("tags", {}).get("filename", ""))
        for probe in probes
        for s in probe.get("streams", [])
        if s.get("codec_type") == "attachment"
    }
    pictures = []
    for number, probe in enumerate(probes):
        for stream in probe.get("streams", []):
            if stream.get("codec_type") != "video" or not is_attached_picture(stream):
                continue
            tags = stream.get("tags", {})
            codec = str(stream.get("codec_name", ""))
            mimetype = str(
                tags.get("mimetype") or PICTURE_MIMETYPES.get(codec, "application/octet-stream")
            )
            name = str(tags.get("filename") or "")
            if not name:
                extension = mimetype.rpartition("/")[2].replace("jpeg", "jpg")
                name, count = f"cover.{extension}", 2
                while name in taken:
                    name, count = f"cover-{count}.{extension}", count + 1
            taken.add(name)
            pictures.append(AttachedPicture(number, int(stream["index"]), name, mimetype))
    return pictures


def picture_options(
    pictures: list[AttachedPicture], files: list[Path], first: int
) -> list[tuple[str, Any]]:
    """``-attach`` for each attached picture's file, with its MIME type and file name; ``first``
    is the number of attachments the master has before them (those mapped from the originals)."""
    options: list[tuple[str, Any]] = []
    for offset, (picture, path) in enumerate(zip(pictures, files, strict=True)):
        options += [
            ("attach", str(path)),
            (f"metadata:s:t:{first + offset}", f"mimetype={picture.mimetype}"),
            (f"metadata:s:t:{first + offset}", f"filename={picture.filename}"),
        ]
    return options


def extract_pictures(
    originals: list[Path], pictures: list[AttachedPicture], scratch: Path
) -> list[Path]:
    """Each attached picture's bytes (its one packet), copied out of its original."""
    files = []
    for number, picture in enumerate(pictures):
        target = scratch / f"picture-{number}"
        runner.run_ffmpeg(
            ffmpeg.input(str(originals[picture.original]))[str(picture.index)].output(
                str(target), c="copy", f="data"
            )
        )
        files.append(target)
    return files


def attachments_of(probe: dict[str, Any]) -> list[tuple[str, str]]:
    """A file's attachments (attached pictures included), as (file name, MIME type)."""
    return [
        (str(s.get("tags", {}).get("filename", "")), str(s.get("tags", {}).get("mimetype", "")))
        for s in probe.get("streams", [])
        if s.get("codec_type") == "attachment" or is_attached_picture(s)
    ]
