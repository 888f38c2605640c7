"""Running the real daemon process against temporary folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

TRIPLICATE = str(Path(sys.executable).parent / "triplicate")


@dataclass
class Setup:
    root: Path
    watch: Path
    config: Path
    destinations: dict[str, Path] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 120, bound_by_permissions: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_without_root_powers(bound_by_permissions), TRIPLICATE, "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout,
        )

    def run_once(self, timeout: float = 180, bound_by_permissions: bool = False) -> subprocess.CompletedProcess[str]:
        return self.cli("run", "--once", timeout=timeout, bound_by_permissions=bound_by_permissions)

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def start(self, user: int | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [TRIPLICATE, "--config", str(self.config), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, user=user,
        )


def _without_root_powers(wanted: bool) -> list[str]:
    """Root reads and writes through any permission bits; CI runs as root. For
    the permission cases the daemon runs without the capabilities that let it
    (util-linux's setpriv), so file modes apply as they would to a service user."""
    if not wanted or os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def make_setup(
    root: Path,
    destinations: dict[str, str] | None = None,
    settle: float = 0.5,
    extra_watch: str = "",
    extra_daemon: str = "",
) -> Setup:
    """A watch folder and destinations; `destinations` maps a name to its TOML
    lines: without a `type`, a local folder named after it with those options."""
    destinations = destinations or {
        "nearline": 'media = "raid"',
        "offsite": 'media = "nas"\noffsite = true',
    }
    watch = root / "watch"
    watch.mkdir(parents=True, exist_ok=True)
    lines = [
        "[daemon]", 'journal = "state/journal.db"', 'log_format = "json"', extra_daemon,
        "[daemon.retry]", "first_delay = 0.2", "max_delay = 1", "permanent_delay = 1",
        "[[watch]]", 'path = "watch"', f"settle_seconds = {settle}",
        f"destinations = {json.dumps(list(destinations))}", extra_watch,
    ]
    setup = Setup(root, watch, root / "triplicate.toml")
    for name, options in destinations.items():
        lines += ["[[destination]]", f'name = "{name}"']
        if "type =" not in options:  # a local folder next to the config
            path = root / name
            path.mkdir(exist_ok=True)
            setup.destinations[name] = path
            lines += ['type = "local"', f'path = "{name}"']
        lines.append(options)
    setup.config.write_text("\n".join(lines) + "\n")
    return setup


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait, and return everything it printed."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    return out


def log_events(output: str) -> list[dict[str, Any]]:
    events = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def write_file(path: Path, data: bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def tree_files(root: Path) -> dict[str, bytes]:
    """Every regular file under root by relative POSIX path (MHL folders and
    the chain-of-custody reports triplicate writes beside the media apart)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "ascmhl" not in p.relative_to(root).parts and p.name != "triplicate-report.html"
    }
