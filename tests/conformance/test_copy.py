"""`copy`: a file renamed or moved at the source is made at the destination
from the copy it already holds, verified, without the bytes being sent again.
Every destination type offers it; each case checks the stored bytes around the
destination's own code (see conftest.CASES)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from triplicate.destinations import s3_copy
from triplicate.destinations.base import CopiesInPlace
from triplicate.errors import VerificationFailed

from .cases.base import Case
from .conftest import CASES
from .test_destinations import put_and_check, source


def test_every_destination_type_copies_in_place(case: Case) -> None:
    assert isinstance(case.dest, CopiesInPlace)


@pytest.mark.parametrize("size", [0, 1, "part+1"])
async def test_copy_makes_the_new_key_and_keeps_the_old_one(case: Case, tmp_path: Path, size: object) -> None:
    n = case.part_size + 1 if size == "part+1" else size
    data = os.urandom(n)  # type: ignore[arg-type]
    await put_and_check(case, tmp_path, "A001/clip.mov", data)
    moved = source(tmp_path, "B002/Día 2/renamed clip 🎬.mov", data, known=True)
    receipt = await case.dest.copy("A001/clip.mov", moved)  # type: ignore[attr-defined]
    assert receipt is not None and receipt.key == moved.key and receipt.size == len(data)
    assert receipt.xxh64 == moved.xxh64 and receipt.bytes_sent == 0 and not receipt.skipped
    assert receipt.evidence["verified_by"] in ("read-back", "remote-hash")  # the stored bytes, hashed
    assert await case.read(moved.key) == data
    assert await case.read("A001/clip.mov") == data, "the old copy is listed by a sealed ASC MHL generation"
    found = await case.dest.stat(moved.key)
    assert found is not None and found.size == len(data)
    await case.dest.verify(moved.key, moved.xxh64, len(data))  # type: ignore[arg-type]
    assert await case.leftovers() == []


async def test_copy_again_finds_the_copy_in_place(case: Case, tmp_path: Path) -> None:
    data = os.urandom(5000)
    await put_and_check(case, tmp_path, "A001/a.mov", data)
    moved = source(tmp_path, "A001/b.mov", data, known=True)
    assert await case.dest.copy("A001/a.mov", moved) is not None  # type: ignore[attr-defined]
    again = await case.dest.copy("A001/a.mov", moved)  # type: ignore[attr-defined]
    assert again is not None and again.skipped and again.bytes_sent == 0


async def test_copy_from_a_missing_key_changes_nothing(case: Case, tmp_path: Path) -> None:
    moved = source(tmp_path, "A001/new.mov", os.urandom(3000), known=True)
    assert await case.dest.copy("A001/never-sent.mov", moved) is None  # type: ignore[attr-defined]
    assert await case.read("A001/new.mov") is None
    assert await case.leftovers() == []


async def test_copy_from_a_damaged_copy_is_refused(case: Case, tmp_path: Path) -> None:
    """The old copy rotted since it was verified: the new key must not get its
    bytes (the scheduler then sends the file), and the old one stays as it is."""
    data = os.urandom(20_000)
    await put_and_check(case, tmp_path, "A001/rot.mov", data)
    await case.corrupt("A001/rot.mov")
    damaged = await case.read("A001/rot.mov")
    moved = source(tmp_path, "A001/renamed.mov", data, known=True)
    try:
        receipt = await case.dest.copy("A001/rot.mov", moved)  # type: ignore[attr-defined]
    except VerificationFailed:  # a cloud copy is checked after it is made: it may say so by raising
        receipt = None
    assert receipt is None
    assert await case.read("A001/renamed.mov") is None
    assert await case.read("A001/rot.mov") == damaged
    assert await case.leftovers() == []


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("s3") and "+" not in c], indirect=True)  # UploadPartCopy is S3's; the limit is patched in this process
async def test_s3_copy_above_the_single_request_limit_goes_in_parts(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_copy, "SINGLE_COPY_LIMIT", case.part_size)  # 5 GiB in production
    data = os.urandom(2 * case.part_size + 11)
    await put_and_check(case, tmp_path, "A001/big.mov", data)
    moved = source(tmp_path, "B002/big.mov", data, known=True)
    receipt = await case.dest.copy("A001/big.mov", moved)  # type: ignore[attr-defined]
    assert receipt is not None and receipt.evidence["parts"] == "3" and receipt.bytes_sent == 0
    assert await case.read("B002/big.mov") == data
    assert await case.leftovers() == []
