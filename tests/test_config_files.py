"""The settings file and the policy files, wherever the program runs from (issue 15, item 6).

The policies ship in the package (``cifa_ingest/policies/``); with no settings file the built-in
defaults are ``config/cifa.toml``'s values, so a run from ``/`` (cron, a Prefect worker) makes the
bag a run from the checkout makes. A policy file a settings file names is found beside that file,
and one that does not exist is refused (exit 2), never replaced by another."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cifa_ingest.bag.package import PROFILE_IDENTIFIER
from cifa_ingest.config import (
    BAGIT_PROFILE,
    FORMAT_POLICY,
    MEDIACONCH_POLICY,
    Settings,
    format_policy_path,
    load_settings,
    mediaconch_policy_path,
    packaged_policy,
)
from cifa_ingest.errors import ConfigError
from cifa_ingest.normalise.format_policy import load_policy
from cifa_ingest.normalise.mediaconch import check_master
from tests.conftest import REPO

POLICIES = REPO / "cifa_ingest" / "policies"
PACKAGED = (FORMAT_POLICY, MEDIACONCH_POLICY, BAGIT_PROFILE)
CATALOGUES = Path(__file__).parent / "data" / "catalogues"


def _cifa(*args: str, cwd: Path, config: Path | None, prefect_home: Path) -> dict:
    """``cifa ARGS`` as a separate process in ``cwd``, with ``CIFA_CONFIG`` unset or ``config``."""
    env = {k: v for k, v in os.environ.items() if k not in ("CIFA_CONFIG", "CIFA_ARCHIVE")}
    env |= {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(prefect_home)}
    if config is not None:
        env["CIFA_CONFIG"] = str(config)
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return {"status": result.returncode, "out": result.stdout, "err": result.stderr}


def _normalisation(bag: Path, archive: Path) -> dict:
    """A bag's normalisation.json, the archive's own path and the names of the proof's temporary
    folders (``tempfile.mkdtemp``) taken out of its commands: it holds no times."""
    text = (bag / "metadata" / "normalisation.json").read_text("utf-8")
    text = re.sub(r"/proof-[A-Za-z0-9_]+/", "/proof-TEMPORARY/", text)
    return json.loads(text.replace(str(archive), "ARCHIVE"))


# ---------------------------------------------------------------------------------------------
# The defaults and the packaged policies


def test_the_built_in_defaults_are_what_config_cifa_toml_sets() -> None:
    """From a folder without config/cifa.toml (and no CIFA_CONFIG) the program runs with the
    built-in defaults: they must be the checkout's settings. The organisation's address is the
    one exception: the site's, which bags made without settings record as not recorded."""
    site = load_settings(REPO / "config" / "cifa.toml").model_dump()
    built_in = Settings().model_dump()
    assert site["organisation"].pop("address")
    assert built_in["organisation"].pop("address") == ""
    assert site == built_in


def test_config_holds_the_site_settings_only_and_the_policies_ship_in_the_package() -> None:
    assert sorted(p.name for p in (REPO / "config").iterdir()) == ["cifa.toml"]
    assert sorted(p.name for p in POLICIES.iterdir()) == sorted(PACKAGED)
    for name in PACKAGED:
        assert packaged_policy(name).read_bytes() == (POLICIES / name).read_bytes()
    settings = Settings()
    assert format_policy_path(settings) == packaged_policy(FORMAT_POLICY)
    assert mediaconch_policy_path(settings) == packaged_policy(MEDIACONCH_POLICY)
    assert set(load_policy(format_policy_path(settings)).profiles) == {"default", "storage-saving"}
    # The identifier every bag's bag-info declares is the packaged profile's.
    profile = json.loads(packaged_policy(BAGIT_PROFILE).read_text("utf-8"))
    assert profile["BagIt-Profile-Info"]["BagIt-Profile-Identifier"] == PROFILE_IDENTIFIER
    assert PROFILE_IDENTIFIER == "urn:cifa:bagit-profile:1.0"


def test_an_installed_package_holds_the_policies(tmp_path: Path) -> None:
    """setuptools builds the package as pip installs it: the policies are in it (package data),
    and read from it by a process in another folder."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("cifa_ingest", "pipelines"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__py*"))
    built = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "build_py",
         "--build-lib", str(built)],
        cwd=source, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert sorted(p.name for p in (built / "cifa_ingest" / "policies").iterdir()) == sorted(
        PACKAGED
    )
    where = subprocess.run(
        [sys.executable, "-c", "from cifa_ingest import config; s = config.load_settings();"
         " print(config.format_policy_path(s)); print(config.mediaconch_policy_path(s))"],
        cwd="/", capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(built), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert where.stdout.split() == [
        str(built / "cifa_ingest" / "policies" / name) for name in PACKAGED[:2]
    ]
    # The Prefect flows of pipelines/ install inside the package, never as a generic top-level
    # `pipelines` that could collide with another project's in a user's environment.
    assert sorted(p.name for p in built.iterdir()) == ["cifa_ingest"]
    packages = {p.parent.relative_to(REPO) for p in (REPO / "cifa_ingest").rglob("__init__.py")}
    assert packages <= {p.parent.relative_to(built) for p in built.rglob("__init__.py")}
    assert (built / "cifa_ingest" / "pipelines" / "flows.py").is_file()


def test_nothing_imports_a_top_level_pipelines_package() -> None:
    """Inside pipelines/ the modules import each other relatively; elsewhere as
    cifa_ingest.pipelines (what is installed). A top-level import would load a second copy."""
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("cifa_ingest", "pipelines", "tests", "benchmarks", "scripts")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if re.match(r"\s*(from|import) pipelines\b", line)
    ]
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# Policy files a settings file names


def _site_policy(site: Path) -> Path:
    """A settings file in ``site`` naming its own format policy and MediaConch policy by paths
    relative to its folder: the policy keeps every original (no encode)."""
    (site / "policies").mkdir(parents=True)
    (site / "policies" / "site-format-policy.toml").write_text(
        '[profiles.keep-all]\ndescription = "Originals only."\ndefault = "keep"\naccess = false\n',
        "utf-8",
    )
    shutil.copy(POLICIES / MEDIACONCH_POLICY, site / "policies" / "site-mediaconch.xml")
    settings = site / "cifa.toml"
    settings.write_text(
        '[fetch]\npause_seconds = 0\n[normalise]\nprofile = "keep-all"\n'
        'policy_file = "policies/site-format-policy.toml"\n'
        'mediaconch_policy = "policies/site-mediaconch.xml"\n',
        "utf-8",
    )
    return settings


def test_a_relative_policy_path_is_relative_to_the_settings_file_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    settings_file = _site_policy(site)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "policies").mkdir(parents=True)  # same names here: must not be the ones read
    (elsewhere / "policies" / "site-format-policy.toml").write_text("not = 'a policy'\n")
    monkeypatch.chdir(elsewhere)
    settings = load_settings(settings_file)
    assert format_policy_path(settings) == site / "policies" / "site-format-policy.toml"
    assert mediaconch_policy_path(settings) == site / "policies" / "site-mediaconch.xml"
    assert load_policy(format_policy_path(settings)).profile("keep-all").default == "keep"
    # Relative CIFA_CONFIG: found from the working directory, its policies beside it.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFA_CONFIG", "site/cifa.toml")
    assert format_policy_path(load_settings()) == site / "policies" / "site-format-policy.toml"


@pytest.mark.parametrize(
    ("key", "value"),
    [("policy_file", "policies/gone.toml"), ("mediaconch_policy", "/nonexistent/cifa/mc.xml")],
)
def test_a_configured_policy_file_that_is_missing_exits_2_naming_key_and_path(
    tmp_path: Path, key: str, value: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    settings_file = site / "cifa.toml"
    settings_file.write_text(f'[normalise]\n{key} = "{value}"\n', "utf-8")
    archive = tmp_path / "archive"
    result = _cifa(
        "ingest", str(CATALOGUES / "valid" / "minimal.yaml"), "--archive", str(archive),
        cwd=Path("/"), config=settings_file, prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    missing = site / value  # a relative path beside the settings file; an absolute one as it is
    assert result["status"] == 2, result["err"]
    assert f"{settings_file}: normalise.{key}: {missing} does not exist" in result["err"]
    assert "Traceback" not in result["err"] + result["out"]
    assert not archive.exists()
    with pytest.raises(ConfigError, match=f"normalise.{key}"):
        load_settings(settings_file)


def test_a_mediaconch_policy_gone_after_the_settings_were_read_fails_the_check(
    tmp_path: Path,
) -> None:
    """Not recorded as a check not run: the master is not judged by a policy that is not there."""
    with pytest.raises(ConfigError, match="does not exist"):
        check_master(tmp_path / "master.mkv", tmp_path / "gone.xml")


# ---------------------------------------------------------------------------------------------
# Real runs from another working directory


# 40–100 s: with the slow tests (CI runs them), keeping `make test` within its 20 minutes.
@pytest.mark.slow
def test_an_ingest_from_the_root_directory_makes_the_checkouts_bag(
    tmp_path: Path, demo_catalogue: Path
) -> None:
    """``cifa ingest`` in ``/`` with no CIFA_CONFIG (the built-in defaults, the packaged policies)
    records the same normalisation as in the checkout (config/cifa.toml): the same profile and
    actions, and the MediaConch check run, not "not run"."""
    args = ["ingest", str(demo_catalogue), "--allow-private-sources", "--json", "--quiet"]
    args += ["--only", "cifa-demo-0002", "--only", "cifa-demo-0003"]
    records = {}
    for name, cwd in (("checkout", REPO), ("root", Path("/"))):
        archive = tmp_path / f"archive-{name}"
        result = _cifa(
            *args, "--archive", str(archive),
            cwd=cwd, config=None, prefect_home=tmp_path / f"prefect-{name}",
        )  # fmt: skip
        assert result["status"] == 0, result["err"]
        outcomes = {w["id"]: w["outcome"] for w in json.loads(result["out"])["works"]}
        assert outcomes == {"cifa-demo-0002": "preserved", "cifa-demo-0003": "preserved"}
        bags = archive / "bags"
        records[name] = {w: _normalisation(bags / w, archive) for w in sorted(outcomes)}
        for work in outcomes:
            info = (bags / work / "bag-info.txt").read_text("utf-8")
            assert f"BagIt-Profile-Identifier: {PROFILE_IDENTIFIER}\n" in info

    for work, record in records["root"].items():
        assert record["profile"] == "default"
        for group in record["groups"]:
            assert group["action"] == "ffv1"
            assert group["mediaconch"]["outcome"] == "pass", group["mediaconch"]
            assert group["mediaconch"]["policy"] == MEDIACONCH_POLICY
        assert record == records["checkout"][work]


def test_a_site_policy_named_relative_to_its_settings_file_is_followed_from_the_root(
    tmp_path: Path, demo_catalogue: Path
) -> None:
    """A site's settings (CIFA_CONFIG, absolute) name their own policy beside them; run in ``/``,
    the bag is made by it."""
    settings_file = _site_policy(tmp_path / "site")
    archive = tmp_path / "archive"
    result = _cifa(
        "ingest", str(demo_catalogue), "--allow-private-sources", "--json", "--quiet",
        "--only", "cifa-demo-0002", "--archive", str(archive),
        cwd=Path("/"), config=settings_file, prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert result["status"] == 0, result["err"]
    record = _normalisation(archive / "bags" / "cifa-demo-0002", archive)
    assert record["profile"] == "keep-all"
    assert [g["action"] for g in record["groups"]] == ["keep"]
