"""File hashing: xxHash64 as ASC MHL writes it, and the other ASC MHL formats.

Digests are canonical (big-endian) lowercase hex, which is what python-xxhash's
hexdigest() returns and what ASC MHL stores: xxh64("") == "ef46db3751d8e999".
"""

from __future__ import annotations

import array
import mmap
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

import xxhash

BLOCK_SIZE = 8 * 1024 * 1024
"""Large reads keep syscalls and Python overhead negligible next to hashing."""

HASH_BLOCK_SIZE = 1024 * 1024
"""Reads that are only hashed: a 1 MiB buffer stays in the CPU cache between
the read and the hash, 8% faster than 8 MiB (bench/RESULTS.md, case 1)."""


PAGE = mmap.PAGESIZE


def read_buffer(size: int) -> memoryview:
    """A writable buffer of `size` bytes, starting on a page boundary, for the
    kernel to read into. A large bytearray starts 16 bytes past one (its block
    comes from mmap, behind malloc's header), and there the kernel's copy out
    of the page cache ran 4-5 times slower on an AMD EPYC (a page-aligned
    source and a destination 1-31 bytes past the same offset in its page:
    bench/RESULTS.md, change 40). An array rather than a bytearray because
    it tells its address without ctypes (5 ms of every start of `hash`); not
    an anonymous mmap, which costs a page fault per page of every new buffer:
    4x the CPU of a read-back of a small file."""
    if size < PAGE:
        return memoryview(bytearray(size))
    raw = array.array("B", bytes(1)) * (size + PAGE)
    start = -raw.buffer_info()[0] % PAGE
    return memoryview(raw)[start:start + size]


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def _openssl(name: str) -> Callable[[], Digest]:
    def make() -> Digest:
        import hashlib  # loads OpenSSL: 9 ms of every `triplicate hash` start, which needs xxh64 only

        return hashlib.new(name)

    return make


ALGORITHMS: dict[str, Callable[[], Digest]] = {
    "xxh64": lambda: xxhash.xxh64(seed=0),
    "xxh3": lambda: xxhash.xxh3_64(seed=0),
    "xxh128": lambda: xxhash.xxh3_128(seed=0),
    "md5": _openssl("md5"),
    "sha1": _openssl("sha1"),
}


def new_digest(algorithm: str = "xxh64") -> Digest:
    try:
        return ALGORITHMS[algorithm]()
    except KeyError:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}") from None


def advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def drop_cache(fd: int) -> None:
    """Ask the kernel to forget cached pages of `fd`, so the next read comes
    from the device. Dirty pages must already be flushed (fsync) for this to
    drop them. On macOS F_NOCACHE stops further caching instead."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    else:  # pragma: no cover - macOS
        import fcntl

        nocache = getattr(fcntl, "F_NOCACHE", None)
        if nocache is not None:
            fcntl.fcntl(fd, nocache, 1)


def hash_fd(fd: int, algorithm: str = "xxh64", block_size: int = HASH_BLOCK_SIZE,
            offset: int | None = None) -> tuple[str, int]:
    """Hash everything readable from `fd` from its current offset, or from
    `offset` without moving it; returns (hex, bytes)."""
    digest = new_digest(algorithm)
    total = feed_fd(fd, (digest,), block_size, offset)
    return digest.hexdigest(), total


def feed_fd(fd: int, digests: Sequence[Digest], block_size: int = HASH_BLOCK_SIZE,
            offset: int | None = None) -> int:
    """Feed everything readable from `fd` (from its current offset, or from
    `offset` without moving it) to every digest in one pass; returns the bytes read."""
    if offset is not None and not hasattr(os, "preadv"):  # macOS before 11: from `offset`, moving it
        os.lseek(fd, offset, os.SEEK_SET)
        offset = None
    view = read_buffer(block_size)
    total = 0
    while True:
        n = os.readv(fd, [view]) if offset is None else os.preadv(fd, [view], offset + total)
        if n == 0:
            return total
        for digest in digests:
            digest.update(view[:n])
        total += n


def hash_file(path: Path | str, algorithm: str = "xxh64", uncached: bool = False,
              size_hint: int | None = None) -> tuple[str, int]:
    """Hash a whole file; with `uncached`, its cached pages are dropped first so
    the bytes come from the device (read-back verification). `size_hint`, the
    size expected, spares a small file a buffer and advice it does not need."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return hash_open_file(fd, algorithm, uncached, size_hint)
    finally:
        os.close(fd)


def hash_open_file(fd: int, algorithm: str = "xxh64", uncached: bool = False,
                   size_hint: int | None = None) -> tuple[str, int]:
    """hash_file of a file already open, from its start."""
    block_size = HASH_BLOCK_SIZE if size_hint is None else max(1, min(HASH_BLOCK_SIZE, size_hint + 1))
    if uncached:
        drop_cache(fd)
    if block_size == HASH_BLOCK_SIZE:
        advise_sequential(fd)
    return hash_fd(fd, algorithm, block_size, offset=0)


def xxh64_bytes(data: bytes) -> str:
    return xxhash.xxh64_hexdigest(data, seed=0)
