"""Reading the source file for S3 requests: whole (one PutObject), in parts
(multipart), or only to hash it first (the metadata of a multipart upload).

Every read goes through `SourceReader`, so the bytes are hashed (xxh64) and
the file is checked to be the version the journal knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

from ..errors import SourceChanged
from ..source import SourceReader
from .base import SourceFile
from .s3_checksums import Checksum

READ_CHUNK = 8 * 1024**2  # a streamed read-back's chunk
FILL_BLOCK = 1024**2  # a block copied into a part's buffer: hashed while still in the CPU cache


def fill(reader: SourceReader, view: memoryview, checksum: Checksum) -> bytes:
    """Fill `view` with the next bytes of the source (hashed by the reader) and
    return their checksum digest. The bytes are copied block by block into a
    buffer the caller owns (and reuses), so a part costs its own size once, not
    its blocks plus their join."""
    digest = checksum.running()
    got, length = 0, len(view)
    while got < length:
        reader.block_size = min(FILL_BLOCK, length - got)  # never read past the part
        block = reader.read_block()
        if not block:
            raise SourceChanged(f"source file shrank while it was read: {reader.src.path}")
        view[got:got + len(block)] = block
        digest.update(block)
        got += len(block)
    reader.block_size = FILL_BLOCK  # whole blocks again for a skip_to over parts already sent
    return digest.digest()


def read_whole(src: SourceFile, checksum: Checksum) -> tuple[bytearray, bytes, str]:
    """(bytes, checksum digest, xxh64) of a file small enough for one request."""
    data = bytearray(src.size)
    with SourceReader(src) as reader:
        digest = fill(reader, memoryview(data), checksum)
        return data, digest, reader.finish()


def hash_source(src: SourceFile) -> str:
    """The xxh64 of the whole file, for the metadata of a multipart upload."""
    # hashing only: nothing is sent, and a reader racing ahead would only hold back the copies it shared with
    with SourceReader(dataclasses.replace(src, limiter=None), share=False) as reader:
        while reader.read_block():
            pass
        return reader.finish()


async def with_reader(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a read of the shared SourceReader in a worker thread. A cancelled
    caller still waits for the read to end: the reader (and its fd, whose
    number another file could get) is closed only after that."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await job
        raise
