"""The ``cifa`` command.

Exit codes: 0 when everything asked for is preserved (or already was), 1 when any work failed,
2 for bad input or usage (a catalogue, an argument, the configuration). Input is validated before
any network request, and errors are printed as messages, never as tracebacks. ``watch`` exits 0
when every source it asked is present and unchanged, 1 otherwise.

Prefect is imported only by the commands that run flows: starting its embedded server costs
seconds, and commands that need no orchestration must stay instant.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifa_ingest import __version__
from cifa_ingest.catalogue.model import (
    WORK_ID_RULE,
    Catalogue,
    Work,
    is_work_id,
    load_catalogues,
    validation_problems,
)
from cifa_ingest.config import Settings, load_settings, resolve_archive
from cifa_ingest.demo import replica as demo_replica
from cifa_ingest.errors import InputError, SourcePolicyError
from cifa_ingest.fetch.source_policy import SourcePolicy

if TYPE_CHECKING:
    from cifa_ingest.archive.layout import Archive
    from cifa_ingest.archive.ledger import CopyRecord
    from cifa_ingest.preserve import WorkReport
    from cifa_ingest.versions import VersionInfo

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The demo serves its films on a fixed port where it can, so that the addresses recorded in its
#: bags stay valid from one run to the next (the source watch asks them again).
DEMO_PORT = 47291

#: Prefect settings for a quiet, offline, embedded run; the user's own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"cifa: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="cifa", description="CIFA Ingest: preserve permitted films as BagIt bags."
    )
    parser.add_argument("--version", action="version", version=f"cifa-ingest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--archive", help="archive root (default: CIFA_ARCHIVE, config, ./archive)"
        )
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        sub.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        sub.add_argument("--verbose", action="store_true", help="debug output, Prefect's logs too")

    def allow_private(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--allow-private-sources",
            action="store_true",
            help="allow sources on loopback and private addresses (demo, tests)",
        )

    def new_version(sub: argparse.ArgumentParser, why: str) -> None:
        """A command that makes a version: the work, on whose word, why (``why``: the default
        message)."""
        sub.add_argument("work_id", metavar="ID", help="the work's id, e.g. cifa-0001")
        sub.add_argument(
            "--agent",
            metavar="NAME",
            help="on whose word the version is made (default: the login name)",
        )
        sub.add_argument("--message", metavar="TEXT", help=f"why, one line (default: {why})")

    def dask(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dask",
            metavar="ADDRESS",
            help="preserve the works on the Dask cluster at ADDRESS, e.g. tcp://host:8786"
            " (default: [execution] dask_address; unset: in this process)",
        )

    ingest = commands.add_parser("ingest", help="run the nightly-ingest flow over catalogues")
    ingest.add_argument("manifests", nargs="+", metavar="MANIFEST", help="catalogue YAML files")
    ingest.add_argument("--only", action="append", metavar="ID", help="only this work (repeatable)")
    dask(ingest)
    allow_private(ingest)
    common(ingest)

    preserve = commands.add_parser("preserve", help="a one-off preservation job for one film")
    preserve.add_argument("url", metavar="URL")
    preserve.add_argument("--id", required=True, help="archive identifier, e.g. cifa-0101")
    preserve.add_argument("--title", required=True, help="English title")
    preserve.add_argument("--title-zh", help="Chinese title")
    preserve.add_argument("--director", help="director (English)")
    preserve.add_argument("--director-zh", help="director (Chinese)")
    preserve.add_argument("--year", type=int)
    preserve.add_argument("--platform", help="where the film is published")
    preserve.add_argument("--granted-by", required=True, help="who granted permission")
    preserve.add_argument("--basis", help="what the permission rests on")
    allow_private(preserve)
    common(preserve)

    watch = commands.add_parser(
        "watch", help="ask the sources of preserved works whether they are still there"
    )
    watch.add_argument(
        "manifests",
        nargs="*",
        metavar="MANIFEST",
        help="only the works of these catalogues (default: every preserved work)",
    )
    watch.add_argument("--only", action="append", metavar="ID", help="only this work (repeatable)")
    watch.add_argument(
        "--recapture",
        action="store_true",
        help="then fetch every work whose source this watch found changed into a new version"
        " (its entry from the catalogues: MANIFEST, default the config's)",
    )
    watch.add_argument(
        "--agent",
        metavar="NAME",
        help="with --recapture: on whose word the versions are made (default: the login name)",
    )
    allow_private(watch)
    common(watch)

    demo = commands.add_parser("demo", help="preserve the built-in demo films (no internet)")
    demo.add_argument("--workdir", default="demo", help="where demo films are made (./demo)")
    demo.add_argument(
        "--port",
        type=int,
        default=DEMO_PORT,
        help=f"port of the demo server on 127.0.0.1 ({DEMO_PORT}; 0 for any free port)",
    )
    dask(demo)
    common(demo)

    audit = commands.add_parser("audit", help="re-verify the fixity of every bag of the archive")
    audit.add_argument("archive_dir", nargs="?", metavar="ARCHIVE", help="archive root")
    scope = audit.add_mutually_exclusive_group()
    scope.add_argument("--full", action="store_true", help="every bag (the default)")
    scope.add_argument(
        "--max-age", type=float, metavar="DAYS", help="only bags not verified in DAYS, oldest first"
    )
    audit.add_argument(
        "--budget", metavar="DURATION|SIZE", help="stop after e.g. 2h, 30m or 500GB of reading"
    )
    audit.add_argument(
        "--location",
        metavar="NAME",
        help="audit the copies at this location of [[storage.locations]] instead of the primary"
        " (a cheap check: listing, sizes, the store's checksums)",
    )
    audit.add_argument(
        "--deep",
        action="store_true",
        help="with --location: read and re-hash every byte of every copy (sha256 and sha512)",
    )
    audit.add_argument(
        "--no-repair",
        dest="repair",
        action="store_false",
        help="only look: do not repair the missing or damaged copies found (repaired by default"
        " from a copy that verifies, when storage locations are declared)",
    )
    common(audit)

    serve = commands.add_parser(
        "serve", help="serve the Prefect deployments: the schedules and one-off jobs (blocks)"
    )
    serve.add_argument("--archive", help="archive root (default: CIFA_ARCHIVE, config, ./archive)")
    serve.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    serve.add_argument("--verbose", action="store_true", help="debug output, Prefect's logs too")
    allow_private(serve)

    replicate = commands.add_parser(
        "replicate",
        help="copy every bag to the storage locations of the settings, each copy verified",
    )
    replicate.add_argument(
        "--location",
        action="append",
        metavar="NAME",
        help="only this location of [[storage.locations]] (repeatable; default: every one)",
    )
    common(replicate)

    repair = commands.add_parser(
        "repair",
        help="re-hash every copy of bags in full and replace each missing or damaged file from"
        " a copy that verifies",
    )
    repair.add_argument(
        "work_ids", nargs="*", metavar="ID", help="the bags to repair (default: every bag)"
    )
    common(repair)

    restore = commands.add_parser(
        "restore", help="bring a bag back from one of its copies into a folder, verified"
    )
    restore.add_argument("work_id", metavar="ID")
    restore.add_argument(
        "--to", required=True, metavar="DIR", help="the folder to make (absent or empty)"
    )
    restore.add_argument(
        "--from",
        dest="source",
        metavar="NAME",
        help="the copy: primary or a location's name (default: the first copy that verifies)",
    )
    common(restore)

    history = commands.add_parser(
        "history",
        help="the versions of a work: when, why, who, what changed, what each stored",
    )
    history.add_argument("work_id", metavar="ID", help="the work's id, e.g. cifa-0001")
    common(history)

    export = commands.add_parser(
        "export", help="write a version of a work (default: the newest) as a plain BagIt bag"
    )
    export.add_argument("work_id", metavar="ID", help="the work's id, e.g. cifa-0001")
    export.add_argument(
        "--version",
        type=int,
        metavar="N",
        help="the version to export (see cifa history; default: the newest)",
    )
    export.add_argument(
        "--to",
        required=True,
        metavar="DIR",
        help="the folder to write the bag in (absent or empty)",
    )
    export.add_argument(
        "--for-access",
        action="store_true",
        help="for an access system: only the newest version's access copies and descriptive"
        " record, refused where its permission does not cover access",
    )
    common(export)

    deaccession = commands.add_parser(
        "deaccession",
        help="remove the content of every version of a work, here and at every location,"
        " keeping a tombstone",
    )
    deaccession.add_argument("work_id", metavar="ID", help="the work's id, e.g. cifa-0001")
    deaccession.add_argument(
        "--reason", required=True, metavar="TEXT", help="why, one line: kept in the tombstone"
    )
    deaccession.add_argument(
        "--agent",
        metavar="NAME",
        help="on whose word (the decision's owner; default: the login name)",
    )
    common(deaccession)

    renormalise = commands.add_parser(
        "renormalise",
        help="a new master by the current format policy, proved lossless, as a new version",
    )
    new_version(renormalise, "the policy's profile and each film's action before and now")
    common(renormalise)

    recapture = commands.add_parser(
        "recapture",
        help="fetch a preserved work's changed source again, into a new version of the work",
    )
    new_version(recapture, "what the source watch last found changed")
    recapture.add_argument(
        "manifests",
        nargs="*",
        metavar="MANIFEST",
        help="the catalogues with the work's entry (default: the config's)",
    )
    allow_private(recapture)
    common(recapture)

    recover = commands.add_parser(
        "recover",
        help="rebuild the whole archive (bags and ledger) from one storage location, verified",
    )
    recover.add_argument(
        "--from", dest="source", required=True, metavar="NAME",
        help="the location of [[storage.locations]] to rebuild from",
    )  # fmt: skip
    recover.add_argument(
        "--to", dest="target", required=True, metavar="DIR",
        help="the new archive's folder: absent or empty (never written over)",
    )  # fmt: skip
    recover.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    recover.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    recover.add_argument("--verbose", action="store_true", help="debug output")

    ledger = commands.add_parser("ledger", help="the ledger: verify the audit log's hash chain")
    ledger.add_argument("action", choices=["verify"])
    common(ledger)

    status = commands.add_parser("status", help="the archive at a glance")
    status.add_argument("manifests", nargs="*", metavar="MANIFEST", help="default: the config's")
    status.add_argument(
        "--holdings",
        action="store_true",
        help="also write the holdings report (every work's copies and NDSA levels) to"
        " ARCHIVE/reports/holdings.html and holdings.json",
    )
    common(status)

    events = commands.add_parser("events", help="a bag's PREMIS events, fixity checks included")
    events.add_argument("work_id", metavar="ID")
    common(events)

    validate = commands.add_parser("validate", help="validate a bag (RFC 8493), every checksum")
    validate.add_argument("bag", metavar="BAG", help="a bag directory")
    validate.add_argument("--fast", action="store_true", help="completeness and Payload-Oxum only")
    common(validate)

    bag = commands.add_parser("bag", help="make a BagIt 1.0 bag of a directory, in place")
    bag.add_argument("directory", metavar="DIR")
    common(bag)

    inspect = commands.add_parser(
        "inspect", help="which frames of a bag's FFV1 masters are damaged (slice CRCs)"
    )
    inspect.add_argument(
        "bag",
        metavar="BAG|ID",
        help="a bag directory, or the id of a work preserved in the archive",
    )
    common(inspect)

    doctor = commands.add_parser(
        "doctor",
        help="which yt-dlp, JavaScript runtime, challenge solver, ffmpeg, MediaConch and MediaInfo"
        " the pipeline would use, and what is missing",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    doctor.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    doctor.add_argument("--verbose", action="store_true", help="debug output")
    return parser


def _configure_logging(quiet: bool, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
    ours = logging.getLogger("cifa_ingest")
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logging.getLogger("bagit").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"


def _check_sources(
    catalogues: Sequence[tuple[Path, Catalogue]],
    only: set[str] | None,
    policy: SourcePolicy,
) -> None:
    """Refuse, before any request, sources the policy forbids: hosts off the allow-list,
    non-public addresses (unless allowed). No DNS: names are resolved when fetched."""
    for path, catalogue in catalogues:
        for index, work in enumerate(catalogue.works):
            if (only and work.id not in only) or not work.is_permitted:
                continue
            for field, url in _source_fields(work):
                if url is None:
                    continue
                try:
                    policy.check(url)
                except SourcePolicyError as exc:
                    raise SourcePolicyError(
                        f"{path}: works[{index}] ({work.id}): {field}: {exc}"
                    ) from None


def _source_fields(work: Work) -> list[tuple[str, str | None]]:
    if work.parts is not None:
        return [(f"parts[{i}].url", part.url) for i, part in enumerate(work.parts)]
    return [("source.url", work.source.url if work.source else None)]


def _emit(args: argparse.Namespace, archive: Path, reports: list[WorkReport]) -> int:
    from cifa_ingest.preserve import Outcome
    from cifa_ingest.reports import ingest_report as run_report
    from cifa_ingest.reports import summary as report

    if args.json:
        print(report.as_json(str(archive), reports))
    else:
        print(f"\nArchive: {archive}\n")
        print(report.table(reports))
        if args.command in ("ingest", "demo", "preserve") and (
            page := run_report.report_of(archive, reports)
        ):
            print(f"\nReport: {page}")
    for problem in _run_problems:
        print(f"cifa: {problem}", file=sys.stderr)
    if _run_problems or any(r.outcome is Outcome.FAILED for r in reports):
        return EXIT_FAILED
    return EXIT_OK


#: Why the last ingest run of this process ended Failed though no work failed (its replication
#: to the storage locations), for the exit code; set by :func:`run_ingest`.
_run_problems: list[str] = []


def _reports_from_state(state: object) -> list[WorkReport]:
    from cifa_ingest.errors import CifaError
    from cifa_ingest.pipelines.flows import reports_of_state

    reports = reports_of_state(state)
    if reports is not None:
        return reports
    data = state.result(raise_on_failure=False)  # type: ignore[attr-defined]
    if isinstance(data, InputError):
        raise data
    raise CifaError(f"the flow ended {state.type.value}: {state.message}")  # type: ignore[attr-defined]


def run_ingest(
    manifests: list[str],
    archive: Path,
    settings: Settings,
    *,
    only: list[str] | None,
    allow_private_sources: bool,
) -> list[WorkReport]:
    """Validate the catalogues, then run the nightly-ingest flow over them."""
    catalogues = load_catalogues(manifests)
    known = {work.id for _path, catalogue in catalogues for work in catalogue.works}
    unknown = sorted(set(only or []) - known)
    if unknown:
        raise InputError(f"--only: no such work in the catalogues: {', '.join(unknown)}")
    policy = SourcePolicy.of(settings.fetch, allow_private_sources, resolve=False)
    _check_sources(catalogues, set(only) if only else None, policy)
    from cifa_ingest.pipelines.flows import nightly_ingest, replication_problem

    with _writer_lock(archive):
        state = nightly_ingest(
            [str(Path(m).absolute()) for m in manifests],
            str(archive),
            only=only,
            allow_private_sources=allow_private_sources,
            settings=settings,
            return_state=True,
        )
    reports = _reports_from_state(state)
    _run_problems[:] = [problem] if (problem := replication_problem(state)) else []
    return reports


def _writer_lock(archive: Path) -> contextlib.AbstractContextManager[None]:
    """One writer per archive: a second ingest waits, and says so."""
    from cifa_ingest.archive.layout import Archive

    def waiting() -> None:
        logging.getLogger("cifa_ingest").warning(
            "another ingest is writing to %s; waiting for it to finish", archive
        )

    return Archive(archive).writer_lock(on_wait=waiting)


def _with_dask(settings: Settings, address: str | None) -> Settings:
    """The settings with ``--dask ADDRESS`` in force (checked like ``[execution] dask_address``)."""
    from pydantic import ValidationError

    from cifa_ingest.config import ExecutionSettings

    if address is None:
        return settings
    try:
        execution = ExecutionSettings.model_validate(
            {**settings.execution.model_dump(), "dask_address": address}
        )
    except ValidationError:
        raise InputError(
            f"--dask: not a Dask scheduler address (tcp://HOST:PORT, tls://…): {address!r}"
        ) from None
    return settings.model_copy(update={"execution": execution})


def _cmd_ingest(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    reports = run_ingest(
        args.manifests,
        archive,
        _with_dask(settings, args.dask),
        only=args.only,
        allow_private_sources=args.allow_private_sources,
    )
    return _emit(args, archive, reports)


def _cmd_preserve(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    from pydantic import ValidationError

    raw = {
        "id": args.id,
        "title": {"en": args.title, "zh": args.title_zh},
        "director": {"en": args.director, "zh": args.director_zh} if args.director else None,
        "year": args.year,
        "source": {"url": args.url, "platform": args.platform},
        "permission": {"status": "granted", "granted_by": args.granted_by, "basis": args.basis},
    }
    try:
        work = Work.model_validate(raw)
    except ValidationError as exc:
        raise InputError("\n".join(validation_problems(exc, raw, "preserve"))) from None
    policy = SourcePolicy.of(settings.fetch, args.allow_private_sources, resolve=False)
    policy.check(args.url)
    from cifa_ingest.pipelines.flows import preserve_film

    with _writer_lock(archive):
        state = preserve_film(
            work,
            str(archive),
            allow_private_sources=args.allow_private_sources,
            settings=settings,
            publish=True,
            return_state=True,
        )
    return _emit(args, archive, _reports_from_state(state))


def _cmd_demo(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    from cifa_ingest.demo import films as demo
    from cifa_ingest.demo.http_server import LocalFileServer

    settings = _with_dask(settings, args.dask)

    workdir = Path(args.workdir).absolute()
    settings, replica = _with_demo_replica(settings, workdir)
    if replica is not None:  # so that `cifa status` can say what this undeclared location is
        demo_replica.remember(archive, replica)
    logging.getLogger("cifa_ingest").info("making the demo films in %s", workdir / "films")
    demo.make_site(workdir)
    try:
        server = LocalFileServer(workdir, port=args.port)
    except OSError:  # taken: any free port will do, only the source watch prefers a fixed one
        server = LocalFileServer(workdir, port=0)
    with server:
        catalogue = demo.write_catalogue(workdir / "demo-catalogue.yaml", server.base_url)
        logging.getLogger("cifa_ingest").info("serving them at %s", server.base_url)
        reports = run_ingest(
            [str(catalogue)], archive, settings, only=None, allow_private_sources=True
        )
    status = _emit(args, archive, reports)
    if not args.json:
        if replica is not None:
            print(f"\nA second copy of every bag, each file verified, and the ledger's snapshot:"
                  f" {replica} (the storage location {DEMO_REPLICA!r}).")  # fmt: skip
        print("\nRun it again: nothing is preserved twice. Inspect a bag under", archive / "bags")
        print(
            "Each bag is also version 1 of its work, under", archive / "objects",
            "(cifa history cifa-demo-0001 lists a work's versions).",
        )  # fmt: skip
    return status


#: The storage location the demo declares when the settings declare none.
DEMO_REPLICA = demo_replica.NAME


def _with_demo_replica(settings: Settings, workdir: Path) -> tuple[Settings, Path | None]:
    """The demo shows the archive's second copy: with no ``[[storage.locations]]`` in the
    settings, its run also replicates every bag to ``WORKDIR/replica`` (a filesystem location,
    :data:`DEMO_REPLICA`), each file verified, then the ledger's snapshot, as a real archive's
    nightly run does; a local folder, so the demo stays offline and quick. Locations the settings
    declare are used as they are (never a demo folder beside them)."""
    if settings.storage.locations:
        return settings, None
    from cifa_ingest.storage.locations import FilesystemLocation, StorageSettings

    root = workdir / "replica"
    root.mkdir(parents=True, exist_ok=True)  # a location's folder is never made by the store
    location = FilesystemLocation(name=DEMO_REPLICA, path=str(root), zone="demo-second-disk")
    storage = StorageSettings(locations=(location,))
    return settings.model_copy(update={"storage": storage}), root


def _existing_archive(root: Path) -> Archive:
    """The archive at ``root``, for a command that reads one: a path holding no archive is
    refused (exit 2), never reported as an empty archive. Only ingest, preserve and demo make one.
    """
    from cifa_ingest.archive.layout import Archive

    return Archive(root).existing()


def _preserved_bag(store: Archive, work_id: str) -> tuple[str, Path]:
    """The bag of a preserved work, found through the ledger; the id, typed by someone, is checked
    as a catalogue's ids are before it is looked up. Returns the bag's path as the ledger has it
    (relative to the archive) and on disk."""
    from cifa_ingest.archive.ledger import Ledger

    if not is_work_id(work_id):
        raise InputError(f"{work_id!r}: not a work id ({WORK_ID_RULE})")
    record = Ledger(store.ledger_path).bag(work_id)
    if record is None:
        raise InputError(f"{work_id}: no such bag in the ledger of {store.root}")
    return record.bag_path, store.root / record.bag_path


def _watched_ids(
    only: list[str] | None,
    catalogues: Sequence[tuple[Path, Catalogue]] | None,
    ledger_path: Path,
) -> list[str]:
    """The works to watch: those of the catalogues, or every preserved work; ``--only`` must
    name one of them."""
    from cifa_ingest.archive.ledger import Ledger

    if catalogues is not None:
        known = [work.id for _path, catalogue in catalogues for work in catalogue.works]
        where = "in the catalogues"
    else:
        known = [record.work_id for record in Ledger(ledger_path).bags()]
        where = "preserved in the archive"
    unknown = sorted(set(only or []) - set(known))
    if unknown:
        raise InputError(f"--only: no such work {where}: {', '.join(unknown)}")
    return [work_id for work_id in known if not only or work_id in only]


def _cmd_watch(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Ask the sources of preserved works, metadata only, whether they are still there and
    unchanged; record each answer in the ledger. Runs without Prefect: nothing to orchestrate.
    With ``--recapture``, then fetch each work found changed into a new version: exit 0 where
    every source is present, or changed and captured again as a new version."""
    import json

    from cifa_ingest.audit import watch

    # Catalogues are validated as a whole first, as by ingest.
    catalogues = load_catalogues(args.manifests) if args.manifests else None
    if args.agent is not None and not args.recapture:
        raise InputError("--agent: only with --recapture")
    entries = _recapture_catalogues(args.manifests, settings) if args.recapture else None
    store = _existing_archive(archive)
    work_ids = _watched_ids(args.only, catalogues, store.ledger_path)
    works, notes = watch.plan(store, work_ids)
    policy = SourcePolicy.of(settings.fetch, args.allow_private_sources, resolve=False)
    for work in works:  # every address is checked before the first request
        for source in work.sources:
            try:
                policy.check(source.url)
            except SourcePolicyError as exc:
                raise SourcePolicyError(f"{work.work_id}: source {source.index}: {exc}") from None
    report = watch.run(
        works, store, settings, allow_private_sources=args.allow_private_sources, notes=notes
    )
    if entries is not None:
        _recapture_changed(args, settings, store, report, entries)
    if args.json:
        print(json.dumps(report.as_dict(str(archive)), indent=2, ensure_ascii=False))
    else:
        print(f"\nArchive: {archive}\n")
        print(watch.table(report))
    return EXIT_OK if report.ok or report.recaptured_all else EXIT_FAILED


def _check_work_sources(work: Work, settings: Settings, allow_private_sources: bool) -> None:
    """Refuse, before any request, a source of ``work`` the source policy forbids."""
    policy = SourcePolicy.of(settings.fetch, allow_private_sources, resolve=False)
    for field, url in _source_fields(work):
        if url is not None:
            try:
                policy.check(url)
            except SourcePolicyError as exc:
                raise SourcePolicyError(f"{work.id}: {field}: {exc}") from None


def _recapture_catalogues(
    manifests: Sequence[str], settings: Settings
) -> list[tuple[Path, Catalogue]]:
    """The catalogues a re-capture takes a work's entry from: ``MANIFEST``, else the config's
    (which must be there)."""
    paths = list(manifests) or list(settings.catalogue.manifests)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise InputError(
            f"no such catalogue: {', '.join(missing)} (a re-capture fetches the source address"
            " the catalogue gives; name the catalogues: MANIFEST...)"
        )
    return load_catalogues(paths)


def _recapture_changed(
    args: argparse.Namespace,
    settings: Settings,
    store: Archive,
    report: Any,
    catalogues: Sequence[tuple[Path, Catalogue]],
) -> None:
    """``cifa watch --recapture``: each work whose source the watch found changed, fetched
    again (one after another, one run: a host that blocks stops the rest of its works); what
    each did goes into the watch's report."""
    import uuid

    from cifa_ingest.errors import CifaError
    from cifa_ingest.recapture import catalogue_entry, recapture_work
    from cifa_ingest.renormalise import default_agent

    wanted, refused = report.to_recapture()
    report.recaptures = [{"id": work_id, "ok": False, "error": why} for work_id, why in refused]
    agent = args.agent if args.agent is not None else default_agent()
    run_id = uuid.uuid4().hex
    for work_id in wanted:
        try:
            work, collection = catalogue_entry(catalogues, work_id)
            _check_work_sources(work, settings, args.allow_private_sources)
            with _writer_lock(store.root):
                attempt = recapture_work(
                    store, settings, work, collection, agent=agent,
                    allow_private_sources=args.allow_private_sources, run_id=run_id,
                )  # fmt: skip
        except CifaError as exc:
            report.recaptures.append({"id": work_id, "ok": False, "error": str(exc)})
            continue
        report.recaptures.append(attempt.as_dict())


def _bag_to_inspect(text: str, archive: Path) -> Path:
    """``cifa inspect``'s argument: a bag directory, else the id of a work preserved in the
    archive (a path that exists is never taken for an id)."""
    path = Path(text)
    if (path / "bagit.txt").is_file():
        return path
    if path.exists():
        raise InputError(f"{path}: not a bag (no bagit.txt)")
    if is_work_id(text):
        return _preserved_bag(_existing_archive(archive), text)[1]
    raise InputError(f"{text}: neither a bag directory nor a work id ({WORK_ID_RULE})")


def _cmd_inspect(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when every master decodes with every slice CRC matching, 1 when damaged."""
    import json

    from cifa_ingest.audit.damage import inspect_bag

    bag = _bag_to_inspect(args.bag, archive)
    inspections = inspect_bag(bag)
    if not inspections:
        raise InputError(f"{bag}: no master in data/master/")
    if args.json:
        print(
            json.dumps({"bag": str(bag), "masters": [i.as_dict() for i in inspections]}, indent=2)
        )
    else:
        for inspection in inspections:
            print(inspection.summary())
    return EXIT_OK if all(i.intact for i in inspections) else EXIT_FAILED


def _cmd_validate(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when valid (warnings on stderr), 1 when invalid, with every reason."""
    import json

    from cifa_ingest.bag.check import validate

    report = validate(Path(args.bag), fast=args.fast)
    if any(f.code == "E000" for f in report.errors):
        raise InputError(f"{args.bag}: not a directory")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        for finding in report.warnings:
            print(f"warning: {finding.message}", file=sys.stderr)
        for finding in report.errors:
            print(f"invalid: {finding.message}")
        state = "valid" if report.valid else "INVALID"
        print(f"{args.bag}: {state} ({report.files_checked} files, {report.bytes_checked} bytes)")
    return EXIT_OK if report.valid else EXIT_FAILED


def _cmd_bag(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    from cifa_ingest.bag.write import make_bag_in_place

    directory = Path(args.directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    if (directory / "bagit.txt").exists():
        raise InputError(f"{directory}: is a bag already")
    digests = make_bag_in_place(directory)
    size = sum(d.size for d in digests.values())
    if args.json:
        import json

        bagged = {"bag": str(directory), "files": len(digests), "bytes": size}
        print(json.dumps({**bagged, "algorithms": ["sha256", "sha512"]}, indent=2))
    else:
        print(f"{directory}: bagged {len(digests)} files, {size} bytes (sha256, sha512)")
    return EXIT_OK


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB)$", re.IGNORECASE)


def parse_budget(text: str) -> tuple[float | None, int | None]:
    """'2h', '30m', '90' (seconds) or '500GB' as (seconds, bytes)."""
    if match := _DURATION.match(text.strip()):
        factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[(match.group(2) or "s").lower()]
        return float(match.group(1)) * factor, None
    if match := _SIZE.match(text.strip()):
        factor = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}[match.group(2).lower()]
        return None, int(float(match.group(1)) * factor)
    raise InputError(f"--budget: {text!r} is neither a duration (2h, 30m) nor a size (500GB)")


def _cmd_audit(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when every bag (or every copy at ``--location``) is intact, or was repaired, 1
    when any problem remains (a location unreachable included, or repair refused), 2 for bad
    usage. Unless ``--no-repair``, the copies found missing or damaged are repaired from a copy
    that verifies (:mod:`cifa_ingest.audit.repairs`)."""

    from cifa_ingest.audit import fixity_audit as audit

    location = None
    if args.location is not None:
        [location] = _chosen_locations(settings, [args.location])
        if not args.deep and (args.max_age is not None or args.budget or args.full):
            raise InputError(
                "--full, --max-age and --budget are for a deep audit: add --deep (a cheap"
                " check lists the whole location, every time)"
            )
    elif args.deep:
        raise InputError("--deep: which location? (--location NAME; the primary's audit is"
                         " always deep)")  # fmt: skip
    store = _existing_archive(Path(args.archive_dir).absolute() if args.archive_dir else archive)
    seconds, size = parse_budget(args.budget) if args.budget else (None, None)
    from cifa_ingest.reports.audit_report import write_reports

    if location is not None:
        from cifa_ingest.audit.copies import audit_location

        report = audit_location(
            store, location, deep=args.deep, max_age_days=args.max_age,
            budget_seconds=seconds, budget_bytes=size,
        )  # fmt: skip
    else:
        report = audit.audit_archive(
            store, max_age_days=args.max_age, budget_seconds=seconds, budget_bytes=size
        )
    if args.repair:
        from cifa_ingest.audit.repairs import repair_found

        repair_found(store, report, list(settings.storage.locations))
        if report.repair_refused:
            print(f"cifa: repair refused: {report.repair_refused}", file=sys.stderr)
    try:  # the report describes the audit; it never decides it (as in the Prefect flow)
        json_path, html_path = write_reports(report, store)
    except OSError as exc:
        logging.getLogger("cifa_ingest").warning("the audit report could not be written: %s", exc)
    else:
        logging.getLogger("cifa_ingest").info("reports: %s, %s", json_path, html_path)
    return _reported(args, report, audit.table)


def _reported(args: argparse.Namespace, report: Any, table: Callable[[Any], str]) -> int:
    """A run's report, on standard output: its JSON with ``--json``, else its ``table`` for
    people. Exit 0 when the report is ``ok``, 1 when a problem remains (audit, replicate, repair
    and recover say it the same way)."""
    import json

    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(table(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _chosen_locations(
    settings: Settings, names: list[str] | None, option: str = "--location"
) -> list[Any]:
    """The locations ``--location`` names (every one of the settings without it); a name the
    settings do not declare, or no location at all, is bad usage (exit 2)."""
    declared = list(settings.storage.locations)
    if not declared:
        raise InputError(
            "no storage locations in the settings: declare them as [[storage.locations]]"
            " (docs/guides/operators.md, 'Storage locations')"
        )
    if not names:
        return declared
    unknown = [name for name in names if settings.storage.location(name) is None]
    if unknown:
        known = ", ".join(location.name for location in declared)
        raise InputError(
            f"{option}: no location named {', '.join(map(repr, unknown))} in the settings"
            f" (they declare: {known})"
        )
    return [location for location in declared if location.name in names]


def _cmd_replicate(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when every bag has a good copy at every location asked, 1 when any copy is not
    good (a location unreachable, a source that does not verify, a copy that failed)."""

    from cifa_ingest.revision import version_user
    from cifa_ingest.storage import replicate

    locations = _chosen_locations(settings, args.location)
    store = _existing_archive(archive)
    report = replicate.replicate_archive(store, locations, user=version_user(settings))
    return _reported(args, report, replicate.table)


def _cmd_repair(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when every copy checked is good (repaired or already), 1 when a problem remains
    (no good copy of a file anywhere, a location unreachable) or the ledger's chain is broken
    (nothing repaired), 2 for an unknown id or no archive."""
    import json

    from cifa_ingest.storage import repair

    store = _existing_archive(archive)
    for work_id in args.work_ids:
        _preserved_bag(store, work_id)  # an unknown id is bad usage, before anything is read
    locations = list(settings.storage.locations)
    try:
        report = repair.repair_work(store, args.work_ids or None, locations)
    except repair.LedgerTampered as exc:
        if args.json:
            refused = {"archive": str(store.root), "refused": str(exc), "ok": False}
            print(json.dumps(refused, indent=2, ensure_ascii=False))
        print(f"cifa: repair refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return _reported(args, report, repair.table)


def _cmd_restore(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when the bag was restored whole, every file verified; 1 when no copy asked for
    verifies (nothing left at ``--to``) or the ledger's chain is broken; 2 for bad usage (an
    unknown id or copy, a ``--to`` that exists and is not an empty folder)."""
    import json

    from cifa_ingest.storage import restore

    store = _existing_archive(archive)
    _preserved_bag(store, args.work_id)
    try:
        report = restore.restore_work(
            store,
            args.work_id,
            Path(args.to),
            list(settings.storage.locations),
            source=args.source,
        )
    except restore.RestoreFailed as exc:
        if args.json:
            failed = {"id": args.work_id, "to": str(Path(args.to).absolute()), "ok": False,
                      "error": str(exc)}  # fmt: skip
            print(json.dumps(failed, indent=2, ensure_ascii=False))
        print(f"cifa: restore failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(
            f"{args.work_id}: restored from {report.source} to {report.target}"
            f" ({report.files} files, {report.bytes} bytes, each verified)"
        )
    return EXIT_OK


def _versioned(store: Archive, work_id: str) -> tuple[Path, int]:
    """The versions store of ``store`` and the number of ``work_id``'s newest version, for
    history and export. Bad usage (exit 2): an id that is not one, a work the archive does not
    hold, and a work preserved before versions were kept (its bag, no version yet)."""
    from cifa_ingest.archive.ledger import Ledger
    from cifa_ingest.versions import head

    if not is_work_id(work_id):
        raise InputError(f"{work_id!r}: not a work id ({WORK_ID_RULE})")
    objects = store.objects_dir  # ARCHIVE/objects/, the versions store
    newest = head(objects, work_id)  # nothing is made for an id someone typed
    if newest is not None:
        return objects, newest
    if Ledger(store.ledger_path).bag(work_id) is not None:
        raise InputError(
            f"no versions recorded for {work_id} yet: it was preserved before the archive kept"
            f" versions (its bag is {store.bag_path(work_id)}); the next ingest records its first"
        )
    raise InputError(f"{work_id}: no such work in {store.root} (no bag, no versions)")


def _utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC)


def _version_as_dict(info: VersionInfo) -> dict[str, Any]:
    return {
        "version": info.number,
        "created": _utc(info.created).isoformat(),
        "message": info.message,
        "user": {"name": info.user.name, "address": info.user.address},
        "files": info.files,
        "added": list(info.added),
        "changed": list(info.changed),
        "removed": list(info.removed),
        "stored_files": info.stored_files,
        "stored_bytes": info.stored_bytes,
    }


def _history_table(work_id: str, where: Path, found: Sequence[VersionInfo]) -> str:
    """The versions for people: a row each (number, when in UTC, who, files, bytes newly
    stored, why), then beneath it what it added, changed and removed against the one before."""
    from cifa_ingest.sizes import decimal

    header = ("version", "when (UTC)", "who", "files", "stored", "why")
    rows = [
        (
            f"v{v.number}",
            _utc(v.created).strftime("%Y-%m-%d %H:%M:%S"),
            v.user.name,
            str(v.files),
            decimal(v.stored_bytes),
            v.message,
        )
        for v in found
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    right = {3, 4}  # the numbers

    def line(cells: Sequence[str]) -> str:
        fitted = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells[:-1])
        ]
        return "  ".join([*fitted, cells[-1]]).rstrip()

    count = f"{len(found)} version{'s' if len(found) != 1 else ''}"
    lines = [f"{work_id}: {count}, the newest v{found[-1].number} ({where})", ""]
    lines += [line(header), line(["-" * w for w in widths] + ["-" * len(header[-1])])]
    indent = " " * (widths[0] + 2)
    for info, row in zip(found, rows, strict=True):
        lines.append(line(row))
        if info.number == 1:
            lines.append(f"{indent}the first version: {info.files} files")
            continue
        for what, paths in (
            ("added", info.added), ("changed", info.changed), ("removed", info.removed)
        ):  # fmt: skip
            if paths:
                lines.append(f"{indent}{what}: {', '.join(paths)}")
        if not (info.added or info.changed or info.removed):
            lines.append(f"{indent}no file changed")
    return "\n".join(lines)


def _cmd_history(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 with the work's versions, 1 when its object is damaged (the file named), 2 for an
    id that is not one, a work the archive does not hold or one with no version yet."""
    import json

    from cifa_ingest.archive.ledger import Ledger
    from cifa_ingest.errors import ArchiveStateError
    from cifa_ingest.versions import versions

    store = _existing_archive(archive)
    try:
        objects, _newest = _versioned(store, args.work_id)
        found = versions(objects, args.work_id)
    except ArchiveStateError as exc:
        print(f"cifa: history: {exc}", file=sys.stderr)
        return EXIT_FAILED
    where = objects / args.work_id
    removed = _deaccessioned(store, args.work_id)
    copies = Ledger(store.ledger_path).copies(work_id=args.work_id)
    if args.json:
        document = {
            "id": args.work_id,
            "object": str(where),
            "head": found[-1].number,
            "versions": [_version_as_dict(info) for info in found],
            "copies": [
                {"location": c.location, "state": str(c.state), "verified_at": c.verified_at}
                for c in copies
            ],
            "deaccessioned": removed,
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(_history_table(args.work_id, where, found))
        print(_copies_line(copies, found[-1].number))
        if removed is not None:
            print(
                f"\n{args.work_id} was deaccessioned on {removed['when']} on the word of"
                f" {removed['agent']}: {removed['reason']}\nIts object holds the tombstone only;"
                " the versions whose content was removed, as its history records them:"
            )
            for entry in removed["earlier"]:
                print(
                    f"  v{entry['number']}  {entry['created']}  {entry['agent']}:"
                    f" {entry['change']}: {entry['message']}"
                )
    return EXIT_OK


def _copies_line(copies: Sequence[CopyRecord], head: int) -> str:
    """Where the versions are: a copy recorded good holds every version up to ``head`` (a new
    version makes its copies pending until replication verified it there)."""
    from cifa_ingest.archive.ledger import CopyState

    if not copies:
        return "\nAt the storage locations: none recorded (this archive only)."
    said = []
    for copy in copies:
        if copy.state is CopyState.GOOD:
            said.append(f"{copy.location}: every version to v{head} (verified {copy.verified_at})")
        else:
            said.append(f"{copy.location}: {copy.state} ({copy.detail})" if copy.detail
                        else f"{copy.location}: {copy.state}")  # fmt: skip
    return "\nAt the storage locations:\n" + "\n".join(f"  {line}" for line in said)


def _deaccessioned(store: Archive, work_id: str) -> dict[str, Any] | None:
    """For a deaccessioned work, when, on whose word and why, and the versions whose content
    was removed (its tombstone's history: the object, rewritten, has the tombstone only)."""
    import json

    from cifa_ingest.deaccession import RECORD, is_tombstone
    from cifa_ingest.metadata.versions_record import read_versions

    bag = store.bag_path(work_id)
    if not bag.is_dir() or not is_tombstone(bag):
        return None
    record = json.loads((bag / RECORD).read_text("utf-8"))
    return {
        "when": record["when"],
        "agent": record["agent"],
        "reason": record["reason"],
        "earlier": [version.as_dict() for version in read_versions(bag)[:-1]],
    }


def _cmd_export(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when the version was written as a bag, every file verified; 1 when the work's
    object is damaged (the file named, nothing written); 2 for bad usage (an id that is not
    one, a work with no versions, a version it does not have, a ``--to`` that is not an empty
    folder)."""
    import json

    from cifa_ingest.errors import ArchiveStateError
    from cifa_ingest.versions import export

    store = _existing_archive(archive)
    target = Path(args.to).absolute()
    number = args.version
    if args.for_access:
        if args.version is not None:
            raise InputError(
                "--for-access exports the newest version only: its permission decides what"
                " may be given out (leave out --version)"
            )
        return _export_for_access(args, store, target)
    try:
        objects, newest = _versioned(store, args.work_id)
        number = newest if args.version is None else args.version
        bag = export(objects, args.work_id, number, target)
    except ArchiveStateError as exc:
        if args.json:
            failed = {"id": args.work_id, "version": number, "to": str(target), "ok": False,
                      "error": str(exc)}  # fmt: skip
            print(json.dumps(failed, indent=2, ensure_ascii=False))
        print(f"cifa: export refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    files = [p for p in bag.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    if args.json:
        done = {"id": args.work_id, "version": number, "head": newest, "to": str(bag),
                "files": len(files), "bytes": size, "ok": True}  # fmt: skip
        print(json.dumps(done, indent=2, ensure_ascii=False))
    else:
        from cifa_ingest.sizes import decimal

        which = "the newest" if number == newest else f"the newest is v{newest}"
        print(
            f"{args.work_id} v{number} ({which}) exported to {bag}: a BagIt bag of {len(files)}"
            f" files, {decimal(size)}, every file verified"
        )
    return EXIT_OK


def _export_for_access(args: argparse.Namespace, store: Archive, target: Path) -> int:
    """``cifa export --for-access``: exit 0 when the access copies were written, each verified;
    1 when they are withheld (the newest version's permission does not cover access) or the
    object is damaged, nothing written."""
    import json

    from cifa_ingest.errors import AccessWithheld, ArchiveStateError
    from cifa_ingest.versions.export import export_access

    objects, newest = _versioned(store, args.work_id)
    try:
        folder = export_access(objects, args.work_id, target)
    except (AccessWithheld, ArchiveStateError) as exc:
        if args.json:
            failed = {"id": args.work_id, "version": newest, "to": str(target), "ok": False,
                      "error": str(exc)}  # fmt: skip
            print(json.dumps(failed, indent=2, ensure_ascii=False))
        print(f"cifa: export refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    if args.json:
        done = {"id": args.work_id, "version": newest, "head": newest, "to": str(folder),
                "files": len(files), "bytes": size, "ok": True}  # fmt: skip
        print(json.dumps(done, indent=2, ensure_ascii=False))
    else:
        from cifa_ingest.sizes import decimal

        print(
            f"{args.work_id} v{newest}: its access copies and descriptive record exported to"
            f" {folder} ({len(files)} files, {decimal(size)}, every file verified)"
        )
    return EXIT_OK


def _cmd_renormalise(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when the new master is the work's newest version; 1 when none was made (the
    current policy gives the head's master again, the proof or the encode failed, the archive
    holds something unexpected: said, the archive as it was); 2 for bad usage (an id that is not
    one, a work not preserved or with no version yet, an agent that is no name)."""
    import json

    from cifa_ingest.errors import CifaError
    from cifa_ingest.renormalise import AlreadyCurrent, default_agent, renormalise_work

    store = _existing_archive(archive)
    _objects, newest = _versioned(store, args.work_id)
    agent = args.agent if args.agent is not None else default_agent()
    try:
        with _writer_lock(archive):
            made = renormalise_work(
                store, settings, args.work_id, agent=agent, message=args.message
            )
    except InputError:
        raise
    except CifaError as exc:
        if args.json:
            failed = {"id": args.work_id, "version": newest, "ok": False, "error": str(exc)}
            print(json.dumps(failed, indent=2, ensure_ascii=False))
        word = "refused" if isinstance(exc, AlreadyCurrent) else "failed"
        print(f"cifa: renormalise {word}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({**made.as_dict(), "ok": True}, indent=2, ensure_ascii=False))
    else:
        from cifa_ingest.sizes import decimal

        number = made.version.number
        actions = "; ".join(f"{a['stem']}: {a['before']} → {a['now']}" for a in made.actions)
        print(
            f"{args.work_id} v{number}: a new master by the format policy's profile"
            f" {made.profile!r} ({actions}),"
            f" proved lossless against the originals; masters {decimal(made.master_bytes_before)}"
            f" before, {decimal(made.master_bytes_after)} now; v{number - 1} keeps its master"
            f" (cifa export {args.work_id} --version {number - 1})"
        )
    return EXIT_OK


def _cmd_recapture(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when the new capture is the work's newest version; 1 when none was made (the
    source gives the same bytes, the fetch, the proof or the archive failed: said, the archive
    as it was); 2 for bad usage (an id that is not one, a work not preserved, not in the
    catalogues, not permitted, a source the policy forbids, an agent that is no name)."""
    import json

    from cifa_ingest.errors import CifaError
    from cifa_ingest.recapture import catalogue_entry, recapture_work
    from cifa_ingest.renormalise import default_agent

    store = _existing_archive(archive)
    _objects, newest = _versioned(store, args.work_id)
    work, collection = catalogue_entry(
        _recapture_catalogues(args.manifests, settings), args.work_id
    )
    _check_work_sources(work, settings, args.allow_private_sources)
    agent = args.agent if args.agent is not None else default_agent()
    try:
        with _writer_lock(archive):
            attempt = recapture_work(
                store, settings, work, collection, agent=agent, message=args.message,
                allow_private_sources=args.allow_private_sources,
            )  # fmt: skip
    except InputError:
        raise
    except CifaError as exc:
        if args.json:
            failed = {"id": args.work_id, "version": newest, "ok": False, "error": str(exc)}
            print(json.dumps(failed, indent=2, ensure_ascii=False))
        print(f"cifa: recapture failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(attempt.as_dict(), indent=2, ensure_ascii=False))
    if attempt.made is None:
        print(f"cifa: recapture: {attempt.report.error}", file=sys.stderr)
        return EXIT_FAILED
    if not args.json:
        made = attempt.made
        number = made.version.number
        print(
            f"{args.work_id} v{number}: a new capture of its source ({len(made.originals)}"
            f" original(s); {len(made.made)} file(s) new, {len(made.replaced)} of v{number - 1}"
            f" replaced), proved: {'; '.join(made.proof) or 'no master made'}; v{number - 1}"
            f" keeps the earlier capture (cifa export {args.work_id} --version {number - 1})"
        )
        if made.degraded:
            print(f"cifa: the capture is degraded: {made.degraded}", file=sys.stderr)
    return EXIT_OK


def _cmd_deaccession(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when the content is gone from the archive and from every storage location; 1
    when some remains at a location (held under Object Lock, or the location unreachable: said,
    and a later run removes it) or the archive could not be changed (nothing half-done); 2 for
    bad usage (not a work id, a work not preserved, no reason)."""
    import getpass
    import json

    from cifa_ingest import deaccession
    from cifa_ingest.errors import ArchiveStateError

    store = _existing_archive(archive)
    if not is_work_id(args.work_id):
        raise InputError(f"{args.work_id!r}: not a work id ({WORK_ID_RULE})")
    agent = args.agent or getpass.getuser()
    try:
        with store.writer_lock():
            report = deaccession.deaccession(
                store, args.work_id, settings, reason=args.reason, agent=agent
            )
    except ArchiveStateError as exc:
        if args.json:
            failed = {"id": args.work_id, "ok": False, "error": str(exc)}
            print(json.dumps(failed, indent=2, ensure_ascii=False))
        print(f"cifa: deaccession failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        from cifa_ingest.sizes import decimal

        done = "was removed earlier" if report.earlier else "removed"
        print(
            f"{args.work_id}: content {done} ({report.files_removed} files,"
            f" {decimal(report.bytes_removed)}); version {report.version} is its tombstone"
        )
        for where in report.locations:
            if where.unreachable:
                print(f"  {where.location}: unreachable, nothing removed: {where.unreachable}")
            elif where.locked:
                print(
                    f"  {where.location}: {where.removed} objects removed; {len(where.locked)}"
                    " held under Object Lock, removed once their retention ends (run again)"
                )
            else:
                print(f"  {where.location}: {where.removed} objects removed")
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_recover(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when every bag was recovered and the rebuilt archive audits clean, 1 when a bag
    could not be (damaged or missing at the location: said, never taken) or nothing could be
    rebuilt (the location unreachable, no sound ledger snapshot there), 2 for bad usage (an
    unknown location, a ``--to`` folder that is not empty)."""

    from cifa_ingest.revision import version_user
    from cifa_ingest.storage import recover
    from cifa_ingest.storage.store import LocationUnreachable

    [location] = _chosen_locations(settings, [args.source], option="--from")
    try:
        report = recover.recover_archive(location, Path(args.target), user=version_user(settings))
    except (LocationUnreachable, recover.RecoveryFailed) as exc:
        print(f"cifa: recover: {exc}; nothing was made in {args.target}", file=sys.stderr)
        return EXIT_FAILED
    return _reported(args, report, recover.table)


def _cmd_ledger(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    from cifa_ingest.archive.audit_log import AuditLog

    store = _existing_archive(archive)
    problems = AuditLog(store.ledger_path).verify()
    if args.json:
        import json

        verdict = {"ledger": str(store.ledger_path), "problems": problems, "ok": not problems}
        print(json.dumps(verdict, indent=2, ensure_ascii=False))
    else:
        for problem in problems:
            print(f"audit log: {problem}")
        if not problems:
            print(f"{store.ledger_path}: the audit log's hash chain is intact")
    return EXIT_OK if not problems else EXIT_FAILED


def _cmd_events(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Print the bag's PREMIS events and its fixity checks as one PREMIS document, or with
    ``--json`` as JSON objects."""
    import json

    from cifa_ingest.archive.audit_log import AuditLog
    from cifa_ingest.metadata.events import as_dict, bag_events, to_bytes

    store = _existing_archive(archive)
    bag_path, bag = _preserved_bag(store, args.work_id)
    if not (bag / "metadata" / "premis.xml").is_file():
        raise InputError(f"{bag_path}: no metadata/premis.xml (run cifa audit)")
    document = bag_events(bag, AuditLog(store.ledger_path), args.work_id)
    if args.json:
        found = {"id": args.work_id, "bag": bag_path, **as_dict(document)}
        print(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(to_bytes(document).decode())
        sys.stdout.write("\n")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    import json

    from cifa_ingest.reports.status import archive_status, render

    store = _existing_archive(archive)
    manifests = [Path(m) for m in (args.manifests or settings.catalogue.manifests)]
    missing = [m for m in manifests if not m.is_file()]
    if args.manifests and missing:
        raise InputError(f"no such catalogue: {', '.join(str(m) for m in missing)}")
    # The config's catalogues may be absent: the status says so, and which paths it looked for.
    found = [m for m in manifests if m.is_file()]
    locations, unwritten = list(settings.storage.locations), False
    status = archive_status(
        store, found, missing=[m.absolute() for m in missing], locations=locations
    )
    if args.holdings:
        from cifa_ingest.reports import holdings

        gathered = holdings.gather(
            store,
            locations,
            primary_zone=settings.archive.zone,
            primary_every_days=settings.schedules.fixity_rolling_max_age_days,
        )
        try:
            status.holdings_report = str(holdings.write(gathered, store))
        except OSError as exc:  # the status is still shown; the exit says the report is not
            print(f"cifa: the holdings report could not be written: {exc}", file=sys.stderr)
            unwritten = True
    if args.json:
        print(json.dumps(status.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(render(status))
    return EXIT_FAILED if unwritten else EXIT_OK


def _cmd_serve(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Serve the deployments of ``pipelines/deployments.py`` until Ctrl-C (exit 0).

    Flow runs are started by this process, each in a subprocess of its own that inherits its
    working directory and environment: the config file is pinned by absolute path first, so that
    every run reads the settings this command printed."""
    from cifa_ingest.config import config_path
    from cifa_ingest.pipelines.local_server import local_server, terminate_as_interrupt

    if (path := config_path()) is not None:
        os.environ["CIFA_CONFIG"] = str(path.absolute())
    # From here on a SIGTERM (a supervisor's stop) unwinds as Ctrl-C does, whenever it comes:
    # before Prefect's runner installs its own handler, it used to end this process on the spot,
    # leaving its Prefect server running.
    with contextlib.suppress(KeyboardInterrupt), terminate_as_interrupt():
        if os.environ.get("PREFECT_API_URL"):
            _serve(settings, archive, args, own_server=False)
        else:
            print("Starting a Prefect server on 127.0.0.1 for this session…", flush=True)
            with local_server() as api_url:
                os.environ["PREFECT_API_URL"] = api_url  # before Prefect is imported
                _serve(settings, archive, args, own_server=True)
    print("cifa serve: stopped", file=sys.stderr)
    return EXIT_OK


def _serve(settings: Settings, archive: Path, args: argparse.Namespace, own_server: bool) -> None:
    from cifa_ingest.pipelines import deployments

    manifests = [Path(m) for m in settings.catalogue.manifests]
    for missing in [m for m in manifests if not m.is_file()]:  # a night would fail on it
        logging.getLogger("cifa_ingest").warning(
            "no catalogue at %s: the nightly runs will fail until there is one", missing.absolute()
        )
    planned = deployments.plan(
        settings, archive, manifests, allow_private_sources=args.allow_private_sources
    )
    api = os.environ["PREFECT_API_URL"]
    print(
        f"Serving {len(planned)} deployments on the Prefect server at {api} (archive: {archive}):"
    )
    print(deployments.describe(planned))
    print(f"One-off job: {deployments.ONE_OFF_EXAMPLE}")
    if own_server:
        print(
            f"That server (UI at {api.removesuffix('/api')}) lives as long as this command; for one"
            " that outlives it, start `prefect server start` and set PREFECT_API_URL"
            " (docs/guides/operators.md, 'A Prefect server')."
        )
    print("Ctrl-C stops.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how serving ends, not a failure
        deployments.serve(planned)


def _cmd_doctor(args: argparse.Namespace, settings: Settings, archive: Path) -> int:
    """Exit 0 when every program and package the pipeline needs is there, 1 when one is
    missing (each named, with how to install it)."""
    import json

    from cifa_ingest.tools import doctor

    diagnosis = doctor.diagnose(settings.fetch)
    if args.json:
        print(json.dumps(diagnosis.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(doctor.table(diagnosis))
    for item in diagnosis.missing:
        print(f"cifa doctor: {item.name}: {item.problem}", file=sys.stderr)
    return EXIT_OK if diagnosis.ok else EXIT_FAILED


COMMANDS = {
    "doctor": _cmd_doctor,
    "serve": _cmd_serve,
    "status": _cmd_status,
    "events": _cmd_events,
    "audit": _cmd_audit,
    "ledger": _cmd_ledger,
    "recover": _cmd_recover,
    "replicate": _cmd_replicate,
    "repair": _cmd_repair,
    "restore": _cmd_restore,
    "history": _cmd_history,
    "export": _cmd_export,
    "deaccession": _cmd_deaccession,
    "renormalise": _cmd_renormalise,
    "recapture": _cmd_recapture,
    "validate": _cmd_validate,
    "bag": _cmd_bag,
    "inspect": _cmd_inspect,
    "ingest": _cmd_ingest,
    "preserve": _cmd_preserve,
    "demo": _cmd_demo,
    "watch": _cmd_watch,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.quiet, args.verbose)
    started = time.monotonic()
    _run_problems.clear()
    try:
        settings = load_settings()
        archive = resolve_archive(getattr(args, "archive", None), settings)
        status = COMMANDS[args.command](args, settings, archive)
    except InputError as exc:
        print(f"cifa: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cifa: interrupted; the archive holds only complete bags", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cifa events ID --json | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_FAILED
    except Exception as exc:  # the user gets a message; --verbose shows the traceback
        logging.getLogger("cifa_ingest").debug("unexpected error", exc_info=True)
        print(f"cifa: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    logging.getLogger("cifa_ingest").info("done in %.1f s", time.monotonic() - started)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
