"""The daemon's milestone looks on a real journal: a look that can change
nothing is cut short, and never one that could mark or report."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from triplicate import milestones, status
from triplicate.config import Config, load_config
from triplicate.journal import Journal, SeenFile

FILES = ("A001/a.mov", "A001/b.mov")


def config_text(tmp_path: Path, tape_media: str = "lto") -> str:
    (tmp_path / "watch").mkdir(exist_ok=True)
    text = f'[daemon]\njournal = "{tmp_path / "journal.db"}"\n'
    text += f'[[watch]]\npath = "{tmp_path / "watch"}"\ndestinations = ["near", "tape", "far"]\n'
    for name, extra in (("near", 'media = "raid"'), ("tape", f'media = "{tape_media}"'),
                        ("far", 'media = "cloud"\noffsite = true')):
        text += f'[[destination]]\nname = "{name}"\ntype = "local"\npath = "{tmp_path / name}"\n{extra}\n'
    return text


def load(tmp_path: Path, **kw: str) -> Config:
    path = tmp_path / "triplicate.toml"
    path.write_text(config_text(tmp_path, **kw))
    return load_config(path)


class Looks:
    """OffloadMilestones with what it calls recorded."""

    def __init__(self, config: Config, journal: Journal) -> None:
        self.events: list[str] = []
        self.reports: list[bool] = []
        self.write_ok = True
        self.m = milestones.OffloadMilestones(config, journal, lambda w, o: False, self._emit, self._write, self._no_wait)

    def _emit(self, name: str, fields: dict[str, object]) -> None:
        self.events.append(name)

    async def _write(self, offload_id: int, safe: bool) -> bool:
        self.reports.append(safe)
        return self.write_ok

    async def _no_wait(self) -> None:
        return None

    def look(self, offload_id: int) -> None:
        asyncio.run(self.m.look(offload_id))


def verify(journal: Journal, destination: str) -> None:
    for copy_id in journal.due_ids(destination, 1e12, limit=10):
        job = journal.claim_id(copy_id)
        assert job is not None and journal.record_verified(job, f"{job.file_id:016x}", job.size)


def generation(journal: Journal, offload_id: int, destination: str, number: int = 1) -> None:
    rows = journal.offload_state(offload_id, destination)
    sig = milestones.signature((relpath, xxh64) for _, relpath, _, _, xxh64, *_ in rows)
    journal.record_generation(offload_id, destination, number, f"{number:04d}.mhl", sig)


def complete_everywhere(journal: Journal, offload_id: int) -> None:
    """Every copy verified and a generation listing them at each destination."""
    for dest in ("near", "tape", "far"):
        verify(journal, dest)
        generation(journal, offload_id, dest)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Journal, Looks, list[int], int]:
    config = load(tmp_path)
    journal = Journal(tmp_path / "journal.db")
    journal.ingest([SeenFile(str(tmp_path / "watch"), rel, 10, 1) for rel in FILES], ["near", "tape", "far"])
    [offload_id] = journal.offload_ids()
    full_looks: list[int] = []
    real = status.offload_status

    def counted(*args: object) -> object:
        full_looks.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(status, "offload_status", counted)
    yield journal, Looks(config, journal), full_looks, offload_id
    journal.close()


def test_a_look_stops_at_the_counts_while_3_2_1_cannot_be_met(setup: tuple[Journal, Looks, list[int], int]) -> None:
    journal, looks, full_looks, offload_id = setup
    verify(journal, "near")
    verify(journal, "tape")  # source + 2 copies, none off-site
    looks.look(offload_id)
    assert full_looks == [] and looks.events == [] and looks.reports == []
    verify(journal, "far")
    for dest in ("near", "tape", "far"):
        generation(journal, offload_id, dest)
    looks.look(offload_id)
    assert len(full_looks) == 1 and looks.events == ["offload_safe"] and looks.reports == [True]


def test_a_look_that_left_nothing_to_do_is_not_taken_again_until_something_changed(
    setup: tuple[Journal, Looks, list[int], int], tmp_path: Path,
) -> None:
    journal, looks, full_looks, offload_id = setup
    complete_everywhere(journal, offload_id)
    looks.look(offload_id)
    looks.look(offload_id)
    assert len(full_looks) == 1 and looks.events == ["offload_safe"] and looks.reports == [True]

    generation(journal, offload_id, "near", 2)  # a new generation changes the report
    looks.look(offload_id)
    assert len(full_looks) == 2 and looks.reports == [True, True]

    looks.m.config = load(tmp_path, tape_media="nas")  # a reload: media count again
    looks.look(offload_id)
    looks.look(offload_id)
    assert len(full_looks) == 3 and looks.reports == [True, True], "same verdict, same report"

    journal.ingest([SeenFile(str(tmp_path / "watch"), "A001/c.mov", 10, 1)], ["near", "tape", "far"])
    for dest in ("near", "tape", "far"):
        verify(journal, dest)
    looks.write_ok = False  # a report that cannot be written is tried at the next look
    looks.look(offload_id)
    looks.look(offload_id)
    assert len(full_looks) == 5 and looks.reports == [True, True, False, False]
    assert looks.events == ["offload_safe"], "not safe again before the new file's ASC MHL generation"


def test_every_write_a_look_reads_moves_the_offload_stamp(setup: tuple[Journal, Looks, list[int], int]) -> None:
    journal, _, _, offload_id = setup
    seen = [journal.changes(offload_id)]

    def moved() -> bool:
        seen.append(journal.changes(offload_id))
        return seen[-1] != seen[-2]

    verify(journal, "near")
    assert moved(), "copies verified"
    job = journal.claim_id(journal.due_ids("tape", 1e12)[0])
    assert job is not None
    assert not moved(), "a claim changes nothing a look reads"
    journal.record_failed(job.copy_id, "permission denied")
    assert not moved(), "nor does a failure: the copy was not verified before either"
    generation(journal, offload_id, "near")
    assert moved(), "an ASC MHL generation"
    [(copy_id, *_)] = journal.verified_copies("near", "A001")[:1]
    journal.requeue(copy_id, "read back differs")
    assert moved(), "a verified copy found bad"
    journal.db.execute("INSERT INTO offload_readiness (offload_id, rule, state, updated_at) VALUES (?, 'mhl', 'checking', 0)",
                       (offload_id,))
    assert moved(), "readiness"
    journal.ingest([SeenFile("/elsewhere", "A001/a.mov", 10, 1)], ["near"])
    assert not moved(), "another watch folder's offload of the same name"


def test_a_look_reads_in_a_worker_thread_from_one_snapshot(
    setup: tuple[Journal, Looks, list[int], int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The look reads every file (seconds for 100,000 frames): off the event
    loop, and from one snapshot, so a file landing meanwhile is in none of
    what it read rather than in some of it."""
    journal, looks, _, offload_id = setup
    complete_everywhere(journal, offload_id)
    readers: list[str] = []
    counted = status.offload_status

    def landing_meanwhile(*args: object) -> object:
        readers.append(threading.current_thread().name)
        found = counted(*args)  # type: ignore[arg-type]
        journal.ingest([SeenFile(str(tmp_path / "watch"), "A001/late.mov", 10, 1)], ["near", "tape", "far"])
        return found

    monkeypatch.setattr(status, "offload_status", landing_meanwhile)
    looks.look(offload_id)
    assert readers and readers[0] != threading.main_thread().name
    assert looks.events == ["offload_safe"]
    marked = milestones.reached_at(journal, offload_id, milestones.SAFE)
    assert marked is not None and marked[0] == milestones.signature((rel, f"{i:016x}") for i, rel in enumerate(FILES, 1))
    assert milestones.offload_signature(journal, offload_id) != marked[0], "the late file is not safe yet"


@pytest.mark.parametrize("paths", [
    ["A001/b.mov", "A001/a.mov", "A001/B.mov"],
    ["A001/ä.mov", "A001/z.mov", "A001/é/1.dpx", "A001/😀.wav", "A001/\uffff.mov", "A001/日本.mxf"],
    ["A001/a-b/1", "A001/a/b/1", "A001/a b/1", "A001/a.b/1", "A001/a0/1"],
])
def test_the_journal_orders_an_offload_as_signature_sorts_it(tmp_path: Path, paths: list[str]) -> None:
    journal = Journal(tmp_path / "journal.db")
    journal.ingest([SeenFile(str(tmp_path), p, 1, 1) for p in paths], ["near"])
    [offload_id] = journal.offload_ids()
    pairs = [(p, None) for p in paths]
    assert milestones.offload_signature(journal, offload_id) == milestones.signature(pairs)
    journal.close()


def test_a_paused_offload_with_nothing_to_look_at_is_not_waited_for(
    setup: tuple[Journal, Looks, list[int], int],
) -> None:
    """The end of a one-shot run asks for every offload again; one looked at a
    moment ago is paused (LOOK_PACE) but has nothing new: idle at once."""
    journal, looks, full_looks, offload_id = setup
    complete_everywhere(journal, offload_id)

    async def twice() -> None:
        runner = asyncio.create_task(looks.m.run())
        looks.m.request(offload_id)
        await asyncio.wait_for(looks.m.idle(), 10)
        looks.m._not_before[offload_id] = time.monotonic() + 600  # as after a look of 100,000 files
        looks.m.request(offload_id)
        await asyncio.wait_for(looks.m.idle(), 10)
        runner.cancel()

    asyncio.run(twice())
    assert len(full_looks) == 1 and looks.events == ["offload_safe"]


def test_a_generation_landing_after_a_look_brings_the_next_one_without_the_pause(
    setup: tuple[Journal, Looks, list[int], int],
) -> None:
    """The last destination's ASC MHL generation often lands while the look
    asked for by its copies reads: that look finds the offload not yet safe,
    and the next must not wait LOOK_PACE times a 100,000-file look."""
    journal, looks, full_looks, offload_id = setup
    for dest in ("near", "tape", "far"):
        verify(journal, dest)
    for dest in ("near", "tape"):
        generation(journal, offload_id, dest)

    async def landing() -> None:
        runner = asyncio.create_task(looks.m.run())
        looks.m.request(offload_id)
        await asyncio.wait_for(looks.m.idle(), 10)
        assert looks.events == [] and looks.reports == [False]
        looks.m._not_before[offload_id] = time.monotonic() + 600
        generation(journal, offload_id, "far")
        looks.m.request(offload_id)  # as by a copy: paused
        deadline = time.monotonic() + 5
        while looks.m._wake.is_set() and time.monotonic() < deadline:  # until the runner waits out the pause
            await asyncio.sleep(0)
        assert offload_id in looks.m._wanted and not looks.m._wake.is_set()
        looks.m.request_now(offload_id)  # what the generation writer calls once it recorded one
        await asyncio.wait_for(looks.m.idle(), 10)
        runner.cancel()

    asyncio.run(landing())
    assert looks.events == ["offload_safe"] and looks.reports == [False, True]


def test_a_look_a_report_and_a_status_read_the_files_once(
    setup: tuple[Journal, Looks, list[int], int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read of an offload's signature walks every current file: the
    histories' check, the safety mark and the report's signature share one."""
    from triplicate import report

    journal, looks, _, offload_id = setup
    complete_everywhere(journal, offload_id)
    reads: list[int] = []
    real = milestones.offload_signature

    def counted(*args: object) -> str:
        reads.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(milestones, "offload_signature", counted)
    looks.look(offload_id)
    assert looks.events == ["offload_safe"] and looks.reports == [True]
    assert len(reads) == 1, "the look"
    reads.clear()
    assert report.build_report(looks.m.config, journal, offload_id).safe_to_format
    assert len(reads) == 1, "the report"
    reads.clear()
    [o] = status.collect(looks.m.config, journal).offloads
    assert o.safe_to_format and o.mhl_behind == []
    assert len(reads) == 1, "the status"
