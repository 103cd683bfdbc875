"""Resume across runs: the partial downloads of a failed fetch are kept aside, and finished by a
later run with one ``Range`` request when the source still sends the same bytes.

Why: yt-dlp resumes a cut-off download within one run (its ``.part`` file and ``Range``), but
the ``.part`` lives in the work's staging folder, which is removed when the work fails. A film
of several gigabytes cut off near its end on a night when its host was slow, or blocked us,
would be fetched again from its first byte the next night, and the next; tubeup and ytarchive
(``--save-state``) resume the next day. So do we, without ever joining two versions of a file.

What is kept: ``ARCHIVE/partials/<work id>/<stem>.<key>.partial``, the bytes, moved out of the
staging folder with one rename (same file system), and ``<stem>.<key>.json`` beside them, the
sidecar, written atomically; ``<key>`` is a digest of the format id: names we make, never the
source's text. The sidecar says whose bytes they are (work, stem, format id, the name yt-dlp
wrote), how many, the validators the server sent them with (``ETag``, ``Last-Modified``), the
whole file's length and when they were kept. Bytes whose validators are unknown (no strong ETag,
no Last-Modified) are never kept: nothing could prove that a later night's bytes continue them.
Nor bytes that came in responses with different validators, nor a fragmented download's (HLS,
DASH), nor a file as long as its whole length (not a partial).

A later run, after the metadata phase has chosen the formats and before any media byte is
requested, puts a kept partial of the same work, stem and format id back as the ``.part`` file
yt-dlp will write, and yt-dlp's ``Range`` requests for that format then carry ``If-Range`` (the
ETag, else the Last-Modified date), added on the way out (:meth:`SourceResume.before`, not in
the info JSON the bag keeps). A server that still has the same bytes answers 206 and yt-dlp
appends; one whose file changed answers 200 with the whole file, and yt-dlp starts again from
zero by itself ("Unable to resume"): the partial is logged as discarded, the source changed. A
206 whose validators differ from the kept ones (a server that ignores ``If-Range``) would join
two versions: that file is removed and fetched again whole. A partial whose format is no longer
offered, or no longer chosen, or larger than its recorded length, or not the size its sidecar
says, is discarded; the reason is logged each time.

Bounded: a partial is kept at most ``[fetch] resume_kept_days`` (0: none kept); expired ones
are removed at the start of each work's fetch, with a log line. They count against the
disk-space check before an encode (:func:`cifa_ingest.normalise.master.check_space`), which
discards them, oldest first, when that makes the room it needs. A successful capture removes its
work's kept partials. A sidecar without its bytes, or bytes without their sidecar (a crash
between the rename and the sidecar), is debris, removed with a log line.

The resumed file is the exact bytes the source serves: the completeness proof and the digests
(sha256, sha512) are taken of the finished file, as of any other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive.layout import fsync_dir, write_atomically
from cifa_ingest.fetch.capture import ContentRange

log = logging.getLogger(__name__)

PARTIAL = ".partial"
SIDECAR = ".json"
#: Protocols whose downloads are one ``.part`` file resumed with ``Range`` (not fragmented).
RESUMABLE_PROTOCOLS = frozenset({"http", "https"})
#: A work's or a stem's name as a folder or file name: the catalogue's ids are plain.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Debris of another work is removed only once this old: its fetch may be keeping it right now.
DEBRIS_GRACE_SECONDS = 3600


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Validators:
    """What a server said of the file it served (the validators of RFC 9110) and its length."""

    etag: str | None
    last_modified: str | None
    length: int | None = None  # the whole file's: Content-Length of a 200, Content-Range's total

    @classmethod
    def of(cls, status: int, headers: Mapping[str, str]) -> Validators:
        length: int | None = None
        if status == 206:
            sent = ContentRange.of(headers.get("Content-Range"))
            length = sent.length if sent is not None else None
        elif status == 200:
            given = headers.get("Content-Length") or ""
            length = int(given) if given.strip().isdigit() else None
        return cls(headers.get("ETag") or None, headers.get("Last-Modified") or None, length)

    @property
    def if_range(self) -> str | None:
        """The value of ``If-Range`` that proves the same bytes: a strong ETag (a weak one never
        matches, RFC 9110 13.1.5), else the Last-Modified date; None when neither is known."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def same(self, other: Validators) -> bool:
        return (self.etag, self.last_modified) == (other.etag, other.last_modified) and (
            self.length is None or other.length is None or self.length == other.length
        )

    def __str__(self) -> str:
        if self.etag:
            return f"ETag {self.etag}"
        return f"Last-Modified {self.last_modified}" if self.last_modified else "no validators"


@dataclass(frozen=True)
class KeptPartial:
    """A kept partial's sidecar."""

    work_id: str
    stem: str
    format_id: str
    ytdlp_name: str  # the file yt-dlp wrote (a record only: never used as a path)
    bytes: int
    etag: str | None
    last_modified: str | None
    content_length: int | None
    kept_at: str  # ISO 8601, UTC

    @property
    def validators(self) -> Validators:
        return Validators(self.etag, self.last_modified, self.content_length)

    @property
    def kept(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.kept_at)

    @classmethod
    def read(cls, sidecar: Path) -> KeptPartial:
        """The sidecar at ``sidecar``; ValueError (or OSError) if it is not one."""
        data = json.loads(sidecar.read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        given: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        kept = cls(**given)
        if not isinstance(kept.bytes, int) or not isinstance(kept.format_id, str):
            raise ValueError("bytes or format_id missing")
        kept.kept  # noqa: B018 - a date, or ValueError
        return kept


def _name(stem: str, format_id: str) -> str:
    """The kept files' name (without suffix): the stem (ours) and a digest of the format id
    (the source's text, never a path)."""
    return f"{stem}.{hashlib.sha256(format_id.encode('utf-8')).hexdigest()[:16]}"


def _safe(name: str) -> bool:
    return bool(_SAFE_NAME.match(name)) and ".." not in name


class Partials:
    """The archive's kept partials (``ARCHIVE/partials/``), kept ``kept_days`` at most."""

    def __init__(self, folder: Path, kept_days: int) -> None:
        self.folder = Path(folder)
        self.kept_days = kept_days
        #: The sources whose fetch failed (:func:`cifa_ingest.fetch.ytdlp.fetch_source`), whose
        #: partial downloads :meth:`keep_failed` keeps.
        self.failed: list[SourceResume] = []

    def keep_failed(self, refused: str | None = None) -> None:
        """Keep aside the partial downloads of the sources that failed, before their staging
        folder is removed; none when ``refused`` says why not (a full disk: what they hold is
        the room the run needs)."""
        failed, self.failed = self.failed, []
        for source in failed:
            if refused:
                for part in sorted(p for p in source.downloads if p.is_file()):
                    log.info(
                        "%s: partial download %s not kept: %s", source.stem, part.name, refused
                    )
                continue
            try:
                source.keep_partials()
            except OSError as exc:  # never in the way of the failure's own message
                log.warning("%s: partial downloads not kept: %s", source.stem, exc)

    def _files(self, work_id: str, stem: str, format_id: str) -> tuple[Path, Path] | None:
        """(bytes, sidecar) of the partial of this work, stem and format; None for a work id
        or stem that cannot be a file name (never made into a path)."""
        if not (_safe(work_id) and _safe(stem)):
            return None
        base = self.folder / work_id / _name(stem, format_id)
        return base.with_name(base.name + PARTIAL), base.with_name(base.name + SIDECAR)

    def entries(self) -> list[tuple[Path, KeptPartial]]:
        """Every readable sidecar whose bytes are there, oldest first."""
        found = []
        for sidecar in sorted(self.folder.glob(f"*/*{SIDECAR}")):
            try:
                kept = KeptPartial.read(sidecar)
            except (OSError, ValueError, TypeError):
                continue
            if sidecar.with_suffix(PARTIAL).is_file():
                found.append((sidecar, kept))
        return sorted(found, key=lambda entry: entry[1].kept_at)

    def held_bytes(self) -> int:
        """The bytes the kept partials hold (debris included: it is on the disk too)."""
        return sum(p.stat().st_size for p in self.folder.glob(f"*/*{PARTIAL}") if p.is_file())

    def _remove(self, sidecar: Path, why: str) -> int:
        """Remove a kept partial (sidecar first: bytes without it are debris, never resumed)."""
        data = sidecar.with_suffix(PARTIAL)
        size = data.stat().st_size if data.is_file() else 0
        sidecar.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            fsync_dir(sidecar.parent)
            sidecar.parent.rmdir()  # when it was the work's last
        log.info("kept partial %s/%s discarded: %s", sidecar.parent.name, data.name, why)
        return size

    def tidy(self, own_work: str | None = None, now: dt.datetime | None = None) -> None:
        """Remove expired partials (all of them when ``kept_days`` is 0) and debris: a sidecar
        without its bytes, bytes without a sidecar, a sidecar that cannot be read. Debris of
        another work than ``own_work`` only once an hour old: that work's fetch may be keeping
        it right now."""
        if not self.folder.is_dir():
            return
        now = now or _now()
        limit = dt.timedelta(days=self.kept_days)
        for folder in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            mine = folder.name == own_work
            for path in sorted(folder.iterdir()):
                if not path.exists():  # removed with its pair a moment ago
                    continue
                if path.suffix == SIDECAR:
                    try:
                        kept = KeptPartial.read(path)
                    except (OSError, ValueError, TypeError) as exc:
                        if mine or _aged(path):
                            self._remove(path, f"debris: its sidecar cannot be read ({exc})")
                        continue
                    if not path.with_suffix(PARTIAL).is_file():
                        if mine or _aged(path):
                            self._remove(path, "debris: a sidecar without its bytes")
                    elif now - kept.kept >= limit:
                        self._remove(
                            path,
                            f"expired: kept since {kept.kept_at}"
                            + (
                                f", longer than [fetch] resume_kept_days ({self.kept_days})"
                                if self.kept_days
                                else " ([fetch] resume_kept_days is 0)"
                            ),
                        )
                elif path.suffix == PARTIAL:
                    if not path.with_suffix(SIDECAR).exists() and (mine or _aged(path)):
                        self._remove(path.with_suffix(SIDECAR), "debris: bytes without a sidecar")
                elif mine or _aged(path):  # a temporary sidecar a crash left
                    path.unlink(missing_ok=True)
                    log.info("kept partial debris %s/%s removed", folder.name, path.name)
            with contextlib.suppress(OSError):
                folder.rmdir()

    def keep(
        self,
        work_id: str,
        stem: str,
        format_id: str,
        part: Path,
        validators: Validators,
        since: str | None = None,
    ) -> bool:
        """Move ``part`` (a ``.part`` file of the staging folder) aside with its sidecar;
        False (and why, in the log) when it is not kept. ``since``: when its first bytes were
        first kept (a partial resumed and cut off again expires as the first one would)."""
        files = self._files(work_id, stem, format_id)
        size = part.stat().st_size
        reason = None
        if self.kept_days <= 0:
            reason = "[fetch] resume_kept_days is 0"
        elif files is None:
            reason = "its work id or stem cannot be a file name"
        elif validators.if_range is None:
            reason = (
                f"its validators are unknown ({validators}): nothing would prove that the"
                " bytes of a later run continue these"
            )
        elif size == 0:
            reason = "it holds no byte"
        elif validators.length is not None and size >= validators.length:
            reason = f"it holds {size} bytes of {validators.length}: not a partial"
        if reason or files is None:
            log.info("%s: partial download %s not kept: %s", stem, part.name, reason)
            return False
        data, sidecar = files
        data.parent.mkdir(parents=True, exist_ok=True)
        if part.stat().st_dev != data.parent.stat().st_dev:
            log.info("%s: partial download %s not kept: not on the archive's disk", stem, part.name)
            return False
        sidecar.unlink(missing_ok=True)  # an older keep's: never beside these bytes
        os.replace(part, data)  # one rename: the bytes are in staging or kept, never both
        fsync_dir(data.parent)
        kept = KeptPartial(
            work_id=work_id,
            stem=stem,
            format_id=format_id,
            ytdlp_name=part.name,
            bytes=size,
            etag=validators.etag,
            last_modified=validators.last_modified,
            content_length=validators.length,
            kept_at=since or _now().isoformat(timespec="seconds"),
        )
        write_atomically(sidecar, json.dumps(asdict(kept), indent=2).encode("utf-8"))
        log.info(
            "%s: partial download of format %s kept for a later run: %d of %s bytes (%s)",
            stem,
            format_id,
            size,
            validators.length if validators.length is not None else "?",
            validators,
        )
        return True

    def take(self, work_id: str, stem: str, format_id: str, part: Path) -> KeptPartial | None:
        """Put the kept partial of this work, stem and format back as ``part`` (the ``.part``
        file yt-dlp will resume), and return its sidecar; None when there is none."""
        files = self._files(work_id, stem, format_id)
        if files is None or not files[1].is_file():
            return None
        data, sidecar = files
        try:
            kept = KeptPartial.read(sidecar)
        except (OSError, ValueError, TypeError) as exc:
            self._remove(sidecar, f"its sidecar cannot be read ({exc})")
            return None
        size = data.stat().st_size if data.is_file() else None
        reason = None
        if size is None:
            reason = "debris: a sidecar without its bytes"
        elif size != kept.bytes:
            reason = f"it holds {size} bytes, its sidecar says {kept.bytes}"
        elif kept.content_length is not None and size >= kept.content_length:
            reason = f"it holds {size} bytes, more than the file's {kept.content_length}"
        elif kept.validators.if_range is None:
            reason = "its validators are unknown"
        elif _now() - kept.kept >= dt.timedelta(days=self.kept_days):
            reason = f"expired: kept since {kept.kept_at}"
        if reason:
            self._remove(sidecar, reason)
            return None
        part.unlink(missing_ok=True)
        try:
            os.replace(data, part)
        except FileNotFoundError:  # discarded a moment ago (the disk-space check of another work)
            return None
        sidecar.unlink(missing_ok=True)  # its record is the caller's now; a crash between: debris
        with contextlib.suppress(OSError):
            fsync_dir(data.parent)
            data.parent.rmdir()
        return kept

    def discard(self, work_id: str, stem: str, format_id: str, why: str) -> None:
        """Discard the partial of this work, stem and format, if one is kept."""
        files = self._files(work_id, stem, format_id)
        if files is not None and (files[0].exists() or files[1].exists()):
            self._remove(files[1], why)

    def discard_others(self, work_id: str, stem: str, keep: set[str], why: str) -> None:
        """Discard the partials of ``stem`` whose format id is not in ``keep``."""
        for sidecar, kept in self.entries():
            if kept.work_id == work_id and kept.stem == stem and kept.format_id not in keep:
                self._remove(sidecar, why.format(format_id=kept.format_id))

    def forget(self, work_id: str) -> None:
        """A successful capture: its work's kept partials are no longer needed."""
        folder = self.folder / work_id
        if not _safe(work_id) or not folder.is_dir():
            return
        for sidecar in sorted(folder.glob(f"*{SIDECAR}")):
            self._remove(sidecar, "the work was captured")
        for path in sorted(folder.iterdir()):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()

    def make_room(self, needed: int) -> int:
        """Discard kept partials, oldest first, until ``needed`` bytes are freed (or none is
        left); returns the bytes freed."""
        freed = 0
        for sidecar, _kept in self.entries():
            if freed >= needed:
                break
            freed += self._remove(sidecar, "the disk-space check needs the room")
        return freed


def _starts_at_zero(headers: Mapping[str, str]) -> bool:
    """Whether a 206 carries the file from its first byte (a chunked download's first chunk)."""
    sent = ContentRange.of(headers.get("Content-Range"))
    return sent is not None and sent.start == 0


def _aged(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_ctime > DEBRIS_GRACE_SECONDS
    except OSError:
        return False


@dataclass
class _Resumed:
    """A kept partial put back for this source: its sidecar, the URL of its format, what yt-dlp
    will write."""

    kept: KeptPartial
    url: str
    part: Path
    if_range: str
    answered: int | None = None  # the status of the first If-Range request's answer


@dataclass
class SourceResume:
    """The resume of one source (a film or a part), over its attempts in one run: which media
    file each format's bytes go to, the validators of the responses that served them, the kept
    partials put back and what became of them."""

    partials: Partials | None
    work_id: str
    stem: str
    #: The .part file of each resumable media download: (format id, URL).
    downloads: dict[Path, tuple[str, str]] = field(default_factory=dict)
    #: By URL: the validators of the bytes in its file since its last 200, and whether
    #: responses with other validators fed it (None: unknown).
    chains: dict[str, tuple[Validators | None, bool]] = field(default_factory=dict)
    resumed: dict[str, _Resumed] = field(default_factory=dict)  # by URL
    tried: bool = False  # kept partials are put back at the first attempt only

    # --- the next run: putting back --------------------------------------------------------

    def put_back(self, chosen: list[tuple[dict[str, Any], Path]], offered: set[str]) -> None:
        """Before the download: put this stem's kept partials back as the ``.part`` files of the
        chosen formats (format info, the ``.part`` path yt-dlp will write, already checked to be
        in the staging folder); discard the others, saying why."""
        if self.partials is None or self.tried:
            return
        self.tried = True
        chosen_ids = {str(fmt.get("format_id")) for fmt, _part in chosen}
        self.partials.discard_others(
            self.work_id,
            self.stem,
            chosen_ids | offered,
            "format {format_id} is no longer offered by the source",
        )
        self.partials.discard_others(
            self.work_id,
            self.stem,
            chosen_ids,
            "format {format_id} is offered but no longer the one chosen",
        )
        for fmt, part in chosen:
            format_id, url = str(fmt.get("format_id")), str(fmt.get("url") or "")
            if str(fmt.get("protocol") or "") not in RESUMABLE_PROTOCOLS:
                self.partials.discard(
                    self.work_id,
                    self.stem,
                    format_id,
                    f"format {format_id} is now fragmented ({fmt.get('protocol')})",
                )
                continue
            kept = self.partials.take(self.work_id, self.stem, format_id, part)
            if kept is None:
                continue
            if_range = kept.validators.if_range
            assert if_range is not None  # take() refuses one without
            self.downloads[part] = (format_id, url)
            self.chains[url] = (kept.validators, False)
            self.resumed[url] = _Resumed(kept, url, part, if_range)
            log.info(
                "%s: resuming format %s from a kept partial: %d of %s bytes, kept %s (%s)",
                self.stem,
                format_id,
                kept.bytes,
                kept.content_length if kept.content_length is not None else "?",
                kept.kept_at,
                kept.validators,
            )

    # --- every request: If-Range out, validators in -----------------------------------------

    def before(self, url: str, method: str, headers: Any) -> None:
        """A request on its way out: a Range request of a resumed format carries If-Range."""
        resumed = self.resumed.get(url)
        if (
            resumed is not None
            and resumed.answered in (None, 206)  # not once the source changed
            and method == "GET"
            and "Range" in headers
        ):
            headers["If-Range"] = resumed.if_range

    def after(self, url: str, method: str, sent: Any, status: int, headers: Any) -> None:
        """A response (an error's too): the validators of the bytes each file holds; what the
        server answered ``If-Range``."""
        if method != "GET" or status not in (200, 206, 416):
            return
        validators = Validators.of(status, headers)
        resumed = self.resumed.get(url)
        if resumed is not None and "If-Range" in sent and resumed.answered is None:
            resumed.answered = status
            if status == 416:
                # yt-dlp would then take a file within 100 bytes of the length as whole.
                log.warning(
                    "%s: the server refused the kept partial's range (416): fetched again whole",
                    self.stem,
                )
            elif status == 206 and not resumed.kept.validators.same(validators):
                log.warning(
                    "%s: the server answered If-Range %s with 206 and %s: it ignores If-Range;"
                    " the rest cannot be joined to the kept bytes",
                    self.stem,
                    resumed.if_range,
                    validators,
                )
            elif status == 206:
                log.info(
                    "%s: the source still has the same bytes (%s): resumed at byte %d",
                    self.stem,
                    resumed.kept.validators,
                    resumed.kept.bytes,
                )
            else:
                log.info(
                    "%s: kept partial of format %s discarded: the source changed (%s, now %s);"
                    " fetched again whole",
                    self.stem,
                    resumed.kept.format_id,
                    resumed.kept.validators,
                    validators,
                )
        if status == 416:
            return
        if status == 200 or _starts_at_zero(headers):  # yt-dlp writes the file anew
            self.chains[url] = (validators, False)
            return
        known, mixed = self.chains.get(url, (None, True))
        if known is None or not known.same(validators):
            mixed = True
        self.chains[url] = (known, mixed)

    def progress(self, status: dict[str, Any]) -> None:
        """yt-dlp's progress hook: which ``.part`` file each resumable format's bytes go to."""
        info = status.get("info_dict") or {}
        name = status.get("tmpfilename")
        if status.get("status") != "downloading" or not name:
            return
        if str(info.get("protocol") or "") in RESUMABLE_PROTOCOLS:
            url = str(info.get("url") or "")
            self.downloads.setdefault(Path(name).resolve(), (str(info.get("format_id")), url))

    # --- after the download ----------------------------------------------------------------

    def joined_versions(self) -> list[str]:
        """The resumed formats whose appended bytes came with other validators than the kept
        ones (a server that ignores If-Range): their files would join two versions; and those
        whose range the server refused (416), after which yt-dlp may take the kept bytes for
        the whole file when their lengths differ by less than 100 bytes."""
        return [
            r.kept.format_id
            for url, r in self.resumed.items()
            if r.answered == 416 or (r.answered == 206 and self.chains.get(url, (None, True))[1])
        ]

    def keep_partials(self) -> None:
        """The fetch failed: keep aside every resumable ``.part`` file it leaves."""
        for part, (format_id, url) in sorted(self.downloads.items()):
            if not part.is_file():
                continue
            validators, mixed = self.chains.get(url, (None, True))
            if self.partials is None:
                continue
            if mixed or validators is None:
                log.info(
                    "%s: partial download %s not kept: its bytes came with different"
                    " validators, or unknown ones",
                    self.stem,
                    part.name,
                )
                continue
            resumed = self.resumed.get(url)
            since = resumed.kept.kept_at if resumed and resumed.answered != 200 else None
            self.partials.keep(self.work_id, self.stem, format_id, part, validators, since)
