"""Readers of one file version share one read (shared_read.py via SourceReader)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
import xxhash
from triplicate import shared_read, source
from triplicate.destinations.base import SourceFile
from triplicate.errors import SourceChanged
from triplicate.shared_read import COUNTERS, ReadShares
from triplicate.source import SourceReader

MiB = 1024 * 1024


@pytest.fixture
def shares(monkeypatch: pytest.MonkeyPatch) -> ReadShares:
    shares = ReadShares(window_bytes=2 * MiB, lag_seconds=30.0)
    monkeypatch.setattr(source, "SHARES", shares)
    return shares


def _file(tmp_path: Path, size: int, name: str = "clip.mov") -> SourceFile:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    st = path.stat()
    return SourceFile(path, name, st.st_size, st.st_mtime_ns)


def _drain(reader: SourceReader) -> bytes:
    out = bytearray()
    while block := reader.read_block():
        out += block
    return bytes(out)


def _lockstep(a: SourceReader, b: SourceReader) -> tuple[bytes, bytes]:
    got_a, got_b = bytearray(), bytearray()
    while True:
        x, y = a.read_block(), b.read_block()
        got_a += x
        got_b += y
        if not x and not y:
            return bytes(got_a), bytes(got_b)


def _read_counted(fn):  # type: ignore[no-untyped-def]
    before = COUNTERS.read_bytes
    result = fn()
    return result, COUNTERS.read_bytes - before


def test_readers_in_step_read_the_file_once(tmp_path: Path, shares: ReadShares) -> None:
    src = _file(tmp_path, 5 * MiB + 123)
    expected = src.path.read_bytes()

    def both() -> tuple[bytes, bytes, str, str]:
        with SourceReader(src, block_size=MiB) as a, SourceReader(src, block_size=MiB // 2) as b:
            got_a, got_b = bytearray(), bytearray()
            while True:  # interleaved, as two destinations keeping pace
                x, y = a.read_block(), b.read_block() + b.read_block()
                got_a += x
                got_b += y
                if not x and not y:
                    break
            return bytes(got_a), bytes(got_b), a.finish(), b.finish()

    (got_a, got_b, ha, hb), read = _read_counted(both)
    assert got_a == expected and got_b == expected
    assert ha == hb == xxhash.xxh64_hexdigest(expected)
    assert read == len(expected)  # not twice
    assert shares.files == {}  # the share ends with its last reader


def test_front_waits_for_a_slower_reader(tmp_path: Path, shares: ReadShares) -> None:
    src = _file(tmp_path, 4 * MiB)
    with SourceReader(src, block_size=MiB) as front, SourceReader(src, block_size=MiB) as slow:
        front.read_block(), front.read_block()  # the window (2 MiB) is now full of blocks `slow` needs
        (shared, _), = shares.files.values()
        third = threading.Thread(target=front.read_block)
        third.start()
        assert shared.frontier == 2 * MiB
        slow.read_block()  # frees one block: the front may read on
        third.join(timeout=10)
        assert not third.is_alive()
        assert shared.frontier == 3 * MiB
        rest = _drain(slow)
        _drain(front)
        assert front.finish() == slow.finish()
        assert len(rest) == 3 * MiB


def test_a_reader_that_falls_behind_is_let_go_and_reads_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shares = ReadShares(window_bytes=MiB, lag_seconds=0.05)
    monkeypatch.setattr(source, "SHARES", shares)
    src = _file(tmp_path, 6 * MiB)
    expected = src.path.read_bytes()

    def run() -> tuple[bytes, bytes, str, str]:
        with SourceReader(src, block_size=MiB) as fast, SourceReader(src, block_size=MiB) as lagging:
            first = lagging.read_block()
            all_fast = _drain(fast)  # never waits more than lag_seconds per block, then drops `lagging`
            rest = first + _drain(lagging)
            return all_fast, rest, fast.finish(), lagging.finish()

    (got_fast, got_lagging, hf, hl), read = _read_counted(run)
    assert got_fast == expected and got_lagging == expected
    assert hf == hl == xxhash.xxh64_hexdigest(expected)
    assert len(expected) < read < 2 * len(expected)  # the let-go reader re-read only what it had not got


def test_a_rewritten_file_never_joins_its_predecessors_read(tmp_path: Path, shares: ReadShares) -> None:
    src = _file(tmp_path, 2 * MiB)
    with SourceReader(src, block_size=MiB) as old:
        old.read_block()
        replacement = tmp_path / "new.mov"
        replacement.write_bytes(os.urandom(2 * MiB))
        os.utime(replacement, ns=(src.mtime_ns, src.mtime_ns))
        os.replace(replacement, src.path)  # same name, size and mtime; another inode
        with SourceReader(src, block_size=MiB) as new:
            assert len(shares.files) == 2
            assert _drain(new) == src.path.read_bytes()
        with pytest.raises(SourceChanged):
            _drain(old)
            old.finish()


def test_a_reader_a_moment_late_still_joins(tmp_path: Path, shares: ReadShares) -> None:
    src = _file(tmp_path, 4 * MiB)
    expected = src.path.read_bytes()

    def run() -> tuple[bytes, bytes]:
        with SourceReader(src, block_size=MiB) as early:
            first = early.read_block() + early.read_block()  # the start (2 MiB) is still in the window
            with SourceReader(src, block_size=MiB) as late:
                assert late._shared is not None
                got_late = late.read_block() + late.read_block()  # catches up, then both go on in step
                rest_early, rest_late = _lockstep(early, late)
                return first + rest_early, got_late + rest_late

    (got_early, got_late), read = _read_counted(run)
    assert got_early == expected and got_late == expected
    assert read == len(expected)


def test_a_reader_too_late_reads_on_its_own(tmp_path: Path, shares: ReadShares) -> None:
    src = _file(tmp_path, 4 * MiB)
    expected = src.path.read_bytes()
    with SourceReader(src, block_size=MiB) as early:
        for _ in range(3):  # past the window: the start is gone
            early.read_block()
        with SourceReader(src, block_size=MiB) as late:
            assert late._shared is None
            before = COUNTERS.read_bytes
            assert _drain(late) == expected
            assert COUNTERS.read_bytes - before == len(expected)
        assert _drain(early) == expected[3 * MiB:]


def test_a_process_with_one_reading_destination_reads_without_shares(tmp_path: Path, shares: ReadShares) -> None:
    shares.readers_here = 1  # as the daemon sets it for one local destination, and a destination's own process
    src = _file(tmp_path, 3 * MiB + 7)
    expected = src.path.read_bytes()
    with SourceReader(src, block_size=MiB) as one, SourceReader(src, block_size=MiB) as two:
        assert one._shared is None and two._shared is None and not shares.files
        (got_one, got_two), read = _read_counted(lambda: _lockstep(one, two))
        assert got_one == got_two == expected
        assert read == 2 * len(expected), "each reads for itself"
        assert one.finish() == two.finish() == xxhash.xxh64_hexdigest(expected)


def test_a_reader_alone_never_reads_past_the_version_and_sees_growth_at_the_end(
    tmp_path: Path, shares: ReadShares
) -> None:
    shares.readers_here = 1
    src = _file(tmp_path, 10_000)
    with SourceReader(src, block_size=MiB) as reader:
        with open(src.path, "ab") as fh:
            fh.write(b"appended while read")
        assert _drain(reader) == src.path.read_bytes()[:10_000]
        with pytest.raises(SourceChanged):
            reader.finish()


def test_a_resumed_read_hashes_the_prefix_through_the_share(tmp_path: Path, shares: ReadShares) -> None:
    src = _file(tmp_path, 3 * MiB)
    expected = src.path.read_bytes()
    with SourceReader(src, block_size=MiB) as whole, SourceReader(src, block_size=MiB) as resumed:
        resumed.skip_to(MiB + 5)
        assert _drain(whole) == expected
        assert _drain(resumed) == expected[MiB + 5:]
        assert resumed.finish() == whole.finish() == xxhash.xxh64_hexdigest(expected)


def test_the_start_is_held_for_a_reader_the_scheduler_expects(tmp_path: Path, shares: ReadShares, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_read, "JOIN_SECONDS", 30.0)
    src = dataclasses.replace(_file(tmp_path, 4 * MiB), readers=2)
    expected = src.path.read_bytes()
    got: dict[str, bytes] = {}

    def front() -> None:
        with SourceReader(src, block_size=MiB) as early:
            got["early"] = _drain(early)

    def run() -> bytes:
        thread = threading.Thread(target=front)
        thread.start()
        deadline = time.monotonic() + 10
        while not shares.files or next(iter(shares.files.values()))[0].frontier < 2 * MiB:
            assert time.monotonic() < deadline, "the front never reached the end of the start"
            time.sleep(0.005)
        assert thread.is_alive()  # held at the start (2 MiB here) for the expected reader
        with SourceReader(src, block_size=MiB) as late:
            assert late._shared is not None
            late_bytes = _drain(late)
        thread.join(timeout=10)
        return late_bytes

    got_late, read = _read_counted(run)
    assert got_late == expected and got["early"] == expected
    assert read == len(expected)


def test_an_expected_reader_that_never_comes_holds_the_front_only_briefly(tmp_path: Path, shares: ReadShares, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_read, "JOIN_SECONDS", 0.05)
    src = dataclasses.replace(_file(tmp_path, 4 * MiB), readers=3)
    with SourceReader(src, block_size=MiB) as alone:
        assert _drain(alone) == src.path.read_bytes()
    assert shares.files == {}


def test_readers_woken_together_never_read_a_block_twice(tmp_path: Path, shares: ReadShares, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two readers hold at the start for a third; when it joins both wake, and
    the one that wakes after the other has read the next block must take it
    from the window, not read it again."""
    monkeypatch.setattr(shared_read, "JOIN_SECONDS", 30.0)
    src = dataclasses.replace(_file(tmp_path, 6 * MiB), readers=3)
    expected = src.path.read_bytes()
    for _ in range(20):
        got: list[bytes] = []

        def drain() -> None:
            with SourceReader(src, block_size=MiB) as reader:
                got.append(_drain(reader))

        def run() -> None:
            threads = [threading.Thread(target=drain) for _ in range(2)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while not shares.files or sorted(next(iter(shares.files.values()))[0].positions.values()) != [2 * MiB] * 2:
                assert time.monotonic() < deadline, "the two readers never reached the end of the start"
                time.sleep(0.001)
            drain()
            for t in threads:
                t.join(timeout=10)

        _, read = _read_counted(run)
        assert got == [expected] * 3
        assert read == len(expected)
