"""The fixity engine: every digest of every file, from one read, in parallel, in flat memory.

Re-verifying the whole archive often is only affordable when hashing runs at the machine's limit.
hashlib releases the GIL while it hashes, so threads hash in parallel: files are spread over a pool
of threads, largest first, and within a large file each algorithm (sha256, sha512) runs in a thread
of its own, fed the same chunks from a single read. Memory stays bounded by a few chunks per file
in flight, whatever the file's size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CHUNK = 8 * 1024 * 1024
#: Files at least this large get a thread per algorithm; smaller ones are hashed in one thread.
LARGE = 64 * 1024 * 1024
_QUEUE_DEPTH = 4


@dataclass(frozen=True)
class Digests:
    """The size of a file and its digests, by algorithm name (hashlib's: sha256, sha512, md5…)."""

    size: int
    digests: dict[str, str]


def _hash_sequentially(path: Path, algorithms: list[str]) -> Digests:
    hashers = [hashlib.new(name) for name in algorithms]
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            size += len(chunk)
            for hasher in hashers:
                hasher.update(chunk)
    return Digests(size, {name: h.hexdigest() for name, h in zip(algorithms, hashers, strict=True)})


def _hash_side_by_side(path: Path, algorithms: list[str]) -> Digests:
    """One reader, one thread per algorithm, bounded queues between them."""
    hashers = [hashlib.new(name) for name in algorithms]
    queues: list[queue.Queue[bytes | None]] = [queue.Queue(_QUEUE_DEPTH) for _ in hashers]

    def consume(hasher: hashlib._Hash, chunks: queue.Queue[bytes | None]) -> None:
        while (chunk := chunks.get()) is not None:
            hasher.update(chunk)

    threads = [
        threading.Thread(target=consume, args=pair, daemon=True)
        for pair in zip(hashers, queues, strict=True)
    ]
    for thread in threads:
        thread.start()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                size += len(chunk)
                for chunks in queues:
                    chunks.put(chunk)
    finally:
        for chunks in queues:
            chunks.put(None)
        for thread in threads:
            thread.join()
    return Digests(size, {name: h.hexdigest() for name, h in zip(algorithms, hashers, strict=True)})


def digest_file(path: Path, algorithms: Iterable[str]) -> Digests:
    """Size and digests of one file, reading it once."""
    names = list(dict.fromkeys(algorithms))
    if len(names) > 1 and path.stat().st_size >= LARGE:
        return _hash_side_by_side(path, names)
    return _hash_sequentially(path, names)


def digest_files(
    jobs: dict[Path, Iterable[str]],
    workers: int | None = None,
    on_error: Callable[[Path, OSError], None] | None = None,
) -> dict[Path, Digests]:
    """Digests of many files, in parallel, largest first so that no thread is left with the
    biggest file at the end. ``jobs`` maps each file to the algorithms it needs. A file that
    cannot be read is left out and reported to ``on_error`` (or raised)."""
    workers = workers or os.cpu_count() or 1

    def size_of(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    ordered = sorted(jobs, key=size_of, reverse=True)
    results: dict[Path, Digests] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {path: pool.submit(digest_file, path, jobs[path]) for path in ordered}
        for path, future in futures.items():
            try:
                results[path] = future.result()
            except OSError as exc:
                if on_error is None:
                    raise
                on_error(path, exc)
    return results
