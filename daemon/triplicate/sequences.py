"""Frame sequences (DPX, EXR, ARRIRAW, ... one file per frame) as one line.

A shot of 2,400 frames is 2,400 files. Logs and status name such a run once,
"A001C001/A001C001.[0000001-0002400].ari", instead of file by file. A
sequence is files in one folder whose names differ only in their last run of
digits, with the same zero padding.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

_FRAME = re.compile(r"^(?P<head>.*?)(?P<frame>\d+)(?P<tail>\D*)$")
MIN_FRAMES = 3
"""Fewer files than this are named one by one."""


@dataclass(frozen=True)
class Sequence:
    folder: str  # "" or "a/b/"
    head: str
    tail: str
    width: int  # digits, zero padded
    frames: tuple[int, ...]  # sorted

    @property
    def pattern(self) -> str:
        return f"{self.folder}{self.head}[{self.ranges}]{self.tail}"

    @property
    def ranges(self) -> str:
        """"0001-0100,0102-0200": runs of consecutive frames; a gap shows."""
        runs: list[tuple[int, int]] = []
        for frame in self.frames:
            if runs and frame == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], frame)
            else:
                runs.append((frame, frame))
        pad = lambda n: str(n).zfill(self.width)
        return ",".join(pad(a) if a == b else f"{pad(a)}-{pad(b)}" for a, b in runs)


@dataclass(frozen=True)
class Grouped:
    sequences: list[Sequence]
    singles: list[str]

    def lines(self, limit: int = 20) -> list[str]:
        """Sequences (with their frame count) then single paths, at most `limit`
        lines; the last says how many more there are."""
        lines = [f"{s.pattern} ({len(s.frames)} files)" for s in self.sequences] + self.singles
        if len(lines) > limit:
            return lines[: limit - 1] + [f"... and {len(lines) - limit + 1} more"]
        return lines


def group(paths: Iterable[str]) -> Grouped:
    """Split `paths` (POSIX, relative) into frame sequences and the rest."""
    buckets: dict[tuple[str, str, str, int], list[tuple[int, str]]] = defaultdict(list)
    singles: list[str] = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        match = _FRAME.match(name)
        if match is None:
            singles.append(path)
            continue
        key = (f"{folder}/" if folder else "", match["head"], match["tail"], _width(match["frame"]))
        buckets[key].append((int(match["frame"]), path))
    sequences = []
    for (folder, head, tail, width), members in buckets.items():
        if len(members) < MIN_FRAMES:
            singles.extend(p for _, p in members)
            continue
        sequences.append(Sequence(folder, head, tail, width, tuple(sorted(f for f, _ in members))))
    sequences.sort(key=lambda s: s.pattern)
    return Grouped(sequences, sorted(singles))


def _width(digits: str) -> int:
    # "0001" is padded to 4; "1001" may be unpadded: both key on their length,
    # so 999 -> 1000 in an unpadded sequence splits it in two (rare, and honest).
    return len(digits)
