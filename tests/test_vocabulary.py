"""The published words: every kind, status and outcome the ledger stores and ``--json``, the
reports and ``cifa status`` print is a member of one enumeration, and each enumeration's values are
written out here, as the documentation publishes them. Renaming a member's value, adding one or
dropping
one fails a test: years of ledger rows and every program reading the JSON depend on these
spellings, so a change to them must be a decision, made here too, never a slip of a refactoring."""

from __future__ import annotations

import sqlite3
from enum import StrEnum
from pathlib import Path

import pytest

from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType
from cifa_ingest.archive.ledger import CheckOutcome, CopyState, Ledger, Outcome, SourceStatus
from cifa_ingest.audit import watch
from cifa_ingest.audit.fixity_audit import AuditMode, CheckDepth, ProblemKind
from cifa_ingest.catalogue.drift import Record
from cifa_ingest.catalogue.model import PermissionStatus
from cifa_ingest.fetch.failures import FetchErrorKind
from cifa_ingest.metadata.versions_record import VersionChange
from cifa_ingest.preserve import Step, StepErrorKind
from cifa_ingest.reports.audit_report import KIND_TEXT
from cifa_ingest.reports.status import RunOutcome
from cifa_ingest.storage.locations import LocationKind
from cifa_ingest.storage.recover import RecoveryOutcome
from cifa_ingest.storage.repair import RepairProblemKind
from cifa_ingest.storage.replicate import ReplicationOutcome

#: Each enumeration and its values, in order, as published.
PUBLISHED: list[tuple[type[StrEnum], list[str]]] = [
    # docs/reference/kinds.md, "Outcomes": the outcomes of ``--json``, also work_outcomes.outcome.
    (
        Outcome,
        [
            "preserved",
            "preserved-degraded",
            "already-preserved",
            "new-version",
            "failed",
            "not-permitted",
            "awaiting-source",
            "deferred",
        ],
    ),
    # docs/reference/kinds.md, "Error kinds": work_outcomes.error_kind of a failed fetch
    # (rate-limited is no longer produced, and stays for the older rows).
    (
        FetchErrorKind,
        [
            "not-found",
            "gone",
            "private",
            "forbidden",
            "geo-blocked",
            "unsupported",
            "refused",
            "duplicate",
            "too-large",
            "rate-limited",
            "server-error",
            "network",
            "error",
            "blocked",
            "login-required",
            "age-restricted",
            "incomplete",
            "degraded",
        ],
    ),
    # docs/guides/auditors.md: the table of kinds, and ``cifa audit --json``'s problems.
    (
        ProblemKind,
        [
            "checksum_mismatch",
            "missing_file",
            "unexpected_file",
            "tag_checksum_mismatch",
            "oxum_mismatch",
            "invalid_structure",
            "ledger_mismatch",
            "missing_bag",
            "unregistered_bag",
            "unregistered_object",
            "copy_missing",
            "copy_damaged",
            "location_unreachable",
            "copy_unlocked",
            "version_checksum_mismatch",
            "version_missing_file",
            "version_unexpected_file",
            "version_inventory_invalid",
            "head_mismatch",
        ],
    ),
    # The audit log's outcome of a check, and the audit report's bags (unregistered: a folder
    # under bags/ the ledger does not know); ``cifa status``'s last audit.
    (CheckOutcome, ["intact", "damaged", "unregistered"]),
    # ``cifa audit --json``'s mode: ``full``, or ``rolling (max age N days)``.
    (AuditMode, ["full", "rolling"]),
    # ``cifa audit --json``'s check: how a location's copies were read (the primary's: deep).
    (CheckDepth, ["cheap", "deep"]),
    # docs/guides/auditors.md, "The source watch": each source's status, also source_checks.status.
    (
        SourceStatus,
        ["present", "changed", "gone", "private", "geo-blocked", "unreachable", "error"],
    ),
    # docs/reference/kinds.md, "Error kinds": work_outcomes.error_kind of a failure
    # the fetch did not classify.
    (
        StepErrorKind,
        [
            "disk-full",
            "normalisation",
            "proof-failed",
            "disk-space",
            "packaging",
            "archive",
            "error",
            "unexpected",
        ],
    ),
    # The steps, in the messages (``disk full during fetch: …``) and the Prefect tasks' names.
    (Step, ["start", "fetch", "normalise", "package", "place"]),
    # ``cifa status --json``'s last_ingest.outcome.
    (RunOutcome, ["ok", "failed"]),
    # docs/reference/kinds.md, "Copy states": copies.state, ``cifa replicate --json``'s state.
    (CopyState, ["good", "pending", "missing", "damaged"]),
    # docs/reference/kinds.md, "Replication outcomes": ``cifa replicate --json``'s outcome.
    (
        ReplicationOutcome,
        ["copied", "already_copied", "location_unreachable", "source_damaged", "copy_failed"],
    ),
    # docs/reference/kinds.md, "Recovery outcomes": ``cifa recover --json``'s bags[].outcome.
    (RecoveryOutcome, ["recovered", "registered_from_bag", "damaged", "missing"]),
    # The kinds of storage location, ``kind`` of each ``[[storage.locations]]``.
    (LocationKind, ["filesystem", "s3"]),
    # docs/reference/kinds.md, "Preservation events": preservation_events.event_type, terms of
    # the Library of Congress preservation event-type vocabulary, as ``cifa events`` shows them.
    (EventType, ["fixity check", "replication", "recovery"]),
    (EventOutcome, ["success", "failure"]),
    # docs/reference/kinds.md, "Repair problems": ``cifa repair --json``'s problems[].kind.
    (
        RepairProblemKind,
        ["copy_missing", "copy_damaged", "location_unreachable", "no_good_copy"],
    ),
    # docs/reference/catalogue.md: a catalogue entry's permission.status (and the bag's
    # metadata/permission.json).
    (PermissionStatus, ["granted", "pending", "refused", "not-sought", "withdrawn"]),
    # docs/reference/bags.md, "Versions of a work": metadata/versions.json's change; PREMIS
    # event types of the Library of Congress vocabulary but "permission change".
    (
        VersionChange,
        [
            "ingestion",
            "metadata modification",
            "permission change",
            "capture",
            "migration",
            "deaccession",
        ],
    ),
    # The bag's records a catalogue entry is compared with (cifa_ingest.catalogue.drift).
    (Record, ["descriptive", "permission"]),
]


@pytest.mark.parametrize(
    ("vocabulary", "spellings"), PUBLISHED, ids=[enum.__name__ for enum, _ in PUBLISHED]
)
def test_each_vocabulary_has_exactly_its_published_spellings(
    vocabulary: type[StrEnum], spellings: list[str]
) -> None:
    assert [member.value for member in vocabulary] == spellings
    # What is written out (JSON, the ledger, an f-string) is the spelling, never ``Kind.NAME``.
    assert [str(member) for member in vocabulary] == spellings
    assert [f"{member}" for member in vocabulary] == spellings


def test_the_pipeline_and_the_watch_use_the_ledgers_words() -> None:
    """One class per vocabulary, wherever it is imported from."""
    from cifa_ingest import preserve

    assert preserve.Outcome is Outcome
    assert watch.SourceStatus is SourceStatus


def test_every_problem_kind_is_explained_in_the_audit_report() -> None:
    assert set(KIND_TEXT) == set(ProblemKind)


def test_audit_mode_as_the_report_says_it() -> None:
    assert AuditMode.described(None) == "full"
    assert AuditMode.described(90) == "rolling (max age 90 days)"
    assert AuditMode.described(0.5) == "rolling (max age 0.5 days)"


def test_step_of_a_step_function() -> None:
    from cifa_ingest.preserve import STEPS, place_step

    steps = [Step.of(step) for step in (*STEPS, place_step)]
    assert steps == [Step.FETCH, Step.NORMALISE, Step.PACKAGE, Step.PLACE]


def test_the_ledger_stores_the_spellings_and_reads_back_the_members(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record_outcome("run-1", "cifa-v-0001", Outcome.ALREADY_PRESERVED, None, 1.0)
    ledger.record_outcome("run-1", "cifa-v-0002", "failed", "no route", 1.0, "network")
    ledger.record_source_check("cifa-v-0001", 0, "https://example.org/a", "geo-blocked", {}, "t")
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT outcome FROM work_outcomes ORDER BY id").fetchall()
        statuses = conn.execute("SELECT status FROM source_checks").fetchall()
    assert [type(row[0]) for row in stored + statuses] == [str, str, str]
    assert stored == [("already-preserved",), ("failed",)]
    assert statuses == [("geo-blocked",)]

    assert [outcome for _at, outcome, _kind, _error in ledger.outcomes("cifa-v-0001")] == [
        Outcome.ALREADY_PRESERVED
    ]
    (failing,) = ledger.failing_works()
    assert failing.outcome is Outcome.FAILED
    (check,) = ledger.latest_source_checks()
    assert check.status is SourceStatus.GEO_BLOCKED
    run = ledger.last_run()
    assert run is not None and run.failed == 1


def test_the_ledger_refuses_a_word_it_does_not_know(tmp_path: Path) -> None:
    """A misspelt outcome or status is an error where it is written, never a row no reader
    counts."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(ValueError):
        ledger.record_outcome("run-1", "cifa-v-0001", "preserve", None, 1.0)
    with pytest.raises(ValueError):
        ledger.record_source_check("cifa-v-0001", 0, "https://example.org/a", "vanished", {}, "t")
    assert ledger.outcomes("cifa-v-0001") == []
    assert ledger.latest_source_checks() == []


def test_the_audit_log_records_only_a_checks_outcomes(tmp_path: Path) -> None:
    """``intact`` and ``damaged`` are what a check of a registered bag can find; a misspelt word
    or ``unregistered`` (a report's word for a folder the ledger does not know) is refused before
    the hash chain grows, and what is read back is the enum's member."""
    log = AuditLog(tmp_path / "ledger.sqlite")
    for word in ("unregistered", "intakt"):
        with pytest.raises(ValueError):
            log.record("bag-1", "2026-11-27T00:00:00Z", "test", word, [], 0, 0.0)  # type: ignore[arg-type]
    assert log.history("bag-1") == []
    log.record("bag-1", "2026-11-27T00:00:00Z", "test", CheckOutcome.DAMAGED, [], 0, 0.0)
    (check,) = log.history("bag-1")
    assert check.outcome is CheckOutcome.DAMAGED
    assert log.verify() == []
