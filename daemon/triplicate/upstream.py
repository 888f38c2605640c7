"""An offload's own ASC MHL history, as the offload tool left it in the watch
folder: is it complete, which files does it list, with which hashes.

The history is `<offload>/ascmhl/`: `ascmhl_chain.xml` naming every generation
with the C4 id of its bytes, and the generations (`0001_*.mhl`, ...). It is
complete when the chain reads and every generation it names is there with
those exact bytes: ascmhl and the offload tools write the generation first and
the chain last, so a generation being written is either absent from the chain
or does not match its C4 id yet.

The files an offload must hold are those listed in any generation (what
`ascmhl verify` checks too). The reference hash of a file, per format, is the
first one recorded as "original" (else the first recorded): later generations
may hold "failed" entries, and one bad generation must not become the
reference.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from . import mhl


class NotReady(Exception):
    """The history is absent, being written, or unusable; the message says
    which in one sentence."""


@dataclass(frozen=True)
class Reference:
    """What the history says one file is."""

    path: str  # relative to the offload, NFC
    size: int | None  # None: not recorded (ascmhl omits size="0")
    hashes: dict[str, str]  # format -> value, e.g. {"md5": "...", "xxh64": "..."}
    generation: str  # file name of the manifest the hashes come from


@dataclass(frozen=True)
class History:
    generations: tuple[str, ...]  # file names in chain order
    files: dict[str, Reference]  # NFC path inside the offload -> reference
    ignore: pathspec.GitIgnoreSpec = field(repr=False)

    @property
    def newest(self) -> str:
        return self.generations[-1]

    def ignores(self, path: str) -> bool:
        """True for files the offload tool chose not to record (its ignore
        patterns, matched like .gitignore as ascmhl does)."""
        return self.ignore.match_file(path)


Signature = tuple[tuple[str, int, int], ...]


def folder_signature(offload_dir: Path) -> Signature | None:
    """(name, size, mtime_ns) of every file in `<offload>/ascmhl/`, None if the
    folder is not there: a change means a history being written."""
    try:
        entries = list(os.scandir(offload_dir / mhl.FOLDER))
    except (FileNotFoundError, NotADirectoryError):
        return None
    found = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        found.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(found))


def read_history(offload_dir: Path) -> History:
    """The complete history of an offload folder; raises NotReady."""
    folder = offload_dir / mhl.FOLDER
    chain_bytes = _read(folder / mhl.CHAIN_FILE)
    if chain_bytes is None:
        if folder.is_dir() and any(folder.glob("*.mhl")):
            raise NotReady(f"{folder} holds manifests but no {mhl.CHAIN_FILE} yet (the offload tool is still writing it)")
        raise NotReady(f"no ASC MHL history in {offload_dir} yet")
    try:
        chain = sorted(mhl.parse_chain(chain_bytes), key=lambda e: e.sequence)
    except ValueError as exc:
        raise NotReady(f"{folder / mhl.CHAIN_FILE} cannot be read: {exc}") from None
    if not chain:
        raise NotReady(f"{folder / mhl.CHAIN_FILE} names no generation yet")
    manifests = [_generation(folder, entry) for entry in chain]
    files = _references(chain, manifests)
    if not manifests[-1].files:
        raise NotReady(f"the newest generation {chain[-1].path} lists no files")
    patterns = manifests[-1].ignore_patterns or mhl.DEFAULT_IGNORE
    return History(tuple(e.path for e in chain), files, pathspec.GitIgnoreSpec.from_lines(patterns))


def _generation(folder: Path, entry: mhl.ChainEntry) -> mhl.Manifest:
    if "/" in entry.path or entry.path in ("", ".", ".."):
        raise NotReady(f"{folder / mhl.CHAIN_FILE} names {entry.path!r}, which is not a file in {folder}")
    data = _read(folder / entry.path)
    if data is None:
        raise NotReady(f"{folder / mhl.CHAIN_FILE} names {entry.path}, which is not there (yet)")
    if mhl.c4id(data) != entry.c4:
        raise NotReady(
            f"{folder / entry.path} does not match the C4 id {mhl.CHAIN_FILE} records for it: "
            "it is still being written, or it was changed afterwards"
        )
    try:
        return mhl.parse_manifest(data)
    except ValueError as exc:
        raise NotReady(f"{folder / entry.path} cannot be read: {exc}") from None


def _references(chain: list[mhl.ChainEntry], manifests: list[mhl.Manifest]) -> dict[str, Reference]:
    chosen: dict[str, dict[str, tuple[bool, str, str]]] = {}  # path -> format -> (original, value, generation)
    sizes: dict[str, int | None] = {}
    for entry, manifest in zip(chain, manifests):
        for path, listed in manifest.files.items():
            formats = chosen.setdefault(path, {})
            if sizes.get(path) is None:
                sizes[path] = listed.size
            for h in listed.hashes:
                original = h.action in (None, "original")
                known = formats.get(h.algorithm)
                if known is None or (original and not known[0]):
                    formats[h.algorithm] = (original, h.value, entry.path)
    refs = {}
    for path, formats in chosen.items():
        nfc = unicodedata.normalize("NFC", path)
        generation = min((g for _, _, g in formats.values()), default=chain[0].path)
        refs[nfc] = Reference(nfc, sizes.get(path), {a: v for a, (_, v, _) in formats.items()}, generation)
    return refs


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise NotReady(f"{path} cannot be read: {exc.strerror}") from None
