"""The offload shared by cases 2 and 3: a card folder of a few large clips and
2,000 small files, made once per bench run in its own watch folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.context import Context
from bench.data import camera_offload, tree_bytes

CARD = "A001_CARD"


@dataclass
class SharedOffload:
    watch: Path  # watch folder holding CARD
    card: Path
    files: int
    bytes: int


def shared_offload(ctx: Context) -> SharedOffload:
    s = ctx.scale
    watch = ctx.workdir / "offload" / "watch"
    card = watch / CARD
    stamp = ctx.workdir / "offload" / "made"
    wanted = f"{s.offload_clips}x{s.offload_clip_bytes}+{s.offload_small_files}"
    if not (stamp.exists() and stamp.read_text() == wanted):
        ctx.case_dir("offload")
        watch.mkdir(parents=True)
        camera_offload(watch, CARD, s.offload_clips, s.offload_clip_bytes, s.offload_small_files)
        stamp.write_text(wanted)
    files, size = tree_bytes(card)
    return SharedOffload(watch, card, files, size)
