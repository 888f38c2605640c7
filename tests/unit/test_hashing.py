import os
from pathlib import Path

import pytest

from triplicate.destinations.base import SourceFile
from triplicate.errors import SourceChanged, SourceUnreadable
from triplicate.hashing import hash_file, hash_open_file, xxh64_bytes
from triplicate.source import SourceReader


def test_xxh64_canonical_big_endian() -> None:
    # the values ASC MHL and xxhsum print
    assert xxh64_bytes(b"") == "ef46db3751d8e999"
    assert xxh64_bytes(b"hello") == "26c7827d889f6da3"


def test_hash_file_streams_across_blocks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_file(path) == (xxh64_bytes(data), len(data))
    assert hash_file(path, uncached=True) == (xxh64_bytes(data), len(data))


def test_hash_file_reads_past_a_size_hint_that_is_wrong(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    for hint in (0, 1000, len(data) - 1, len(data), 10 * len(data)):
        assert hash_file(path, uncached=True, size_hint=hint) == (xxh64_bytes(data), len(data)), hint
    (tmp_path / "empty").write_bytes(b"")
    assert hash_file(tmp_path / "empty", size_hint=0) == ("ef46db3751d8e999", 0)


def test_an_open_file_is_hashed_from_its_start_with_or_without_preadv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(1024 * 1024 + 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 1000, os.SEEK_SET)
        assert hash_open_file(fd, uncached=True, size_hint=len(data)) == (xxh64_bytes(data), len(data))
        monkeypatch.delattr(os, "preadv")  # as on macOS before 11
        assert hash_open_file(fd, size_hint=7) == (xxh64_bytes(data), len(data))
    finally:
        os.close(fd)


def _src(path: Path, xxh64: str | None = None) -> SourceFile:
    st = path.stat()
    return SourceFile(path, path.name, st.st_size, st.st_mtime_ns, xxh64)


def _read_all(reader: SourceReader) -> bytes:
    out = b""
    while block := reader.read_block():
        out += block
    return out


def test_reader_hashes_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(b"x" * 100_000)
    with SourceReader(_src(path), block_size=4096) as reader:
        assert _read_all(reader) == b"x" * 100_000
        assert reader.finish() == xxh64_bytes(b"x" * 100_000)


def test_reader_notices_append_during_read(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(b"x" * 10_000)
    src = _src(path)
    with SourceReader(src, block_size=4096) as reader:
        reader.read_block()
        with open(path, "ab") as fh:
            fh.write(b"more")
        with pytest.raises(SourceChanged):
            _read_all(reader)
            reader.finish()


def test_reader_notices_rewrite_with_same_size(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(b"a" * 10_000)
    src = _src(path)
    with SourceReader(src) as reader:
        _read_all(reader)
        path.write_bytes(b"b" * 10_000)
        os.utime(path, ns=(src.mtime_ns + 10**9, src.mtime_ns + 10**9))
        with pytest.raises(SourceChanged):
            reader.finish()


def test_reader_refuses_a_known_hash_that_no_longer_matches(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(b"a" * 100)
    with SourceReader(_src(path, xxh64="0000000000000000")) as reader:
        _read_all(reader)
        with pytest.raises(SourceChanged):
            reader.finish()


def test_missing_source_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "gone.mov"
    path.write_bytes(b"a")
    src = _src(path)
    path.unlink()
    with pytest.raises(SourceUnreadable, match="disappeared"):
        SourceReader(src).open()


@pytest.mark.parametrize("size", [1, 4095, 4096, 1 << 20, (8 << 20) + 3])
def test_read_buffers_start_on_a_page_boundary_and_take_the_kernels_bytes(tmp_path: Path, size: int) -> None:
    import ctypes

    from triplicate.hashing import PAGE, read_buffer

    view = read_buffer(size)
    assert len(view) == size and not view.readonly
    if size >= PAGE:  # where a bare bytearray starts 16 bytes past one
        assert ctypes.addressof(ctypes.c_char.from_buffer(view)) % PAGE == 0
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.preadv(fd, [view], 0) == size
    finally:
        os.close(fd)
    assert view.tobytes() == data
