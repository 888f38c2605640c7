"""What the conformance suite needs from each destination type.

A case module (one per type, beside this file) provides `async def make(ctx)`
returning a `Case`. Independent reads and corruption go around the
destination's own code (the SDK or the file system directly), so the suite
checks the destination rather than trusting it.
"""

from __future__ import annotations

import os
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


@dataclass
class FolderProbes:
    """Independent reads and damage for destinations that end up as files in a
    folder this machine can see (local, and sftp against the local sshd)."""

    root: Path

    async def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    async def corrupt(self, key: str) -> None:
        path = self.root / key
        st = path.stat()
        with open(path, "r+b") as fh:
            first = fh.read(1)
            fh.seek(0)
            fh.write(bytes([first[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only content can tell

    async def leftovers(self) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.name.endswith(".tmp")]
