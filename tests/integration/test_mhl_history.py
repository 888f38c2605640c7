"""history.write_generation over a folder destination, checked with the ASC MHL
reference implementation (`ascmhl`, `ascmhl-debug` from the same venv)."""

from __future__ import annotations

import shutil
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mhl_tools as t  # tests/ is on pythonpath (pyproject)
import pytest
from lxml import etree
from triplicate import mhl
from triplicate.hashing import hash_file
from triplicate.history import HistoryConflict, HistoryError, write_generation

NOW = datetime(2026, 11, 26, 9, 41, 26, tzinfo=UTC)
INFO = mhl.ProcessInfo(hostname="test-host")
NS = {"m": mhl.MHL_NS}


@pytest.fixture
def dest(tmp_path: Path) -> t.FolderDestination:
    return t.FolderDestination(tmp_path / "dest")


def offload_at(dest: t.FolderDestination, offload: str = "A001") -> Path:
    folder = dest.root / offload
    t.write_sample(folder)
    return folder


def history_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / mhl.FOLDER).iterdir())


def read_manifest(folder: Path, name: str) -> mhl.Manifest:
    return mhl.parse_manifest((folder / mhl.FOLDER / name).read_bytes())


def actions(manifest: mhl.Manifest) -> dict[str, str]:
    return {path: f.hash("xxh64").action for path, f in manifest.files.items()}


def upstream_offload(tmp_path: Path, *create_args: str) -> Path:
    """A card offload with its own history, as an offload tool leaves it."""
    source = tmp_path / "card" / "A001"
    t.write_sample(source)
    t.assert_ok(t.run_tool("ascmhl", "create", source, *create_args))
    return source


# ------------------------------------------------------------ own history


async def test_fresh_history(dest: t.FolderDestination) -> None:
    folder = offload_at(dest)
    result = await write_generation(dest, "A001", t.scan(folder), INFO, None, now=NOW)

    assert (result.number, result.filename) == (1, "0001_A001_2026-11-26_094126Z.mhl")
    assert result.key == f"A001/ascmhl/{result.filename}"
    assert dest.writes == [result.key, "A001/ascmhl/ascmhl_chain.xml"]  # generation before chain
    assert history_files(folder) == [result.filename, mhl.CHAIN_FILE]
    data = (folder / "ascmhl" / result.filename).read_bytes()
    assert result.c4 == mhl.c4id(data)
    assert mhl.parse_chain((folder / "ascmhl" / mhl.CHAIN_FILE).read_bytes()) == [
        mhl.ChainEntry(1, result.filename, result.c4)
    ]
    manifest = mhl.parse_manifest(data)
    assert set(manifest.files) == set(t.SAMPLE)
    assert set(actions(manifest).values()) == {"original"}
    assert manifest.files["empty.bin"].size == 0
    assert (result.failed, result.copied_upstream) == ((), ())
    t.assert_tools_accept(folder)


async def test_second_generation_is_verified(dest: t.FolderDestination) -> None:
    folder = offload_at(dest)
    first = await write_generation(dest, "A001", t.scan(folder), INFO, None, now=NOW)
    second = await write_generation(
        dest, "A001", t.scan(folder), INFO, None, now=NOW + timedelta(hours=1)
    )

    assert second.number == 2 and second.filename == "0002_A001_2026-11-26_104126Z.mhl"
    assert set(actions(read_manifest(folder, second.filename)).values()) == {"verified"}
    chain = mhl.parse_chain((folder / "ascmhl" / mhl.CHAIN_FILE).read_bytes())
    assert [(e.sequence, e.path, e.c4) for e in chain] == [
        (1, first.filename, first.c4),
        (2, second.filename, second.c4),
    ]
    t.assert_tools_accept(folder)
    info = t.run_tool("ascmhl", "info", folder)
    assert "Generation 2" in info.stdout + info.stderr


async def test_nested_offload_key_and_odd_names(dest: t.FolderDestination) -> None:
    folder = offload_at(dest, "DAY 01 – émoji 🎬/A001")
    result = await write_generation(
        dest, "DAY 01 – émoji 🎬/A001", t.scan(folder), INFO, None, now=NOW
    )
    assert result.filename.startswith("0001_A001_")
    t.assert_tools_accept(folder)


@pytest.mark.parametrize(
    "damage, exit_code",
    [("tamper", 11), ("delete", 10), ("add", 21)],
)
async def test_damage_after_writing_fails_verify(
    dest: t.FolderDestination, damage: str, exit_code: int
) -> None:
    folder = offload_at(dest)
    await write_generation(dest, "A001", t.scan(folder), INFO, None, now=NOW)
    t.assert_ok(t.verify(folder))
    victim = folder / "émoji 🎬" / "take ✓ 1.wav"
    if damage == "tamper":
        data = bytearray(victim.read_bytes())
        data[100] ^= 1
        victim.write_bytes(bytes(data))
    elif damage == "delete":
        victim.unlink()
    else:
        (folder / "nested" / "stray.mov").write_bytes(b"not in the history")
    assert t.verify(folder).returncode == exit_code


async def test_changed_file_is_recorded_as_failed(dest: t.FolderDestination) -> None:
    folder = offload_at(dest)
    await write_generation(dest, "A001", t.scan(folder), INFO, None, now=NOW)
    (folder / "zz last.txt").write_bytes(b"changed")
    result = await write_generation(
        dest, "A001", t.scan(folder), INFO, None, now=NOW + timedelta(minutes=1)
    )

    assert result.failed == ("zz last.txt",)
    got = actions(read_manifest(folder, result.filename))
    assert got.pop("zz last.txt") == "failed"
    assert set(got.values()) == {"verified"}
    assert t.verify(folder).returncode == 11  # the first recorded hash stays the reference


async def test_report_file_beside_the_media_is_ignored(dest: t.FolderDestination) -> None:
    folder = offload_at(dest)
    await write_generation(dest, "A001", t.scan(folder), INFO, None, now=NOW)
    (folder / "triplicate-report.pdf").write_bytes(b"%PDF")
    assert t.verify(folder).returncode == 21  # without the pattern the report is a "new file"

    files = [f for f in t.scan(folder) if f.path != "triplicate-report.pdf"]
    info = mhl.ProcessInfo(hostname="test-host", ignore=("triplicate-report.pdf",))
    await write_generation(dest, "A001", files, info, None, now=NOW + timedelta(minutes=1))
    t.assert_tools_accept(folder)


async def test_retry_after_a_crash_between_the_writes(dest: t.FolderDestination) -> None:
    folder = offload_at(dest)
    dest.fail_on = mhl.CHAIN_FILE
    with pytest.raises(ConnectionError):
        await write_generation(dest, "A001", t.scan(folder, NOW), INFO, None, now=NOW)
    orphan = history_files(folder)
    assert len(orphan) == 1 and orphan[0].endswith(".mhl")

    dest.fail_on = None
    result = await write_generation(dest, "A001", t.scan(folder, NOW), INFO, None, now=NOW)
    assert history_files(folder) == [orphan[0], mhl.CHAIN_FILE]  # the same file, rewritten
    assert result.filename == orphan[0]
    t.assert_tools_accept(folder)


async def test_modified_manifest_stops_the_history(dest: t.FolderDestination) -> None:
    folder = offload_at(dest)
    result = await write_generation(dest, "A001", t.scan(folder), INFO, None, now=NOW)
    path = folder / "ascmhl" / result.filename
    path.write_bytes(path.read_bytes().replace(b"test-host", b"evil-host"))
    assert t.verify(folder).returncode == 31  # ascmhl agrees: manifest modified
    with pytest.raises(HistoryError, match="modified"):
        await write_generation(
            dest, "A001", t.scan(folder), INFO, None, now=NOW + timedelta(minutes=1)
        )

    path.unlink()
    with pytest.raises(HistoryError, match="missing"):
        await write_generation(
            dest, "A001", t.scan(folder), INFO, None, now=NOW + timedelta(minutes=1)
        )


# ------------------------------------------------------------ upstream history


@pytest.mark.parametrize("hash_format", ["md5", "xxh64", "xxh128", "sha1", "xxh3", "c4"])
@pytest.mark.parametrize("copied_with_media", [False, True], ids=["media-only", "with-ascmhl"])
async def test_continues_upstream_history(
    tmp_path: Path, dest: t.FolderDestination, hash_format: str, copied_with_media: bool
) -> None:
    source = upstream_offload(tmp_path, "-h", hash_format)
    folder = dest.root / "A001"
    shutil.copytree(
        source, folder, ignore=None if copied_with_media else shutil.ignore_patterns("ascmhl")
    )
    upstream_chain = mhl.parse_chain((source / "ascmhl" / mhl.CHAIN_FILE).read_bytes())
    theirs = upstream_chain[0].path

    result = await write_generation(dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW)

    assert result.number == 2
    assert result.copied_upstream == (() if copied_with_media else (theirs,))
    assert (folder / "ascmhl" / theirs).read_bytes() == (source / "ascmhl" / theirs).read_bytes()
    chain = mhl.parse_chain((folder / "ascmhl" / mhl.CHAIN_FILE).read_bytes())
    assert chain == [*upstream_chain, mhl.ChainEntry(2, result.filename, result.c4)]  # one chain
    expected = "verified" if hash_format == "xxh64" else "original"
    assert set(actions(read_manifest(folder, result.filename)).values()) == {expected}
    t.assert_tools_accept(folder)

    # ascmhl itself continues the chain triplicate wrote.
    t.assert_ok(t.run_tool("ascmhl", "create", "-h", "xxh64", folder))
    third = sorted((folder / "ascmhl").glob("0003_*.mhl"))
    assert len(third) == 1 and set(actions(mhl.parse_manifest(third[0].read_bytes())).values()) == {
        "verified"
    }
    t.assert_tools_accept(folder)


async def test_upstream_again_copies_nothing(tmp_path: Path, dest: t.FolderDestination) -> None:
    source = upstream_offload(tmp_path, "-h", "xxh64")
    folder = dest.root / "A001"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("ascmhl"))
    await write_generation(dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW)
    writes = len(dest.writes)
    again = await write_generation(
        dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW + timedelta(hours=1)
    )
    assert (again.number, again.copied_upstream) == (3, ())
    assert len(dest.writes) == writes + 2
    t.assert_tools_accept(folder)


async def test_upstream_ignore_patterns_are_carried(
    tmp_path: Path, dest: t.FolderDestination
) -> None:
    source = tmp_path / "card" / "A001"
    t.write_sample(source)
    (source / "scratch.tmp").write_bytes(b"the offload tool ignored this")
    t.assert_ok(t.run_tool("ascmhl", "create", source, "-h", "md5", "-i", "*.tmp"))
    folder = dest.root / "A001"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("ascmhl"))

    files = [f for f in t.scan(folder) if not f.path.endswith(".tmp")]
    result = await write_generation(dest, "A001", files, INFO, source / "ascmhl", now=NOW)
    assert "*.tmp" in read_manifest(folder, result.filename).ignore_patterns
    t.assert_tools_accept(folder)


async def test_copy_differing_from_upstream_is_recorded_as_failed(
    tmp_path: Path, dest: t.FolderDestination
) -> None:
    source = upstream_offload(tmp_path, "-h", "xxh64")
    folder = dest.root / "A001"
    shutil.copytree(source, folder)
    (folder / "nested" / "a" / "b" / "c" / "deep.txt").write_bytes(b"DEEP")
    result = await write_generation(dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW)
    assert result.failed == ("nested/a/b/c/deep.txt",)
    assert t.verify(folder).returncode == 11


async def test_upstream_without_actions_gets_originals(
    tmp_path: Path, dest: t.FolderDestination
) -> None:
    # The schema makes action optional; ascmhl-debug verify only checks a file
    # against a hash marked original, so triplicate must write that mark.
    source = upstream_offload(tmp_path, "-h", "xxh64")
    history = source / "ascmhl"
    manifest = next(history.glob("0001_*.mhl"))
    manifest.write_bytes(manifest.read_bytes().replace(b' action="original"', b""))
    (history / mhl.CHAIN_FILE).write_bytes(
        mhl.build_chain([mhl.ChainEntry(1, manifest.name, mhl.c4id(manifest.read_bytes()))])
    )
    folder = dest.root / "A001"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("ascmhl"))
    assert (
        t.verify(source).returncode == 21
    )  # as the offload tool left it, verify finds only "new" files

    result = await write_generation(dest, "A001", t.scan(folder), INFO, history, now=NOW)
    assert set(actions(read_manifest(folder, result.filename)).values()) == {"original"}
    t.assert_tools_accept(folder)


async def test_separate_histories_are_never_merged(
    tmp_path: Path, dest: t.FolderDestination
) -> None:
    source = upstream_offload(tmp_path, "-h", "md5")
    folder = dest.root / "A001"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("ascmhl"))
    await write_generation(
        dest, "A001", t.scan(folder), INFO, None, now=NOW
    )  # our own generation 1
    before = (sorted((folder / "ascmhl").iterdir()), len(dest.writes))

    with pytest.raises(HistoryConflict):
        await write_generation(
            dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW + timedelta(hours=1)
        )
    assert (sorted((folder / "ascmhl").iterdir()), len(dest.writes)) == before


async def test_upstream_file_name_taken_by_other_bytes(
    tmp_path: Path, dest: t.FolderDestination
) -> None:
    source = upstream_offload(tmp_path, "-h", "md5")
    folder = dest.root / "A001"
    shutil.copytree(source, folder)
    (folder / "ascmhl" / mhl.CHAIN_FILE).unlink()
    manifest = next((folder / "ascmhl").glob("*.mhl"))
    manifest.write_bytes(manifest.read_bytes() + b"\n")
    with pytest.raises(HistoryConflict, match="append-only"):
        await write_generation(dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW)


async def test_damaged_upstream_history_is_refused(
    tmp_path: Path, dest: t.FolderDestination
) -> None:
    source = upstream_offload(tmp_path, "-h", "md5")
    folder = offload_at(dest)
    manifest = next((source / "ascmhl").glob("*.mhl"))
    manifest.write_bytes(manifest.read_bytes().replace(b"<hostname>", b"<hostname>x"))
    with pytest.raises(HistoryError, match="modified"):
        await write_generation(dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW)
    (source / "ascmhl" / mhl.CHAIN_FILE).unlink()
    with pytest.raises(HistoryError, match="no ascmhl_chain.xml"):
        await write_generation(dest, "A001", t.scan(folder), INFO, source / "ascmhl", now=NOW)
    assert dest.writes == []


# ------------------------------------------------------------ reading ascmhl's manifests


def _digest(path: Path, hash_format: str) -> str:
    return mhl.c4id(path.read_bytes()) if hash_format == "c4" else hash_file(path, hash_format)[0]


@pytest.mark.parametrize(
    "hash_formats",
    [["c4"], ["md5"], ["sha1"], ["xxh128"], ["xxh3"], ["xxh64"], ["md5", "xxh64", "c4"]],
)
def test_parse_manifest_reads_ascmhl_create(tmp_path: Path, hash_formats: list[str]) -> None:
    source = tmp_path / "A001"
    t.write_sample(source)
    t.assert_ok(
        t.run_tool("ascmhl", "create", source, *(a for f in hash_formats for a in ("-h", f)))
    )
    manifest = mhl.parse_manifest(next((source / "ascmhl").glob("0001_*.mhl")).read_bytes())

    assert (manifest.tool_name, manifest.process) == ("ascmhl", "in-place")
    assert set(manifest.files) == {unicodedata.normalize("NFC", p) for p in t.SAMPLE}
    for path, data in t.SAMPLE.items():
        entry = manifest.files[path]
        assert entry.size == (len(data) or None)  # ascmhl omits size="0"
        assert entry.mtime is not None and entry.mtime.tzinfo is not None
        assert sorted(h.algorithm for h in entry.hashes) == sorted(hash_formats)
        for h in entry.hashes:
            assert (h.value, h.action) == (_digest(source / path, h.algorithm), "original")


def test_directory_hashes_equal_ascmhl_create(tmp_path: Path) -> None:
    source = tmp_path / "A001"
    t.write_sample(source)
    t.assert_ok(t.run_tool("ascmhl", "create", source, "-h", "xxh64"))
    theirs = next((source / "ascmhl").glob("0001_*.mhl")).read_bytes()
    ours = mhl.build_manifest(t.scan(source), INFO, NOW)

    def directory_hashes(data: bytes) -> dict[str, tuple[str, str]]:
        root = etree.fromstring(data)
        found = {".": root.find("m:processinfo/m:roothash", NS)}
        found |= {
            d.findtext("m:path", namespaces=NS): d
            for d in root.iterfind("m:hashes/m:directoryhash", NS)
        }
        return {
            path: (
                e.findtext("m:content/m:xxh64", namespaces=NS),
                e.findtext("m:structure/m:xxh64", namespaces=NS),
            )
            for path, e in found.items()
        }

    assert directory_hashes(ours) == directory_hashes(theirs)
    assert (
        len(directory_hashes(ours)) == 6
    )  # root, émoji 🎬, nested, nested/a, nested/a/b, nested/a/b/c

    def order(data: bytes) -> list[str]:
        return etree.fromstring(data).xpath("m:hashes/*/m:path/text()", namespaces=NS)

    assert order(ours) == order(theirs)


async def test_generations_are_composed_one_at_a_time_under_one_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 100,000-file generation takes ~60 MiB while composed: the daemon
    passes one bound for all destinations, so two are never made at once."""
    import asyncio
    import threading

    from triplicate import history

    inside, most, lock, second_came = [0], [0], threading.Lock(), threading.Event()
    real = history._compose

    def watched(*args: object) -> object:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            if inside[0] > 1:
                second_came.set()
        second_came.wait(1.0)  # time for another to come in, were it let in
        with lock:
            inside[0] -= 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "_compose", watched)
    bound = asyncio.Semaphore(1)
    dests = [t.FolderDestination(tmp_path / name) for name in ("near", "far")]
    results = await asyncio.gather(*(
        write_generation(d, "A001", t.scan(offload_at(d)), INFO, None, now=NOW, composing=bound) for d in dests
    ))
    assert most[0] == 1 and not second_came.is_set()
    assert [r.number for r in results] == [1, 1]


async def test_a_generation_holds_no_earlier_one_whole(dest: t.FolderDestination) -> None:
    """A frame sequence's generations list every frame. The next one reads the
    earlier ones a <hash> at a time, and the XML is made where it lies: an
    element tree of one earlier generation took ~10× its XML, held beside
    the new one, and one more copy of the new XML was made at the end."""
    import tracemalloc

    frames = [
        mhl.MhlFile(f"{i // 1000:04d}/A001_{i:07d}.dpx", 16384, NOW, f"{i * 7919 + 1:016x}"[-16:], NOW)
        for i in range(10_000)
    ]
    peaks = []
    for minute in range(3):
        tracemalloc.start()
        try:
            result = await write_generation(dest, "A001", frames, INFO, None, now=NOW + timedelta(minutes=minute))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    written = (dest.root / "A001" / mhl.FOLDER / result.filename).stat().st_size
    assert result.number == 3 and set(actions(read_manifest(dest.root / "A001", result.filename)).values()) == {
        "verified"}
    assert peaks[0] < 2 * written, (peaks, written)
    assert max(peaks[1:]) < 3 * written, (peaks, written)  # not more with two earlier generations than with one
