"""A one-off preservation job: one film named by plain values (address, id, title), its
permission record named by *reference*, never given inline.

A one-off job can be started from Prefect (the ``preserve-film`` deployment), whose database keeps
every run's parameters and whose UI shows them to anyone who can open it. A permission record may
name a filmmaker and say how to reach them, so it never travels as a parameter: the job names the
file where the record is kept, and the record is read inside the run, used, and written into the
bag's metadata only. The file is either

- a permission record of its own (YAML or JSON: ``status``, ``granted_by``, ``basis``, ``date``,
  ``covers``, ``notes``, as under ``permission:`` in a catalogue); the film is then described by
  the job's values (``url`` and ``title`` at least); or
- a catalogue (``manifests/*.yaml``, which holds the films and their permission records) that
  holds the work ``id``: the work is then preserved as catalogued, and the job gives no other
  description (one place describes a work; two could disagree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cifa_ingest.catalogue.model import (
    MAX_CATALOGUE_BYTES,
    Permission,
    Work,
    _NoAliasLoader,
    parse_catalogue,
    validation_problems,
)
from cifa_ingest.errors import InputError


def _read_mapping(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        size = path.stat().st_size
        if size > MAX_CATALOGUE_BYTES:
            raise InputError(f"permission {path}: {size} bytes is too large for a record")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"permission {path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"permission {path}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # JSON is YAML too
    except yaml.YAMLError:
        # The parser's message quotes the file, which may hold personal details: name the file only.
        raise InputError(f"permission {path}: neither YAML nor JSON") from None
    if not isinstance(raw, dict):
        raise InputError(
            f"permission {path}: a permission record (status, granted_by, …) or a catalogue"
        )
    return text, raw


def work_for_job(
    work_id: str,
    permission: str | Path,
    *,
    url: str | None = None,
    title: str | None = None,
    title_zh: str | None = None,
    director: str | None = None,
    director_zh: str | None = None,
    year: int | None = None,
    platform: str | None = None,
) -> tuple[Work, str | None]:
    """The work a one-off job preserves and its collection (see the module docstring). Raises
    :class:`InputError` naming the file and the field, never quoting a value of the record."""
    path = Path(permission).expanduser()
    text, raw = _read_mapping(path)
    described = {
        "url": url,
        "title": title,
        "title_zh": title_zh,
        "director": director,
        "director_zh": director_zh,
        "year": year,
        "platform": platform,
    }
    if "works" in raw:
        catalogue = parse_catalogue(text, str(path))
        found = [work for work in catalogue.works if work.id == work_id]
        if not found:
            raise InputError(f"permission {path}: the catalogue holds no work {work_id}")
        given = [name for name, value in described.items() if value is not None]
        if given:
            raise InputError(
                f"{work_id}: described by the catalogue {path}; do not give {', '.join(given)}"
                " (or name a permission record file instead of the catalogue)"
            )
        return found[0], catalogue.collection.name if catalogue.collection else None
    try:
        record = Permission.model_validate(raw)
    except ValidationError as exc:
        raise InputError("\n".join(validation_problems(exc, raw, f"permission {path}"))) from None
    missing = [name for name in ("url", "title") if not described[name]]
    if missing:
        raise InputError(f"{work_id}: {' and '.join(missing)} required with a permission record")
    fields = {
        "id": work_id,
        "title": {"en": title, "zh": title_zh},
        "director": {"en": director, "zh": director_zh} if director else None,
        "year": year,
        "source": {"url": url, "platform": platform},
    }
    try:
        return Work.model_validate({**fields, "permission": record}), None
    except ValidationError as exc:
        raise InputError("\n".join(validation_problems(exc, fields, "preserve-film"))) from None
