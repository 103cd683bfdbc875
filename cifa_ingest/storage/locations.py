"""The storage locations the settings declare (``[[storage.locations]]`` in ``cifa.toml``).

The primary archive (``ARCHIVE/bags/``) is not declared: it is the archive. Every further
location holds a complete copy of every bag, in the same layout under its own root
(``bags/<bag>/…``), so that any one location can rebuild the archive. A location's ``name``
appears in reports, the ledger and the Prefect deployments, so it is short and plain (letters,
digits, ``-``); its ``zone`` names the disaster zone it is in, for the NDSA storage levels
("at least one copy in a geographic location with a different disaster threat").

Credentials are never settings: an S3 location's keys come from the standard places of the S3
client (environment, shared profile, instance role), so that no settings file, log, report, bag
or Prefect database ever holds one. A settings file that tries is refused.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: What a location's name may be: it becomes part of report rows, ledger rows and deployment
#: names, never a path.
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$")

#: The name of the archive's own copy (``ARCHIVE/bags/``) in reports and the ledger.
PRIMARY = "primary"

#: Keys a settings file must never hold: credentials belong to the S3 client's own chain.
SECRET_KEYS = frozenset(
    {
        "access_key",
        "access_key_id",
        "aws_access_key_id",
        "secret_key",
        "secret_access_key",
        "aws_secret_access_key",
        "session_token",
        "aws_session_token",
        "password",
    }
)


class LocationKind(StrEnum):
    """How a location stores bytes."""

    FILESYSTEM = "filesystem"  #: a mounted file system: a second disk, a NAS
    S3 = "s3"  #: an S3-compatible object store


def _valid_name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(
            "a location's name is 1-64 letters, digits and '-', starting and ending with a"
            " letter or digit"
        )
    if value.lower() == PRIMARY:
        raise ValueError(f"{PRIMARY!r} is the archive's own copy, not a further location")
    return value


def _valid_kept(value: int | None) -> int | None:
    if value == 1:
        raise ValueError(
            "keep 2 ledger snapshots at least (the newest, and one before it for recovery to fall"
            " back on), or 0 to keep them all"
        )
    return value


#: How many of the ledger's snapshots a location keeps: 0, every one; else the newest N, N >= 2.
SnapshotsKept = Annotated[int, Field(ge=0, le=100_000), AfterValidator(_valid_kept)]


class _Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_valid_name)]
    zone: str = Field(min_length=1, max_length=128)
    audit_every_days: float = Field(default=30, gt=0, le=3650)
    #: How many of the ledger's snapshots to keep here (:data:`SnapshotsKept`); unset: as
    #: ``[storage] ledger_snapshots_kept`` says (:class:`StorageSettings` fills it in).
    ledger_snapshots_kept: SnapshotsKept | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: object) -> object:
        if isinstance(data, dict):
            secret = sorted(SECRET_KEYS & {str(key).lower() for key in data})
            if secret:
                raise ValueError(
                    f"{', '.join(secret)}: credentials never go in the settings file; give them"
                    " to the S3 client (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the"
                    " environment, a profile in ~/.aws/credentials, or an instance role)"
                )
        return data


class FilesystemLocation(_Location):
    """A copy on a mounted file system (a second disk, a NAS mount): ``path`` is its root."""

    kind: Literal[LocationKind.FILESYSTEM] = LocationKind.FILESYSTEM
    path: str = Field(min_length=1)


class S3Location(_Location):
    """A copy in an S3-compatible object store: objects ``<prefix>bags/<bag>/<file>`` in
    ``bucket``. ``endpoint`` omitted means AWS's own. With ``object_lock_days`` every object is
    written under COMPLIANCE retention for that many days (the bucket must have Object Lock)."""

    kind: Literal[LocationKind.S3] = LocationKind.S3
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/.*)?$")
    region: str | None = None
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field(default="", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")
    object_lock_days: int | None = Field(default=None, ge=1, le=36500)


Location = Annotated[FilesystemLocation | S3Location, Field(discriminator="kind")]


class StorageSettings(BaseModel):
    """``[storage]``: the further locations, each a complete copy of every bag, and how many of
    the ledger's snapshots each keeps (:func:`cifa_ingest.storage.replicate.prune_snapshots`):
    ``ledger_snapshots_kept``, 0 for all of them (the default), else the newest N (2 at least),
    for every location that does not set its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    locations: tuple[Location, ...] = ()
    ledger_snapshots_kept: SnapshotsKept = 0

    @model_validator(mode="after")
    def _each_location_keeps(self) -> StorageSettings:
        """Each location that sets no ``ledger_snapshots_kept`` of its own takes this table's:
        the location is what replication is given (the nightly run's, ``cifa replicate``)."""
        filled = tuple(
            location
            if location.ledger_snapshots_kept is not None
            else location.model_copy(update={"ledger_snapshots_kept": self.ledger_snapshots_kept})
            for location in self.locations
        )
        object.__setattr__(self, "locations", filled)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> StorageSettings:
        seen: set[str] = set()
        for location in self.locations:
            if location.name.lower() in seen:
                raise ValueError(f"two locations are named {location.name!r}")
            seen.add(location.name.lower())
        return self

    def location(self, name: str) -> FilesystemLocation | S3Location | None:
        """The location called ``name``, if the settings declare one."""
        return next((loc for loc in self.locations if loc.name == name), None)
