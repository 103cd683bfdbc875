"""The flows as ``cifa serve`` runs them, where they differ from ``cifa_ingest.pipelines.flows``.

A served run is a process of its own, started by ``cifa serve`` from the deployment's entry point
(a module path, imported in that process). ``nightly-ingest`` writes to the archive, and
``cifa ingest`` holds the archive's writer lock around it in its own process; served, the flow
must take the lock itself, so that a scheduled night never writes beside a ``cifa ingest``, a
``cifa preserve`` or a one-off job (it waits for them, and they for it, saying so). The
``preserve-film`` deployment's flow takes the lock in its body; the fixity audits only read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger

from cifa_ingest.archive.layout import Archive

from . import flows


def holding_writer_lock(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run holding the writer lock of its ``archive`` parameter; its signature, and so
    the deployment's parameters, unchanged."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        archive = signature.bind(*args, **kwargs).arguments["archive"]

        def waiting() -> None:
            get_run_logger().info("another ingest is writing to %s; waiting for it", archive)

        with Archive(archive).writer_lock(on_wait=waiting):
            return fn(*args, **kwargs)

    return locked


#: ``nightly-ingest`` with the options of ``cifa_ingest.pipelines.flows`` (task runner and all),
#: its body
#: holding the writer lock. Its module is this one, so that Prefect's entry point names it.
nightly_ingest = flows.nightly_ingest.with_options()
nightly_ingest.fn = holding_writer_lock(flows.nightly_ingest.fn)
nightly_ingest.__module__ = __name__
