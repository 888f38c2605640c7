"""The look that follows every verified copy (is the offload complete at
that destination?) and the sweep over offloads: their cost must not grow
with the rest of the journal."""

import asyncio
from pathlib import Path

from triplicate.journal import Journal, SeenFile
from triplicate.manifests import ManifestWriter

from tests.sqlite_steps import counting_steps

H = "0123456789abcdef"
FILES = 1500


def _seen(card: str, i: int) -> SeenFile:
    return SeenFile("/watch", f"{card}/C/{i:05d}.dpx", 10, 1, xxh64=H, ctime_ns=1)


def _verify_next(journal: Journal, destination: str) -> None:
    copy_id = journal.due_ids(destination, now=1e12, limit=1)[0]
    job = journal.claim_id(copy_id)
    assert job is not None and journal.record_verified(job, H, job.size)


def _steps(journal: Journal, look: ManifestWriter, offload_id: int) -> tuple[bool, int]:
    """The look's verdict, and how many SQLite VM steps (in hundreds) it took."""
    with counting_steps(journal.db, 100) as steps:
        incomplete = look._incomplete(offload_id, "nearline")
    return incomplete, steps.count


def test_the_look_costs_the_same_whatever_else_the_journal_holds(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "journal.db")
    try:
        journal.ingest([_seen("A001", i) for i in range(FILES)], ["nearline"])  # an offload done long ago
        while journal.due_ids("nearline", now=1e12, limit=1):
            _verify_next(journal, "nearline")
        journal.ingest([_seen("B002", i) for i in range(2)], ["nearline"])
        ids = {journal.offload(o)[1]: o for o in journal.offload_ids()}
        look = ManifestWriter(journal, {})
        _verify_next(journal, "nearline")
        incomplete = _steps(journal, look, ids["B002"])
        _verify_next(journal, "nearline")
        complete = _steps(journal, look, ids["B002"])
        assert incomplete[0] is True and complete[0] is False
        assert complete[1] <= incomplete[1] + 1, f"the look read the other offload's copies: {complete[1]} steps"
        journal.ingest([_seen("B002", 2)], ["nearline"])  # one more file lands in the offload
        assert _steps(journal, look, ids["B002"])[0] is True
    finally:
        journal.close()


def test_a_sweep_looks_only_where_something_changed_since_the_last_look(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "journal.db")
    try:
        journal.ingest([_seen(card, i) for card in ("A001", "B002") for i in range(3)], ["nearline"])
        while journal.due_ids("nearline", now=1e12, limit=1):
            _verify_next(journal, "nearline")
        journal.ingest([_seen("C003", 0)], ["nearline"])
        ids = {journal.offload(o)[1]: o for o in journal.offload_ids()}
        # A001's generation was written and nothing changed there since
        journal.generation_seen(ids["A001"], "nearline", journal.generation_stamp(ids["A001"], "nearline"))
        look = ManifestWriter(journal, {"nearline": object()})  # type: ignore[dict-item]
        written: list[tuple[int, str]] = []

        async def write(offload_id: int, destination: str) -> bool:
            written.append((offload_id, destination))
            return True

        look._write = write  # type: ignore[method-assign]
        asyncio.run(look.sweep())
        assert written == [(ids["B002"], "nearline")], "A001 unchanged since its look, C003 not complete"
    finally:
        journal.close()
