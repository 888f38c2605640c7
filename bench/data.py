"""Data sets made on the spot: camera-like offloads of incompressible bytes.

Bytes come from a 64 MiB pool of os.urandom, taken at a different offset for
every block and stamped with a counter, so no two blocks or files are alike
(nobody can deduplicate) while generation runs at disk speed."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

MiB = 1024**2
GiB = 1024**3
KiB = 1024
_POOL_SIZE = 64 * MiB
_pool: bytes | None = None


def _pool_bytes() -> bytes:
    global _pool
    if _pool is None:
        _pool = os.urandom(_POOL_SIZE)
    return _pool


def write_random(path: Path, size: int, stamp: int, block: int = 4 * MiB) -> None:
    pool = _pool_bytes()
    rng = random.Random(stamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left, n = size, 0
        while left > 0:
            length = min(block, left)
            start = rng.randrange(0, _POOL_SIZE - length + 1)
            chunk = (stamp.to_bytes(8, "little") + n.to_bytes(8, "little") + pool[start + 16:start + length])[:length]
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            left -= length
            n += 1
    finally:
        os.close(fd)


@dataclass
class Offload:
    root: Path  # the offload folder (card)
    files: int
    bytes: int


def camera_offload(parent: Path, name: str, clips: int, clip_size: int, small: int,
                   small_min: int = 16 * KiB, small_max: int = 512 * KiB, seed: int = 1) -> Offload:
    """A card folder: `clips` large clips plus `small` sidecar-sized files
    (16-512 KiB: proxies' XML, thumbnails, audio) in a few folders."""
    root = parent / name
    rng = random.Random(seed)
    total, count = 0, 0
    for i in range(clips):
        write_random(root / "CLIPS" / f"{name}C{i + 1:03d}.mov", clip_size, stamp=seed * 1_000_000 + i)
        total += clip_size
        count += 1
    for i in range(small):
        size = rng.randint(small_min, small_max)
        folder = root / "SIDECARS" / f"{i // 500:03d}"
        write_random(folder / f"{name}_{i:06d}.bin", size, stamp=seed * 1_000_000 + 500_000 + i, block=size)
        total += size
        count += 1
    return Offload(root, count, total)


def tree_bytes(root: Path) -> tuple[int, int]:
    """(files, bytes) of every regular file under root."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size
