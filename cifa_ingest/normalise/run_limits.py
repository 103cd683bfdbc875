"""How long an ffmpeg run over a film may take, and how its progress is followed: both from the
film's duration and the settings (a run that stalls is killed:
:class:`cifa_ingest.tools.runner.Progress`).
"""

from __future__ import annotations

from typing import Any

from cifa_ingest.config import NormaliseSettings
from cifa_ingest.normalise.streams import film_duration
from cifa_ingest.tools import runner


def run_progress(
    label: str, probes: list[dict[str, Any]], settings: NormaliseSettings
) -> runner.Progress:
    return runner.Progress(
        label, film_duration(probes), settings.stall_seconds, settings.progress_interval_seconds
    )


def run_timeout(probes: list[dict[str, Any]], settings: NormaliseSettings) -> float:
    return settings.timeout_base_seconds + settings.timeout_per_film_second * (
        film_duration(probes) or 0
    )
