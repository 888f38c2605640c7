"""The command line's edges: what a command loads, and how a journal found
damaged in the middle of a command is reported."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_config import GOOD, write
from triplicate import cli


def test_hash_loads_no_more_than_it_needs(tmp_path: Path) -> None:
    """`triplicate hash` is how a file is checked by hand and how hashing is
    benchmarked against xxhsum, process start included: it must not load the
    journal's SQLite, OpenSSL, the config models or the setup wizard."""
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"")
    script = (
        "import json, sys\n"
        "from triplicate.cli import main\n"
        f"main(['hash', {str(clip)!r}])\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0] == f"ef46db3751d8e999  {clip}"
    loaded = set(json.loads(lines[1]))
    heavy = {"sqlite3", "hashlib", "platformdirs", "pydantic", "structlog", "dataclasses",
             "triplicate.config", "triplicate.init_wizard", "triplicate.journal"}
    assert loaded & heavy == set()


def test_a_journal_damaged_mid_command_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def damaged(args: object) -> int:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(cli, "cmd_status", damaged)
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", str(write(tmp_path, GOOD)), "status"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(lines) == 1
    assert str(tmp_path / "state" / "journal.db") in lines[0] and "damaged" in lines[0]
    assert "malformed" in lines[0]


def test_other_errors_are_not_taken_for_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise ValueError("not a journal problem")

    monkeypatch.setattr(cli, "cmd_hash", broken)
    with pytest.raises(ValueError, match="not a journal problem"):
        cli.main(["hash", "x"])
