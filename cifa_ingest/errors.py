"""The exceptions the CLI turns into clear messages and exit codes (never a traceback).

Exit codes: 2 for bad input or usage (``InputError`` and its children), 1 for a work that
failed (``WorkFailed`` and its children).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cifa_ingest.fetch.failures import FetchErrorKind


class CifaError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(CifaError):
    """The user's input (catalogue, arguments, configuration) is wrong: exit code 2."""


class CatalogueError(InputError):
    """A catalogue file is invalid. The message names the file, the entry and the field."""


class ConfigError(InputError):
    """``config/cifa.toml`` is invalid."""


class SourcePolicyError(InputError):
    """A source address the archive must not fetch (scheme, private address, …)."""


class LedgerError(InputError):
    """The archive's ledger is not one this program can use: written by a newer version of it
    (its schema version is above the latest this one knows), or not a ledger at all. Refused
    before anything is written to it: exit 2."""


class LedgerMigrationError(CifaError):
    """A step of the ledger's migration failed; its transaction was rolled back, so the ledger
    is as it was before. The message names the step and the cause."""


class WorkFailed(CifaError):
    """One work could not be preserved; the others go on. Exit code 1."""


class FetchError(WorkFailed):
    """The source could not be fetched. ``kind`` classifies why
    (:class:`cifa_ingest.fetch.failures.FetchErrorKind`); it is stored in the ledger with the
    work's outcome. A kind given by its spelling (``"duplicate"``) is checked against the
    enumeration here: an unknown one raises ValueError rather than reach the ledger."""

    def __init__(self, message: str, kind: FetchErrorKind | str = "error") -> None:
        # Imported here, not at the top: cifa_ingest.fetch.failures imports this module.
        from cifa_ingest.fetch.failures import FetchErrorKind

        super().__init__(message)
        self.message = message
        self.kind: FetchErrorKind = FetchErrorKind(kind)


class FFmpegError(WorkFailed):
    """ffmpeg or ffprobe failed; the message carries the command line and ffmpeg's stderr."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"ffmpeg exited with {returncode}: {command}\n{tail}")
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class ProofFailed(WorkFailed):
    """The master is not lossless against its source; the message names the first difference."""


class InsufficientSpace(WorkFailed):
    """The archive's disk cannot hold the master (estimated from a sample before encoding)."""


class PackagingError(WorkFailed):
    """The bag could not be built or did not validate."""


class ArchiveStateError(WorkFailed):
    """The archive holds something unexpected for this work (e.g. an invalid bag in place)."""


class RunFailed(CifaError):
    """A flow run that ended Failed for a reason the pipeline classified (a work that could not be
    preserved, a damaged bag): the Failed state's data, carrying what the run found (``data``).

    Prefect's engine re-raises a failed run's data when the run ends in a process of its own (a
    served deployment), and logs it as an "unexpected exception" with a traceback; for this class
    it does not (``cifa_ingest.pipelines.flows`` filters those records out): the state's message
    already says
    why, and a traceback there reads as a bug in the pipeline."""

    def __init__(self, message: str, data: object = None) -> None:
        super().__init__(message)
        self.data = data
