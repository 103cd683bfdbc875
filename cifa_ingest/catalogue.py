"""The catalogue: the archive's register of films and of the permission to keep them.

A catalogue file (``manifests/*.yaml``) is the only place where the archive says which films it
may fetch. It is therefore validated as a whole before anything else happens: a single bad entry
refuses the whole file, with the file, the entry and the field named, so that a typo can never
make the pipeline fetch a film nobody agreed to, nor skip one silently.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from cifa_ingest.errors import CatalogueError
from cifa_ingest.source_policy import check_url_syntax

#: Archive identifiers become directory names and bag identifiers: keep them boring.
WORK_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
#: A catalogue is a hand-edited text file; anything larger than this is not one.
MAX_CATALOGUE_BYTES = 4 * 1024 * 1024

ONE_LINE_PATTERN = r"^[^\r\n]*$"
ShortText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=500, pattern=ONE_LINE_PATTERN
    ),
]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class PermissionStatus(StrEnum):
    """Where the archive stands with the film's rights holder."""

    GRANTED = "granted"
    PENDING = "pending"
    REFUSED = "refused"
    NOT_SOUGHT = "not-sought"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        """Refuse control characters and bidi overrides in every text field: they could forge
        tag-file lines or disguise a title in a report."""
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and _CONTROL_CHARS.search(value.replace("\n", "")):
                    raise ValueError(f"{key}: control or bidirectional-override character")
        return data


class Names(_Strict):
    """A name or title in English and, where known, Chinese."""

    en: ShortText
    zh: ShortText | None = None


class Source(_Strict):
    """Where the film (or one part of it) is published."""

    url: str | None = Field(default=None, max_length=2048)
    platform: ShortText | None = None
    label: ShortText | None = None

    @field_validator("url")
    @classmethod
    def _url_is_web_address(cls, value: str | None) -> str | None:
        if value is not None:
            check_url_syntax(value)
        return value


class Use(StrEnum):
    """What a permission may cover. Fetching needs ``preservation``."""

    PRESERVATION = "preservation"
    ACCESS = "access"
    PUBLIC_ACCESS = "public-access"
    RESEARCH = "research"


class Permission(_Strict):
    """The permission record: who agreed, to what, on what basis, when."""

    status: PermissionStatus
    covers: list[Use] = Field(default_factory=lambda: [Use.PRESERVATION], min_length=1)
    granted_by: ShortText | None = None
    basis: LongText | None = None
    date: dt.date | None = None
    notes: LongText | None = None

    @model_validator(mode="after")
    def _granted_needs_grantor(self) -> Permission:
        if self.status is PermissionStatus.GRANTED and not self.granted_by:
            raise ValueError("granted_by is required when status is granted")
        return self


class Work(_Strict):
    """One film: one archival object, one bag."""

    id: Annotated[str, StringConstraints(pattern=WORK_ID_PATTERN, max_length=64)]
    title: Names
    director: Names | None = None
    year: int | None = Field(default=None, ge=1888, le=2100)
    kind: ShortText | None = None
    synopsis: LongText | None = None
    source: Source | None = None
    parts: list[Source] | None = Field(default=None, min_length=1, max_length=100)
    permission: Permission
    notes: LongText | None = None

    @model_validator(mode="after")
    def _source_or_parts(self) -> Work:
        if self.source is not None and self.parts is not None:
            raise ValueError("give either source or parts, not both")
        if self.source is None and self.parts is None:
            raise ValueError("source (or parts) is required; write url: null when it is not known")
        return self

    @property
    def sources(self) -> list[Source]:
        """The film's sources in order: one for a single film, several for a work in parts."""
        return list(self.parts) if self.parts is not None else [self.source]  # type: ignore[list-item]

    @property
    def is_permitted(self) -> bool:
        """Permission is granted, and it covers preservation (what fetching is for)."""
        return (
            self.permission.status is PermissionStatus.GRANTED
            and Use.PRESERVATION in self.permission.covers
        )

    @property
    def may_be_fetched(self) -> bool:
        return self.is_permitted and self.has_source_address

    @property
    def has_source_address(self) -> bool:
        return all(source.url for source in self.sources)

    @property
    def display_title(self) -> str:
        return f"{self.title.en} / {self.title.zh}" if self.title.zh else self.title.en


class Collection(_Strict):
    name: ShortText
    description: LongText | None = None


class Catalogue(_Strict):
    """A catalogue file: an optional collection and its works."""

    collection: Collection | None = None
    works: list[Work] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalogue:
        seen: set[str] = set()
        for index, work in enumerate(self.works):
            if work.id in seen:
                raise ValueError(f"works[{index}] ({work.id}): id: duplicate identifier")
            seen.add(work.id)
        return self


_FRIENDLY_PATTERN_MESSAGES = {
    WORK_ID_PATTERN: "must be lowercase letters a-z, digits and single hyphens, e.g. cifa-0001",
    ONE_LINE_PATTERN: "must be a single line (no line breaks)",
}


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases: a catalogue never needs them, and they are
    how a few lines of YAML expand into gigabytes (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _describe_location(raw: Any, loc: tuple[Any, ...]) -> str:
    """Turn a pydantic error location into ``works[3] (cifa-0004): permission.granted_by``."""
    if len(loc) >= 2 and loc[0] == "works" and isinstance(loc[1], int):
        index = loc[1]
        work_id = None
        works = raw.get("works") if isinstance(raw, dict) else None
        if isinstance(works, list) and index < len(works) and isinstance(works[index], dict):
            candidate = works[index].get("id")
            if isinstance(candidate, str) and re.fullmatch(WORK_ID_PATTERN, candidate):
                work_id = candidate
        entry = f"works[{index}]" + (f" ({work_id})" if work_id else "")
        field = ".".join(str(part) for part in loc[2:])
        return f"{entry}: {field}" if field else entry
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_catalogue(text: str, origin: str) -> Catalogue:
    """Parse and validate catalogue text; ``origin`` names it in error messages."""
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{origin}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CatalogueError(f"{origin}: a catalogue is a mapping with a 'works:' list")
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise CatalogueError("\n".join(validation_problems(exc, raw, origin))) from None


def validation_problems(exc: ValidationError, raw: Any, origin: str) -> list[str]:
    """One ``origin: entry: field: message`` line per problem pydantic found."""
    problems = []
    for error in exc.errors():
        where = _describe_location(raw, tuple(error["loc"]))
        message = _FRIENDLY_PATTERN_MESSAGES.get(
            (error.get("ctx") or {}).get("pattern", ""),
            str(error["msg"]).removeprefix("Value error, "),
        )
        problems.append(f"{origin}: {where}: {message}")
    return problems


def load_catalogue(path: Path | str) -> Catalogue:
    """Read and validate one catalogue file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CATALOGUE_BYTES:
            raise CatalogueError(f"{path}: {size} bytes is too large for a catalogue")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CatalogueError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_catalogue(text, str(path))


def load_catalogues(paths: Iterable[Path | str]) -> list[tuple[Path, Catalogue]]:
    """Read several catalogues; an identifier used in two files is refused as in one."""
    loaded: list[tuple[Path, Catalogue]] = []
    owner: dict[str, Path] = {}
    for path in paths:
        catalogue = load_catalogue(path)
        for index, work in enumerate(catalogue.works):
            if work.id in owner:
                raise CatalogueError(
                    f"{path}: works[{index}] ({work.id}): id: already used in {owner[work.id]}"
                )
            owner[work.id] = Path(path)
        loaded.append((Path(path), catalogue))
    return loaded
