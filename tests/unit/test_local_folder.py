"""The local destination's folder work: stale temporary files, shared fsyncs."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from triplicate.destinations import local
from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.local import LocalConfig, LocalDestination
from triplicate.errors import TransientError


def _source(tmp_path: Path, name: str, data: bytes) -> SourceFile:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, f"A001/{name}", st.st_size, st.st_mtime_ns)


def test_stale_temporary_files_of_a_dead_run_go_ours_stay(tmp_path: Path) -> None:
    root = tmp_path / "nearline"
    folder = root / "A001"
    folder.mkdir(parents=True)
    stale = folder / f".other.mov{local.TMP_MARK}1-deadbeef-5.tmp"  # pid 1 again, another run
    in_progress = folder / f".busy.mov{local.TMP_MARK}{local._RUN}-7.tmp"
    stale.write_bytes(b"torn")
    in_progress.write_bytes(b"being written")
    dest = LocalDestination(LocalConfig(name="nearline", type="local", path=root))

    asyncio.run(dest.put(_source(tmp_path, "a.mov", b"a" * 1000), NoResume()))
    assert not stale.exists()
    assert in_progress.exists()

    later = folder / f".late.mov{local.TMP_MARK}2-cafe-1.tmp"
    later.write_bytes(b"x")
    asyncio.run(dest.put(_source(tmp_path, "b.mov", b"b" * 1000), NoResume()))
    assert later.exists(), "a folder is listed once per process, not before every file"
    assert (folder / "b.mov").read_bytes() == b"b" * 1000


def test_a_history_file_torn_by_a_dead_run_goes_when_the_folder_is_next_written(tmp_path: Path) -> None:
    """A process killed while writing an ASC MHL file leaves its temporary
    file in ascmhl/, where no copy ever lands: writing the folder's next
    file removes it; one of this process's own stays."""
    root = tmp_path / "nearline"
    history = root / "A001" / "ascmhl"
    history.mkdir(parents=True)
    torn = history / f".0001_A001_2026-11-27_120000Z.mhl{local.TMP_MARK}1-deadbeef-5.tmp"
    mine = history / f".ascmhl_chain.xml{local.TMP_MARK}{local._RUN}-7.tmp"
    torn.write_bytes(b"<hashlist")
    mine.write_bytes(b"being written")
    dest = LocalDestination(LocalConfig(name="nearline", type="local", path=root))

    asyncio.run(dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", b"<ascmhldirectory/>"))
    assert not torn.exists() and mine.exists()
    assert (history / "ascmhl_chain.xml").read_bytes() == b"<ascmhldirectory/>"
    assert sorted(p.name for p in history.iterdir()) == sorted(["ascmhl_chain.xml", mine.name])


def test_a_history_folder_removed_between_writes_is_made_again(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "nearline"
    dest = LocalDestination(LocalConfig(name="nearline", type="local", path=root))
    asyncio.run(dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", b"one"))
    shutil.rmtree(root / "A001")
    failures = 0
    for _ in range(2):  # the scheduler's retry: a transient failure at most, then the folder is made again
        try:
            asyncio.run(dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", b"two"))
            break
        except TransientError:
            failures += 1
    assert failures <= 1 and (root / "A001/ascmhl/ascmhl_chain.xml").read_bytes() == b"two"


def test_renames_landing_together_share_folder_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = local._FolderSync()
    calls: list[int] = []
    first_may_finish = threading.Event()

    def fake_fsync(path: Path) -> None:
        calls.append(sync.requested)
        if len(calls) == 1:
            first_may_finish.wait(10)

    monkeypatch.setattr(local, "_fsync_dir", fake_fsync)
    threads = [threading.Thread(target=sync.sync, args=(tmp_path,)) for _ in range(16)]
    threads[0].start()
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    for t in threads[1:]:
        t.start()
    while sync.requested < 16 and time.monotonic() < deadline:
        time.sleep(0.005)
    first_may_finish.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    # the first fsync began before the other 15 renames: one more covers them all
    assert calls == [1, 16]
    assert sync.done == 16


def test_a_failed_folder_fsync_is_not_counted_as_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = local._FolderSync()

    def broken(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(local, "_fsync_dir", broken)
    with pytest.raises(OSError):
        sync.sync(tmp_path)
    assert sync.done == 0 and not sync.running
    monkeypatch.setattr(local, "_fsync_dir", lambda path: None)
    sync.sync(tmp_path)
    assert sync.done == 2


def test_put_still_lands_whole_with_fsync(tmp_path: Path) -> None:
    root = tmp_path / "nearline"
    root.mkdir()
    dest = LocalDestination(LocalConfig(name="nearline", type="local", path=root))
    data = os.urandom(300_000)
    receipt = asyncio.run(dest.put(_source(tmp_path, "c.mov", data), NoResume()))
    assert (root / "A001/c.mov").read_bytes() == data and receipt.size == len(data)
    assert not [p for p in (root / "A001").iterdir() if local.TMP_MARK in p.name]


def test_a_folder_removed_between_copies_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from triplicate.errors import TransientError

    root = tmp_path / "nearline"
    root.mkdir()
    dest = LocalDestination(LocalConfig(name="nearline", type="local", path=root))
    made = []
    real_mkdir = Path.mkdir
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (made.append(self), real_mkdir(self, *a, **k))[1])
    asyncio.run(dest.put(_source(tmp_path, "a.mov", b"a" * 1000), NoResume()))
    asyncio.run(dest.put(_source(tmp_path, "b.mov", b"b" * 1000), NoResume()))
    assert [p for p in made if root in p.parents] == [root / "A001"], "made once per process, not before every file"

    shutil.rmtree(root / "A001")  # someone tidied the volume
    with pytest.raises(TransientError):
        asyncio.run(dest.put(_source(tmp_path, "c.mov", b"c" * 1000), NoResume()))
    asyncio.run(dest.put(_source(tmp_path, "c.mov", b"c" * 1000), NoResume()))  # the retry
    assert (root / "A001/c.mov").read_bytes() == b"c" * 1000
    assert not [p for p in (root / "A001").iterdir() if local.TMP_MARK in p.name]
