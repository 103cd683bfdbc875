"""The format policy: which normalisation action each kind of source gets, as data.

Archivematica switched its FFV1 normalisation off by default in 2019 (its issue #912): turning
compressed web video into FFV1 multiplies storage with no gain in quality. We make the choice
explicit, per codec and container, in a policy file checked against this schema: the one the
package ships, ``cifa_ingest/policies/format-policy.toml``, unless the settings name another.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cifa_ingest.errors import ConfigError


class Action(StrEnum):
    FFV1 = "ffv1"  # decode and re-encode losslessly to FFV1 in Matroska
    REMUX = "remux"  # copy the encoded streams bit for bit into Matroska
    KEEP = "keep"  # no master: the original is the preservation file


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    codecs: list[str] = Field(default_factory=list)
    containers: list[str] = Field(default_factory=list)
    action: Action

    def matches(self, codec: str, container: str) -> bool:
        formats = set(container.split(","))
        return codec in self.codecs or bool(formats & set(self.containers))


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    default: Action = Action.FFV1
    access: bool = True
    rules: list[Rule] = Field(default_factory=list)

    def decide(self, probes: list[dict[str, Any]]) -> tuple[Action, str]:
        """The action for a source (its probes) and the reason, for the record."""
        codec, container = (
            _deciding_codec(probes),
            probes[0].get("format", {}).get("format_name", ""),
        )
        for rule in self.rules:
            if rule.matches(codec, container):
                return rule.action, f"rule '{rule.name}' ({codec} in {container})"
        return self.default, f"default ({codec} in {container})"


class FormatPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: dict[str, Profile]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ConfigError(f"format policy: no profile {name!r} (known: {known})")
        return self.profiles[name]


def _deciding_codec(probes: list[dict[str, Any]]) -> str:
    streams = [s for probe in probes for s in probe.get("streams", [])]
    for kind in ("video", "audio"):
        for stream in streams:
            attached = stream.get("disposition", {}).get("attached_pic")
            if stream.get("codec_type") == kind and not attached:
                return str(stream.get("codec_name", ""))
    return ""


def load_policy(path: Path) -> FormatPolicy:
    """Read and validate a policy file (``config.format_policy_path`` says which)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return FormatPolicy.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = [f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(problems)) from None
