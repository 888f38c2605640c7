"""Journal safety: the SQLite journal survives SIGKILL in the middle of heavy
writes (nothing committed is lost, the file stays intact); a damaged, empty or
unreadable journal at start is refused with one sentence naming the file, and
the daemon never quietly starts over with an empty one."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness import make_setup, write_file
from tests.reliability.figures import FIGURES
from tests.reliability.procs import DaemonProcess, all_verified, integrity, wait_until

SEED = int(os.environ.get("TRIPLICATE_RELIABILITY_SEED", "3210"))
OLD = 1_700_000_000.0


def verified_count(journal: Path) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM copies WHERE state = 'verified'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_sigkill_during_heavy_journal_writes(tmp_path: Path) -> None:
    """600 small files x 2 destinations: a commit every few milliseconds."""
    rng = random.Random(SEED)
    setup = make_setup(tmp_path, settle=0.2)
    files = {f"J{i // 100:03d}/clip{i:04d}.bin": rng.randbytes(rng.randint(1, 4096)) for i in range(600)}
    for rel, data in files.items():
        write_file(setup.watch / rel, data, mtime=OLD)
    journal = setup.root / "state/journal.db"
    moments = [round(rng.uniform(0.2, 1.5), 2) for _ in range(5)]
    counts: list[int] = []
    for moment in moments:
        daemon = DaemonProcess(setup)
        daemon.wait_event("daemon_started")
        time.sleep(moment)  # the kill moment, drawn above
        daemon.kill()
        assert integrity(journal) == "ok", f"journal damaged by the kill at {moment} s"
        counts.append(verified_count(journal))
    daemon = DaemonProcess(setup)
    wait_until(lambda: all_verified(journal, len(files), 2), 120, "every copy verified", daemon)
    daemon.stop()
    lost = sum((root / rel).read_bytes() != data for root in setup.destinations.values() for rel, data in files.items()
               if (root / rel).exists()) + sum(not (root / rel).exists() for root in setup.destinations.values()
                                               for rel in files)
    FIGURES.scenario("journal-kill", f"5 SIGKILLs at {moments} s during {len(files) * 2} copy commits: journal "
                     f"intact each time, verified rows after each kill {counts}, {lost} lost",
                     kills=len(moments), lost=lost)

    assert counts == sorted(counts), "a committed verified row disappeared"
    assert counts[-1] > 0 and counts[0] < len(files) * 2, "the kills landed during the work"
    assert lost == 0


def _damaged(setup_root: Path, how: str) -> Path:
    journal = setup_root / "state/journal.db"
    if how == "garbage":
        journal.write_bytes(b"this is not a database, someone wrote over it\n" * 200)
    elif how == "empty":
        journal.write_bytes(b"")
    elif how == "pages":  # a valid header, the rest damaged (a bad sector, a torn copy)
        data = bytearray(journal.read_bytes())
        for offset in range(4096, len(data), 4096):
            data[offset + 8: offset + 600] = random.Random(offset).randbytes(592)
        journal.write_bytes(bytes(data))
    elif how == "unreadable":
        journal.chmod(0)
    return journal


@pytest.mark.parametrize("how", ["garbage", "empty", "pages", "unreadable"])
def test_a_bad_journal_is_refused_by_name(how: str, tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    for i in range(40):
        write_file(setup.watch / f"K001/clip{i:02d}.bin", os.urandom(3000), mtime=OLD)
    first = setup.run_once()
    assert first.returncode == 0, first.stderr[-2000:]
    for name in ("journal.db-wal", "journal.db-shm"):
        (setup.root / "state" / name).unlink(missing_ok=True)  # closed cleanly: all in the main file
    journal = _damaged(setup.root, how)
    before = journal.read_bytes() if how != "unreadable" else b""

    run = setup.run_once(bound_by_permissions=True)
    status = setup.cli("status", bound_by_permissions=True)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    FIGURES.scenario(f"journal-{how}", f"run exit {run.returncode}, status exit {status.returncode}: {lines[:1]}",
                     faults=1)

    assert run.returncode == 2 and status.returncode == 2
    assert len(lines) == 1 and str(journal) in lines[0], run.stderr
    assert "Traceback" not in run.stderr + status.stderr
    if how == "unreadable":
        assert "cannot be read and written by this user" in lines[0]
    else:
        assert "damaged" in lines[0] or "not a database" in lines[0]
        assert journal.read_bytes() == before, "the damaged journal was changed"
    journal.chmod(0o644)
