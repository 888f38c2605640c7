from __future__ import annotations

from pathlib import Path

from triplicate.destinations.local import LocalConfig, LocalDestination

from .base import Case, Context, FolderProbes


async def make(ctx: Context) -> Case:
    root = ctx.tmp_path / "nearline"
    root.mkdir()

    def dest_at(path: Path) -> LocalDestination:
        return LocalDestination(LocalConfig(name="nearline", type="local", path=path, media="raid"))

    probes = FolderProbes(root)

    return Case(
        dest=dest_at(root),
        read=probes.read,
        corrupt=probes.corrupt,
        missing_target=lambda: dest_at(ctx.tmp_path / "not-mounted"),
        bad_credentials=lambda: dest_at(_a_file(ctx.tmp_path)),  # no credentials: the nearest is a path that is no folder
        part_size=8 * 1024 * 1024,
        leftovers=probes.leftovers,
    )


def _a_file(tmp: Path) -> Path:
    path = tmp / "a-file-not-a-folder"
    path.write_bytes(b"")
    return path
