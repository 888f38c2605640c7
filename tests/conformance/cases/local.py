from __future__ import annotations

import os
from pathlib import Path

from triplicate.destinations.local import LocalConfig, LocalDestination

from .base import Case, Context


async def make(ctx: Context) -> Case:
    root = ctx.tmp_path / "nearline"
    root.mkdir()

    def dest_at(path: Path) -> LocalDestination:
        return LocalDestination(LocalConfig(name="nearline", type="local", path=path, media="raid"))

    async def read(key: str) -> bytes | None:
        path = root / key
        return path.read_bytes() if path.exists() else None

    async def corrupt(key: str) -> None:
        path = root / key
        st = path.stat()
        with open(path, "r+b") as fh:
            first = fh.read(1)
            fh.seek(0)
            fh.write(bytes([first[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    async def leftovers() -> list[str]:
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp")]

    return Case(
        dest=dest_at(root),
        read=read,
        corrupt=corrupt,
        missing_target=lambda: dest_at(ctx.tmp_path / "not-mounted"),
        bad_credentials=lambda: dest_at(_a_file(ctx.tmp_path)),  # no credentials: the nearest is a path that is no folder
        part_size=8 * 1024 * 1024,
        leftovers=leftovers,
    )


def _a_file(tmp: Path) -> Path:
    path = tmp / "a-file-not-a-folder"
    path.write_bytes(b"")
    return path
