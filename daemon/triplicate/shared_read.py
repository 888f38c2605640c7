"""One read of a source file serving every destination that copies it at once.

When several destinations copy the same file version at the same time, the
first `SourceReader` to open it starts a `SharedFile`; the others join it and
take their blocks from a small window of recently read blocks instead of
reading the device again. The source is then read once for all of them while
they keep pace, whatever the page cache does.

The window holds the first 8 MiB of the file until the front has read past
them, so a destination that begins its copy a moment later still joins; after
that only blocks some reader still needs. When the scheduler says more
destinations are about to read the file (they have a free worker and the copy
due), the front does not pass those 8 MiB before they have joined, or
JOIN_SECONDS have gone by: destinations that finish their previous files at
different moments, or take a request or two before their first read, must not
cost a second read of the file. Back-pressure: the reader at the
front waits while the window is full of blocks a slower reader still needs. It
waits at most `lag_seconds`: after that the slowest reader is let go and goes
on with reads of its own, so a slow cloud link can hold a fast nearline copy
back briefly but never for the whole file. Every reader still hashes what it
hands out, so sharing can never make a copy's hash depend on another reader's
bytes.

Files are told apart by device, inode, size, mtime and ctime of the opened
descriptor: a file replaced or rewritten under the same name never joins the
read of its predecessor.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .errors import SourceUnreadable

WINDOW_BYTES = 32 * 1024 * 1024
"""Blocks kept for readers behind the front: 4 blocks of 8 MiB, per file being
read, and only while the start of a file is held or readers drift apart."""

START_BYTES = 8 * 1024 * 1024
"""The start of a file kept for destinations that begin a moment later. Small:
at the start of a file an S3 upload is filling all its part buffers at once
(8 x 16 MiB), and a bigger hold showed in its peak memory."""

LAG_SECONDS = 2.0
"""How long the front waits for a slower reader before letting it go."""

JOIN_SECONDS = 1.0
"""How long the front holds the start of a file for destinations the scheduler
expects to join: their first read follows a request or two (a HeadObject, a
stat) over the network."""

DEVICE_BLOCK = 1024 * 1024
"""The least a device read asks for."""

FileKey = tuple[int, int, int, int, int]


def file_key(st: os.stat_result) -> FileKey:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass
class ReadCounters:
    """Process-wide totals: source bytes read from the file system and bytes
    handed to destinations (their ratio is what sharing saves)."""

    read_bytes: int = 0
    served_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, read: int, served: int) -> None:
        with self.lock:
            self.read_bytes += read
            self.served_bytes += served


COUNTERS = ReadCounters()


class Detached(Exception):
    """This reader fell too far behind and must read on its own."""


class SharedFile:
    def __init__(
        self, key: FileKey, fd: int, path: str, window_bytes: int, lag_seconds: float, expected: int = 1,
    ) -> None:
        self.key = key
        self.fd = fd
        self.path = path
        self.window_bytes = window_bytes
        self.start_bytes = min(START_BYTES, window_bytes)
        self.lag_seconds = lag_seconds
        self.cond = threading.Condition()
        self.blocks: deque[tuple[int, bytes]] = deque()  # (offset, data), contiguous, oldest first
        self.frontier = 0  # bytes read from the device so far
        self.reading = False  # a device read is in progress (the lock is not held during it)
        self.positions: dict[int, int] = {}  # reader id -> next offset it needs
        self.next_id = 0  # readers attached so far
        self.expected = expected  # readers the start is held for
        self.joining_deadline = time.monotonic() + JOIN_SECONDS

    # ---- membership ----------------------------------------------------------

    def attach(self, expected: int = 1) -> int | None:
        """A new reader at offset 0, or None when the start is no longer held."""
        with self.cond:
            start = self.blocks[0][0] if self.blocks else self.frontier
            if start > 0:
                return None
            self.next_id += 1
            self.positions[self.next_id] = 0
            self.expected = max(self.expected, expected)
            self.cond.notify_all()
            return self.next_id

    def detach(self, rid: int) -> None:
        with self.cond:
            self.positions.pop(rid, None)
            self._evict()
            self.cond.notify_all()

    # ---- reading ---------------------------------------------------------------

    def read(self, rid: int, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (b"" at the end of the file). Raises
        Detached when the reader was let go."""
        with self.cond:
            while True:
                if rid not in self.positions:
                    raise Detached()
                data = self._from_window(offset, size)
                if data is not None:
                    self.positions[rid] = offset + len(data)
                    self._evict()
                    self.cond.notify_all()
                    return data
                if self.reading:
                    self.cond.wait()
                    continue
                if offset != self.frontier:  # behind the window: only possible after a detach
                    raise Detached()
                if not self._room_for_next(rid, offset, size):
                    continue
                self.reading = True
                break
        return self._read_device(rid, offset, size)

    def _read_device(self, rid: int, offset: int, size: int) -> bytes:
        block_size = max(size, DEVICE_BLOCK)
        try:
            data = os.pread(self.fd, block_size, offset)
        except OSError as exc:
            with self.cond:
                self.reading = False
                self.cond.notify_all()
            raise SourceUnreadable(f"cannot read source file {self.path}: {exc.strerror}") from None
        COUNTERS.add(len(data), 0)
        with self.cond:
            self.reading = False
            if data:
                self.blocks.append((offset, data))
                self.frontier = offset + len(data)
            self.cond.notify_all()
        with self.cond:
            if rid not in self.positions:
                raise Detached()
            got = self._from_window(offset, size) or b""
            self.positions[rid] = offset + len(got)
            self._evict()
            return got

    def _from_window(self, offset: int, size: int) -> bytes | None:
        if offset >= self.frontier:
            return b"" if offset >= self.key[2] else None
        for start, data in self.blocks:
            if start <= offset < start + len(data):
                lo = offset - start
                if lo == 0 and len(data) <= size:
                    return data  # the block itself: no copy
                return data[lo:lo + size]
        return None

    def _room_for_next(self, rid: int, offset: int, size: int) -> bool:
        """Whether the front may read the block at `offset` now; waits (lock
        held by the caller) for readers still to join and for slow readers,
        then lets the slowest go. False when another reader moved the read on
        meanwhile: the caller looks again (the block may be in the window)."""
        while self._awaiting_joiners(size):
            left = self.joining_deadline - time.monotonic()
            if left <= 0:
                self.expected = self.next_id
                break
            self.cond.wait(left)
            if self._moved_on(rid, offset):
                return False
        deadline = time.monotonic() + self.lag_seconds
        while self._needed_bytes() >= self.window_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                self._drop_slowest(rid)
                return True
            self.cond.wait(left)
            if self._moved_on(rid, offset):
                return False
        return True

    def _moved_on(self, rid: int, offset: int) -> bool:
        return self.reading or rid not in self.positions or self.frontier != offset

    def _awaiting_joiners(self, size: int) -> bool:
        """Whether the next read would drop the start of the file before every
        expected reader has joined."""
        return self.next_id < self.expected and self.frontier + max(size, DEVICE_BLOCK) > self.start_bytes

    def _needed_bytes(self) -> int:
        low = self._low()
        return sum(len(d) for start, d in self.blocks if start + len(d) > low)

    def _drop_slowest(self, keep: int) -> None:
        others = {r: p for r, p in self.positions.items() if r != keep}
        if others:
            slowest = min(others, key=others.__getitem__)
            del self.positions[slowest]
        self._evict()
        self.cond.notify_all()

    def _low(self) -> int:
        return min(self.positions.values(), default=self.frontier)

    def _evict(self) -> None:
        """Drop blocks every reader has passed, except the start of the file
        while the front is within START_BYTES of it: destinations that begin a moment later
        (their worker was busy, their connection opening) can still join."""
        if self.frontier <= self.start_bytes:
            return
        low = self._low()
        while self.blocks and self.blocks[0][0] + len(self.blocks[0][1]) <= low:
            self.blocks.popleft()


class ReadShares:
    """The files being read right now, by file key."""

    def __init__(self, window_bytes: int = WINDOW_BYTES, lag_seconds: float = LAG_SECONDS) -> None:
        self.window_bytes = window_bytes
        self.lag_seconds = lag_seconds
        self.lock = threading.Lock()
        self.files: dict[FileKey, tuple[SharedFile, int]] = {}  # key -> (file, readers attached)
        # destinations reading sources in this process (the daemon sets it;
        # one in a destination's own process): alone, a reader has no one to
        # share with, and a share would cost it a second open and its locks
        self.readers_here = 2

    def join(self, key: FileKey, path: str, expected: int = 1) -> tuple[SharedFile, int] | None:
        """Attach to the read of `key`, starting one if there is none. None
        when a read exists but has moved past the start of the file.
        `expected`: readers about to join, the start is held for them."""
        if self.readers_here < 2:
            return None
        with self.lock:
            entry = self.files.get(key)
            if entry is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    return None  # the reader's own checks will say what happened
                if file_key(os.fstat(fd)) != key:
                    os.close(fd)
                    return None
                shared = SharedFile(key, fd, path, self.window_bytes, self.lag_seconds, expected)
                entry = (shared, 0)
            shared, count = entry
            rid = shared.attach(expected)
            if rid is None:
                return None
            self.files[key] = (shared, count + 1)
            return shared, rid

    def leave(self, shared: SharedFile, rid: int) -> None:
        shared.detach(rid)
        with self.lock:
            entry = self.files.get(shared.key)
            if entry is None or entry[0] is not shared:
                return
            if entry[1] <= 1:
                del self.files[shared.key]
                os.close(shared.fd)
            else:
                self.files[shared.key] = (shared, entry[1] - 1)


SHARES = ReadShares()
