"""2. Nearline mirror: one offload to one local destination with read-back
verification, against `cp -r` + `xxhsum` of source and copy, and against
`rclone copy` + `rclone check`. Page cache dropped before each contender."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import Context
from bench.measure import Measured, check, drop_caches, in_sequence, run_measured
from bench.offload import CARD, SharedOffload, shared_offload
from bench.report import Row
from bench.tools import (
    RCLONE,
    TRIPLICATE,
    XXHSUM,
    local_dest,
    rclone_env,
    triplicate_env,
    write_config,
)

CASE = "2 nearline"


def run_triplicate(ctx: Context, off: SharedOffload, dest: Path) -> Measured:
    root = ctx.case_dir("nearline/triplicate")
    config = write_config(root, off.watch, {"nearline": local_dest(dest)})
    drop_caches()
    m = check(run_measured([TRIPLICATE, "--config", str(config), "run", "--once"], env=triplicate_env()),
              "triplicate run --once")
    if not list((dest / CARD / "ascmhl").glob("*.mhl")):
        raise RuntimeError(f"triplicate wrote no ASC MHL generation under {dest / CARD / 'ascmhl'}")
    return m


def run_cp_xxhsum(ctx: Context, off: SharedOffload, dest: Path) -> Measured:
    listing = ctx.case_dir("nearline/cp") / "source.xxh64"
    script = (f'set -e; cp -r "{off.card}" "{dest}/"; sync; '
              f'cd "{off.watch}"; find {CARD} -type f -print0 | xargs -0 {XXHSUM} -H1 > "{listing}"; '
              f'cd "{dest}"; {XXHSUM} -q -c "{listing}"')
    drop_caches()
    return check(run_measured(["bash", "-c", script]), "cp + xxhsum")


def run_rclone(ctx: Context, off: SharedOffload, dest: Path) -> Measured:
    env = rclone_env()
    drop_caches()
    copy = check(run_measured([RCLONE, "copy", str(off.card), str(dest / CARD)], env=env), "rclone copy")
    verify = check(run_measured([RCLONE, "check", str(off.card), str(dest / CARD)], env=env), "rclone check")
    return in_sequence(copy, verify)


def run(ctx: Context) -> list[Row]:
    off = shared_offload(ctx)
    dest = ctx.workdir / "nearline" / "dest"
    results: dict[str, list[Measured]] = {"triplicate": [], "cp": [], "rclone": []}
    for _ in range(ctx.repeat):
        for name, fn in (("triplicate", run_triplicate), ("cp", run_cp_xxhsum), ("rclone", run_rclone)):
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            results[name].append(fn(ctx, off, dest))
    shutil.rmtree(dest, ignore_errors=True)
    best = {name: min(runs, key=lambda m: m.seconds) for name, runs in results.items()}
    mb = off.bytes / 1e6
    ctx.note(CASE, f"offload: {off.files} files, {off.bytes / 2**30:.2f} GiB; cold cache before each contender; "
                   f"wall s: " + ", ".join(f"{n} {[round(m.seconds, 1) for m in r]}" for n, r in results.items()))
    ctx.note(CASE, "triplicate: copy + fsync + read-back from the device (cached pages dropped) + ASC MHL; "
                   "cp peer: cp -r, sync, xxhsum of the source, xxhsum -c of the copy (read from the page cache); "
                   "rclone peer: rclone copy then rclone check (both sides hashed, MD5)")
    ctx.note(CASE, "device bytes read per byte of data: " + ", ".join(
        f"{n} {m.read_bytes / off.bytes:.2f}" for n, m in best.items()) + "; peak RSS MiB: " + ", ".join(
        f"{n} {m.max_rss_bytes / 2**20:.0f}" for n, m in best.items()))
    ours = mb / best["triplicate"].seconds
    rows = []
    for peer, label in (("cp", "cp -r + sync + xxhsum ×2"), ("rclone", "rclone copy + check")):
        theirs = mb / best[peer].seconds
        rows.append(Row(CASE, f"mirror + verify, {off.files} files {off.bytes / 2**30:.1f} GiB", ours, label, theirs,
                        "MB/s", "higher", goal="faster than both", goal_met=ours > theirs))
    return rows
