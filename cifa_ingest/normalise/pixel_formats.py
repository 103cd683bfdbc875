"""The pixel formats our ffmpeg's FFV1 encoder holds, and a source's that it does not: ffmpeg then
stores the same samples in a deeper or differently packed format, and the master keeps the
source's format and bit depth as tags (:mod:`cifa_ingest.normalise.kept_metadata`). Asked of the
ffmpeg installed (``ffmpeg -h encoder=ffv1``, ``ffmpeg -pix_fmts``), once per process.
"""

from __future__ import annotations

import functools
from typing import Any

from cifa_ingest.normalise.proof import FULL_RANGE_FORMATS
from cifa_ingest.tools import runner


@functools.cache
def ffv1_pixel_formats() -> frozenset[str]:
    """The pixel formats our ffmpeg's FFV1 encoder takes (``ffmpeg -h encoder=ffv1``)."""
    completed = runner.run([runner.executable("ffmpeg"), "-hide_banner", "-h", "encoder=ffv1"])
    for line in completed.stdout.decode("utf-8", "replace").splitlines():
        if "Supported pixel formats:" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def pixel_format_depth(pix_fmt: str) -> int | None:
    """The bits per component of a pixel format (its deepest component, ``ffmpeg -pix_fmts``)."""
    completed = runner.run([runner.executable("ffmpeg"), "-hide_banner", "-pix_fmts"])
    for line in completed.stdout.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[1] == pix_fmt:
            return max(int(bits) for bits in fields[4].split("-"))
    return None


def source_pixel_format(stream: dict[str, Any]) -> tuple[str, int | None] | None:
    """A video stream's pixel format and bit depth where FFV1 (in our ffmpeg) cannot hold that
    format as it is: ffmpeg then stores the same samples in a deeper or differently packed
    format (12-bit 4:4:4 with alpha, ProRes 4444's, as 16 bits), which the proof decodes back
    to the source's format and compares. None where FFV1 holds it (a full-range "JPEG" format
    is its plain twin with full range: the same bytes)."""
    pix_fmt = str(stream.get("pix_fmt") or "")
    if not pix_fmt or FULL_RANGE_FORMATS.get(pix_fmt, pix_fmt) in ffv1_pixel_formats():
        return None
    raw = str(stream.get("bits_per_raw_sample") or "")
    return pix_fmt, int(raw) if raw.isdigit() and int(raw) else pixel_format_depth(pix_fmt)
