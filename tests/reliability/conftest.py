"""The reliability suite ends with one summary line: scenarios passed, kills
survived, faults injected, files lost (must be 0), bytes re-sent; above it, each
scenario's own figure. Under pytest-xdist the figures are gathered in the
workers and sent to the controller, which prints them."""

from __future__ import annotations

import dataclasses
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


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker; its reports already reached the controller's logreport
        output["reliability"] = dataclasses.asdict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist's controller: add a finished worker's figures to this process's."""
    got = getattr(node, "workeroutput", {}).get("reliability")
    if got:
        FIGURES.merge(got)


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
