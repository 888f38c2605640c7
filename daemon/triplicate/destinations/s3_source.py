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

READ_CHUNK = 8 * 1024**2


def read_exactly(reader: SourceReader, length: int) -> bytes:
    """The next `length` bytes of the source (hashed by the reader)."""
    chunks, got = [], 0
    while got < length:
        reader.block_size = min(READ_CHUNK, length - got)  # never read past the part
        block = reader.read_block()
        if not block:
            raise SourceChanged(f"source file shrank while it was read: {reader.src.path}")
        chunks.append(block)
        got += len(block)
    reader.block_size = READ_CHUNK
    return b"".join(chunks)


def read_whole(src: SourceFile, checksum: Checksum) -> tuple[bytes, bytes, str]:
    """(bytes, checksum digest, xxh64) of a file small enough for one request."""
    with SourceReader(src) as reader:
        data = read_exactly(reader, src.size)
        return data, checksum.digest(data), reader.finish()


def read_part(reader: SourceReader, length: int, checksum: Checksum) -> tuple[bytes, bytes]:
    """(bytes, checksum digest) of the next part."""
    data = read_exactly(reader, length)
    return data, checksum.digest(data)


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
