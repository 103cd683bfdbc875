"""Subtitles as WebVTT beside the access copy: a source's embedded text subtitles, as outputs of
the one decode, and the subtitle files received beside it, each converted on its own (a file that
is not a subtitle is noted and skipped: the original is kept as received).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ffmpeg

from cifa_ingest.errors import FFmpegError
from cifa_ingest.normalise.results import Rendition
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)


#: Subtitle codecs that can become WebVTT (text); bitmap subtitles cannot.
TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}


def subtitle_outputs(
    inputs: list[Any], probes: list[dict[str, Any]], access_dir: Path, stem: str
) -> list[Any]:
    """Every embedded text subtitle stream as WebVTT beside the access copy (``<stem>.sN.vtt``,
    with its language where the source names one). Bitmap subtitles cannot become text."""
    outputs: list[Any] = []
    for node, probe in zip(inputs, probes, strict=True):
        subtitles = [s for s in probe.get("streams", []) if s.get("codec_type") == "subtitle"]
        for index, stream in enumerate(subtitles):
            if stream.get("codec_name") not in TEXT_SUBTITLES:
                continue
            language = str(stream.get("tags", {}).get("language", ""))
            named = language.isalpha() and language != "und"
            suffix = f"s{len(outputs)}" + (f"-{language}" if named else "")
            target = access_dir / f"{stem}.{suffix}.vtt"
            outputs.append(ffmpeg.output(node[f"s:{index}"], str(target), f="webvtt"))
    return outputs


def subtitles_to_webvtt(
    subtitle_files: list[tuple[Path, str | None]],
    access_dir: Path,
    stem: str,
    notes: list[str] | None = None,
) -> list[Rendition]:
    """WebVTT beside the access copy for every received subtitle file (the originals stay
    untouched). A file that is not a subtitle (an HTML error page, binary junk) is noted in
    ``notes`` (normalisation.json) and skipped, not fatal: the original is the source's own, kept
    as received, and the film is still preserved. ffmpeg reads an HTML page named ``.vtt`` as a
    WebVTT file without cues: an empty result is dropped and noted too, not offered as subtitles."""
    renditions = []
    for index, (path, language) in enumerate(subtitle_files, start=1):
        label = language if language and language.replace("-", "").isalnum() else f"track{index}"
        target = access_dir / f"{stem}.{label}.vtt"
        reason = None
        try:
            command = runner.run_ffmpeg(ffmpeg.input(str(path)).output(str(target), f="webvtt"))
        except FFmpegError as exc:
            reason = str(exc).splitlines()[-1].removeprefix(f"{path}: ")
        else:
            if "-->" not in target.read_text("utf-8", "replace"):
                target.unlink()
                reason = "no subtitle cues in it"
        if reason is not None:
            log.warning("%s: subtitle %s is not usable: %s", stem, path.name, reason)
            if notes is not None:
                notes.append(f"subtitle original/{path.name} not converted to WebVTT: {reason}")
            continue
        renditions.append(
            Rendition(
                f"access/{target.name}", "subtitles (WebVTT)", f"original/{path.name}", command
            )
        )
    return renditions
