"""An archive made by the previous release, with its S3 replica: the starting point of a
migration test.

A migration is only proved on what the previous release really wrote, not on what today's code
imagines it wrote: an archive built by the current code with a few files removed would carry
every habit of the current code (its ledger's migrations already applied, its file layout, its
records) and hide exactly what a migration must cope with. So :func:`make_previous_release_archive`
takes the previous release's own source (:data:`PREVIOUS_RELEASE`, the last commit before the
archive kept OCFL versions under ``ARCHIVE/objects/``; a snapshot of it, :data:`SNAPSHOT`, checked
against git where the clone has the commit) and runs *its* command line in a
subprocess: ``cifa demo`` (the README's own end-to-end ingest, offline: films generated with
ffmpeg and served from 127.0.0.1) into an archive whose settings declare one storage location of
kind ``s3`` on the test SeaweedFS server, then ``cifa replicate``. What it leaves is what an
operator upgrading from that release has: bags, a ledger at that release's schema, copies
recorded good at the S3 location, no ``objects/`` folder.

The old code runs on the current virtual environment's Python and packages (the dependencies
did not change: ``pyproject.toml`` and ``requirements.lock`` are the same in both commits), with
the old ``cifa_ingest`` put first on ``sys.path``. The project is installed in the venv in
editable mode, through a meta-path finder that maps ``cifa_ingest`` to this work tree and
``cifa_ingest.pipelines`` to its ``pipelines/`` folder (setuptools' ``package-dir``). An entry on
``sys.path`` wins over that finder for ``cifa_ingest`` (the path finder comes first on
``sys.meta_path``), but not for ``cifa_ingest.pipelines``: the old tree keeps it in a top-level
``pipelines/`` too, so the path finder finds no ``cifa_ingest/pipelines`` there and the editable
finder then supplies *today's* flows to the old library. The extracted tree therefore has its
``pipelines/`` moved to ``cifa_ingest/pipelines/`` (where an installed wheel puts it), and every
run checks, after the command, that each ``cifa_ingest`` module it imported came from the old tree.

A shallow clone has no such commit: the snapshot makes the test run there all the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.s3server import CLEARED, REGION, S3Server, client_env

REPO = Path(__file__).resolve().parents[1]
#: The previous release: the last commit before the archive kept OCFL versions under
#: ``ARCHIVE/objects/`` (ebe360d, the next commit, added them).
PREVIOUS_RELEASE = "366b8b0"
#: The previous release's code, as ``git archive --format=tar 366b8b0 -- cifa_ingest pipelines
#: config tests/data/test-config.toml | gzip -9n`` made it: what running it needs.
SNAPSHOT = REPO / "tests" / "data" / "previous-release-366b8b0.tar.gz"
SNAPSHOT_PATHS = ("cifa_ingest", "pipelines", "config", "tests/data/test-config.toml")
#: How long one command of the old release may take (the demo's ingest is the long one).
COMMAND_TIMEOUT = 900.0

#: Runs the old release's ``cifa`` (``python -c BOOTSTRAP OLD_TREE ARG...``): the old tree first
#: on ``sys.path``, then its ``cifa_ingest.cli.main``; afterwards, exit 3 if any ``cifa_ingest``
#: module came from elsewhere (the editable install of the current code), so that a run of the
#: wrong code can never pass for the previous release's.
BOOTSTRAP = textwrap.dedent(
    """
    import os, sys
    old = os.path.realpath(sys.argv[1])
    sys.path.insert(0, old)

    def foreign(module):
        places = [getattr(module, "__file__", None)]
        places += list(getattr(module, "__path__", None) or [])
        places = [os.path.realpath(p) for p in places if p]
        return not places or any(os.path.commonpath([old, p]) != old for p in places)

    from cifa_ingest.cli import main
    status = main(sys.argv[2:])
    strays = sorted(
        name for name, module in list(sys.modules.items())
        if name.partition(".")[0] == "cifa_ingest" and foreign(module)
    )
    if strays:
        print("previous release: modules not from " + old + ": " + ", ".join(strays),
              file=sys.stderr)
        sys.exit(3)
    sys.exit(status)
    """
)


class PreviousReleaseError(RuntimeError):
    """The previous release could not be made: its commit is missing, or a command failed."""


@dataclass(frozen=True)
class PreviousRelease:
    """What :func:`make_previous_release_archive` made, for the migration test to start from."""

    #: The archive root (``bags/``, ``ledger.sqlite``…), as the previous release left it.
    archive: Path
    #: The settings file (the previous release's format) that declares the S3 location; give it
    #: to the current code as ``CIFA_CONFIG`` to run it over the same archive and location.
    settings: Path
    #: The name of the S3 location in the settings and in the ledger's ``copies`` rows.
    location: str
    #: The location's bucket on the test server, and the prefix of its keys (``<prefix>bags/…``).
    bucket: str
    prefix: str
    #: The works the demo preserved, each with a bag ``bags/<id>`` and a copy at the location.
    work_ids: tuple[str, ...]
    #: The previous release's source tree (its ``pipelines/`` moved into ``cifa_ingest/``).
    code: Path
    #: The environment the old commands ran with (the S3 credentials, ``CIFA_CONFIG``, a Prefect
    #: home of their own, the old tree on ``PYTHONPATH``): a base for running the current code
    #: the same way, once ``PYTHONPATH`` is taken out of it.
    env: dict[str, str]


def extract_previous_release(destination: Path, commit: str = PREVIOUS_RELEASE) -> Path:
    """The previous release's code in ``destination`` (made; must not exist), from
    :data:`SNAPSHOT`, laid out as an installed package (``pipelines/`` as
    ``cifa_ingest/pipelines/``). The snapshot, not ``git archive``, so that a shallow clone runs
    the test too; where the repository has ``commit``, the snapshot must be that commit's
    files, byte for byte (checked here), so it cannot drift from the release it stands for."""
    if not SNAPSHOT.is_file():
        raise PreviousReleaseError(f"{SNAPSHOT} is missing: make it as its docstring says")
    destination.mkdir(parents=True)
    with tarfile.open(SNAPSHOT, "r:gz") as snapshot:
        snapshot.extractall(destination, filter="data")
    _check_against_git(destination, commit)
    # As setuptools' package-dir maps it in a wheel; see the module docstring for why.
    (destination / "pipelines").rename(destination / "cifa_ingest" / "pipelines")
    return destination


def _check_against_git(extracted: Path, commit: str) -> None:
    """Each file of the snapshot is ``commit``'s, and no file of those folders is missing, where
    the repository holds the commit (a shallow clone may not: the snapshot is then trusted)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", commit, "--", *SNAPSHOT_PATHS],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        return
    expected = {}
    for line in listed.stdout.splitlines():
        meta, path = line.split("\t", 1)
        expected[path] = meta.split()[2]
    found = {p.relative_to(extracted).as_posix(): p for p in extracted.rglob("*") if p.is_file()}
    if set(found) != set(expected):
        odd = sorted(set(found) ^ set(expected))
        raise PreviousReleaseError(f"{SNAPSHOT.name} and {commit} differ in files: {odd[:5]}")
    for path, blob in expected.items():
        data = found[path].read_bytes()
        digest = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if digest != blob:
            raise PreviousReleaseError(f"{SNAPSHOT.name}: {path} is not {commit}'s")


def run_previous_release(
    code: Path, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``cifa ARGS`` of the previous release in ``code``, on this venv's Python; raises
    :class:`PreviousReleaseError` (with its output) unless it exits 0."""
    command = [sys.executable, "-c", BOOTSTRAP, str(code), *args]
    done = subprocess.run(
        command,
        cwd=cwd,  # never the repository: '' on sys.path would put today's cifa_ingest first
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise PreviousReleaseError(
            f"the previous release's `cifa {' '.join(args)}` exited {done.returncode}\n"
            f"--- stdout (end)\n{done.stdout[-4000:]}\n--- stderr (end)\n{done.stderr[-4000:]}"
        )
    return done


def settings_text(code: Path, location: str, endpoint: str, bucket: str, prefix: str) -> str:
    """The previous release's own test settings (no waits), with one ``[[storage.locations]]``
    of kind ``s3``, in that release's format (its ``config/cifa.toml``). No credential: that
    release refuses one in the settings; its S3 client reads them from the environment."""
    base = (code / "tests" / "data" / "test-config.toml").read_text(encoding="utf-8")
    return base + textwrap.dedent(
        f"""
        [[storage.locations]]
        name = {json.dumps(location)}
        kind = "s3"
        endpoint = {json.dumps(endpoint)}
        region = {json.dumps(REGION)}
        bucket = {json.dumps(bucket)}
        prefix = {json.dumps(prefix)}
        zone = "test-offsite"
        """
    )


def old_env(settings: Path, prefect_home: Path, code: Path) -> dict[str, str]:
    """The environment of the old commands: this one without what would point them elsewhere
    (a developer's archive, AWS settings), with the test server's credentials, the settings
    file, a Prefect home of their own (not the test session's, whose database another process
    may be using) and the old tree on ``PYTHONPATH`` for any Python process they start."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED and k != "CIFA_ARCHIVE"}
    env.update(client_env())
    env["CIFA_CONFIG"] = str(settings)
    env["PREFECT_HOME"] = str(prefect_home)
    env["PYTHONPATH"] = str(code)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def make_previous_release_archive(
    tmp: Path,
    s3: S3Server,
    *,
    location: str = "offsite",
    prefix: str = "cifa/",
    commit: str = PREVIOUS_RELEASE,
) -> PreviousRelease:
    """The previous release's archive and its replica at an S3 location, made under ``tmp`` by
    that release's own ``cifa demo`` and ``cifa replicate`` (see the module docstring for why,
    and how the old code is made to run instead of the installed one).

    ``tmp`` holds ``code/`` (the old tree), ``archive/``, ``demo/`` (the demo's films and
    catalogue), ``cifa.toml`` and ``prefect/``. A new bucket is made on ``s3``; ``location`` and
    ``prefix`` name the location and the keys' prefix there."""
    code = extract_previous_release(tmp / "code", commit)
    archive = tmp / "archive"
    bucket = s3.create_bucket()
    settings = tmp / "cifa.toml"
    settings.write_text(
        settings_text(code, location, s3.endpoint, bucket, prefix), encoding="utf-8"
    )
    prefect_home = tmp / "prefect"
    prefect_home.mkdir()
    env = old_env(settings, prefect_home, code)

    # Port 0: any free one (the demo's fixed port may be taken by another test's run).
    demo_args = ["demo", "--archive", str(archive), "--workdir", str(tmp / "demo")]
    demo = run_previous_release(code, [*demo_args, "--port", "0", "--json", "--quiet"], env, tmp)
    reports = json.loads(demo.stdout)["works"]
    work_ids = tuple(
        sorted(r["id"] for r in reports if r["outcome"] in ("preserved", "preserved-degraded"))
    )
    if not work_ids:
        raise PreviousReleaseError(f"the previous release's demo preserved nothing:\n{reports}")
    # The demo's nightly run replicates too; `cifa replicate` is how an operator makes sure.
    run_previous_release(
        code, ["replicate", "--archive", str(archive), "--json", "--quiet"], env, cwd=tmp
    )
    return PreviousRelease(
        archive=archive,
        settings=settings,
        location=location,
        bucket=bucket,
        prefix=prefix,
        work_ids=work_ids,
        code=code,
        env=env,
    )


def copies_in_ledger(archive: Path) -> dict[tuple[str, str], str]:
    """The ledger's ``copies`` rows, read with sqlite3 (no code of either release):
    (work id, location) → state."""
    uri = f"file:{archive / 'ledger.sqlite'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute("SELECT work_id, location, state FROM copies").fetchall()
    return {(work_id, location): state for work_id, location, state in rows}


__all__ = [
    "PREVIOUS_RELEASE",
    "PreviousRelease",
    "PreviousReleaseError",
    "copies_in_ledger",
    "extract_previous_release",
    "make_previous_release_archive",
    "run_previous_release",
]
