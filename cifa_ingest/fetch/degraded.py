"""Degraded captures: a chosen format far below the best the source lists, or below an earlier
capture of the same source (YouTube's experiments take formats away: only itag 18, everything
at 360p). The verdict is recorded per source in ``capture.json`` (``degraded``), and makes the
work's outcome ``preserved-degraded``, or, with ``[fetch] refuse_degraded``, a ``degraded``
failure tried again by a later run.

Only what the source's info says is compared: where it gives no heights and no bitrates the
capture is not called degraded, and the reasons say "unknown".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The warnings kept per source in capture.json, and the characters kept of each.
MAX_WARNINGS = 50
MAX_WARNING_CHARS = 500


@dataclass
class Degradation:
    """The verdict of one source's capture, as capture.json records it (``degraded``)."""

    degraded: bool
    reasons: list[str] = field(default_factory=list)
    #: The chosen video format, the best the source listed, and the earlier capture's chosen
    #: format: {format_id, height, tbr} (None where there is none).
    chosen: dict[str, Any] | None = None
    best_listed: dict[str, Any] | None = None
    earlier: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _is_video(fmt: dict[str, Any]) -> bool:
    """A format with pictures: not audio only (vcodec "none"), not a storyboard (mhtml)."""
    if fmt.get("vcodec") == "none" or fmt.get("ext") == "mhtml":
        return False
    return fmt.get("vcodec") is not None or _number(fmt.get("height")) is not None


def _summary(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt is None:
        return None
    return {
        "format_id": fmt.get("format_id"),
        "height": _number(fmt.get("height")) and int(fmt["height"]),
        "tbr": _number(fmt.get("tbr")),
    }


def _best(formats: list[dict[str, Any]]) -> dict[str, Any] | None:
    def rank(fmt: dict[str, Any]) -> tuple[float, float]:
        return (_number(fmt.get("height")) or 0.0, _number(fmt.get("tbr")) or 0.0)

    return max(formats, key=rank) if formats else None


def chosen_video(formats: list[dict[str, Any]], chosen_ids: list[str]) -> dict[str, Any] | None:
    """The best video format among those chosen (yt-dlp's format ids), as a summary."""
    chosen = [f for f in formats if str(f.get("format_id")) in chosen_ids and _is_video(f)]
    return _summary(_best(chosen))


def _below(mine: dict[str, Any], theirs: dict[str, Any], fraction: float, what: str) -> str | None:
    """Why ``mine`` is below ``fraction`` of ``theirs`` (by height, else by bitrate), or None;
    "unknown" when neither can be compared."""
    for key, unit in (("height", "p"), ("tbr", " kbit/s")):
        a, b = mine.get(key), theirs.get(key)
        if a and b:
            if a < fraction * b:
                share = f"{fraction:g} of " if fraction < 1 else ""
                return f"chosen {a:g}{unit} is below {share}{what} {b:g}{unit}"
            return None
    return f"unknown: no heights or bitrates to compare with {what}"


def assess(
    formats: list[dict[str, Any]],
    chosen_ids: list[str],
    fraction: float,
    earlier: dict[str, Any] | None = None,
    measured_height: int | None = None,
) -> Degradation:
    """The verdict on one source: ``formats`` as yt-dlp's info lists them (``formats``, or
    capture.json's ``formats_available``), ``chosen_ids`` the format ids downloaded, ``fraction``
    ``[fetch] degraded_below``; ``earlier``: an earlier capture's chosen format of the same
    source ({height, tbr, format_id}), if there is one. Degraded when the chosen height (or
    bitrate, heights unknown) is below ``fraction`` of the best listed, or below the earlier
    capture's at all. ``measured_height``: the received picture's height (ffprobe), for a
    chosen format whose height the info does not give (a direct file's)."""
    videos = [f for f in formats if _is_video(f)]
    chosen = chosen_video(formats, chosen_ids)
    if measured_height and (chosen is None or not chosen.get("height")):
        chosen = {
            "format_id": (chosen or {}).get("format_id") or ",".join(chosen_ids) or None,
            "height": measured_height,
            "tbr": (chosen or {}).get("tbr"),
            "measured": True,  # read from the received file, not from the source's list
        }
    best = _summary(_best(videos))
    if chosen is None:
        # An audio-only source (or formats the info does not list): nothing to compare.
        return Degradation(False, ["unknown: no video format chosen"], None, best, earlier)
    reasons: list[str] = []
    degraded = False
    if best is not None:
        reason = _below(chosen, best, fraction, "the best listed")
        if reason:
            reasons.append(reason)
            degraded = degraded or not reason.startswith("unknown")
    if earlier is not None:
        reason = _below(chosen, earlier, 1.0, "the earlier capture's")
        if reason:
            reasons.append(reason)
            degraded = degraded or not reason.startswith("unknown")
    return Degradation(degraded, reasons, chosen, best, earlier)


def earlier_chosen(capture: dict[str, Any], source_key: str) -> dict[str, Any] | None:
    """The chosen video format of ``source_key`` in an earlier capture record (a bag's
    capture.json, as a dict): its own verdict's where it has one, else read from its formats."""
    for source in capture.get("sources") or []:
        if not isinstance(source, dict):
            continue
        extractor, ident = source.get("extractor"), source.get("address") or source.get("source_id")
        if f"{extractor}:{ident}" != source_key:
            continue
        verdict = source.get("degraded")
        if isinstance(verdict, dict) and isinstance(verdict.get("chosen"), dict):
            return dict(verdict["chosen"])
        return chosen_video(
            list(source.get("formats_available") or []),
            [str(i) for i in source.get("formats_chosen") or []],
        )
    return None


def kept_warnings(messages: list[str]) -> list[str]:
    """yt-dlp's warnings as capture.json keeps them: in order, each once, at most
    :data:`MAX_WARNINGS`, each cut to :data:`MAX_WARNING_CHARS` characters (already uncoloured
    and scrubbed by the logger that received them)."""
    kept: list[str] = []
    for message in messages:
        text = message.strip()
        if len(text) > MAX_WARNING_CHARS:
            text = text[: MAX_WARNING_CHARS - 1] + "…"
        if text and text not in kept:
            kept.append(text)
        if len(kept) >= MAX_WARNINGS:
            break
    return kept
