"""The reliability suite's figures, collected over the session and printed by
conftest.py's terminal summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figures:
    kills: int = 0  # SIGKILLs the daemon survived (it finished the work afterwards)
    faults: int = 0  # faults injected: resets, stalls, flips, outages, disk full, corrupt copies, changed sources
    files_lost: int = 0  # source files without a verified, independently read copy at the end
    bytes_resent: int = 0  # bytes sent again because of a kill or a fault
    lines: list[str] = field(default_factory=list)  # one figure line per scenario

    def scenario(self, name: str, line: str, *, kills: int = 0, faults: int = 0, lost: int = 0,
                 resent: int = 0) -> None:
        """Record (and print, for `pytest -s`) one scenario's figure. Call it
        before the scenario's final assertions, so a failing scenario still
        shows what it measured."""
        self.kills += kills
        self.faults += faults
        self.files_lost += lost
        self.bytes_resent += resent
        self.lines.append(f"{name}: {line}")
        print(f"\n[reliability] {name}: {line}")

    def merge(self, other: dict[str, Any]) -> None:
        """Add another process's figures (dataclasses.asdict of its Figures)."""
        self.kills += other["kills"]
        self.faults += other["faults"]
        self.files_lost += other["files_lost"]
        self.bytes_resent += other["bytes_resent"]
        self.lines.extend(other["lines"])


FIGURES = Figures()


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"
