"""MediaInfo's description of a file: a bag's technical.mediainfo.json, and what ffmpeg does not
read (an MP4 track's title, :func:`cifa_ingest.normalise.kept_metadata.missed_titles`).

MediaInfo is optional (Debian package ``mediainfo``; ``make setup`` installs it): where it is
missing, or its run fails, there is no description (None), never an invented one; a failed run
is logged. It runs through the one runner (:mod:`cifa_ingest.tools.runner`): logged, with a time
limit, its exit code checked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cifa_ingest.errors import FFmpegError
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)

#: Seconds a description may take: MediaInfo reads a file's headers, not all of it.
DESCRIBE_TIMEOUT = 600


def describe(path: Path) -> dict[str, Any] | None:
    """MediaInfo's JSON description of a file, or None where MediaInfo is not installed, fails,
    or says nothing readable."""
    tool = runner.find("mediainfo")
    if tool is None:
        return None
    try:
        completed = runner.run([tool, "--Output=JSON", "--", str(path)], timeout=DESCRIBE_TIMEOUT)
    except FFmpegError as exc:
        log.warning("%s: MediaInfo could not describe it: %s", path.name, exc)
        return None
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError:
        return None
