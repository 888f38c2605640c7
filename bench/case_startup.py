"""6. Start-up with a big journal: 1,000,000 copy rows of which 100,000 are
pending (their files in the watch folder, the rest history of offloads long
gone): time from launching `triplicate run` to its first verified copy,
against rclone's time to its first copied file of the same 100,000 files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench.context import Context
from bench.daemon_log import LogFollower
from bench.report import Row
from bench.tools import RCLONE, TRIPLICATE, local_dest, rclone_env, triplicate_env, write_config

CASE = "6 start-up"
PENDING = "P001_CARD"
HISTORY_OFFLOAD_FILES = 1000
THEN = 1000


def _pending_files(watch: Path, count: int) -> list[tuple[str, int, int]]:
    """(relpath, size, mtime_ns) of `count` tiny files written under the watch folder."""
    made = []
    for i in range(count):
        folder = watch / PENDING / f"{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        path = folder / f"p{i:07d}.wav"
        path.write_bytes(i.to_bytes(8, "little"))
        st = path.stat()
        made.append((path.relative_to(watch).as_posix(), st.st_size, st.st_mtime_ns))
    return made


def build_journal(path: Path, watch: Path, rows: int, pending: list[tuple[str, int, int]]) -> None:
    """The product's schema (Journal creates it), filled by bulk SQL: `rows`
    copy rows at one destination, the pending ones pointing at real files."""
    from triplicate.journal import Journal

    journal = Journal(path)
    db, now, w = journal.db, time.time() - 86400, str(watch)
    history = rows - len(pending)
    with journal._tx():
        offloads = [(w, f"H{i:05d}_CARD", now) for i in range(history // HISTORY_OFFLOAD_FILES + 1)] + [(w, PENDING, now)]
        db.executemany("INSERT INTO offloads (watch, name, first_seen) VALUES (?, ?, ?)", offloads)
        ids = {name: oid for oid, name in db.execute("SELECT id, name FROM offloads")}
        db.executemany(
            "INSERT INTO files (offload_id, relpath, disk_path, size, mtime_ns, xxh64, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((ids[f"H{i // HISTORY_OFFLOAD_FILES:05d}_CARD"], f"H{i // HISTORY_OFFLOAD_FILES:05d}_CARD/C/{i:07d}.mov",
              f"H{i // HISTORY_OFFLOAD_FILES:05d}_CARD/C/{i:07d}.mov", 1_000_000_000, 1, f"{i:016x}", now)
             for i in range(history)))
        db.executemany(
            "INSERT INTO files (offload_id, relpath, disk_path, size, mtime_ns, first_seen) VALUES (?, ?, ?, ?, ?, ?)",
            ((ids[PENDING], rel, rel, size, mtime, now) for rel, size, mtime in pending))
        db.execute("INSERT INTO copies (file_id, destination, state, updated_at, verified_at, attempts) "
                   "SELECT id, 'nearline', CASE WHEN xxh64 IS NULL THEN 'pending' ELSE 'verified' END, ?, "
                   "CASE WHEN xxh64 IS NULL THEN NULL ELSE ? END, 0 FROM files", (now, now))
        # the history's generations exist already, each offload looked at since its last copy: neither
        # the start nor a sweep writes them again
        db.execute("INSERT INTO generations (offload_id, destination, number, filename, signature, created_at) "
                   "SELECT id, 'nearline', 1, name || '.mhl', '', ? FROM offloads WHERE name != ?", (now, PENDING))
        db.execute("DELETE FROM generation_due")
    journal.close()


def _triplicate_copies(config: Path) -> tuple[float, float, dict[str, float]]:
    """Seconds from launch to the first and to the THEN-th verified copy (a
    first copy followed by a stall would hide behind the first figure)."""
    began = time.time()
    proc = subprocess.Popen([TRIPLICATE, "--config", str(config), "run"], env=triplicate_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = LogFollower(proc, proc.stderr)  # type: ignore[arg-type]
    copies = 0

    def verified(event: dict) -> bool:
        nonlocal copies
        copies += event.get("event") == "copy_verified"
        return copies >= THEN

    try:
        first, _ = log.wait_for(lambda e: e.get("event") == "copy_verified", 300, "the first verified copy")
        copies = 1
        then, _ = log.wait_for(verified, 600, f"{THEN} verified copies")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    steps = {e["event"]: round(t - began, 2) for t, e in log.seen if e.get("event") == "daemon_started"}
    return first - began, then - began, steps


def _rclone_copies(src: Path, dst: Path) -> tuple[float, float]:
    began = time.time()
    proc = subprocess.Popen([RCLONE, "copy", "-v", str(src), str(dst)], env=rclone_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[float] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Copied" in line:
                seen.append(time.time() - began)
                if len(seen) == THEN:
                    return seen[0], seen[-1]
        raise RuntimeError(f"rclone exited ({proc.wait()}) after {len(seen)} copies, before {THEN}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def run(ctx: Context) -> list[Row]:
    s = ctx.scale
    watch = ctx.case_dir("startup/watch")
    pending = _pending_files(watch, s.journal_pending)
    nearline = ctx.case_dir("startup/nearline")
    root = ctx.case_dir("startup/daemon")
    config = write_config(root, watch, {"nearline": local_dest(nearline)})
    began = time.monotonic()
    build_journal(root / "state" / "journal.db", watch, s.journal_rows, pending)
    size = os.path.getsize(root / "state" / "journal.db")
    ctx.note(CASE, f"journal of {s.journal_rows:,} copy rows ({s.journal_pending:,} pending, files on disk; "
                   f"the rest verified history in {s.journal_rows // HISTORY_OFFLOAD_FILES} offloads), "
                   f"{size / 2**20:.0f} MiB, built in {time.monotonic() - began:.0f} s")
    ours, then, steps = _triplicate_copies(config)
    peer, peer_then = _rclone_copies(watch / PENDING, ctx.case_dir("startup/rclone") / PENDING)
    ctx.note(CASE, f"triplicate: launch → first verified copy {ours:.2f} s, → {THEN}th {then:.2f} s "
                   f"(log events after launch, s: {steps}); rclone copy -v of the {s.journal_pending:,} files: "
                   f"launch → first 'Copied' {peer:.2f} s, → {THEN}th {peer_then:.2f} s")
    return [Row(CASE, f"launch → first transfer, {s.journal_rows:,}-row journal", ours, "rclone copy (no journal)",
                peer, "s", "lower", goal="< 3 s", goal_met=ours < 3.0),
            Row(CASE, f"launch → {THEN}th transfer, same journal", then, "rclone copy (no journal)", peer_then,
                "s", "lower", note="shows a stall after the first copy, if any")]
