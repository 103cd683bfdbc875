"""Settings: ``config/cifa.toml``, validated, with defaults for every key.

Resolution order for the archive path (highest first): ``--archive`` on the command line,
the ``CIFA_ARCHIVE`` environment variable, ``[archive] path`` in the config file, ``./archive``.
The config file is ``CIFA_CONFIG`` if set, else ``config/cifa.toml`` in the working directory if it
exists, else the built-in defaults, which are the repository's ``config/cifa.toml`` (a test holds
them equal) save the organisation's address.

The policies the program follows (the format policy, the MediaConch policy for masters) ship in
the package, ``cifa_ingest/policies/``, with the CIFA BagIt profile: they apply wherever the
program is run from. A settings file may name a site's own instead; a relative path is relative
to the folder of the settings file that names it, and a file named that does not exist is a
:class:`ConfigError` (exit 2), never a silent fallback.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.cookiejar
import importlib.resources
import ipaddress
import logging
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cifa_ingest.errors import ConfigError
from cifa_ingest.prefect_internals import cron_taken_by_prefect
from cifa_ingest.storage.locations import StorageSettings

DEFAULT_CONFIG_PATH = Path("config/cifa.toml")
#: The policy files shipped in the package (``cifa_ingest/policies/``, package data).
FORMAT_POLICY = "format-policy.toml"
MEDIACONCH_POLICY = "mediaconch-master-policy.xml"
BAGIT_PROFILE = "cifa-bagit-profile.json"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchiveSettings(_Section):
    path: str = "archive"
    #: The disaster zone of the archive's own disk (``bags/``), as a storage location's ``zone``
    #: names its own: the holdings report compares them for the NDSA storage levels (a copy in
    #: another zone is one in a separate place, with another disaster threat).
    zone: str = Field(default="primary", min_length=1, max_length=128)


class OrganisationSettings(_Section):
    name: str = "Chinese Independent Film Archive"
    address: str = ""
    contact_email: str = ""


class CatalogueSettings(_Section):
    manifests: list[str] = Field(default_factory=lambda: ["manifests/cifa.yaml"])


#: Hosts of the platforms in the catalogue and the hosts they serve media and images from.
DEFAULT_ALLOWED_HOSTS = [
    "youtube.com",
    "youtu.be",
    "youtube-nocookie.com",
    "googlevideo.com",
    "ytimg.com",
    "ggpht.com",
    "dafilms.com",
    "vimeo.com",
    "vimeocdn.com",
    "bilibili.com",
]


class CookiesSettings(_Section):
    """Signed-in access to one host, an operator's recorded choice (``[[fetch.cookies]]``, or the
    ``CIFA_COOKIES_*`` environment variables): a Netscape cookies file, and the label of the
    account it signs in as (recorded in capture.json; the cookies never are)."""

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:-]+$")
    file: str = Field(min_length=1)
    account: str = Field(min_length=1, max_length=128, pattern=r"^[^\s]+$")


def _no_po_token(value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """Extractor arguments without a PO token: a secret, which comes from the environment."""
    for extractor, arguments in value.items():
        if extractor.lower() == "youtube" and any(k.lower() == "po_token" for k in arguments):
            raise ValueError(
                "youtube po_token is a secret: set it in the environment (CIFA_YOUTUBE_PO_TOKEN),"
                " never in a settings file"
            )
    return value


class FetchSettings(_Section):
    """How films are fetched (see config/cifa.toml for the meaning of each key)."""

    format: str = "bv*+ba/b"
    format_sort: list[str] = Field(default_factory=list)
    subtitles: bool = True
    auto_subtitles: bool = False
    thumbnails: bool = True
    allowed_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS))
    socket_timeout_seconds: float = Field(default=30, gt=0)
    retries: int = Field(default=10, ge=0, le=100)
    fragment_retries: int = Field(default=10, ge=0, le=100)
    duration_tolerance_seconds: float = Field(default=2, ge=0, le=600)
    #: A capture is degraded when its chosen video's height (or bitrate, heights unknown) is
    #: below this fraction of the best the source lists (cifa_ingest.fetch.degraded).
    degraded_below: float = Field(default=0.5, gt=0, le=1)
    #: A degraded capture is not bagged: the work fails ``degraded``, a later run tries again.
    refuse_degraded: bool = False
    transient_attempts: int = Field(default=4, ge=1, le=20)
    backoff_seconds: float = Field(default=5, ge=0, le=3600)
    max_wait_seconds: float = Field(default=300, ge=0, le=86400)
    pause_seconds: float = Field(default=2, ge=0, le=3600)
    rate_limit: str | None = None
    progress_interval_seconds: float = Field(default=5, gt=0)
    #: Days a failed fetch's partial downloads are kept aside (``ARCHIVE/partials/``) to be
    #: resumed by a later run with a Range request; 0: never kept (:mod:`cifa_ingest.fetch.resume`).
    resume_kept_days: int = Field(default=7, ge=0, le=365)
    #: The Deno binary yt-dlp solves YouTube's challenges with; None: the one the project
    #: installs (:mod:`cifa_ingest.fetch.js_runtime`).
    deno: str | None = None
    #: Signed-in access, per host (:class:`CookiesSettings`). Never serialised (``exclude``):
    #: settings passed to a Prefect flow are stored in its database, and the files' paths stay
    #: out of it; a Dask worker gets them by pickle, and must see the same paths.
    cookies: list[CookiesSettings] = Field(default_factory=list, exclude=True)
    #: yt-dlp's extractor arguments (its ``--extractor-args``), e.g. a PO token provider's
    #: ``{"youtubepot-bgutilhttp" = {base_url = ["http://127.0.0.1:4416"]}}``.
    extractor_args: Annotated[dict[str, dict[str, list[str]]], AfterValidator(_no_po_token)] = (
        Field(default_factory=dict)
    )


class NormaliseSettings(_Section):
    """How masters and access copies are made (see config/cifa.toml)."""

    profile: str = "default"
    #: The format policy and the MediaConch policy: a site's own files (absolute once read by
    #: :func:`load_settings`), or None for those shipped in the package (:func:`packaged_policy`).
    policy_file: str | None = None
    mediaconch_policy: str | None = None
    access_crf: int = Field(default=23, ge=0, le=51)
    access_preset: str = "veryfast"
    access_audio_bitrate: str = "160k"
    threads: int = Field(default=0, ge=0, le=256)
    contact_sheet_tiles: int = Field(default=4, ge=1, le=10)
    estimate_sample_seconds: float = Field(default=5, gt=0)
    free_space_margin_bytes: int = Field(default=1_000_000_000, ge=0)
    stall_seconds: float = Field(default=600, gt=0)
    timeout_base_seconds: float = Field(default=600, gt=0)
    timeout_per_film_second: float = Field(default=20, gt=0)
    progress_interval_seconds: float = Field(default=10, gt=0)


def _prefect_refusal(**schedule: str) -> str | None:
    """Why Prefect refuses this cron schedule (its ``CronSchedule``, as its server checks the
    schedules it is given), or None when it takes it. Imports Prefect: called only when the
    quick checks below fail or cannot be made."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(**schedule)  # type: ignore[arg-type]
    except ValidationError as exc:
        return "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
    return None


def _valid_cron(value: str) -> str:
    """A cron expression Prefect's scheduler takes (minute hour day month weekday; croniter's
    extensions too), checked when the settings are read, not when ``cifa serve`` starts or at
    2 a.m. The quick check is Prefect's own rule on its own croniter, without importing Prefect
    (:mod:`cifa_ingest.prefect_internals`, the one use of Prefect's private parts, and why);
    Prefect has the last word on what it refuses, and names why."""
    if not cron_taken_by_prefect(value) and (refusal := _prefect_refusal(cron=value)):
        raise ValueError(f"Prefect's scheduler refuses it: {refusal}")
    return value


def _valid_timezone(value: str) -> str:
    """An IANA time zone Prefect's scheduler takes: one of ``zoneinfo.available_timezones()``,
    which is Prefect's own check (``ZoneInfo`` alone also opens files such as ``posixrules``
    that Prefect refuses)."""
    if value in available_timezones():
        return value
    if not value:
        raise ValueError("empty: an IANA time zone is needed, e.g. Europe/London")
    if refusal := _prefect_refusal(cron="0 0 * * *", timezone=value):
        raise ValueError(f"Prefect's scheduler refuses it: {refusal}")
    return value


Cron = Annotated[str, AfterValidator(_valid_cron)]


class ScheduleSettings(_Section):
    """When ``cifa serve`` runs the nightly ingest and the fixity audits (see config/cifa.toml)."""

    timezone: Annotated[str, AfterValidator(_valid_timezone)] = "Europe/London"
    nightly_ingest: Cron = "0 2 * * *"
    fixity_rolling: Cron = "0 4 * * *"
    fixity_rolling_max_age_days: float = Field(default=90, gt=0)
    fixity_rolling_budget_hours: float | None = Field(default=1, gt=0)
    fixity_full: Cron = "0 5 * * 0"


#: A Dask scheduler's address, as ``distributed.Client`` takes it.
DASK_ADDRESS = r"^(tcp|tls|ucx|ws|wss|inproc)://[^\s/]+$"


class ExecutionSettings(_Section):
    """Where and how many things run at once (see config/cifa.toml and
    ``cifa_ingest.archive.slots``)."""

    #: A Dask scheduler (``tcp://host:8786``): the works of a nightly run go to its workers
    #: (prefect-dask's DaskTaskRunner). None: they run in the ingest's own process.
    dask_address: str | None = Field(default=None, pattern=DASK_ADDRESS)
    #: At most this many ffmpeg encodes at once per machine; None: half the machine's cores, at
    #: least one, counted on the machine that encodes (``slots.default_max_encodes``).
    max_encodes: int | None = Field(default=None, ge=1, le=256)
    #: Works preserved side by side by a run without Dask (threads of the ingest's process).
    max_parallel_works: int = Field(default=1, ge=1, le=64)
    #: The limits' slot files; relative to the archive root (shared by every machine that
    #: writes to the archive, so one download per host holds across a cluster).
    locks_dir: str = "locks"


class Settings(_Section):
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    organisation: OrganisationSettings = Field(default_factory=OrganisationSettings)
    catalogue: CatalogueSettings = Field(default_factory=CatalogueSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    normalise: NormaliseSettings = Field(default_factory=NormaliseSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)


def config_path() -> Path | None:
    """The config file in force, or None for the built-in defaults."""
    explicit = os.environ.get("CIFA_CONFIG")
    if explicit:
        return Path(explicit)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the settings file (see the module docstring for which one), with the
    policy files it names made absolute (relative to its folder) and checked to exist."""
    for name in (FORMAT_POLICY, MEDIACONCH_POLICY):  # a broken installation: said now
        packaged_policy(name)
    path = path or config_path()
    if path is None:
        return _with_cookies(Settings(), None)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError("\n".join(problems)) from None
    return _with_cookies(_with_policies(settings, path), path)


def _with_policies(settings: Settings, path: Path) -> Settings:
    """``settings`` with the policy files it names resolved against the folder of ``path``, the
    settings file that names them (not the working directory), each checked to be a file."""
    resolved = {}
    for key in ("policy_file", "mediaconch_policy"):
        if (value := getattr(settings.normalise, key)) is None:
            continue
        file = path.absolute().parent / Path(value).expanduser()  # an absolute one stays as it is
        if not file.is_file():
            why = "is not a file" if file.exists() else "does not exist"
            raise ConfigError(f"{path}: normalise.{key}: {file} {why}")
        resolved[key] = str(file)
    if not resolved:
        return settings
    normalise = settings.normalise.model_copy(update=resolved)
    return settings.model_copy(update={"normalise": normalise})


#: Signed-in access from the environment, for operators who keep secrets out of settings files:
#: the cookies file, its host and the account's label (all three, or none).
COOKIES_ENV = ("CIFA_COOKIES_FILE", "CIFA_COOKIES_HOST", "CIFA_COOKIES_ACCOUNT")


def _with_cookies(settings: Settings, path: Path | None) -> Settings:
    """``settings`` with the environment's cookies entry (:data:`COOKIES_ENV`: it replaces the
    settings file's entry of the same host) and every entry's file made absolute (relative to
    the settings file's folder) and checked: a host the source policy allows (on
    ``allowed_hosts``, or an IP address, which only ``--allow-private-sources`` lets be asked),
    a file only its owner may read, in Netscape format, with cookies of that host. A refusal
    never quotes the file's content."""
    entries = list(settings.fetch.cookies)
    where = f"{path}: fetch.cookies" if path else "fetch.cookies"
    given = {name: os.environ.get(name, "") for name in COOKIES_ENV}
    if any(given.values()):
        if not all(given.values()):
            raise ConfigError(f"{', '.join(COOKIES_ENV)}: set all three, or none")
        try:
            from_env = CookiesSettings(
                host=given["CIFA_COOKIES_HOST"],
                file=given["CIFA_COOKIES_FILE"],
                account=given["CIFA_COOKIES_ACCOUNT"],
            )
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise ConfigError(f"CIFA_COOKIES_{field.upper()}: {exc.errors()[0]['msg']}") from None
        entries = [e for e in entries if e.host.lower() != from_env.host.lower()] + [from_env]
        where = "CIFA_COOKIES_FILE" if len(entries) == 1 else where
    if not entries:
        return settings
    base = path.absolute().parent if path else Path.cwd()
    checked, hosts = [], set()
    for entry in entries:
        host = entry.host.rstrip(".").lower()
        if host in hosts:
            raise ConfigError(f"{where}: host {host} is named twice")
        hosts.add(host)
        if not _is_ip(host) and not _host_allowed(host, settings.fetch.allowed_hosts):
            raise ConfigError(
                f"{where}: host {host} is not on the allow-list ([fetch] allowed_hosts)"
            )
        file = base / Path(entry.file).expanduser()  # an absolute one stays as it is
        _check_cookies_file(file, host, where)
        checked.append(entry.model_copy(update={"host": host, "file": str(file)}))
    fetch = settings.fetch.model_copy(update={"cookies": checked})
    return settings.model_copy(update={"fetch": fetch})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_allowed(host: str, allowed_hosts: list[str]) -> bool:
    from cifa_ingest.fetch.source_policy import host_allowed

    return host_allowed(host, allowed_hosts)


def _check_cookies_file(file: Path, host: str, where: str) -> None:
    """Refuse a cookies file that cannot be used or is not private; never quote its content."""
    try:
        mode = file.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{where}: {file}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{where}: {file} is not a file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{where}: {file} may be read by other users of this machine (mode"
            f" {stat.S_IMODE(mode):o}): it holds an account's secrets; chmod 600 it"
        )
    jar = http.cookiejar.MozillaCookieJar()
    try:
        jar.load(str(file), ignore_discard=True, ignore_expires=True)
    except (http.cookiejar.LoadError, UnicodeDecodeError, ValueError):
        # LoadError (an OSError) quotes the offending line, which may hold a secret: not repeated.
        raise ConfigError(
            f"{where}: {file} is not a Netscape cookies file (its first line must be"
            " '# Netscape HTTP Cookie File' or '# HTTP Cookie File', then one cookie a line)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where}: {file}: cannot read: {exc.strerror}") from None
    if not any(_host_allowed(c.domain.lstrip(".").lower(), [host]) for c in jar):
        logging.getLogger(__name__).warning(
            "%s: %s holds no cookie of %s: the fetches from it are not signed in", where, file, host
        )


#: Where packaged files extracted to disk live until the process ends (only for a package that
#: is not plain files, e.g. a zip; an ordinary installation's files are used where they are).
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


@functools.cache
def packaged_policy(name: str) -> Path:
    """A policy file shipped in the package (``cifa_ingest/policies/NAME``), as a file on disk."""
    resource = importlib.resources.files("cifa_ingest") / "policies" / name
    if not resource.is_file():
        raise ConfigError(f"{resource}: missing from the installed cifa_ingest package")
    return _EXTRACTED.enter_context(importlib.resources.as_file(resource))


def format_policy_path(settings: Settings) -> Path:
    """The format policy file: ``[normalise] policy_file``, or the one the package ships."""
    configured = settings.normalise.policy_file
    return Path(configured) if configured else packaged_policy(FORMAT_POLICY)


def mediaconch_policy_path(settings: Settings) -> Path:
    """The MediaConch policy for masters: ``[normalise] mediaconch_policy``, or the package's."""
    configured = settings.normalise.mediaconch_policy
    return Path(configured) if configured else packaged_policy(MEDIACONCH_POLICY)


def locks_dir(settings: Settings, archive_root: Path) -> Path:
    """The folder of the limits' slot files (``[execution] locks_dir``, relative to the archive)."""
    return archive_root / Path(settings.execution.locks_dir).expanduser()


def resolve_archive(cli_value: str | None, settings: Settings) -> Path:
    """The archive root, by the precedence in the module docstring."""
    chosen = cli_value or os.environ.get("CIFA_ARCHIVE") or settings.archive.path
    return Path(chosen).expanduser().absolute()
