"""What the conformance suite needs from each destination type.

A case module (one per type, beside this file) provides `async def make(ctx)`
returning a `Case`. Independent reads and corruption go around the
destination's own code (the SDK or the file system directly), so the suite
checks the destination rather than trusting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from triplicate.destinations.base import Destination


@dataclass
class Case:
    dest: Destination
    read: Callable[[str], Awaitable[bytes | None]]  # stored bytes of a key, None if absent
    corrupt: Callable[[str], Awaitable[None]]  # flip one byte of the stored object
    missing_target: Callable[[], Destination]  # same type, bucket/container/folder absent
    bad_credentials: Callable[[], Destination]  # same type, credentials refused (local: target is not a folder)
    part_size: int  # the unit the destination splits big files into
    leftovers: Callable[[], Awaitable[list[str]]]  # names a half-done upload could leave (temp files, open uploads)


@dataclass
class Context:
    tmp_path: Path
    request: Any
    variant: str  # the parameter, e.g. "s3-moto"  # pytest's request, to reach session server fixtures lazily
