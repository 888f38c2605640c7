"""Shared fixtures. The real local servers (tests/servers.py) start when a test
first asks for them and stop at the end of the session; one that cannot start
fails the tests that need it. A test that stops a server (outage) must start
it again before it ends, in a `finally`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers import Azurite, ManagedServer, MotoS3, SeaweedS3, Sshd
from tests.reliability.figures import FIGURES

_started: list[ManagedServer] = []


def _serve(cls: type[ManagedServer], **options: object) -> Iterator[ManagedServer]:
    server = cls(**options)
    try:
        server.start()
    except BaseException:
        server.stop()  # keeps its dir (and log) under tests/.servers/
        raise
    _started.append(server)
    yield server
    server.close()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    """SeaweedFS S3: endpoint_url, access_key, secret_key, region (any keys work)."""
    yield from _serve(SeaweedS3)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoS3]:
    """moto S3: endpoint_url, access_key, secret_key, region; restart(), reset()."""
    yield from _serve(MotoS3)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite Blob: account_name, account_key, account_url, connection_string."""
    yield from _serve(Azurite)


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """OpenSSH sftp: host, port, username, client_key, known_hosts, root."""
    yield from _serve(Sshd)


@pytest.fixture(scope="session")
def sshd_sftp_only() -> Iterator[Sshd]:
    """OpenSSH that forces internal-sftp (no commands); same attributes as sshd."""
    yield from _serve(Sshd, sftp_only=True)


_timings: list[tuple[str, list[tuple[str, float]]]] = []  # other processes' servers (pytest-xdist workers)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    FIGURES.count(report)


@pytest.hookimpl(trylast=True)  # after the session fixtures (the servers) are torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: the controller prints its figures and servers' timings
        output["server_timings"] = [(s.name, list(s.timings)) for s in _started]
        output["reliability"] = FIGURES.shipped()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist's controller: what a finished worker sent."""
    output = getattr(node, "workeroutput", {})
    _timings.extend(output.get("server_timings", ()))
    if "reliability" in output:
        FIGURES.merge(output["reliability"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, timings in [(s.name, s.timings) for s in _started] + _timings:
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{what} {seconds:.2f}s" for what, seconds in timings))
    lines = FIGURES.summary()
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
