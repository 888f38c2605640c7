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


@dataclass(frozen=True)
class _History:
    chain: list[mhl.ChainEntry]  # ordered by sequence number
    manifests: dict[str, bytes]  # file name -> bytes, for every chain entry


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
    `composing` is held while the XML is made (memory in proportion to the
    files, and CPU).
    """
    if not files:
        raise ValueError(
            "a generation needs at least one file (ascmhl-debug verify rejects empty ones)"
        )
    now = now or datetime.now(UTC)
    prefix = f"{check_key(offload)}/{mhl.FOLDER}"
    history = await _read_destination(dest, prefix)
    copied: tuple[str, ...] = ()
    if upstream is not None:
        theirs = await asyncio.to_thread(_read_upstream, upstream)
        history, copied = await _adopt_upstream(dest, prefix, history, theirs)
    number = _next_number(history.chain)
    filename = mhl.generation_filename(number, offload.rsplit("/", 1)[-1], now)
    # seconds of CPU for 100,000 files: a worker thread's, not the event loop's
    async with composing:  # the caller's bound on generations composed at once
        data, failed = await asyncio.to_thread(_compose, files, history, info, now)
    entry = mhl.ChainEntry(number, filename, mhl.c4id(data))
    # The generation first: the chain must never name a file that is not there.
    await dest.write_bytes(f"{prefix}/{filename}", data)
    await dest.write_bytes(f"{prefix}/{mhl.CHAIN_FILE}", mhl.build_chain([*history.chain, entry]))
    return GenerationResult(number, filename, entry.c4, f"{prefix}/{filename}", failed, copied)


def _compose(
    files: list[mhl.MhlFile], history: _History, info: mhl.ProcessInfo, now: datetime,
) -> tuple[bytes, tuple[str, ...]]:
    """The generation's XML, each file's action taken from the history, and
    the paths whose hash differs from the one first recorded."""
    earlier = [_parse_manifest(history.manifests[e.path], e.path) for e in history.chain]
    marked = [_marked(f, _action(f, earlier)) for f in files]
    data = mhl.build_manifest(marked, _carry_ignores(info, earlier), now)
    return data, tuple(f.path for f in marked if f.action == "failed")


def _marked(f: mhl.MhlFile, action: str) -> mhl.MhlFile:
    # no second record per file when the action is the one it has (every file of a first generation)
    return f if f.action == action else dataclasses.replace(f, action=action)


def _action(f: mhl.MhlFile, earlier: list[mhl.Manifest]) -> str:
    listed = [m.files[f.path] for m in earlier if f.path in m.files]
    # ascmhl's rule: "original" until some generation holds an original hash
    # of the path (in any format); ascmhl-debug verify checks only those.
    if not any(h.action == "original" for entry in listed for h in entry.hashes):
        return "original"
    # Compare with the first xxh64 ever recorded, not the latest, so one bad
    # generation cannot become the reference. None: only other formats (md5,
    # ...) were recorded, which triplicate does not compute, so it cannot
    # claim "verified"; verify keeps checking the file against those.
    first = next((h for entry in listed if (h := entry.hash("xxh64"))), None)
    if first is None:
        return "original"
    return "verified" if first.value == f.xxh64 else "failed"


def _next_number(chain: list[mhl.ChainEntry]) -> int:
    # ascmhl orders generations by the number in the file name, so count both.
    numbers = [max(e.sequence, mhl.generation_number(e.path) or 0) for e in chain]
    return max(numbers, default=0) + 1


def _carry_ignores(info: mhl.ProcessInfo, earlier: list[mhl.Manifest]) -> mhl.ProcessInfo:
    # ascmhl-debug verify applies only the latest generation's patterns, so
    # dropping the ones an upstream tool wrote would turn its ignored files
    # into "new files".
    if not earlier:
        return info
    return dataclasses.replace(info, ignore=earlier[-1].ignore_patterns + info.ignore)


# ------------------------------------------------------------- destination


async def _read_destination(dest: Destination, prefix: str) -> _History:
    raw = await dest.read_bytes(f"{prefix}/{mhl.CHAIN_FILE}")
    if raw is None:
        return _History([], {})
    where = f"{dest.name}:{prefix}"
    chain = _parse_chain(raw, where)
    blobs = await asyncio.gather(*(dest.read_bytes(f"{prefix}/{e.path}") for e in chain))
    return _History(chain, _checked(chain, list(blobs), where))


async def _adopt_upstream(
    dest: Destination, prefix: str, ours: _History, theirs: _History
) -> tuple[_History, tuple[str, ...]]:
    chain = _merge(ours.chain, theirs.chain)
    copied: list[str] = []
    for entry in theirs.chain:
        if entry.path in ours.manifests:  # same name and C4 id, checked by _merge
            continue
        if await _put_once(dest, f"{prefix}/{entry.path}", theirs.manifests[entry.path]):
            copied.append(entry.path)
    return _History(chain, {**theirs.manifests, **ours.manifests}), tuple(copied)


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


def _read_upstream(folder: pathlib.Path) -> _History:
    """The source's history, checked like ascmhl-debug verify checks one."""
    if not folder.is_dir():
        raise HistoryError(f"the source's ASC MHL folder {folder} is gone")
    raw = _read_local(folder / mhl.CHAIN_FILE)
    if raw is None:
        if any(folder.glob("*.mhl")):
            raise HistoryError(f"{folder} holds ASC MHL manifests but no {mhl.CHAIN_FILE}")
        return _History([], {})
    chain = _parse_chain(raw, str(folder))
    return _History(
        chain, _checked(chain, [_read_local(folder / e.path) for e in chain], str(folder))
    )


def _read_local(path: pathlib.Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TransientError(f"cannot read {path}: {e}") from e


# ----------------------------------------------------------------- parsing


def _checked(
    chain: list[mhl.ChainEntry], blobs: list[bytes | None], where: str
) -> dict[str, bytes]:
    manifests: dict[str, bytes] = {}
    for entry, data in zip(chain, blobs):
        if data is None:
            raise HistoryError(f"{where}: {entry.path} is listed in {mhl.CHAIN_FILE} but missing")
        if mhl.c4id(data) != entry.c4:
            raise HistoryError(
                f"{where}: {entry.path} was modified after it was recorded in {mhl.CHAIN_FILE}"
            )
        manifests[entry.path] = data
    return manifests


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


def _parse_manifest(data: bytes, name: str) -> mhl.Manifest:
    try:
        return mhl.parse_manifest(data)
    except ValueError as e:
        raise HistoryError(f"ASC MHL manifest {name} cannot be read: {e}") from e
