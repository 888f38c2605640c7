"""5. Memory: peak RSS (rusage of the process, as /usr/bin/time -v reports it)
while sending one large generated file to S3 with 8 parts in flight, and while
tracking many files (a journal that knows them all, a start-up scan that finds
nothing new); each against rclone doing the same job."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import xxhash

from bench.context import Context
from bench.data import write_random
from bench.measure import Measured, check, run_measured
from bench.report import Row
from bench.tools import (
    RCLONE,
    TRIPLICATE,
    local_dest,
    rclone_env,
    s3_dest,
    triplicate_env,
    write_config,
)

CASE = "5 memory"
MiB = 1024**2
GOAL = 250 * MiB


def _upload(ctx: Context, watch: Path, part_size_mib: int) -> tuple[Measured, Measured]:
    """Each contender into a bucket of its own, emptied before the next: a
    bucket is a SeaweedFS collection, deleted with its volumes, so the disk
    holds one copy of the large file at a time."""
    s3 = ctx.servers.new_bucket(f"mem{part_size_mib}")
    config = write_config(ctx.case_dir(f"memory/s3-{part_size_mib}"), watch, {
        "s3": s3_dest(s3, "t/", part_concurrency=8, part_size=f"{part_size_mib}MiB")})
    ours = check(run_measured([TRIPLICATE, "--config", str(config), "run", "--once"], env=triplicate_env(s3)),
                 "triplicate run --once (large file to S3)")
    ctx.servers.delete_bucket(s3)
    s3 = ctx.servers.new_bucket(f"mem{part_size_mib}r")
    peer = check(run_measured([RCLONE, "copy", "--s3-upload-concurrency", "8", "--s3-chunk-size", f"{part_size_mib}M",
                               str(watch), f"bs3:{s3.bucket}/r/"], env=rclone_env(s3)), "rclone copy (large file)")
    ctx.servers.delete_bucket(s3)
    return ours, peer


def _tracked_tree(ctx: Context, count: int) -> tuple[Path, Path]:
    """count small files in one offload, and a nearline copy of them (cp -a)."""
    watch = ctx.case_dir("memory/track-watch")
    rng = random.Random(11)
    card = watch / "T001_CARD"
    for i in range(count):
        folder = card / f"{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:07d}.wav").write_bytes(rng.randbytes(rng.randint(0, 4096)))
    nearline = ctx.case_dir("memory/track-nearline")
    subprocess.run(["cp", "-a", str(card), str(nearline)], check=True)
    return watch, nearline


def _known_journal(journal_path: Path, watch: Path) -> None:
    """Every file of the tree recorded as verified at `nearline`, as after a
    finished offload (real Journal class for the schema and the file rows)."""
    from triplicate.journal import Journal, SeenFile

    journal = Journal(journal_path)
    batch: list[SeenFile] = []
    for dirpath, _, names in os.walk(watch):
        for name in names:
            path = Path(dirpath) / name
            st = path.stat()
            rel = path.relative_to(watch).as_posix()
            xxh64 = xxhash.xxh64_hexdigest(path.read_bytes())
            batch.append(SeenFile(str(watch), rel, st.st_size, st.st_mtime_ns, xxh64=xxh64))
    journal.ingest(batch, ["nearline"])  # the hashes go in with the files: no lookup per path
    now = time.time()
    with journal._tx():
        journal.db.execute("UPDATE copies SET state = 'verified', verified_at = ?, updated_at = ?", (now, now))
    journal.close()


def _tracking(ctx: Context, count: int) -> tuple[Measured, Measured]:
    watch, nearline = _tracked_tree(ctx, count)
    root = ctx.case_dir("memory/track")
    config = write_config(root, watch, {"nearline": local_dest(nearline)})
    _known_journal(root / "state" / "journal.db", watch)
    ours = check(run_measured([TRIPLICATE, "--config", str(config), "run", "--once"], env=triplicate_env()),
                 "triplicate run --once (tracking)")
    peer = check(run_measured([RCLONE, "copy", str(watch / "T001_CARD"), str(nearline / "T001_CARD")],
                              env=rclone_env()), "rclone copy (tracking)")
    return ours, peer


def run(ctx: Context) -> list[Row]:
    size = ctx.scale.memory_file_bytes
    watch = ctx.case_dir("memory/big-watch")
    write_random(watch / "C001_CARD" / "C001_A001.mov", size, stamp=21)
    rows = []
    for part_mib in (64, 8):
        ours, peer = _upload(ctx, watch, part_mib)
        ctx.note(CASE, f"{size / 2**30:.1f} GiB file to S3, part_concurrency 8, part_size {part_mib} MiB: peak RSS "
                       f"triplicate {ours.max_rss_bytes / MiB:.0f} MiB ({ours.seconds:.1f} s), rclone "
                       f"{peer.max_rss_bytes / MiB:.0f} MiB ({peer.seconds:.1f} s, --s3-upload-concurrency 8 "
                       f"--s3-chunk-size {part_mib}M)")
        rows.append(Row(CASE, f"peak RSS, 1 large file to S3, 8 × {part_mib} MiB parts in flight",
                        ours.max_rss_bytes / MiB, "rclone copy", peer.max_rss_bytes / MiB, "MiB", "lower",
                        goal="< 250 MiB", goal_met=ours.max_rss_bytes < GOAL,
                        note="8 MiB is the default part_size" if part_mib == 8 else ""))
    count = ctx.scale.tracked_files
    ours, peer = _tracking(ctx, count)
    ctx.note(CASE, f"tracking {count} files (journal knows all of them verified; start-up scan, nothing to send; "
                   f"one ASC MHL generation of them written): triplicate {ours.max_rss_bytes / MiB:.0f} MiB in "
                   f"{ours.seconds:.1f} s; rclone copy of the same tree onto its existing copy "
                   f"{peer.max_rss_bytes / MiB:.0f} MiB in {peer.seconds:.1f} s")
    rows.append(Row(CASE, f"peak RSS, tracking {count} files", ours.max_rss_bytes / MiB, "rclone copy (all present)",
                    peer.max_rss_bytes / MiB, "MiB", "lower", goal="< 250 MiB", goal_met=ours.max_rss_bytes < GOAL))
    return rows
