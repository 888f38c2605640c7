"""Reading a source file exactly once per attempt, hashing what was read, and
noticing when the file changes underneath.

Every destination reads its source through `SourceReader`, so the rules live in
one place: the file must still be the version the journal describes when the
read starts and when it ends, the number of bytes must match, and when the
version's hash is already known the bytes must hash to it. Readers of the
same version at the same time take their bytes from one shared read
(shared_read.py); each still hashes and checks what it hands out.
"""

from __future__ import annotations

import asyncio
import os
from typing import AsyncIterator

from .destinations.base import SourceFile
from .errors import SourceChanged, SourceUnreadable
from .hashing import BLOCK_SIZE, advise_sequential, new_digest
from .shared_read import COUNTERS, SHARES, Detached, SharedFile, file_key


def io_threads(concurrency: int) -> int:
    """Threads for blocking reads and writes, for destinations copying
    `concurrency` files at once between them. Python's default of cores + 4 is
    too few: a local copy holds a thread for a whole file, an S3 upload one per
    part buffer, and a reader ahead of its share waits in one (shared_read.py)
    for slower readers, which need threads of their own to catch up."""
    return 8 + 4 * concurrency


def _signature(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


class SourceReader:
    """Sequential, hashing reader of one `SourceFile`. Use as a context manager."""

    def __init__(self, src: SourceFile, block_size: int = BLOCK_SIZE, share: bool = True) -> None:
        self.src = src
        self.block_size = block_size
        self.digest = new_digest("xxh64")
        self.bytes_read = 0
        self._fd = -1
        self._ctime_ns: int | None = None  # when the read began
        self._share = share  # join other destinations' read of the same version (shared_read.py)
        self._shared: tuple[SharedFile, int] | None = None

    def __enter__(self) -> "SourceReader":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            self._fd = os.open(self.src.path, os.O_RDONLY)
        except FileNotFoundError:
            raise SourceUnreadable(f"source file disappeared: {self.src.path}") from None
        except OSError as exc:
            raise SourceUnreadable(f"cannot read source file {self.src.path}: {exc.strerror}") from None
        opened = self._check_unchanged("before reading", by_name=False)
        # Size and mtime can be put back after a rewrite in place (rsync
        # --inplace -t); the change time cannot, so it must hold still too.
        self._ctime_ns = opened.st_ctime_ns
        if self.src.size > self.block_size:  # a file read in one block has nothing to read ahead
            advise_sequential(self._fd)
        if self._share:
            self._shared = SHARES.join(file_key(opened), os.fsdecode(self.src.path), self.src.readers)

    def close(self) -> None:
        self._leave_share()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def fd(self) -> int:
        return self._fd

    def _check_unchanged(self, when: str, by_name: bool = True) -> os.stat_result:
        """The open file as fstat sees it, when it and the name still hold the
        version the journal describes (the name not looked up again when the
        file was opened by it a moment ago)."""
        try:
            opened = os.fstat(self._fd)
            named = os.stat(self.src.path) if by_name else opened
        except FileNotFoundError:
            raise SourceChanged(f"source file was removed {when}: {self.src.path}") from None
        expected = (self.src.size, self.src.mtime_ns)
        if _signature(opened) != expected or _signature(named) != expected:
            raise SourceChanged(f"source file changed {when}: {self.src.path}")
        if self._ctime_ns is not None and (opened.st_ctime_ns, named.st_ctime_ns) != (self._ctime_ns,) * 2:
            raise SourceChanged(f"source file was rewritten {when} (same size and mtime, new change time): {self.src.path}")
        return opened

    def _leave_share(self) -> None:
        if self._shared is not None:
            SHARES.leave(*self._shared)
            self._shared = None

    def _next(self, size: int) -> bytes:
        """Up to `size` bytes at the current offset: from the shared read while
        this reader keeps pace with it, else from its own descriptor."""
        if self._shared is not None:
            shared, rid = self._shared
            try:
                return shared.read(rid, self.bytes_read, size)
            except Detached:
                self._leave_share()
        # no more than the version's size: a larger buffer costs its
        # allocation for every small file, and growth shows in finish()'s fstat
        size = min(size, self.src.size - self.bytes_read)
        if size <= 0:
            return b""
        try:
            data = os.pread(self._fd, size, self.bytes_read)
        except OSError as exc:
            raise SourceUnreadable(f"cannot read source file {self.src.path}: {exc.strerror}") from None
        COUNTERS.add(len(data), 0)
        return data

    def read_block(self) -> bytes:
        """The next block, hashed; b"" at the end."""
        data = self._next(self.block_size)
        if data:
            COUNTERS.add(0, len(data))
            self.digest.update(data)
            self.bytes_read += len(data)
            if self.bytes_read > self.src.size:
                raise SourceChanged(f"source file grew while it was read: {self.src.path}")
            if self.src.limiter is not None:  # the destination's bandwidth limit (called in a thread)
                self.src.limiter.consume(len(data))
        return data

    def skip_to(self, offset: int, hashed_prefix: bytes | None = None) -> None:
        """Continue a resumed transfer: hash the first `offset` bytes without
        handing them out (they are already at the destination)."""
        while self.bytes_read < offset:
            data = self._next(min(self.block_size, offset - self.bytes_read))
            if not data:
                raise SourceChanged(f"source file shrank while it was read: {self.src.path}")
            self.digest.update(data)
            self.bytes_read += len(data)

    def finish(self) -> str:
        """Check the read was whole and the file unchanged; return the xxh64."""
        if self.bytes_read != self.src.size:
            raise SourceChanged(
                f"source file size changed while it was read: {self.src.path} "
                f"(expected {self.src.size} bytes, read {self.bytes_read})"
            )
        self._check_unchanged("while it was read")
        xxh64 = self.digest.hexdigest()
        if self.src.xxh64 is not None and xxh64 != self.src.xxh64:
            raise SourceChanged(
                f"source file no longer matches its recorded xxh64 {self.src.xxh64} "
                f"(read {xxh64}) although size and mtime are unchanged: {self.src.path}"
            )
        return xxh64

    async def ablocks(self) -> AsyncIterator[bytes]:
        """Blocks read in a worker thread, for destinations whose SDK is async."""
        while True:
            data = await asyncio.to_thread(self.read_block)
            if not data:
                return
            yield data
