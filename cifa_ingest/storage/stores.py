"""The store of a location: which class keeps its bytes, chosen by the location's kind.

The S3 store is imported only for an S3 location: its client library (boto3) is slow to import
and needed by no other command, and an archive with filesystem locations alone never loads it.
"""

from __future__ import annotations

from cifa_ingest.storage.locations import FilesystemLocation, S3Location
from cifa_ingest.storage.store import Store


def open_store(location: FilesystemLocation | S3Location) -> Store:
    """The :class:`~cifa_ingest.storage.store.Store` of ``location``. Nothing is contacted yet:
    ``check()`` says whether it answers."""
    if isinstance(location, FilesystemLocation):
        from cifa_ingest.storage.filesystem import FilesystemStore

        return FilesystemStore(location)
    from cifa_ingest.storage.s3 import S3Store  # type: ignore[import-not-found,unused-ignore]

    store: Store = S3Store(location)
    return store
