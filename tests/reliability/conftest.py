"""The reliability suite ends with one summary line: scenarios passed, kills
survived, faults injected, files lost (must be 0), bytes re-sent; above it, each
scenario's own figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.figures import FIGURES

HERE = Path(__file__).parent
_outcomes: dict[str, int] = {"passed": 0, "failed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not Path(str(report.fspath)).resolve().is_relative_to(HERE):
        return
    if report.when == "call" and report.passed:
        _outcomes["passed"] += 1
    elif report.failed:
        _outcomes["failed"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (_outcomes["passed"] or _outcomes["failed"]):
        return
    terminalreporter.section("reliability figures")
    for line in FIGURES.lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(
        f"reliability: {_outcomes['passed']} scenarios passed, {_outcomes['failed']} failed, "
        f"{FIGURES.kills} kills survived, {FIGURES.faults} faults injected, "
        f"{FIGURES.files_lost} files lost, {FIGURES.bytes_resent} bytes re-sent"
    )
