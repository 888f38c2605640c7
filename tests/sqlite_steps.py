"""Counting SQLite's VM steps: how a test shows that a query's cost does not
grow with the rows around it, without timing it."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator


class Steps:
    count = 0  # progress-handler calls: one per `every` VM steps


@contextmanager
def counting_steps(db: sqlite3.Connection, every: int) -> Iterator[Steps]:
    steps = Steps()

    def tick() -> int:
        steps.count += 1
        return 0

    db.set_progress_handler(tick, every)
    try:
        yield steps
    finally:
        db.set_progress_handler(None, 0)
