"""Continue an offload's ASC MHL history at a destination, one generation per copy.

The history lives beside the media at "<offload>/ascmhl/" and is read and
written only through `Destination.read_bytes` / `write_bytes`, so it works the
same on a disk, S3, Azure or SFTP. There is one history per offload: when the
source came with its own (ShotPut, Hedge, Silverstack, `ascmhl create`), its
generations are copied over and the chain continues theirs; a second history
beside it would make `ascmhl-debug verify` see two generation 1s.

A file the history already lists with a different xxh64 than now is written
with action="failed" (and named in `GenerationResult.failed`); the generation
is still written. That is what `ascmhl create` does, and it keeps the history
an honest record of what this copy holds: refusing to write would leave a
verified copy with no record at all, and calling it "original" or "verified"
would hide that these bytes differ from what the offload tool or an earlier
copy recorded. `ascmhl-debug verify` keeps failing for that file (it always
compares with the first recorded hash) until someone resolves it, which is
the point; the caller decides whom to tell.

Not safe to run twice at once for the same offload and destination (the
scheduler serialises it). Output is deterministic: after a crash between the
two writes, calling again with the same `now` rewrites the same generation
file instead of leaving a second one with the same number.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import unicodedata
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import mhl
from .destinations.base import Destination, check_key
from .errors import PermanentError, TransientError


class HistoryError(PermanentError):
    """The history cannot be continued as it is (a manifest is missing,
    modified or unreadable); someone has to look at it."""


class HistoryConflict(HistoryError):
    """The destination's history and the source's disagree (one generation
    number or file name with two contents): continuing would fork the chain."""


@dataclass(frozen=True)
class GenerationResult:
    number: int
    filename: str
    c4: str
    key: str  # where the generation was written
    failed: tuple[str, ...] = ()  # paths recorded with action="failed"
    copied_upstream: tuple[str, ...] = ()  # upstream generation files copied by this call


class _Recorded:
    """What the earlier generations recorded of the files of this one: for
    each, whether some generation holds an original hash of its path and the
    first xxh64 recorded for it (its action depends on nothing else); and
    the latest generation's ignore patterns. Filled one manifest at a time,
    in chain order, so no earlier generation is held whole."""

    def __init__(self, files: list[mhl.MhlFile]) -> None:
        self._files = files
        self._index: dict[str, int] = {}
        self._original = bytearray(len(files))
        self._first: list[str | None] = [None] * len(files)
        self.ignore: tuple[str, ...] = ()

    def add(self, data: bytes, name: str) -> None:
        """One earlier generation, the next in chain order."""
        if not self._index:
            self._index = {f.path: i for i, f in enumerate(self._files)}
        # within one manifest a path listed twice counts once, the last entry
        first: list[str | None]
        original, first = bytearray(len(self._original)), [None] * len(self._first)

        def take(f: mhl.ManifestFile) -> None:
            i = self._index.get(unicodedata.normalize("NFC", f.path))
            if i is not None:
                original[i] = any(h.action == "original" for h in f.hashes)
                xxh64 = f.hash("xxh64")
                first[i] = xxh64.value if xxh64 else None

        self.ignore = _parse_manifest(data, name, take).ignore_patterns
        self._original = bytearray(a | b for a, b in zip(self._original, original))
        self._first = [old if old is not None else new for old, new in zip(self._first, first)]

    def action(self, f: mhl.MhlFile) -> str:
        i = self._index.get(f.path)
        # ascmhl's rule: "original" until some generation holds an original hash
        # of the path (in any format); ascmhl-debug verify checks only those.
        if i is None or not self._original[i]:  # also with no earlier generation
            return "original"
        # Compare with the first xxh64 ever recorded, not the latest, so one bad
        # generation cannot become the reference. None: only other formats (md5,
        # ...) were recorded, which triplicate does not compute, so it cannot
        # claim "verified"; verify keeps checking the file against those.
        first = self._first[i]
        if first is None:
            return "original"
        return "verified" if first == f.xxh64 else "failed"


async def write_generation(
    dest: Destination,
    offload: str,
    files: list[mhl.MhlFile],
    info: mhl.ProcessInfo,
    upstream: pathlib.Path | None,
    now: datetime | None = None,
    composing: AbstractAsyncContextManager[Any] = contextlib.nullcontext(),
) -> GenerationResult:
    """Record `files` (already copied and verified at `dest`) as the next
    generation of the history at "<offload>/ascmhl/".

    `upstream` is the source offload's own `ascmhl/` folder, if it has one.
    Each file's action (the one in `files` is ignored) comes from the history:
    "verified" when the first xxh64 recorded for its path matches, "failed"
    when it does not, "original" when no xxh64 was recorded (also when only
    other formats such as md5 were) or when no hash of the path is marked
    original (ascmhl-debug verify needs one).
    Raises HistoryError / HistoryConflict (permanent) and TransientError.
    `composing` is held while the earlier generations are read and the XML
    is made (memory in proportion to the files, and CPU).
    """
    if not files:
        raise ValueError(
            "a generation needs at least one file (ascmhl-debug verify rejects empty ones)"
        )
    now = now or datetime.now(UTC)
    prefix = f"{check_key(offload)}/{mhl.FOLDER}"
    chain = await _read_destination(dest, prefix)
    copied: tuple[str, ...] = ()
    if upstream is not None:
        theirs = await asyncio.to_thread(_read_upstream, upstream)
        chain, copied = await _adopt_upstream(dest, prefix, chain, theirs, upstream)
    number = _next_number(chain)
    filename = mhl.generation_filename(number, offload.rsplit("/", 1)[-1], now)
    # seconds of CPU for 100,000 files: a worker thread's, not the event loop's
    async with composing:  # the caller's bound on generations composed at once
        recorded = _Recorded(files)
        for earlier in chain:  # every one is at the destination by now
            blob = _checked(earlier, await dest.read_bytes(f"{prefix}/{earlier.path}"), f"{dest.name}:{prefix}")
            await asyncio.to_thread(recorded.add, blob, earlier.path)
            del blob
        data, failed = await asyncio.to_thread(_compose, files, recorded, info, now)
    entry = mhl.ChainEntry(number, filename, mhl.c4id(data))
    # The generation first: the chain must never name a file that is not there.
    await dest.write_bytes(f"{prefix}/{filename}", data)
    await dest.write_bytes(f"{prefix}/{mhl.CHAIN_FILE}", mhl.build_chain([*chain, entry]))
    return GenerationResult(number, filename, entry.c4, f"{prefix}/{filename}", failed, copied)


def _compose(
    files: list[mhl.MhlFile], recorded: _Recorded, info: mhl.ProcessInfo, now: datetime,
) -> tuple[bytearray, tuple[str, ...]]:
    """The generation's XML, each file's action taken from what earlier
    generations recorded, and the paths whose hash differs from the one
    first recorded."""
    # ascmhl-debug verify applies only the latest generation's patterns, so
    # dropping the ones an upstream tool wrote would turn its ignored files
    # into "new files".
    carried = dataclasses.replace(info, ignore=recorded.ignore + info.ignore)
    failed: list[str] = []

    def action(f: mhl.MhlFile) -> str:  # build_manifest asks once per file
        taken = recorded.action(f)
        if taken == "failed":
            failed.append(f.path)
        return taken

    data = mhl.build_manifest(files, carried, now, action=action)
    return data, tuple(failed)


def _next_number(chain: list[mhl.ChainEntry]) -> int:
    # ascmhl orders generations by the number in the file name, so count both.
    numbers = [max(e.sequence, mhl.generation_number(e.path) or 0) for e in chain]
    return max(numbers, default=0) + 1


# ------------------------------------------------------------- destination


async def _read_destination(dest: Destination, prefix: str) -> list[mhl.ChainEntry]:
    """The destination's chain, each manifest it names checked (present,
    unmodified) one at a time: a generation can list 100,000 files."""
    raw = await dest.read_bytes(f"{prefix}/{mhl.CHAIN_FILE}")
    if raw is None:
        return []
    where = f"{dest.name}:{prefix}"
    chain = _parse_chain(raw, where)
    for entry in chain:
        _checked(entry, await dest.read_bytes(f"{prefix}/{entry.path}"), where)
    return chain


async def _adopt_upstream(
    dest: Destination, prefix: str, ours: list[mhl.ChainEntry], theirs: list[mhl.ChainEntry],
    folder: pathlib.Path,
) -> tuple[list[mhl.ChainEntry], tuple[str, ...]]:
    chain = _merge(ours, theirs)
    mine = {e.path for e in ours}
    copied: list[str] = []
    for entry in theirs:
        if entry.path in mine:  # same name and C4 id, checked by _merge
            continue
        data = _checked(entry, await asyncio.to_thread(_read_local, folder / entry.path), str(folder))
        if await _put_once(dest, f"{prefix}/{entry.path}", data):
            copied.append(entry.path)
    return chain, tuple(copied)


def _merge(ours: list[mhl.ChainEntry], theirs: list[mhl.ChainEntry]) -> list[mhl.ChainEntry]:
    by_number = {e.sequence: e for e in ours}
    by_name = {e.path: e for e in ours}
    for entry in theirs:
        mine = by_number.get(entry.sequence) or by_name.get(entry.path)
        if mine is not None and mine != entry:
            raise HistoryConflict(
                f"generation {entry.sequence} ({entry.path}) of the source's ASC MHL history differs "
                f"from generation {mine.sequence} ({mine.path}) at the destination; one of the two "
                "histories was continued without the other, so someone must decide which one to keep"
            )
        by_number[entry.sequence] = entry
    return sorted(by_number.values(), key=lambda e: e.sequence)


async def _put_once(dest: Destination, key: str, data: bytes) -> bool:
    existing = await dest.read_bytes(key)
    if existing == data:
        return False
    if existing is not None:
        raise HistoryConflict(
            f"{dest.name}:{key} already exists with other content; ASC MHL histories are "
            "append-only, so triplicate will not overwrite it"
        )
    await dest.write_bytes(key, data)
    return True


# ---------------------------------------------------------------- upstream


def _read_upstream(folder: pathlib.Path) -> list[mhl.ChainEntry]:
    """The source's chain, checked like ascmhl-debug verify checks one."""
    if not folder.is_dir():
        raise HistoryError(f"the source's ASC MHL folder {folder} is gone")
    raw = _read_local(folder / mhl.CHAIN_FILE)
    if raw is None:
        if any(folder.glob("*.mhl")):
            raise HistoryError(f"{folder} holds ASC MHL manifests but no {mhl.CHAIN_FILE}")
        return []
    chain = _parse_chain(raw, str(folder))
    for entry in chain:
        _checked(entry, _read_local(folder / entry.path), str(folder))
    return chain


def _read_local(path: pathlib.Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TransientError(f"cannot read {path}: {e}") from e


# ----------------------------------------------------------------- parsing


def _checked(entry: mhl.ChainEntry, data: bytes | None, where: str) -> bytes:
    """`data`, the manifest `entry` names, if it is there and unmodified."""
    if data is None:
        raise HistoryError(f"{where}: {entry.path} is listed in {mhl.CHAIN_FILE} but missing")
    if mhl.c4id(data) != entry.c4:
        raise HistoryError(f"{where}: {entry.path} was modified after it was recorded in {mhl.CHAIN_FILE}")
    return data


def _parse_chain(data: bytes, where: str) -> list[mhl.ChainEntry]:
    try:
        chain = mhl.parse_chain(data)
    except ValueError as e:
        raise HistoryError(f"{where}/{mhl.CHAIN_FILE} cannot be read: {e}") from e
    numbers = [e.sequence for e in chain]
    if len(set(numbers)) != len(numbers) or any(not _plain_name(e.path) for e in chain):
        raise HistoryError(
            f"{where}/{mhl.CHAIN_FILE} repeats a generation number or names a file outside the folder"
        )
    return sorted(chain, key=lambda e: e.sequence)


def _plain_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "\\" not in name


def _parse_manifest(data: bytes, name: str, on_file: Callable[[mhl.ManifestFile], None]) -> mhl.Manifest:
    try:
        return mhl.read_manifest(data, on_file)
    except ValueError as e:
        raise HistoryError(f"ASC MHL manifest {name} cannot be read: {e}") from e
