"""Messages between the daemon and a destination running in a process of its
own (process.py, process_host.py): tuples, pickled, each behind its length.

Both ends are this program, started by the daemon itself, so pickle carries
the config, SourceFile, Receipt and the named exceptions as they are.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
import threading
from typing import Any

_LENGTH = struct.Struct(">I")


def encode(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def decode(data: bytes) -> tuple[Any, ...]:
    message = pickle.loads(data)
    if not isinstance(message, tuple) or not message:
        raise ValueError(f"not a message: {type(message).__name__}")
    return message


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> tuple[Any, ...] | None:
    """The next message from a blocking descriptor; None at its end."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    body = _read_exactly(fd, _LENGTH.unpack(head)[0])
    return None if body is None else decode(body)


async def read_stream(stream: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message from an asyncio stream; None at its end."""
    try:
        head = await stream.readexactly(_LENGTH.size)
        return decode(await stream.readexactly(_LENGTH.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None


class Sender:
    """Writes whole messages to a blocking descriptor from any thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self.broken = False  # the reader has gone: nothing left to tell it

    def send(self, *message: Any) -> None:
        data = memoryview(encode(message))
        with self._lock:
            try:
                while data and not self.broken:
                    data = data[os.write(self.fd, data):]
            except BrokenPipeError:
                self.broken = True
