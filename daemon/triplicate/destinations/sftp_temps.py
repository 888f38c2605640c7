"""The temporary names of SFTP copies (`.NAME.triplicate-PID-NS.tmp`), and which
of them may be stale, known without listing a folder per file."""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import time
from typing import Iterator

from ..errors import PermanentError, TransientError

TMP_MARK = ".triplicate-"


class TempNames:
    """Which temporary files may be stale, without listing a folder per file.

    A folder is listed once per run (a folder of N files would otherwise cost
    N² names); the temp files found then are the ones killed processes left.
    Every temp file this process makes is remembered until it is renamed or
    removed, so one left by a failed attempt of this run is found by its name.
    Whether a temp file is stale is decided only by a put of its own final name,
    and puts of one name never overlap, so a snapshot older than the put is
    enough: nothing in it can be a temp file that put is writing.
    """

    def __init__(self) -> None:
        self._left: dict[str, dict[bytes, list[bytes]]] = {}  # folder -> final name -> temp names found
        self._made: dict[str, str] = {}  # temp path -> final path
        # folder -> the other names it held when listed, and those renamed into it since
        self._names: dict[str, set[bytes]] = {}

    def listed(self, folder: str) -> bool:
        return folder in self._left

    def found(self, folder: str, names: list[bytes]) -> None:
        if folder in self._left:
            return  # a listing that raced this one stays as good
        left: dict[bytes, list[bytes]] = {}
        present: set[bytes] = set()
        for name in names:
            final = _final_name(name)
            if final is not None:
                left.setdefault(final, []).append(name)
            else:
                present.add(name)
        self._left[folder], self._names[folder] = left, present

    def surely_absent(self, final: str) -> bool:
        """No file of this name was in its folder's listing, nor renamed there
        since: a put need not look for an identical copy (one round trip, and
        a hash when the name exists). Another writer's file of the same name
        would only be replaced by this verified copy."""
        folder, name = posixpath.split(final)
        present = self._names.get(folder)
        return present is not None and name.encode(errors="surrogateescape") not in present

    def landed(self, final: str) -> None:
        folder, name = posixpath.split(final)
        if folder in self._names:
            self._names[folder].add(name.encode(errors="surrogateescape"))

    @contextlib.contextmanager
    def forgotten_on_failure(self, final: str) -> Iterator[None]:
        """What the listing of `final`'s folder said is dropped when the work
        inside fails with a destination error: the folder may be gone, and the
        next put into it looks (and makes it) again."""
        try:
            yield
        except (TransientError, PermanentError):
            folder = posixpath.dirname(final)
            self._left.pop(folder, None)
            self._names.pop(folder, None)
            raise

    def stale(self, final: str, keep: str | None) -> list[str]:
        folder, name = posixpath.split(final)
        found = self._left.get(folder, {}).pop(name.encode(), [])
        paths = {posixpath.join(folder, n.decode(errors="surrogateescape")) for n in found}
        paths.update(tmp for tmp, its_final in self._made.items() if its_final == final)
        if keep is not None:
            paths.discard(keep)
            self._made[keep] = final  # resumed: from now on this process knows it by name
        return sorted(paths)

    def new(self, final: str) -> str:
        folder, name = posixpath.split(final)
        tmp = posixpath.join(folder, f".{name}{TMP_MARK}{os.getpid()}-{time.time_ns()}.tmp")
        self._made[tmp] = final
        return tmp

    def gone(self, path: str) -> None:
        self._made.pop(path, None)


_TEMP_NAME = re.compile(rb"^\.(.+)" + re.escape(TMP_MARK.encode()) + rb"\d+-\d+\.tmp$", re.DOTALL)


def _final_name(name: bytes) -> bytes | None:
    """The name a temporary file was made for, or None for any other name."""
    match = _TEMP_NAME.match(name)
    return None if match is None else match.group(1)

