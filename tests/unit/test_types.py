"""The package's annotations hold: mypy finds nothing in daemon/triplicate.
Types on public functions are part of how this code is written; a check that
no test runs drifts, so the suite runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_mypy_finds_nothing_in_the_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".mypy_cache"), "daemon/triplicate"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
