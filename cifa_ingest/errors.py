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


#: ffmpeg's own programs: their failures say "ffmpeg exited with …", as they always have.
_FFMPEG_PROGRAMS = frozenset({"ffmpeg", "ffprobe"})


class FFmpegError(WorkFailed):
    """An external program run by :mod:`cifa_ingest.tools.runner` failed: ffmpeg or ffprobe
    above all, also mkvpropedit, MediaConch or MediaInfo (``tool``, the program's name). The
    message carries the command line, to re-run by hand, and the tail of the program's stderr."""

    def __init__(self, command: str, returncode: int, stderr: str, tool: str = "ffmpeg") -> None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        said = "ffmpeg" if tool in _FFMPEG_PROGRAMS else tool
        super().__init__(f"{said} exited with {returncode}: {command}\n{tail}")
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.tool = tool


class ToolMissing(FFmpegError):
    """A program the pipeline needs is not installed (not on PATH); the message says how to
    install it. An optional program (MediaConch, MediaInfo) is looked for first, and its check
    recorded as not run where it is missing: this is for the programs the pipeline cannot do
    without."""

    def __init__(self, tool: str, install: str) -> None:
        super().__init__(tool, 127, f"{tool} not found: {install}", tool=tool)
        self.install = install


class ToolStalled(FFmpegError):
    """The runner killed a program because it stopped making progress (``problem``: ``no
    progress for 600 s``), ran past its time limit (``timed out after 300 s``), or, reading
    another's output through a pipe, was not done long after that one ended. Why it failed is
    a fact carried here, not read back from the message; the message says it first (``ffmpeg
    killed: no progress for 600 s``, :attr:`killed`), then the program's last words
    (``output``)."""

    def __init__(
        self, command: str, returncode: int, problem: str, output: str, tool: str = "ffmpeg"
    ) -> None:
        super().__init__(command, returncode, f"{tool} killed: {problem}\n{output}", tool=tool)
        self.problem = problem
        self.output = output

    @property
    def killed(self) -> str:
        """What the runner did and why: ``ffmpeg killed: no progress for 600 s``."""
        return f"{self.tool} killed: {self.problem}"


class UnknownSampleFormat(FFmpegError):
    """ffprobe describes an audio stream by a sample format no lossless codec of the master is
    chosen for (:data:`cifa_ingest.normalise.audio.LOSSLESS_AUDIO`): the film cannot be
    normalised. A normalisation failure like ffmpeg's own (stored as such), with the message it
    has always had, which names ffprobe, the program that described the stream."""

    def __init__(self, stream: int, sample_fmt: str) -> None:
        super().__init__(
            "ffprobe", 0, f"audio {stream}: unknown sample format {sample_fmt!r}", tool="ffprobe"
        )
        self.stream = stream
        self.sample_fmt = sample_fmt


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


class VersionRefused(InputError):
    """A new version of a work (:mod:`cifa_ingest.versions`) was refused before any of it was
    kept: the bag is not a complete, valid bag (the message names the files and what is wrong
    with them), or it cannot be stored as it is (a link, an empty folder). The work's object is
    as it was; exit 2."""


class UnchangedVersion(VersionRefused):
    """The bag offered as a new version is, file for file, the work's latest version (``head``,
    its number): a version records a change, and there is none. Also what re-running an add that
    was interrupted after its version was in place says; the object is at that version."""

    def __init__(self, message: str, head: int) -> None:
        super().__init__(message)
        self.head = head


class NoSuchVersion(InputError):
    """The versioned store holds no object for this work, or the object has no version of the
    number asked for; the message says which versions there are."""


class ExportRefused(InputError):
    """An export of a version was refused before anything was written: its target is a folder
    that is not empty (nothing is ever written over), or is not a folder."""


class AccessWithheld(CifaError):
    """An export meant for access refused: the work's newest version records a permission that
    does not cover access (withdrawn, narrowed to research or to preservation only). Nothing is
    written; the preservation files are kept as they are."""


class ObjectDamaged(ArchiveStateError):
    """A work's versioned object disagrees with its own inventory: a content file whose digest is
    not the one recorded, an inventory that does not match its digest file, a version folder
    missing. Found by a reader (an export, the recovery before every read and write), which
    stops without changing anything; the message names the file."""
