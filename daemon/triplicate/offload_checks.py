"""The journal's record of offloads held back by their readiness rule, and of
source files that do not match their offload's ASC MHL history.

Tables (created with the journal's schema): `offload_readiness`, one row per
offload whose rule holds it (state and a sentence), and `source_problems`, one
row per problem file with the version judged (size, mtime) so that a restart
or a rescan does not read it again. An operator's decision (`triplicate
accept`) is written here by the CLI and picked up by the running daemon.

States: waiting (no history / no marker yet), checking (files being compared
with the manifest), ready, source_mismatch (problems wait for a decision),
accepted (an operator accepted them as they are), mhl_invalid (a history that
stays incomplete or unreadable).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from .journal import Journal

STATES = ("waiting", "checking", "ready", "source_mismatch", "accepted", "mhl_invalid")
KINDS = ("mismatch", "missing", "unlisted", "unreadable")
"""mismatch: the bytes differ from the manifest's hash (or size); missing:
listed but not in the watch folder; unlisted: present but listed in no
generation; unreadable: could not be read to be checked."""


@dataclass(frozen=True)
class Problem:
    offload_id: int
    watch: str
    offload: str
    relpath: str  # relative to the watch folder, NFC
    disk_path: str
    kind: str
    detail: str
    size: int | None
    mtime_ns: int | None
    xxh64: str | None
    accepted: bool
    released: bool

    @property
    def version(self) -> tuple[int, int] | None:
        return None if self.size is None or self.mtime_ns is None else (self.size, self.mtime_ns)


def offload_id(journal: Journal, watch: str, name: str) -> int:
    journal.db.execute(
        "INSERT OR IGNORE INTO offloads (watch, name, first_seen) VALUES (?, ?, ?)", (watch, name, time.time())
    )
    return int(journal.db.execute("SELECT id FROM offloads WHERE watch = ? AND name = ?", (watch, name)).fetchone()[0])


def set_state(journal: Journal, watch: str, name: str, rule: str, state: str, detail: str | None) -> None:
    with journal._tx():
        oid = offload_id(journal, watch, name)
        journal.db.execute(
            "INSERT INTO offload_readiness (offload_id, rule, state, detail, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (offload_id) DO UPDATE SET rule = excluded.rule, state = excluded.state, "
            "detail = excluded.detail, updated_at = excluded.updated_at",
            (oid, rule, state, detail, time.time()),
        )


def states(journal: Journal, watch: str | None = None) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(watch, offload) -> (state, detail)."""
    sql = "SELECT o.watch, o.name, r.state, r.detail FROM offload_readiness r JOIN offloads o ON o.id = r.offload_id"
    args: tuple[str, ...] = ()
    if watch is not None:
        sql, args = sql + " WHERE o.watch = ?", (watch,)
    return {(r[0], r[1]): (r[2], r[3]) for r in journal.db.execute(sql, args)}


def record_problem(
    journal: Journal, watch: str, offload: str, relpath: str, disk_path: str, kind: str, detail: str,
    version: tuple[int, int] | None, xxh64: str | None,
) -> None:
    """A new verdict for a file replaces the old one, and any earlier decision
    with it: an operator accepted that version, not this one."""
    size, mtime_ns = version if version is not None else (None, None)
    with journal._tx():
        oid = offload_id(journal, watch, offload)
        journal.db.execute(
            "INSERT INTO source_problems (offload_id, relpath, disk_path, kind, detail, size, mtime_ns, xxh64, found_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (offload_id, relpath) DO UPDATE SET "
            "disk_path = excluded.disk_path, kind = excluded.kind, detail = excluded.detail, size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, xxh64 = excluded.xxh64, found_at = excluded.found_at, "
            "accepted_at = NULL, released_at = NULL",
            (oid, relpath, disk_path, kind, detail, size, mtime_ns, xxh64, time.time()),
        )


def clear_problem(journal: Journal, watch: str, offload: str, relpath: str) -> None:
    """The file now matches (copied again, or listed by a new generation)."""
    with journal._tx():
        journal.db.execute(
            "DELETE FROM source_problems WHERE relpath = ? AND offload_id = "
            "(SELECT id FROM offloads WHERE watch = ? AND name = ?)",
            (relpath, watch, offload),
        )


def mark_released(journal: Journal, watch: str, offload: str, relpaths: list[str]) -> None:
    now = time.time()
    with journal._tx():
        journal.db.executemany(
            "UPDATE source_problems SET released_at = ? WHERE relpath = ? AND offload_id = "
            "(SELECT id FROM offloads WHERE watch = ? AND name = ?)",
            [(now, r, watch, offload) for r in relpaths],
        )


def problems(journal: Journal, watch: str | None = None, offload: str | None = None) -> list[Problem]:
    sql = (
        "SELECT p.offload_id, o.watch, o.name, p.relpath, p.disk_path, p.kind, p.detail, p.size, p.mtime_ns, "
        "p.xxh64, p.accepted_at IS NOT NULL, p.released_at IS NOT NULL "
        "FROM source_problems p JOIN offloads o ON o.id = p.offload_id WHERE 1 = 1"
    )
    args: list[str] = []
    if watch is not None:
        sql += " AND o.watch = ?"
        args.append(watch)
    if offload is not None:
        sql += " AND o.name = ?"
        args.append(offload)
    rows = journal.db.execute(sql + " ORDER BY o.name, p.relpath", args)
    return [Problem(*r[:10], *map(bool, r[10:12])) for r in rows]


def accepted_unreleased(journal: Journal, watch: str) -> list[Problem]:
    """Decisions the running daemon has not acted on yet."""
    return [p for p in problems(journal, watch) if p.accepted and not p.released]


def accept(journal: Journal, offload: str) -> list[Problem]:
    """`triplicate accept OFFLOAD`: every undecided problem of the offload (in
    any watch folder) is accepted as it is; returns them."""
    undecided = [p for p in problems(journal, offload=offload) if not p.accepted]
    now = time.time()
    with journal._tx():
        for p in undecided:
            journal.db.execute(
                "UPDATE source_problems SET accepted_at = ? WHERE offload_id = ? AND relpath = ? AND accepted_at IS NULL",
                (now, p.offload_id, p.relpath),
            )
        for oid, count in Counter(p.offload_id for p in undecided).items():
            journal.db.execute(
                "UPDATE offload_readiness SET state = 'accepted', detail = ?, updated_at = ? WHERE offload_id = ?",
                (f"{count} file(s) accepted as they are by an operator", now, oid),
            )
    return undecided


def offload_exists(journal: Journal, offload: str) -> bool:
    return journal.db.execute("SELECT 1 FROM offloads WHERE name = ? LIMIT 1", (offload,)).fetchone() is not None


def undecided_count(journal: Journal) -> int:
    """Problem files still waiting for an operator (a one-shot run fails on them)."""
    return int(journal.db.execute("SELECT COUNT(*) FROM source_problems WHERE accepted_at IS NULL").fetchone()[0])


def invalid_offloads(journal: Journal, watches: list[str]) -> list[str]:
    """Offloads of these watch folders whose upstream ASC MHL history stays
    unusable: nothing of them is sent until someone finishes or redoes it."""
    return sorted(name for (watch, name), (state, _) in states(journal).items()
                  if state == "mhl_invalid" and watch in watches)


_OUTCOME = {
    "mismatch": "sent as it is, although it does not match its manifest",
    "unreadable": "tried as it is (it could not be read to be checked)",
    "unlisted": "sent unchecked (listed in no generation)",
    "missing": "nothing to send (listed, but not in the watch folder)",
}


def accepted_lines(accepted: list[Problem], limit: int = 20) -> list[str]:
    """What `triplicate accept` prints: per kind, what happens and to which files
    (frame sequences as one line each)."""
    from .sequences import group

    lines = []
    for kind in KINDS:
        paths = [p.relpath for p in accepted if p.kind == kind]
        if paths:
            lines.append(f"  {len(paths)} {_OUTCOME[kind]}:")
            lines.extend(f"    {line}" for line in group(paths).lines(limit))
    return lines
