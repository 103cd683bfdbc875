"""The documentation site (docs/, mkdocs.yml) builds strictly, and its reference cannot drift.

Each reference page is held to what the code says, both ways where the page lists a whole set:

- docs/reference/cli.md: every command of ``cifa``'s parser, each option and argument, and the
  exit codes ``cifa`` returns (read by running it);
- docs/reference/configuration.md: every key of every section of the settings, with its default;
- docs/reference/catalogue.md: every field of the catalogue's schema, every permission status
  and use;
- docs/reference/ledger.md: every table, column and index of a ledger made by the migrations;
- docs/reference/bags.md: the CIFA BagIt profile's bag-info fields and tag files, the
  validator's codes;
- docs/reference/kinds.md and docs/guides/auditors.md: every word the program publishes
  (outcomes, error kinds, audit problem kinds, watch statuses, check outcomes), read from the
  code in whatever form it has (an enumeration, a mapping, a tuple);
- docs/reference/json.md: the keys of each ``--json`` example against what the code prints;
- docs/reference/dependencies.md: every dependency of pyproject.toml.

And the README stays short, its two commands first, the test command the one CI runs.
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
COMMON_OPTIONS = {"--archive", "--json", "--quiet", "--verbose"}


# ---------------------------------------------------------------------------------------------
# Reading the pages


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _lines_outside_code(text: str) -> Iterable[tuple[str, bool]]:
    """Each line, and whether it is outside a fenced code block."""
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            yield line, False
            continue
        yield line, not fenced


def headings(text: str, level: int) -> list[str]:
    prefix = "#" * level + " "
    return [
        line[len(prefix) :].strip()
        for line, prose in _lines_outside_code(text)
        if prose and line.startswith(prefix)
    ]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line, e.g. ``## Outcomes``), down to the next
    heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    found: list[str] | None = None
    for line, prose in _lines_outside_code(text):
        if found is None:
            if prose and line.strip() == heading:
                found = []
            continue
        if prose and re.match(rf"^#{{1,{level}}} ", line):
            break
        found.append(line)
    assert found is not None, f"no heading {heading!r}"
    return "\n".join(found)


def _cells(row: str) -> list[str]:
    """A table row's cells; a `|` inside backticks does not split."""
    cells, current, code = [], "", False
    for char in row.strip().strip("|"):
        if char == "`":
            code = not code
        if char == "|" and not code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def tables(text: str) -> list[list[list[str]]]:
    """Every table of ``text``: its rows (the header first, the separator left out)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line, prose in _lines_outside_code(text):
        if prose and line.startswith("|"):
            if not re.fullmatch(r"\|[\s|:-]+\|", line.strip()):
                current.append(_cells(line))
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def first_column(table: list[list[str]]) -> list[str]:
    """The first word in backticks of each row's first cell (the header left out)."""
    words = []
    for row in table[1:]:
        code = re.findall(r"`([^`]+)`", row[0])
        assert code, f"a row without a word in backticks: {row}"
        words.append(code[0].split()[0])
    return words


def only_table(text: str) -> list[list[str]]:
    found = tables(text)
    assert len(found) == 1, f"expected one table, found {len(found)}"
    return found[0]


def same(documented: Iterable[str], actual: Iterable[str], what: str) -> None:
    documented, actual = list(documented), set(actual)
    duplicates = sorted({word for word in documented if documented.count(word) > 1})
    missing = sorted(actual - set(documented))
    extra = sorted(set(documented) - actual)
    assert not (missing or extra or duplicates), (
        f"{what}: not documented {missing}; documented but not in the code {extra};"
        f" documented twice {duplicates}"
    )


# ---------------------------------------------------------------------------------------------
# Reading the code's vocabularies, whatever their form


def _modules(package: str) -> list[Any]:
    root = importlib.import_module(package)
    found = [root]
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=f"{package}."):
        found.append(importlib.import_module(info.name))
    return found


def words(value: object) -> set[str]:
    """A vocabulary's words: an enumeration's values, a mapping's keys, a collection's items."""
    if isinstance(value, type) and issubclass(value, enum.Enum):
        return {str(member.value) for member in value}
    if isinstance(value, dict):
        return {str(key) for key in value}
    assert isinstance(value, Iterable), value
    return {str(item) for item in value}


def vocabulary(package: str, *names: str) -> set[str]:
    """The first of ``names`` defined in a module of ``package`` (an enumeration defined there, or
    another module-level constant): a vocabulary may move between modules, or become a StrEnum."""
    modules = _modules(package)
    for name in names:
        for module in modules:
            value = getattr(module, name, None)
            if value is None:
                continue
            if isinstance(value, type) and value.__module__ != module.__name__:
                continue  # imported here; found where it is defined
            return words(value)
    pytest.fail(f"none of {names} in {package}: where is the vocabulary now? (tests/test_docs.py)")


def outcomes() -> set[str]:
    return vocabulary("cifa_ingest", "Outcome")


def error_kinds() -> set[str]:
    fetch = vocabulary("cifa_ingest", "FetchErrorKind", "KINDS")
    try:
        steps = vocabulary("cifa_ingest", "StepErrorKind")
    except pytest.fail.Exception:  # before the vocabulary: a mapping, and two literal kinds
        preserve = importlib.import_module("cifa_ingest.preserve")
        steps = {str(kind) for kind in preserve._STEP_ERROR_KINDS.values()}
        steps |= {"disk-full", "unexpected", "error"}
    return fetch | steps


def problem_kinds() -> set[str]:
    return vocabulary("cifa_ingest.audit", "ProblemKind", "KINDS")


def watch_statuses() -> set[str]:
    return vocabulary("cifa_ingest", "SourceStatus", "STATUSES")


# ---------------------------------------------------------------------------------------------
# The site


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """Every page in the navigation, every link and anchor resolving, no warning."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    for name in ("reference/cli.html", "changelog.html", "license.html", "security.html"):
        assert (tmp_path / "site" / name).is_file(), name


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    assert lines[:6] == [
        "# CIFA Ingest",
        "",
        "```sh",
        "make demo    # installs what is missing, then preserves the built-in demo films into"
        " ./archive",
        "make test    # installs the same way, then runs the test suite (what CI runs)",
        "```",
    ]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "make test" in ci, "the README's test command is what CI runs"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not re.match(r"^[a-z]+:", target):
            assert (REPO / target).exists(), f"README.md links to {target}, which is not there"


# ---------------------------------------------------------------------------------------------
# The command line


def _parser() -> Any:
    from cifa_ingest import cli

    for name in ("_parser", "parser", "build_parser", "make_parser"):
        if callable(build := getattr(cli, name, None)):
            return build()
    pytest.fail("where does cifa_ingest.cli build its parser now? (tests/test_docs.py)")


def _subcommands() -> dict[str, Any]:
    import argparse

    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _arguments(parser: Any) -> tuple[set[str], list[str]]:
    """A parser's long options (help aside) and its positional arguments' names."""
    options, positionals = set(), []
    for action in parser._actions:
        if action.option_strings:
            options |= {o for o in action.option_strings if o.startswith("--")} - {"--help"}
        else:
            positionals.append(action.metavar or "|".join(action.choices or [action.dest]))
    return options, positionals


def test_every_package_is_in_the_architecture_table_and_nothing_else() -> None:
    """The developers' map of the code names each package of cifa_ingest/ that exists, and no
    package that does not: a package added or renamed shows here."""
    packages = {
        f"cifa_ingest/{p.parent.name}/" for p in (REPO / "cifa_ingest").glob("*/__init__.py")
    } | {"cifa_ingest/policies/"}
    page = (REPO / "docs" / "developers" / "index.md").read_text("utf-8")
    rows = set(re.findall(r"^\| `(cifa_ingest/[a-z_]+/)` \|", page, re.MULTILINE))
    assert rows == packages


def test_every_command_and_option_is_documented_and_nothing_else() -> None:
    cli_page = page("reference/cli.md")
    commands = _subcommands()
    documented = [h.strip("`") for h in headings(cli_page, 2) if h.startswith("`cifa ")]
    same([d.removeprefix("cifa ") for d in documented], commands, "cifa's commands")
    for name, sub in commands.items():
        options, positionals = _arguments(sub)
        # A command taking every common option lists only its own; another lists all it takes.
        expected = options - COMMON_OPTIONS if options >= COMMON_OPTIONS else options
        table = only_table(section(cli_page, f"## `cifa {name}`"))
        listed = first_column(table)
        same([w for w in listed if w.startswith("-")], expected, f"options of cifa {name}")
        same([w for w in listed if not w.startswith("-")], positionals, f"arguments of {name}")
    top, _ = _arguments(_parser())
    common = first_column(only_table(section(cli_page, "## Every command")))
    same(common, COMMON_OPTIONS | top | {"--help"}, "the options of every command")


def test_the_exit_codes_are_those_cifa_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read by running ``cifa``: a command that succeeds, finds a problem, meets bad input, is
    interrupted, or meets an error nobody foresaw."""
    from cifa_ingest import cli
    from cifa_ingest.errors import InputError

    def returning(code: int) -> Any:
        return lambda *args: code

    def raising(exc: BaseException) -> Any:
        def command(*args: object) -> int:
            raise exc

        return command

    returned = set()
    for command in (
        returning(cli.EXIT_OK),
        returning(cli.EXIT_FAILED),
        raising(InputError("bad input")),
        raising(KeyboardInterrupt()),
        raising(RuntimeError("a surprise")),
    ):
        monkeypatch.setitem(cli.COMMANDS, "status", command)
        returned.add(cli.main(["status", "--quiet"]))
    codes = first_column(only_table(section(page("reference/cli.md"), "## Exit codes")))
    same(codes, {str(code) for code in returned}, "exit codes")


# ---------------------------------------------------------------------------------------------
# The configuration


def _toml(value: object) -> str:
    """A default as the page writes it."""
    if value is None:
        return "*unset*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | tuple):  # a tuple: a frozen list ([[storage.locations]])
        return "`[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in value) + "]`"
    if isinstance(value, str):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


def test_every_setting_is_documented_with_its_default_and_nothing_else() -> None:
    from cifa_ingest.config import Settings

    config_page = page("reference/configuration.md")
    settings = Settings()
    sections = [h.strip("`[]") for h in headings(config_page, 2) if h.startswith("`[")]
    same(sections, type(settings).model_fields, "sections of the settings")
    for name in type(settings).model_fields:
        values = getattr(settings, name)
        table = only_table(section(config_page, f"## `[{name}]`"))
        same(first_column(table), type(values).model_fields, f"keys of [{name}]")
        for row in table[1:]:
            key = first_column([[], row])[0]
            expected = _toml(getattr(values, key))
            assert row[1] == expected, f"[{name}] {key}: the page says {row[1]}, not {expected}"


# ---------------------------------------------------------------------------------------------
# The catalogue


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for inner in re.findall(r"\w+", str(field.annotation)):
            candidate = getattr(importlib.import_module(model.__module__), inner, None)
            if (
                isinstance(candidate, type)
                and issubclass(candidate, BaseModel)
                and candidate.__name__ not in seen
            ):
                _models(candidate, seen)
    return seen


def test_every_catalogue_field_and_value_is_documented() -> None:
    from cifa_ingest.catalogue.model import Catalogue, PermissionStatus, Use

    catalogue_page = page("reference/catalogue.md")
    models = _models(Catalogue, {})
    fields = {name for model in models.values() for name in model.model_fields}
    assert {"Work", "Permission", "Source"} <= set(models), models
    documented = []
    for table in tables(catalogue_page):
        if table[0][0] == "field":
            documented += first_column(table)
    missing = sorted(fields - set(documented))
    assert not missing, f"catalogue fields not in the reference's tables: {missing}"
    assert not set(documented) - fields, set(documented) - fields
    for title, enumeration in (("`status`:", PermissionStatus), ("`covers`:", Use)):
        after = catalogue_page.split(f"\n{title}\n", 1)[1]
        same(first_column(tables(after)[0]), words(enumeration), title)


# ---------------------------------------------------------------------------------------------
# The ledger


def test_every_table_and_column_of_the_ledger_is_documented(tmp_path: Path) -> None:
    import sqlite3

    from cifa_ingest.archive import migrations

    path = tmp_path / "ledger.sqlite"
    migrations.upgrade(path)
    connection = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite%' ORDER BY name"
            )
        ]
        columns = {
            name: [row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')]
            for name in names
        }
        indexes = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        ]
    finally:
        connection.close()
    ledger_page = page("reference/ledger.md")
    same([h.strip("`") for h in headings(ledger_page, 3)], names, "the ledger's tables")
    for name in names:
        table = only_table(section(ledger_page, f"### `{name}`"))
        same(first_column(table), columns[name], f"columns of {name}")
    for index in indexes:
        assert f"`{index}`" in ledger_page, f"index {index} is not described"
    assert f"now schema version {migrations.LATEST})" in ledger_page


# ---------------------------------------------------------------------------------------------
# Bags


def test_the_bag_profile_and_the_validator_codes_are_documented() -> None:
    bags_page = page("reference/bags.md")
    profile_path = REPO / "cifa_ingest" / "policies" / "cifa-bagit-profile.json"
    profile = json.loads(profile_path.read_text(encoding="utf-8"))
    profile_section = section(bags_page, "## The CIFA BagIt profile")
    tag_files, fields = tables(profile_section)
    same(first_column(tag_files), profile["Tag-Files-Required"], "the profile's tag files")
    same(first_column(fields), profile["Bag-Info"], "the profile's bag-info fields")
    identifier = profile["BagIt-Profile-Info"]["BagIt-Profile-Identifier"]
    assert f"`{identifier}`" in profile_section
    for key in ("Manifests-Required", "Tag-Manifests-Required", "Accept-BagIt-Version"):
        for value in profile[key]:
            assert f"`{value}`" in profile_section, (key, value)
    codes = vocabulary("cifa_ingest.bag", "CODES")
    table = only_table(section(bags_page, "## Validation codes"))
    same(first_column(table), codes, "the validator's codes")


# ---------------------------------------------------------------------------------------------
# Vocabularies


def test_outcomes_and_error_kinds_are_documented() -> None:
    kinds_page = page("reference/kinds.md")
    same(first_column(only_table(section(kinds_page, "## Outcomes"))), outcomes(), "outcomes")
    table = only_table(section(kinds_page, "## Error kinds"))
    same(first_column(table), error_kinds(), "error kinds")


def test_problem_kinds_and_watch_statuses_are_explained_for_auditors() -> None:
    auditors = page("guides/auditors.md")
    table = only_table(section(auditors, "## What each problem kind means"))
    same(first_column(table), problem_kinds(), "audit problem kinds")
    table = only_table(section(auditors, "## The source watch"))
    same(first_column(table), watch_statuses(), "watch statuses")


def test_check_outcomes_and_format_actions_are_documented() -> None:
    table = only_table(section(page("reference/kinds.md"), "## Fixity check outcomes"))
    try:
        same(first_column(table), vocabulary("cifa_ingest", "CheckOutcome"), "check outcomes")
    except pytest.fail.Exception:  # before the vocabulary: words written where they are used
        code = "".join(
            path.read_text(encoding="utf-8") for path in (REPO / "cifa_ingest").rglob("*.py")
        )
        for outcome in first_column(table):
            assert f'"{outcome}"' in code, f"check outcome {outcome} is not the code's"
    normalisation = page("method/normalisation.md")
    for action in vocabulary("cifa_ingest.normalise", "Action"):
        assert f"`{action}`" in normalisation, f"format policy action {action} not described"


# ---------------------------------------------------------------------------------------------
# Dependencies


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def test_every_dependency_is_explained() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    python_packages = section(page("reference/dependencies.md"), "## Python packages")
    documented = [_name(w) for table in tables(python_packages) for w in first_column(table)]
    same(documented, {_name(r) for r in declared}, "dependencies of pyproject.toml")


# ---------------------------------------------------------------------------------------------
# JSON outputs

#: Objects whose keys are data (a count per outcome, bytes per folder, a field per change), not
#: a fixed set: their keys are not compared.
MAPS = {"counts", "works[].bytes", "sources[].changes", "sources[].observed"}


def _compare(example: object, actual: object, where: str, problems: list[str]) -> None:
    """Compare the keys of ``example`` (the page's) with ``actual`` (the code's), wherever the
    code's document has something to compare: an empty list, a null or a map is not looked into."""
    if isinstance(actual, dict) and actual and where.lstrip(".") not in MAPS:
        if not isinstance(example, dict):
            problems.append(f"{where or 'the document'}: the page shows no object")
            return
        if set(example) != set(actual):
            problems.append(
                f"{where or 'the document'}: the page has {sorted(set(example) - set(actual))}"
                f" that the code does not print, lacks {sorted(set(actual) - set(example))}"
            )
        for key in set(example) & set(actual):
            _compare(example[key], actual[key], f"{where}.{key}".lstrip("."), problems)
    elif isinstance(actual, list) and actual:
        if not (isinstance(example, list) and example):
            problems.append(f"{where}: the page shows no item")
            return
        _compare(example[0], actual[0], f"{where}[]", problems)


def _example(heading: str) -> Any:
    text = section(page("reference/json.md"), heading)
    block = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert block, f"no JSON example under {heading}"
    return json.loads(block.group(1))


def _assert_documented(heading: str, actual: object) -> None:
    problems: list[str] = []
    _compare(_example(heading), actual, "", problems)
    assert not problems, f"docs/reference/json.md, {heading}: " + "; ".join(problems)


def _cifa(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    from cifa_ingest import cli

    capsys.readouterr()
    code = cli.main([*args, "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code in (0, 1), (args, code)
    return json.loads(out)


def test_the_json_of_ingest_watch_and_audit_is_documented() -> None:
    from cifa_ingest.audit import fixity_audit, watch
    from cifa_ingest.preserve import Outcome, WorkReport
    from cifa_ingest.reports import summary

    work = WorkReport(
        id="cifa-0001",
        title="A film",
        outcome=Outcome.PRESERVED,
        bag="bags/cifa-0001",
        bytes={"original": 10, "master": 80, "access": 5},
        seconds=1.0,
    )
    failed = WorkReport(id="cifa-0002", title="B", outcome=Outcome.FAILED, error="x")
    ingest = json.loads(summary.as_json("/a", [work, failed]))
    _assert_documented("## `cifa ingest`, `cifa preserve`, `cifa demo`", ingest)

    status = sorted(watch_statuses())[0]
    check = watch.SourceCheck(
        work_id="cifa-0001", source_index=0, url="https://a", status=status, checked_at="t"
    )
    report = watch.WatchReport(checks=[check], notes=[watch.Note(work_id="b", reason="r")])
    _assert_documented("## `cifa watch`", report.as_dict("/a"))

    problem = fixity_audit.Problem(
        bag="cifa-0001", kind=sorted(problem_kinds())[0], damaged_frames=[1]
    )
    audited = fixity_audit.BagAudit(bag="cifa-0001", problems=[problem])
    audit = fixity_audit.AuditReport(
        archive="/a", mode="full", started="t", bags=[audited], not_reached=["cifa-0003"]
    )
    _assert_documented("## `cifa audit`", audit.as_dict())


def test_the_json_of_the_archive_commands_is_documented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Printed by ``cifa`` itself: bag, validate, inspect, ledger verify, events and status."""
    from cifa_ingest.archive.audit_log import AuditLog
    from cifa_ingest.archive.ledger import BagRecord, Ledger

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    _assert_documented("## `cifa bag`", _cifa(capsys, "bag", str(folder)))
    (folder / "data" / "a.txt").write_text("changed")
    (folder / "data" / ".DS_Store").write_text("debris")
    _assert_documented("## `cifa validate`", _cifa(capsys, "validate", str(folder)))
    # inspect, on a master found damaged (decoding one is for tests/test_inspect.py)
    from cifa_ingest.audit import damage

    frame = damage.DamagedFrame(frame=1, time=0.04, damaged_slices=1)
    found = damage.Inspection(master="m.mkv", frames=2, damaged=[frame])
    monkeypatch.setattr(damage, "inspect_bag", lambda bag: [found])
    _assert_documented("## `cifa inspect`", _cifa(capsys, "inspect", str(folder)))

    archive = tmp_path / "archive"
    bag = archive / "bags" / "cifa-0001"
    (bag / "metadata").mkdir(parents=True)
    (bag / "data").mkdir()
    (bag / "metadata" / "premis.xml").write_text(
        '<premis xmlns="http://www.loc.gov/premis/v3" version="3.0"/>', encoding="utf-8"
    )
    ledger = archive / "ledger.sqlite"
    record = BagRecord(
        work_id="cifa-0001",
        bag_path="bags/cifa-0001",
        placed_at="2026-01-01T00:00:00+00:00",
        payload_oxum="0.0",
        manifest_digests={},
        source_keys=[],
        software="cifa-ingest",
    )
    Ledger(ledger).register_bag(record)
    AuditLog(ledger).record(
        bag_id="cifa-0001",
        checked_at="2026-01-02T00:00:00+00:00",
        software="cifa-ingest 0.1.0",
        outcome="intact",
        problems=[],
        bytes_read=0,
        seconds=0.0,
    )
    _assert_documented(
        "## `cifa ledger verify`", _cifa(capsys, "ledger", "verify", "--archive", str(archive))
    )
    _assert_documented(
        "## `cifa events`", _cifa(capsys, "events", "cifa-0001", "--archive", str(archive))
    )
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "works:\n"
        "- {id: cifa-0002, title: {en: A}, source: {url: null},"
        " permission: {status: granted, granted_by: X}}\n"
        "- {id: cifa-0003, title: {en: B}, source: {url: null}, permission: {status: pending}}\n",
        encoding="utf-8",
    )
    status = _cifa(capsys, "status", str(catalogue), "--archive", str(archive))
    _assert_documented("## `cifa status`", status)


def test_the_json_of_the_storage_commands_is_documented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Printed by ``cifa`` itself over a bag registered as the ingest registers it and a
    filesystem location: replicate (an older ledger snapshot pruned), repair (a file replaced),
    restore and recover."""
    from cifa_ingest.archive.ledger import BagRecord, Ledger
    from cifa_ingest.bag import package
    from tests.conftest import TEST_CONFIG

    film = tmp_path / "film"
    (film / "sub").mkdir(parents=True)
    (film / "a.txt").write_text("a film\n")
    (film / "sub" / "b.txt").write_text("its notes\n")
    _cifa(capsys, "bag", str(film))
    archive = tmp_path / "archive"
    bag = archive / "bags" / "cifa-0001"
    bag.parent.mkdir(parents=True)
    film.rename(bag)
    Ledger(archive / "ledger.sqlite").register_bag(
        BagRecord(
            work_id="cifa-0001",
            bag_path="bags/cifa-0001",
            placed_at="2026-01-01T00:00:00+00:00",
            payload_oxum=package.summarise_bag(bag).payload_oxum,
            manifest_digests=package.summarise_bag(bag).manifest_digests,
            source_keys=[],
            software="cifa-ingest",
        ),
        files=package.payload_files(bag),
    )
    disk = tmp_path / "disk2"
    (disk / "ledger").mkdir(parents=True)
    for night in (1, 2):
        (disk / "ledger" / f"ledger-2026010{night}T020000Z.sqlite").write_bytes(b"older")
    config = tmp_path / "cifa.toml"
    config.write_text(
        TEST_CONFIG.read_text("utf-8") + "\n[storage]\nledger_snapshots_kept = 2\n\n"
        f'[[storage.locations]]\nname = "disk2"\nkind = "filesystem"\npath = "{disk}"\n'
        'zone = "here"\n',
        "utf-8",
    )
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    where = ["--archive", str(archive)]

    replicated = _cifa(capsys, "replicate", *where)
    assert replicated["ok"] and replicated["snapshots"][0]["pruned"]
    _assert_documented("## `cifa replicate`", replicated)
    (disk / "bags" / "cifa-0001" / "data" / "a.txt").unlink()
    repaired = _cifa(capsys, "repair", "cifa-0001", *where)
    assert repaired["ok"] and repaired["repaired"]
    _assert_documented("## `cifa repair`", repaired)
    restored = _cifa(capsys, "restore", "cifa-0001", "--to", str(tmp_path / "restored"), *where)
    assert restored["ok"]
    _assert_documented("## `cifa restore`", restored)
    recovered = _cifa(capsys, "recover", "--from", "disk2", "--to", str(tmp_path / "recovered"))
    assert recovered["ok"] and recovered["bags"]
    _assert_documented("## `cifa recover`", recovered)
