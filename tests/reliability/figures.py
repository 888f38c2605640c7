"""The reliability suite's figures, collected over the session and printed by
the terminal summary of tests/conftest.py: one line per scenario, then scenarios
passed, kills survived, faults injected, files lost (must be 0), bytes re-sent.
The summary lives in the top conftest because under pytest-xdist only the
controller prints, and it loads no conftest below tests/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass
class Figures:
    kills: int = 0  # SIGKILLs the daemon survived (it finished the work afterwards)
    faults: int = 0  # faults injected: resets, stalls, flips, outages, disk full, corrupt copies, changed sources
    files_lost: int = 0  # source files without a verified, independently read copy at the end
    bytes_resent: int = 0  # bytes sent again because of a kill or a fault
    lines: list[str] = field(default_factory=list)  # one figure line per scenario
    passed: int = 0  # scenarios (tests below tests/reliability), counted from the reports
    failed: int = 0

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

    def count(self, report: Any) -> None:
        """One test report of the session (the controller sees every worker's)."""
        if not Path(str(report.fspath)).resolve().is_relative_to(HERE):
            return
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.failed:
            self.failed += 1

    def summary(self) -> list[str]:
        """What the session's end prints; nothing when no scenario ran."""
        if not (self.passed or self.failed):
            return []
        return [*self.lines, f"reliability: {self.passed} scenarios passed, {self.failed} failed, "
                f"{self.kills} kills survived, {self.faults} faults injected, "
                f"{self.files_lost} files lost, {self.bytes_resent} bytes re-sent"]

    def shipped(self) -> dict[str, Any]:
        """The figures a worker sends to the controller, which counts the
        scenarios from the reports it gets."""
        return {**{name: getattr(self, name) for name in SUMS}, "lines": self.lines}

    def merge(self, other: dict[str, Any]) -> None:
        """Add a worker's figures (`shipped`)."""
        for name in SUMS:
            setattr(self, name, getattr(self, name) + other[name])
        self.lines.extend(other["lines"])


SUMS = ("kills", "faults", "files_lost", "bytes_resent")  # what workers' figures add up to
FIGURES = Figures()


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"
