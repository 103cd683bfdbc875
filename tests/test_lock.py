"""The lock: what CI tests is what users install.

``make setup`` installs ``requirements.lock`` (written by ``scripts/lock.sh``) and then the project
without resolving again. These tests fail when the lock and ``pyproject.toml`` disagree (a
dependency changed without a new lock), or when the environment the tests run in is not the one
the lock describes (a package installed or upgraded by hand).
"""

from __future__ import annotations

import importlib.metadata
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(text) for text in declared]


def test_every_declared_dependency_is_locked_at_a_version_it_accepts() -> None:
    locked = _locked()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements.lock (scripts/lock.sh)"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock has {requirement.name}=={locked[name]}, pyproject.toml asks"
            f" {requirement}: run scripts/lock.sh"
        )


def test_the_tests_run_in_the_locked_environment() -> None:
    different = {}
    for name, version in _locked().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            different[name] = (version, installed)
    assert not different, f"locked (version, installed) differ: {different} (run `make setup`)"
