"""What a generation is made of, read from the journal in path order: the
records, their signature, and when no generation is due."""

from __future__ import annotations

from pathlib import Path

from triplicate import milestones
from triplicate.journal import Journal, SeenFile
from triplicate.manifests import _generation_files

FILES = ["A001/b.mov", "A001/a.mov", "A001/clips/é.mov", "A001/clips/e.mov"]


def journal_with(tmp_path: Path, paths: list[str], verified: int) -> tuple[Journal, int]:
    journal = Journal(tmp_path / "journal.db")
    journal.ingest([SeenFile(str(tmp_path), p, 10 + i, 1_700_000_000_000_000_000 + i) for i, p in enumerate(paths)],
                   ["near"])
    for copy_id in journal.due_ids("near", 1e12, limit=verified):
        job = journal.claim_id(copy_id)
        assert job is not None and journal.record_verified(job, f"{job.file_id:016x}", job.size)
    [offload_id] = journal.offload_ids()
    return journal, offload_id


def test_records_come_in_path_order_with_the_signature_of_the_files(tmp_path: Path) -> None:
    journal, offload_id = journal_with(tmp_path, FILES, verified=len(FILES))
    found = _generation_files(journal, offload_id, "near", "A001", None)
    assert found is not None
    files, signature = found
    assert [f.path for f in files] == ["a.mov", "b.mov", "clips/e.mov", "clips/é.mov"]
    assert {(f.path, f.size, f.xxh64) for f in files} == {
        (p.removeprefix("A001/"), 10 + i, f"{i + 1:016x}") for i, p in enumerate(FILES)}
    assert signature == milestones.offload_signature(journal, offload_id)
    assert _generation_files(journal, offload_id, "near", "A001", signature) is None, "the last one lists them"
    journal.close()


def test_no_generation_while_a_file_is_not_verified_or_every_file_is_loose(tmp_path: Path) -> None:
    journal, offload_id = journal_with(tmp_path, FILES, verified=len(FILES) - 1)
    assert _generation_files(journal, offload_id, "near", "A001", None) is None
    journal.close()
    loose = tmp_path / "loose"
    loose.mkdir()
    journal, offload_id = journal_with(loose, ["clip.mov"], verified=1)
    assert _generation_files(journal, offload_id, "near", "clip.mov", None) is None
    journal.close()


def verify_rest(journal: Journal) -> None:
    for copy_id in journal.due_ids("near", 1e12, limit=100):
        job = journal.claim_id(copy_id)
        assert job is not None and journal.record_verified(job, f"{job.file_id:016x}", job.size)


def test_an_offload_is_due_once_complete_until_a_look_has_seen_it(tmp_path: Path) -> None:
    journal, offload_id = journal_with(tmp_path, FILES, verified=len(FILES) - 1)
    assert journal.generations_due() == [], "not every file is verified yet"
    verify_rest(journal)
    due = [(offload_id, "near", str(tmp_path), "A001")]
    assert journal.generations_due() == due
    stamp = journal.generation_stamp(offload_id, "near")
    journal.generation_seen(offload_id, "near", stamp)
    assert journal.generations_due() == []
    journal.close()


def test_a_copy_verified_while_a_look_reads_keeps_the_offload_due(tmp_path: Path) -> None:
    """The look's stamp is taken before it reads: what lands after it is for
    the next look, even when the look clears the mark it saw."""
    journal, offload_id = journal_with(tmp_path, FILES, verified=len(FILES))
    stamp = journal.generation_stamp(offload_id, "near")
    journal.ingest([SeenFile(str(tmp_path), "A001/late.mov", 5, 1)], ["near"])
    verify_rest(journal)
    journal.generation_seen(offload_id, "near", stamp)
    assert [d[:2] for d in journal.generations_due()] == [(offload_id, "near")]
    journal.close()


def test_a_file_gone_from_a_complete_offload_makes_it_due_again(tmp_path: Path) -> None:
    journal, offload_id = journal_with(tmp_path, FILES, verified=len(FILES))
    journal.generation_seen(offload_id, "near", journal.generation_stamp(offload_id, "near"))
    [file_id] = [r[0] for r in journal.db.execute("SELECT id FROM files WHERE relpath = 'A001/b.mov'")]
    journal.supersede(file_id)
    assert [d[:2] for d in journal.generations_due()] == [(offload_id, "near")]
    journal.close()
