"""What the watcher holds per file while a start-up scan finds a whole frame
sequence at once, and the allocator setting the daemon starts with."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from triplicate.watch import Settler, scan_tree

FRAMES = 4000


def frames(root: Path) -> Path:
    folder = root / "A001" / "0000"
    folder.mkdir(parents=True)
    for i in range(FRAMES):
        (folder / f"A001_{i:07d}.dpx").touch()
    os.utime(folder, (0, 0))
    return root


def held_per_file(make: object) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()  # type: ignore[operator]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == FRAMES
    return held / FRAMES


def test_a_scan_keeps_three_numbers_of_each_stat(tmp_path: Path) -> None:
    # an os.stat_result with its numbers is ~500 bytes; two lists of them
    # for 100,000 new files set the daemon's memory for the rest of its run
    root = frames(tmp_path)
    per_file = held_per_file(lambda: list(scan_tree(root)))
    assert per_file < 300, per_file  # path ~80, tuples ~120, numbers ~90


def test_settled_files_come_back_as_three_numbers(tmp_path: Path) -> None:
    root = frames(tmp_path)
    settler = Settler(settle=0.0)
    for disk_path, sig in scan_tree(root):
        settler.touch(disk_path, 0.0, sig)
    per_file = held_per_file(lambda: settler.poll(root, now=1.0))
    assert per_file < 150, per_file  # the list's tuple; path and numbers are the candidates'


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="an allocator setting of glibc's")
def test_the_daemon_limits_malloc_arenas_unless_told_otherwise() -> None:
    ask = "from triplicate.libc import limit_arenas; print(limit_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = [sys.executable, "-c", ask]
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    told = {**env, "MALLOC_ARENA_MAX": "4"}
    assert subprocess.run(run, env=told, capture_output=True, text=True, check=True).stdout.strip() == "False"
