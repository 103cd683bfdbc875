# The two commands of the README: `make demo` and `make test`. Each installs what is missing
# (ffmpeg from the system's packages, a virtual environment with the project) before running.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint docs setup system-deps test-deps clean lock

demo: setup
	$(VENV)/bin/cifa demo

test: setup test-deps
	$(VENV)/bin/pytest

# SLOW selects the slow tests: all of them by default, the SIGKILL soak included (CI runs them all).
SLOW ?= slow
test-slow: setup test-deps
	$(VENV)/bin/pytest -m "$(SLOW)"

# ruff, and mypy over cifa_ingest/ and pipelines/ (its settings are in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning (a broken
# link, a page left out of the navigation). tests/test_docs.py builds it too.
docs: setup
	$(VENV)/bin/mkdocs build --strict --site-dir site

setup: system-deps $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

# Only the tests need these (Chromium and a Chinese font, for the run report's test): not `make demo`.
test-deps: system-deps
	@scripts/install-test-deps.sh

# Every package at the exact version of requirements.lock (scripts/lock.sh writes it), then the
# project itself without resolving anything again: what CI tests is what users install.
$(STAMP): pyproject.toml requirements.lock
	@scripts/check-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e '.[dev]'
	$(VENV)/bin/pip check
	@touch $(STAMP)

# Upgrades every dependency (yt-dlp's extractors above all) to the newest versions pyproject.toml
# allows: a new requirements.lock resolved afresh, installed, and the whole suite run on it.
# Commit the lock only if the suite passes.
lock:
	@scripts/lock.sh
	$(MAKE) test

clean:
	rm -rf $(VENV) demo archive .pytest_cache
