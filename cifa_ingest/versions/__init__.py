"""Versioned works: every work an OCFL 1.1 object (https://ocfl.io/1.1/spec/), every version of
it the work's complete BagIt bag, no version ever changed, no file ever stored twice.

A work's bag is frozen once placed, but what the archive knows of a work is not: a corrected
title, a narrowed permission, a re-capture, a better master. Each becomes a new version, kept
beside the ones before, and each version exports as a plain bag, valid on its own. OCFL is the
field's standard for this (Fedora 6 and others store in it); its objects are plain files and
JSON that a person can read without this program, and ocfl-py's validator, which we did not
write, checks ours in the tests.

One module per OCFL concept, as ocfl-py has:

* :mod:`~cifa_ingest.versions.storage_root`: ``ARCHIVE/objects/``, its declaration and layout
  (flat direct: ``objects/<work id>/``), the per-object lock;
* :mod:`~cifa_ingest.versions.object`: one work's object, its version folders;
* :mod:`~cifa_ingest.versions.inventory`: the inventory (versions, states, manifest, fixity)
  and its digest file;
* :mod:`~cifa_ingest.versions.content`: a bag's files verified and deduplicated into a
  version's content;
* :mod:`~cifa_ingest.versions.new_version`: adding a version, safe to kill at any instant;
* :mod:`~cifa_ingest.versions.recovery`: what a crash left, rolled forward;
* :mod:`~cifa_ingest.versions.history`: the versions as people read them;
* :mod:`~cifa_ingest.versions.export`: a version given back as a bag.
"""

from cifa_ingest.versions.export import export
from cifa_ingest.versions.history import VersionInfo, head, logical_state, versions
from cifa_ingest.versions.inventory import User
from cifa_ingest.versions.new_version import add_version
from cifa_ingest.versions.recovery import Recovery, recover
from cifa_ingest.versions.storage_root import StorageRoot

__all__ = [
    "Recovery",
    "StorageRoot",
    "User",
    "VersionInfo",
    "add_version",
    "export",
    "head",
    "logical_state",
    "recover",
    "versions",
]
