"""One suite, every destination type, real servers (see conftest.CASES)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triplicate.destinations.base import NoResume, SourceFile
from triplicate.errors import PermanentError, SourceChanged, VerificationFailed
from triplicate.hashing import xxh64_bytes

from .cases.base import Case


def source(tmp_path: Path, name: str, data: bytes, known: bool = False) -> SourceFile:
    path = tmp_path / "src" / name.replace("/", "_")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, name, st.st_size, st.st_mtime_ns, xxh64_bytes(data) if known else None)


async def put_and_check(case: Case, tmp_path: Path, key: str, data: bytes) -> None:
    src = source(tmp_path, key, data)
    receipt = await case.dest.put(src, NoResume())
    assert receipt.xxh64 == xxh64_bytes(data)
    assert receipt.size == len(data) and receipt.key == key and not receipt.skipped
    assert await case.read(key) == data, "stored bytes differ from the source"
    found = await case.dest.stat(key)
    assert found is not None and found.size == len(data)
    await case.dest.verify(key, xxh64_bytes(data), len(data))
    assert await case.leftovers() == []


@pytest.mark.parametrize(
    "size",
    [0, 1, "part", "part+1", "3parts+7"],
)
async def test_sizes(case: Case, tmp_path: Path, size: object) -> None:
    n = {"part": case.part_size, "part+1": case.part_size + 1, "3parts+7": 3 * case.part_size + 7}.get(size, size)  # type: ignore[call-overload]
    await put_and_check(case, tmp_path, f"A001/clip_{size}.mov", os.urandom(n))


async def test_names_with_spaces_accents_and_emoji(case: Case, tmp_path: Path) -> None:
    await put_and_check(case, tmp_path, "Día 1 – Señor/Café crème 🎬/A001 C002.mov", os.urandom(1000))


async def test_overwrites_a_different_object(case: Case, tmp_path: Path) -> None:
    await put_and_check(case, tmp_path, "A001/clip.mov", b"old content " * 100)
    await put_and_check(case, tmp_path, "A001/clip.mov", b"new content, longer " * 100)


async def test_identical_object_is_not_sent_again(case: Case, tmp_path: Path) -> None:
    data = os.urandom(4096)
    await put_and_check(case, tmp_path, "A001/same.mov", data)
    receipt = await case.dest.put(source(tmp_path, "A001/same.mov", data, known=True), NoResume())
    assert receipt.skipped and receipt.bytes_sent == 0 and receipt.xxh64 == xxh64_bytes(data)


async def test_corrupt_copy_is_found_by_verify(case: Case, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    await put_and_check(case, tmp_path, "A001/rot.mov", data)
    await case.corrupt("A001/rot.mov")
    with pytest.raises(VerificationFailed):
        await case.dest.verify("A001/rot.mov", xxh64_bytes(data), len(data))


async def test_verify_of_a_missing_copy(case: Case) -> None:
    with pytest.raises(PermanentError, match="missing"):
        await case.dest.verify("A001/never-sent.mov", "ef46db3751d8e999", 0)


async def test_source_changed_leaves_nothing_under_the_final_name(case: Case, tmp_path: Path) -> None:
    src = source(tmp_path, "A001/moving.mov", os.urandom(50_000))
    stale = SourceFile(src.path, src.key, src.size, src.mtime_ns - 10**9, None)
    with pytest.raises(SourceChanged):
        await case.dest.put(stale, NoResume())
    assert await case.read("A001/moving.mov") is None
    assert await case.leftovers() == []


async def test_missing_target_is_a_clear_permanent_error(case: Case) -> None:
    dest = case.missing_target()
    with pytest.raises(PermanentError) as info:
        await dest.open()
    message = str(info.value)
    assert dest.name in message and len(message.splitlines()) == 1
    await dest.close()


async def test_refused_credentials_are_a_clear_permanent_error(case: Case) -> None:
    dest = case.bad_credentials()
    with pytest.raises(PermanentError) as info:
        await dest.open()
    message = str(info.value)
    assert dest.name in message and len(message.splitlines()) == 1 and "Traceback" not in message
    await dest.close()


async def test_small_objects_round_trip(case: Case) -> None:
    assert await case.dest.read_bytes("A001/ascmhl/ascmhl_chain.xml") is None
    await case.dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", b"<chain/>")
    assert await case.dest.read_bytes("A001/ascmhl/ascmhl_chain.xml") == b"<chain/>"
    assert await case.read("A001/ascmhl/ascmhl_chain.xml") == b"<chain/>"
    # generations are made in a bytearray, the size of 100,000 files' hashes, not copied to bytes
    await case.dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", bytearray(b"<chain>2</chain>"))
    assert await case.dest.read_bytes("A001/ascmhl/ascmhl_chain.xml") == b"<chain>2</chain>"


async def test_delete_and_stat(case: Case, tmp_path: Path) -> None:
    await put_and_check(case, tmp_path, "A001/gone.mov", b"bytes")
    await case.dest.delete("A001/gone.mov")
    assert await case.dest.stat("A001/gone.mov") is None
    await case.dest.delete("A001/gone.mov")  # deleting twice is fine


@pytest.mark.parametrize("key", ["../escape.mov", "A001/../../escape.mov", "/etc/passwd", "A001//x"])
async def test_keys_that_could_escape_are_refused(case: Case, tmp_path: Path, key: str) -> None:
    src = source(tmp_path, "escape.mov", b"x")
    with pytest.raises(PermanentError):
        await case.dest.put(SourceFile(src.path, key, src.size, src.mtime_ns), NoResume())
