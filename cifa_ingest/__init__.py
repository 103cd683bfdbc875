"""CIFA Ingest: the preservation pipeline of the Chinese Independent Film Archive.

The library is one module per step (catalogue, fetch, normalise, package, ledger, …), each usable
without Prefect; ``pipelines/`` composes them into Prefect flows.
"""

__version__ = "0.1.0"
