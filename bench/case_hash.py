"""1. Hashing: `triplicate hash` (xxh64) of a cached file vs `xxhsum -H1`,
process start included, the two run alternately and the median kept."""

from __future__ import annotations

from pathlib import Path

from bench.context import Context
from bench.data import write_random
from bench.measure import check, interleaved, median, run_measured
from bench.report import Row
from bench.tools import TRIPLICATE, XXHSUM

CASE = "1 hashing"


def _timed(argv: list[str], expect: str) -> float:
    m = check(run_measured(argv), argv[0])
    if not m.stdout.startswith(expect):
        raise RuntimeError(f"{argv} printed {m.stdout[:200]!r}, expected the digest {expect}")
    return m.seconds


def run(ctx: Context) -> list[Row]:
    folder = ctx.case_dir("hash", fresh=False)
    path = folder / "clip.bin"
    size = ctx.scale.hash_bytes
    if not path.exists() or path.stat().st_size != size:
        write_random(path, size, stamp=3)
    _warm(path)
    digest = check(run_measured([XXHSUM, "-H1", str(path)]), "xxhsum").stdout.split()[0]
    times = interleaved({
        "xxhsum": lambda: _timed([XXHSUM, "-H1", str(path)], digest),
        "triplicate": lambda: _timed([TRIPLICATE, "hash", str(path)], digest),
    }, repeat=max(9, ctx.repeat))
    ours, peer = median(times["triplicate"]), median(times["xxhsum"])
    ctx.note(CASE, f"{size / 2**30:.1f} GiB file in the page cache; {len(times['xxhsum'])} alternating runs each, "
                   f"median wall time: triplicate {ours:.3f} s, xxhsum {peer:.3f} s "
                   f"(all runs: triplicate {[round(t, 3) for t in times['triplicate']]}, "
                   f"xxhsum {[round(t, 3) for t in times['xxhsum']]})")
    start = median([_timed([TRIPLICATE, "hash", "/dev/null"], "ef46db3751d8e999") for _ in range(5)])
    ctx.note(CASE, f"triplicate's process start (hash of an empty file): {start * 1000:.0f} ms")
    ours_tp, peer_tp = size / ours / 1e9, size / peer / 1e9
    return [Row(CASE, "xxh64 throughput, process start included", ours_tp, "xxhsum -H1", peer_tp, "GB/s", "higher",
                goal="≥ 0.9× xxhsum", goal_met=ours_tp >= 0.9 * peer_tp)]


def _warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 * 1024**2):
            pass
