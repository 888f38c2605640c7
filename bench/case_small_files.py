"""4. Many small files (16-256 KiB) to nearline + S3: files per second against
`rclone copy --transfers 16` to the same two places; the journal's cost per
file; and, with the daemon running while the files land, the time from the
last file landing to every copy verified."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from bench.context import Context
from bench.data import KiB, write_random
from bench.measure import Measured, check, drop_caches, run_measured
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

CASE = "4 small files"
OFFLOAD = "B001_FRAMES"
CONCURRENCY = 16  # the same parallelism rclone gets (--transfers 16)


def make_files(parent: Path, count: int, seed: int) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(count):
        size = rng.randint(16 * KiB, 256 * KiB)
        write_random(parent / OFFLOAD / f"{i // 1000:03d}" / f"frame_{i:07d}.dpx", size, stamp=seed * 10**7 + i,
                     block=size)
        total += size
    return total


BOTH = ("nearline", "s3")


def _destinations(ctx: Context, label: str, which: tuple[str, ...] = BOTH) -> tuple[Path, dict[str, list[str]], object]:
    local = ctx.case_dir(f"small/{label}-nearline")
    s3 = ctx.servers.new_bucket(label)
    dests = {"nearline": local_dest(local, concurrency=CONCURRENCY),
             "s3": s3_dest(s3, "", concurrency=CONCURRENCY)}
    return local, {name: dests[name] for name in which}, s3


def run_triplicate(ctx: Context, watch: Path, which: tuple[str, ...] = BOTH) -> Measured:
    _, dests, s3 = _destinations(ctx, "trip", which)
    config = write_config(ctx.case_dir("small/triplicate"), watch, dests)
    drop_caches()
    m = check(run_measured([TRIPLICATE, "--config", str(config), "run", "--once"], env=triplicate_env(s3),
                           timeout=3600), "triplicate run --once (small files)")
    ctx.servers.delete_bucket(s3)
    return m


def run_rclone(ctx: Context, watch: Path, which: tuple[str, ...] = BOTH) -> Measured:
    local = ctx.case_dir("small/rclone-nearline")
    s3 = ctx.servers.new_bucket("rcl")
    src = str(watch / OFFLOAD)
    r = RCLONE
    targets = {"nearline": f"{local}/{OFFLOAD}", "s3": f"bs3:{s3.bucket}/{OFFLOAD}"}
    copies = [f"( {r} copy --transfers 16 '{src}' '{targets[name]}' ) & p{i}=$!" for i, name in enumerate(which)]
    script = "set -e; " + "; ".join(copies) + "; " + " && ".join(f"wait $p{i}" for i in range(len(which)))
    drop_caches()
    m = check(run_measured(["bash", "-c", script], env=rclone_env(s3)), "rclone copy --transfers 16")
    ctx.servers.delete_bucket(s3)
    return m


def _alone(ctx: Context, watch: Path, n: int) -> list[Row]:
    """Each destination alone, for both contenders: where the gap of the
    combined run comes from (their costs add up on two cores)."""
    rows = []
    for name, label in (("nearline", "nearline alone"), ("s3", "S3 alone")):
        ours_m = run_triplicate(ctx, watch, (name,))
        peer_m = run_rclone(ctx, watch, (name,))
        ctx.note(CASE, f"{label}: triplicate {ours_m.seconds:.1f} s (CPU {ours_m.cpu_seconds:.1f} s, of it system "
                       f"{ours_m.system_seconds:.1f} s), rclone {peer_m.seconds:.1f} s (CPU {peer_m.cpu_seconds:.1f} s, "
                       f"system {peer_m.system_seconds:.1f} s)")
        rows.append(Row(CASE, f"files/s, {n} files to {label}", n / ours_m.seconds, "rclone copy --transfers 16",
                        n / peer_m.seconds, "files/s", "higher"))
    return rows


def journal_cost(ctx: Context, watch: Path, count: int) -> float:
    """ms per file of the journal work one file costs with two destinations:
    ingest (in batches, as the watcher hands them on), then per destination
    due_ids + claim + record_verified — the real Journal class, its own file,
    its writes grouped into commits as the daemon groups them."""
    from triplicate.journal import Journal, SeenFile

    path = ctx.case_dir("small/journal") / "journal.db"
    journal = Journal(path)
    journal.group_commits()  # as the daemon writes it
    seen = [SeenFile(str(watch), f"{OFFLOAD}/{i:07d}.dpx", 100_000, i) for i in range(count)]
    began = time.perf_counter()
    for i in range(0, count, 500):
        journal.ingest(seen[i:i + 500], ["nearline", "s3"])
    for dest in ("nearline", "s3"):
        while ids := journal.due_ids(dest, time.time(), limit=1):
            job = journal.claim_id(ids[0])
            assert job is not None
            journal.record_verified(job, "0123456789abcdef", job.size)
    seconds = time.perf_counter() - began
    journal.close()
    return seconds * 1000 / count


def landing_tail(ctx: Context, count: int) -> tuple[float, float]:
    """Daemon running; the files are written into its watch folder. Returns
    (seconds from the last file landing to all verified, files per second from
    the first file landing to all verified)."""
    watch = ctx.case_dir("small/live-watch")
    _, dests, s3 = _destinations(ctx, "live")
    root = ctx.case_dir("small/live")
    config = write_config(root, watch, dests)
    proc = subprocess.Popen([TRIPLICATE, "--config", str(config), "run"], env=triplicate_env(s3),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        journal = root / "state" / "journal.db"
        deadline = time.monotonic() + 60
        while not journal.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first = time.monotonic()
        make_files(watch, count, seed=7)
        last = time.monotonic()
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        deadline = last + 3600
        while _verified(db) < 2 * count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon stopped or timed out with {_verified(db)} of {2 * count} copies verified")
            time.sleep(0.1)
        done = time.monotonic()
        db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    ctx.servers.delete_bucket(s3)
    return done - last, count / (done - first)


def _verified(db: sqlite3.Connection) -> int:
    try:
        return int(db.execute("SELECT COUNT(*) FROM copies WHERE state = 'verified'").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def run(ctx: Context) -> list[Row]:
    n = ctx.scale.small_files
    watch = ctx.case_dir("small/watch")
    total = make_files(watch, n, seed=5)
    ours_m = run_triplicate(ctx, watch)
    peer_m = run_rclone(ctx, watch)
    ours, peer = n / ours_m.seconds, n / peer_m.seconds
    ctx.note(CASE, f"{n} files of 16-256 KiB ({total / 2**30:.2f} GiB) to nearline + S3; concurrency "
                   f"{CONCURRENCY} per destination for both; triplicate {ours_m.seconds:.1f} s "
                   f"(peak RSS {ours_m.max_rss_bytes / 2**20:.0f} MiB, CPU {ours_m.cpu_seconds:.0f} s), "
                   f"rclone {peer_m.seconds:.1f} s (CPU {peer_m.cpu_seconds:.0f} s)")
    ms = journal_cost(ctx, watch, min(n, 20_000))
    ctx.note(CASE, f"journal: {ms:.2f} ms per file (ingest + claim + record at 2 destinations, "
                   f"{min(n, 20_000)} files)")
    alone = _alone(ctx, watch, n)
    live_n = max(1000, n // 4)
    tail, live_rate = landing_tail(ctx, live_n)
    ctx.note(CASE, f"daemon running while {live_n} files land: last landing → all verified {tail:.1f} s; "
                   f"{live_rate:.0f} files/s from first landing to all verified")
    return [
        Row(CASE, f"files/s, {n} files to nearline + S3", ours, "rclone copy --transfers 16 ×2", peer, "files/s",
            "higher"),
        *alone,
        Row(CASE, "journal cost per file (2 destinations)", ms, "time per file of rclone's run",
            peer_m.seconds * 1000 / n, "ms", "lower", note="share of the peer's whole per-file time"),
        Row(CASE, f"last file landed → all verified ({live_n} files)", tail, "ideal: settle_seconds",
            0.5, "s", "lower"),
    ]
