"""The running daemon's process id, beside its journal, so that `triplicate
reload` can find the daemon that uses a given config (and journal)."""

from __future__ import annotations

import os
from pathlib import Path

NAME = "triplicate.pid"


def path_for(journal: Path) -> Path:
    return journal.parent / NAME


def write(journal: Path) -> Path:
    path = path_for(journal)
    tmp = path.with_name(f".{NAME}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)
    return path


def remove(journal: Path) -> None:
    path = path_for(journal)
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass


def running_pid(journal: Path) -> int | None:
    """The pid of a live daemon using `journal`, or None."""
    try:
        pid = int(path_for(journal).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, another user's: signalling it will say so
    return pid
