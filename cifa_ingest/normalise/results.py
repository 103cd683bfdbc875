"""What normalisation made and found, per film or part and per work: the files and the commands
that made them, the proof, the MediaConch check, the fidelity record; what
:mod:`cifa_ingest.preserve` writes into normalisation.json and PREMIS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cifa_ingest.normalise import mediaconch as conformance
from cifa_ingest.normalise import proof
from cifa_ingest.normalise.fidelity import Fidelity


@dataclass
class Rendition:
    """One derived file and the command that made it."""

    name: str
    role: str
    source: str
    command: list[str]


@dataclass
class GroupResult:
    """What normalisation did with one film (or one part)."""

    stem: str
    action: str
    reason: str
    originals: list[str]
    original_bytes: int
    master_bytes: int = 0
    renditions: list[Rendition] = field(default_factory=list)
    proof: proof.Proof | None = None
    conformance: conformance.PolicyCheck | None = None
    notes: list[str] = field(default_factory=list)
    fidelity: Fidelity = field(default_factory=Fidelity)
    #: Per audio stream whose source declares its length: the samples declared and the samples
    #: the master holds (:func:`~cifa_ingest.normalise.audio.audio_samples`); kept in
    #: normalisation.json's proof record.
    audio_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def storage_factor(self) -> float | None:
        """Master bytes / original bytes: what this choice of master costs in storage."""
        return self.master_bytes / self.original_bytes if self.master_bytes else None


@dataclass
class Normalised:
    """What normalisation made from one work's originals."""

    ffmpeg_version: str
    profile: str
    groups: list[GroupResult] = field(default_factory=list)

    @property
    def renditions(self) -> list[Rendition]:
        return [r for group in self.groups for r in group.renditions]
