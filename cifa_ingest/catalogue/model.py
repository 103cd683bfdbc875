"""The catalogue: the archive's register of films and of the permission to keep them.

A catalogue file (``manifests/*.yaml``) is the only place where the archive says which films it
may fetch. It is therefore validated as a whole before anything else happens: a single bad entry
refuses the whole file, with the file, the entry and the field named, so that a typo can never
make the pipeline fetch a film nobody agreed to, nor skip one silently.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
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
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python

from cifa_ingest.errors import CatalogueError
from cifa_ingest.fetch.source_policy import check_url_syntax

#: Archive identifiers become directory names and bag identifiers: keep them boring.
WORK_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
WORK_ID_MAX_LENGTH = 64
WORK_ID_RULE = "lowercase letters a-z, digits and single hyphens, e.g. cifa-0001"
#: A catalogue is a hand-edited text file; anything larger than this is not one.
MAX_CATALOGUE_BYTES = 4 * 1024 * 1024


def is_work_id(text: str) -> bool:
    """Whether ``text`` is an archive identifier as a catalogue's ``id`` must be: the check to
    make before an id typed by someone is looked up or comes near a path."""
    return len(text) <= WORK_ID_MAX_LENGTH and re.fullmatch(WORK_ID_PATTERN, text) is not None


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
    """Where the archive stands with the film's rights holder. ``withdrawn``: granted once, then
    taken back by the rights holder (a work preserved before keeps its preservation files unless
    a deaccession is asked for; nothing more is fetched, and no access copy is given out)."""

    GRANTED = "granted"
    PENDING = "pending"
    REFUSED = "refused"
    NOT_SOUGHT = "not-sought"
    WITHDRAWN = "withdrawn"


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


#: What a permission record's personal details read as once serialised to JSON (see Permission).
WITHHELD = "(withheld)"


class Permission(_Strict):
    """The permission record: who agreed, to what, on what basis, when.

    ``granted_by``, ``basis`` and ``notes`` may name filmmakers and hold their personal details.
    They belong in the bag's metadata and nowhere else, so a record serialised to JSON (pydantic's
    JSON mode, which is how Prefect stores a flow run's parameters and how anything leaves this
    process as data) reads :data:`WITHHELD` in their place; the status, uses and date, which
    decide what the archive may do, stay. The bag's ``metadata/permission.json`` is written from
    :meth:`record`, the one way to the full values."""

    status: PermissionStatus
    covers: list[Use] = Field(default_factory=lambda: [Use.PRESERVATION], min_length=1)
    granted_by: ShortText | None = None
    basis: LongText | None = None
    date: dt.date | None = None
    notes: LongText | None = None

    @field_serializer("granted_by", "basis", "notes", when_used="json-unless-none")
    def _withheld(self, _value: str) -> str:
        return WITHHELD

    def record(self) -> dict[str, Any]:
        """The full record, JSON-ready, personal details included: for the bag's metadata."""
        return to_jsonable_python(self.model_dump(mode="python"))

    @property
    def covers_access(self) -> bool:
        """Granted, and covering ``access`` or ``public-access``: see
        :attr:`Work.access_permitted`."""
        return self.status is PermissionStatus.GRANTED and bool(
            {Use.ACCESS, Use.PUBLIC_ACCESS} & set(self.covers)
        )

    @classmethod
    def withheld_by_record(cls, data: bytes) -> str | None:
        """:meth:`access_withheld` of the permission record ``data`` (a bag's
        ``metadata/permission.json``); a record that cannot be read withholds, saying so."""
        try:
            permission = cls.model_validate_json(data)
        except ValueError as exc:
            return f"the permission record cannot be read ({type(exc).__name__})"
        return permission.access_withheld()

    def access_withheld(self) -> str | None:
        """Why access copies may not be given out under this permission, in the words of the
        run report and of an access export; None where they may (:attr:`covers_access`)."""
        if self.covers_access:
            return None
        if self.status is not PermissionStatus.GRANTED:
            return f"permission {self.status}"
        uses = ", ".join(str(use) for use in self.covers)
        return f"permission does not cover access ({uses})"

    @model_validator(mode="after")
    def _granted_needs_grantor(self) -> Permission:
        if self.status is PermissionStatus.GRANTED and not self.granted_by:
            raise ValueError("granted_by is required when status is granted")
        return self


class Work(_Strict):
    """One film: one archival object, one bag."""

    id: Annotated[str, StringConstraints(pattern=WORK_ID_PATTERN, max_length=WORK_ID_MAX_LENGTH)]
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
    def access_permitted(self) -> bool:
        """Whether access copies may be given out: permission is granted and covers ``access``
        (the archive's users) or ``public-access``. ``research`` alone does not: it lets
        researchers study the work under the archive's supervision (PREMIS act ``use``,
        "research only"), not receive a copy, so exports meant for access withhold the access
        copies of a work permitted for research only, as of a narrowed or withdrawn one."""
        return self.permission.covers_access

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
    WORK_ID_PATTERN: f"must be {WORK_ID_RULE}",
    ONE_LINE_PATTERN: "must be a single line (no line breaks)",
}


#: A catalogue is five levels deep (works, a work, permission, covers, a use); much deeper is an
#: attack on PyYAML's composer, which recurses once per level (a RecursionError, not a message).
MAX_NESTING = 32


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases: a catalogue never needs them, and they are
    how a few lines of YAML expand into gigabytes (the "billion laughs"). It refuses nesting
    deeper than :data:`MAX_NESTING`, and makes an impossible date (``2019-02-30``, a bare
    ValueError in PyYAML) a YAML error with its line."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        if self._depth >= MAX_NESTING:
            line = self.peek_event().start_mark.line + 1
            raise yaml.YAMLError(f"nested more than {MAX_NESTING} levels deep (line {line})")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid date {node.value!r}: {exc}", node.start_mark
            ) from None


_NoAliasLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _NoAliasLoader.construct_yaml_timestamp
)


def _duplicate_keys(
    node: yaml.Node, loc: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], int, int]]:
    """(where, first line, second line) for every key written twice in one mapping. PyYAML
    silently keeps the last, so a ``url:`` given twice would fetch whichever came second."""
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and (key.tag, name) in lines:
                yield (*loc, name), lines[(key.tag, name)], line
            lines.setdefault((key.tag, name), line)
            yield from _duplicate_keys(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _shown(part: Any) -> str:
    """A key as it may be printed on a terminal: control characters and bidi overrides spelt as
    escapes, so that a hostile key in a catalogue cannot rewrite the screen."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(part))


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
        field = ".".join(_shown(part) for part in loc[2:])
        return f"{entry}: {field}" if field else entry
    return ".".join(_shown(part) for part in loc) or "(top level)"


def parse_catalogue(text: str, origin: str) -> Catalogue:
    """Parse and validate catalogue text; ``origin`` names it in error messages."""
    try:
        loader = _NoAliasLoader(text)  # refuses non-printable characters (NUL, ESC) at once
        try:
            node = loader.get_single_node()
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{origin}: not valid YAML: {exc}") from None
    if node is None:
        # Most likely a file emptied by mistake: the register of permissions is not silently
        # read as "no films".
        raise CatalogueError(f"{origin}: empty; a catalogue with no works says 'works: []'")
    if not isinstance(raw, dict):
        raise CatalogueError(f"{origin}: a catalogue is a mapping with a 'works:' list")
    duplicates = [
        f"{origin}: {_describe_location(raw, loc)}: duplicate key (lines {first} and {second});"
        " YAML would silently keep only the last"
        for loc, first, second in _duplicate_keys(node)
    ]
    if duplicates:
        raise CatalogueError("\n".join(duplicates))
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
        with path.open("rb") as fh:
            # Read at most one byte past the cap: a device or a growing file cannot exhaust memory.
            data = fh.read(MAX_CATALOGUE_BYTES + 1)
        if len(data) > MAX_CATALOGUE_BYTES:
            raise CatalogueError(
                f"{path}: more than {MAX_CATALOGUE_BYTES // 2**20} MiB, too large for a catalogue"
            )
        text = data.decode("utf-8")
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
