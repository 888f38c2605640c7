"""How a file becomes the blocks of an Azure block blob: the plan (blocks grown
so that no blob needs more than 50,000), block ids, the read of each block,
and the window of blocks in flight."""

from __future__ import annotations

import asyncio
import base64
import math
from dataclasses import dataclass
from typing import Any, Coroutine

from ..errors import CopyRefused, SourceChanged
from ..source import SourceReader

MiB = 1024 * 1024
MAX_BLOCKS = 50_000
MAX_BLOCK_SIZE = 4000 * MiB


@dataclass(frozen=True)
class BlockPlan:
    """How one file is cut into blocks."""

    size: int
    block_size: int
    count: int

    def length(self, index: int) -> int:
        return min(self.block_size, self.size - index * self.block_size)


def plan_blocks(size: int, block_size: int) -> BlockPlan:
    """Blocks of `block_size`, grown (to whole MiB) when the file would need
    more than 50,000 of them."""
    needed = math.ceil(size / MAX_BLOCKS)
    grown = max(block_size, math.ceil(needed / MiB) * MiB)
    if grown > MAX_BLOCK_SIZE:
        raise CopyRefused(f"file of {size} bytes exceeds Azure's block blob limit of 50,000 blocks of 4000 MiB")
    return BlockPlan(size, grown, max(1, math.ceil(size / grown)))


def block_id(token: str, index: int) -> str:
    return f"{token}{index:06d}"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class Window:
    """Runs at most `size` coroutines at once; the first failure is raised by
    the next submit() or drain(); cancel() stops whatever is left."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: set[asyncio.Task[int]] = set()
        self.total = 0

    async def submit(self, coro: Coroutine[Any, Any, int]) -> None:
        try:
            while len(self.tasks) >= self.size:
                await self._reap(asyncio.FIRST_COMPLETED)
        except BaseException:
            coro.close()  # never started: no "never awaited" warning
            raise
        self.tasks.add(asyncio.ensure_future(coro))

    async def drain(self) -> None:
        while self.tasks:
            await self._reap(asyncio.ALL_COMPLETED)

    async def _reap(self, when: str) -> None:
        done, self.tasks = await asyncio.wait(self.tasks, return_when=when)
        failures = [t.exception() for t in done if t.exception() is not None]
        self.total += sum(t.result() for t in done if t.exception() is None)
        if failures:
            raise failures[0]  # type: ignore[misc]

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = set()


def read_exactly(reader: SourceReader, length: int) -> bytes:
    """`length` bytes of the source (hashed by the reader), short reads joined."""
    chunks = []
    while length > 0:
        reader.block_size = length  # never read past this block's end
        data = reader.read_block()
        if not data:
            raise SourceChanged(f"source file shrank while it was read: {reader.src.path}")
        chunks.append(data)
        length -= len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_and_hash(reader: SourceReader, length: int, whole: Any) -> bytes:
    data = read_exactly(reader, length)
    whole.update(data)
    return data
