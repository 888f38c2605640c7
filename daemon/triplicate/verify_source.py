"""Checking a source file against what its offload's ASC MHL history records,
before anything is sent.

One read per file: the fastest hash format the history carries for it is
computed, and xxh64 beside it (unless that is the format), so the journal
knows the xxh64 of the very bytes that matched. Every destination copy then
reads the source again and must hash to that xxh64 (source.SourceReader), so a
file that changes between this check and a copy can never be sent as checked.

Why not compare the hash the copy computes instead of reading first: a copy
that then turned out not to match would already be at the destination (and in
the cloud, billed and visible); "verify before sending" costs one extra read,
most of which the copy that follows finds in the page cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import mhl
from .hashing import Digest, advise_sequential, feed_fd, new_digest
from .upstream import Reference

FASTEST_FIRST = ("xxh3", "xxh128", "xxh64", "sha1", "md5", "c4")
"""ASC MHL formats by hashing speed on one core (xxh3 ~25 GB/s ... sha-512 for
C4 ~0.6 GB/s): one matching format proves the bytes are the recorded ones."""


class C4Digest:
    """C4 id (SMPTE ST 2114) of a stream: SHA-512, written as mhl.c4id writes it."""

    def __init__(self) -> None:
        self._sha = hashlib.sha512()

    def update(self, data: bytes | memoryview, /) -> None:
        self._sha.update(data)

    def hexdigest(self) -> str:
        return mhl._c4_encode(self._sha.digest())  # one encoder for manifests and files


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str = ""  # why not, in one sentence naming the manifest
    xxh64: str | None = None  # of the bytes read; None when the file was not read
    algorithm: str | None = None
    changed: bool = False  # the file changed while it was read: look at it again later
    unreadable: bool = False


def choose_format(ref: Reference) -> str | None:
    return next((a for a in FASTEST_FIRST if a in ref.hashes), None)


def check_file(path: Path, size: int, mtime_ns: int, ref: Reference) -> Verdict:
    """Compare the file (the version of `size` and `mtime_ns`) with `ref`."""
    if ref.size is not None and ref.size != size:
        return Verdict(False, f"is {size} bytes, but {ref.generation} records {ref.size} bytes")
    algorithm = choose_format(ref)
    if algorithm is None:
        return Verdict(False, f"{ref.generation} lists it without a hash triplicate can check")
    try:
        digests = _hash(path, size, mtime_ns, algorithm)
    except _Changed:
        return Verdict(False, "changed while it was being checked", changed=True)
    except OSError as exc:
        return Verdict(False, f"cannot be read: {exc.strerror}", unreadable=True)
    found = digests[algorithm].hexdigest()
    xxh64 = digests["xxh64"].hexdigest()
    if found != ref.hashes[algorithm]:
        return Verdict(
            False, f"{algorithm} is {found}, but {ref.generation} records {ref.hashes[algorithm]}", xxh64, algorithm
        )
    return Verdict(True, "", xxh64, algorithm)


class _Changed(Exception):
    pass


def _hash(path: Path, size: int, mtime_ns: int, algorithm: str) -> dict[str, Digest]:
    digests: dict[str, Digest] = {"xxh64": new_digest("xxh64")}
    if algorithm != "xxh64":
        digests[algorithm] = C4Digest() if algorithm == "c4" else new_digest(algorithm)
    fd = os.open(path, os.O_RDONLY)
    try:
        _same_version(fd, size, mtime_ns)
        advise_sequential(fd)
        if feed_fd(fd, list(digests.values())) != size:
            raise _Changed()
        _same_version(fd, size, mtime_ns)
    finally:
        os.close(fd)
    return digests


def _same_version(fd: int, size: int, mtime_ns: int) -> None:
    st = os.fstat(fd)
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        raise _Changed()
