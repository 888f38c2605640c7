"""The C library, for the few things Python does not expose: inotify's limits
(mounts.py) and the allocator's arenas. Linux only; None elsewhere."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import sys

M_ARENA_MAX = -8  # mallopt parameter, glibc's malloc.h
ARENAS = 2


@functools.cache
def libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def limit_arenas() -> bool:
    """Ask glibc for at most ARENAS malloc arenas; True when it agreed.

    glibc gives each thread that allocates its own arena (up to 8 per core),
    and memory freed in one is kept there for that arena's next use. With
    the copy threads, the scan's thread and the generation's thread each
    holding freed blocks, a 100,000-file offload's end rose to 272 MiB; with
    two arenas, 240 (bench/RESULTS.md). Python allocates under its GIL, so
    the threads hardly contend for an arena. Call before threads start:
    arenas already made stay. An explicit MALLOC_ARENA_MAX wins."""
    lib = libc()
    if lib is None or platform.libc_ver()[0] != "glibc" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(lib.mallopt(M_ARENA_MAX, ARENAS))

