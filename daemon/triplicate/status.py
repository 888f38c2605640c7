"""What is safe and what is not yet: status computed from the journal.

The JSON shape is a contract (tools and tests read it), so it is declared as
pydantic models: `offloads` with the 3-2-1 verdict, `files` with each
destination's state, `destinations` with their backlog.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from . import milestones, offload_checks
from .bandwidth import limit_at
from .config import Config
from .journal import Journal

THROUGHPUT_WINDOW = 300.0  # seconds of verified copies that give the journal's recent throughput


class LiveFigures(Protocol):
    """What only a running daemon knows (live.py implements it)."""

    def throughput(self, destination: str) -> float | None: ...

    def in_flight(self, destination: str) -> int: ...


class FileStatus(BaseModel):
    offload: str
    path: str  # relative to the watch folder, as at every destination
    size: int
    xxh64: str | None
    destinations: dict[str, str]
    errors: dict[str, str] = {}


class SourceProblem(BaseModel):
    path: str  # relative to the watch folder
    problem: str  # mismatch | missing | unlisted | unreadable
    detail: str
    accepted: bool  # an operator ran `triplicate accept`: sent as it is


class OffloadStatus(BaseModel):
    name: str
    watch: str
    files: int
    bytes: int
    verified_files: int
    failed_files: int
    copies: int  # the source plus every destination holding all files verified
    media_types: int
    offsite_copies: int
    rule_321_met: bool
    missing: list[str]  # what keeps 3-2-1 from being met, in words
    destinations: dict[str, dict[str, int]]  # name -> {state: count}
    verified_bytes: dict[str, int] = {}  # name -> bytes of this offload verified there
    # every file verified at every destination, 3-2-1 met, and the daemon saw the offload complete
    safe_to_format: bool = False
    mhl_behind: list[str] = []  # destinations whose ASC MHL history does not yet list the current files
    unsafe_reasons: list[str] = []  # why not, in words
    eta_seconds: float | None = None  # until every destination holds it, at current throughput
    # readiness of the source (readiness.py): waiting | checking | ready | source_mismatch | accepted | mhl_invalid
    state: str = "ready"
    state_detail: str | None = None
    problems: list[SourceProblem] = []  # source files that do not match the offload's ASC MHL, per file
    sequences: list[str] = []  # frame sequences among its files, one line each


class DestinationStatus(BaseModel):
    name: str
    type: str
    media: str
    offsite: bool
    state: str  # up | degraded | down | unknown
    error: str | None
    backlog_files: int
    backlog_bytes: int
    oldest_pending_seconds: float | None
    throughput_bytes_per_s: float | None = None  # live from the daemon, else the journal's last minutes
    in_flight: int = 0  # copies being transferred now (known only to a running daemon)
    bandwidth_limit_bytes_per_s: float | None = None  # the limit its schedule sets now; None: unlimited


class Status(BaseModel):
    generated_at: float
    offloads: list[OffloadStatus]
    files: list[FileStatus]
    destinations: list[DestinationStatus]
    source: str = "journal"  # "daemon" when a running daemon answered


def collect(config: Config, journal: Journal, live: LiveFigures | None = None) -> Status:
    files, paths = _files(journal)
    destinations = [_destination(config, journal, d, live) for d in config.destination]
    throughput = {d.name: d.throughput_bytes_per_s for d in destinations}
    marks = milestones.signatures(journal, milestones.SAFE)
    tallies = list(_tallies(journal).values())
    readiness = _readiness(journal)
    for watch, name in sorted(set(readiness) - {(t.watch, t.name) for t in tallies}):
        tallies.append(Tally(0, watch, name))  # held back whole: no file handed on yet
    offloads = []
    for t in tallies:
        o = _offload(config, t)
        signature = milestones.FileSignature(journal, t.offload_id)
        o.mhl_behind = _mhl_behind(o, signature)
        _apply_readiness(o, readiness.get((t.watch, t.name)))
        o.sequences = _sequences(paths.get(t.offload_id, []))
        _judge_safety(config, o, marks.get(t.offload_id), signature)
        o.eta_seconds = _eta(t, throughput)
        offloads.append(o)
    return Status(
        generated_at=time.time(),
        offloads=offloads,
        files=files,
        destinations=destinations,
        source="journal" if live is None else "daemon",
    )


def offload_status(
    config: Config, journal: Journal, offload_id: int, signature: milestones.FileSignature | None = None,
) -> OffloadStatus | None:
    """One offload (milestones.py asks after copies land), without the safety
    verdict: counted by SQLite, so its cost in memory does not grow with its
    files. `signature` (read here only if a history must be compared) is the
    caller's, for it to read the files once."""
    for t in _tallies(journal, offload_id).values():
        o = _offload(config, t)
        o.mhl_behind = _mhl_behind(o, signature or milestones.FileSignature(journal, offload_id))
        _apply_readiness(o, _readiness(journal, t.watch, t.name).get((t.watch, t.name)))
        return o
    return None


def _readiness(
    journal: Journal, watch: str | None = None, name: str | None = None,
) -> dict[tuple[str, str], tuple[str, str | None, list[SourceProblem]]]:
    """(watch, offload) -> (state, detail, problems) of offloads a readiness rule held back."""
    found: dict[tuple[str, str], tuple[str, str | None, list[SourceProblem]]] = {
        key: (state, detail, []) for key, (state, detail) in offload_checks.states(journal, watch).items()
        if name is None or key[1] == name
    }
    for p in offload_checks.problems(journal, watch, name):
        entry = found.setdefault((p.watch, p.offload), ("source_mismatch", None, []))
        entry[2].append(SourceProblem(path=p.relpath, problem=p.kind, detail=p.detail, accepted=p.accepted))
    return found


def _apply_readiness(o: OffloadStatus, readiness: tuple[str, str | None, list[SourceProblem]] | None) -> None:
    if readiness is not None:
        o.state, o.state_detail, o.problems = readiness


def _sequences(paths: list[str]) -> list[str]:
    from .sequences import group

    inside = (p.split("/", 1)[-1] for p in paths)  # the offload's name is the entry's own
    return [f"{s.pattern} ({len(s.frames)} files)" for s in group(inside).sequences]


def _files(journal: Journal) -> tuple[list[FileStatus], dict[int, list[str]]]:
    """Every current file with its copies' states (the JSON's `files`), and
    the paths of each offload."""
    by_id: dict[int, FileStatus] = {}
    paths: dict[int, list[str]] = defaultdict(list)
    for r in journal.rows(
        "SELECT f.id, o.id AS offload_id, o.name, f.relpath, f.size, f.xxh64, c.destination, c.state, "
        "c.last_error FROM files f JOIN offloads o ON o.id = f.offload_id LEFT JOIN copies c ON c.file_id = f.id "
        "WHERE f.current = 1 ORDER BY o.name, f.relpath, c.destination",
    ):
        item = by_id.get(r["id"])
        if item is None:  # built, not validated: the journal's columns have the model's types
            item = by_id[r["id"]] = FileStatus.model_construct(
                offload=r["name"], path=r["relpath"], size=r["size"], xxh64=r["xxh64"], destinations={}, errors={},
            )
            paths[r["offload_id"]].append(r["relpath"])
        if r["destination"] is not None:
            item.destinations[r["destination"]] = r["state"]
            if r["last_error"] and r["state"] != "verified":
                item.errors[r["destination"]] = r["last_error"]
    return list(by_id.values()), paths


@dataclass(slots=True)
class Tally:
    """An offload's files and copies as SQLite counts them."""

    offload_id: int
    watch: str
    name: str
    files: int = 0
    bytes: int = 0
    verified_files: int = 0  # verified at every destination holding a row for it
    failed_files: int = 0
    states: dict[str, dict[str, int]] = field(default_factory=dict)  # destination -> state -> files
    state_bytes: dict[str, dict[str, int]] = field(default_factory=dict)  # destination -> state -> bytes


def _tallies(journal: Journal, offload_id: int | None = None) -> dict[int, Tally]:
    """Offloads with current files, by name, counted in SQL (one pass per query)."""
    where, args = ("", ()) if offload_id is None else (" AND f.offload_id = ?", (offload_id,))
    found: dict[int, Tally] = {}
    for oid, watch, name, files, size, verified, failed in journal.db.execute(
        "SELECT o.id, o.watch, o.name, COUNT(*), SUM(t.size), SUM(t.copies > 0 AND t.ok = t.copies), SUM(t.bad > 0) "
        "FROM (SELECT f.offload_id, f.size, COUNT(c.id) AS copies, SUM(c.state = 'verified') AS ok, "
        "SUM(c.state = 'failed') AS bad FROM files f LEFT JOIN copies c ON c.file_id = f.id "
        f"WHERE f.current = 1{where} GROUP BY f.id) t JOIN offloads o ON o.id = t.offload_id "
        "GROUP BY o.id ORDER BY o.name, o.id",
        args,
    ):
        found[oid] = Tally(oid, watch, name, files, size or 0, verified or 0, failed or 0)
    for oid, dest, state, count, size in journal.db.execute(
        "SELECT f.offload_id, c.destination, c.state, COUNT(*), SUM(f.size) FROM files f "
        f"JOIN copies c ON c.file_id = f.id WHERE f.current = 1{where} "
        "GROUP BY f.offload_id, c.destination, c.state ORDER BY c.destination",
        args,
    ):
        t = found[oid]
        t.states.setdefault(dest, {})[state] = count
        t.state_bytes.setdefault(dest, {})[state] = size
    return found


def _offload(config: Config, t: Tally) -> OffloadStatus:
    complete = [d for d, states in t.states.items() if states.get("verified", 0) == t.files]
    copies, media, offsite, missing = rule_321(config, t.watch, complete)
    return OffloadStatus(
        name=t.name,
        watch=t.watch,
        files=t.files,
        bytes=t.bytes,
        verified_files=t.verified_files,
        failed_files=t.failed_files,
        copies=copies,
        media_types=media,
        offsite_copies=offsite,
        rule_321_met=not missing,
        missing=missing,
        destinations={d: dict(states) for d, states in sorted(t.states.items())},
        verified_bytes={d: t.state_bytes[d].get("verified", 0) for d in sorted(t.states)},
    )


def rule_321(config: Config, watch: str, complete: Iterable[str]) -> tuple[int, int, int, list[str]]:
    """(copies, kinds of media, off-site copies, what is missing in words) of
    an offload held whole by the `complete` destinations (those no longer
    configured do not count)."""
    configured = {d.name: d for d in config.destination}
    held = [configured[d] for d in complete if d in configured]
    source_media = next((w.media for w in config.watch if str(w.path) == watch), "source")
    media = {source_media} | {d.media for d in held}
    offsite = sum(1 for d in held if d.offsite)
    copies = 1 + len(held)
    missing = []
    if copies < 3:
        missing.append(f"{3 - copies} more verified cop{'y' if copies == 2 else 'ies'}")
    if len(media) < 2:
        missing.append("a second kind of media")
    if offsite < 1:
        missing.append("an off-site copy")
    return copies, len(media), offsite, missing


def expected_destinations(config: Config, watch: str, present: Iterable[str]) -> list[str]:
    """Where every file of an offload must be: its watch folder's destinations
    (as configured now) and any other destination that holds rows for it."""
    names = next((list(w.destinations) for w in config.watch if str(w.path) == watch), [])
    return names + [d for d in present if d not in names]


def unverified_reasons(config: Config, o: OffloadStatus) -> list[str]:
    reasons = []
    if o.failed_files:
        reasons.append(f"{o.failed_files} file(s) failed: their source cannot be read")
    for dest in expected_destinations(config, o.watch, o.destinations):
        left = o.files - o.destinations.get(dest, {}).get("verified", 0)  # one row per file and destination
        if left:
            reasons.append(f"{left} file(s) not yet verified at {dest}")
    if not o.rule_321_met:
        reasons.append("3-2-1 needs " + ", ".join(o.missing))
    if o.mhl_behind:
        reasons.append("ASC MHL generation not yet written at " + ", ".join(o.mhl_behind))
    if o.state not in ("ready", "accepted"):
        reasons.append(f"the source is {o.state}" + (f": {o.state_detail}" if o.state_detail else ""))
    return reasons


def _mhl_behind(o: OffloadStatus, signature: milestones.FileSignature) -> list[str]:
    """Destinations holding every file verified whose last ASC MHL generation
    does not list exactly the current files and hashes (loose files carry no
    history, so they are never behind)."""
    journal, offload_id = signature.journal, signature.offload_id
    complete = [d for d, states in o.destinations.items() if o.files and states.get("verified", 0) == o.files]
    if not offload_id or not complete or not journal.has_folders(offload_id):
        return []
    current = signature()
    behind = []
    for dest in complete:
        last = journal.last_generation(offload_id, dest)
        if last is None or last[1] != current:
            behind.append(dest)
    return behind


def _judge_safety(config: Config, o: OffloadStatus, marked: str | None, signature: milestones.FileSignature) -> None:
    """Safe to format = nothing left to do and the daemon confirmed it once the
    offload had stopped arriving (the mark carries the files and hashes it saw)."""
    reasons = unverified_reasons(config, o)
    if not reasons and marked != signature():
        reasons.append("complete in the journal, but the daemon has not yet confirmed the offload stopped arriving")
    o.unsafe_reasons = reasons
    o.safe_to_format = not reasons


def _eta(t: Tally, throughput: dict[str, float | None]) -> float | None:
    """Seconds until the slowest destination holds every file; 0 when done,
    None when a destination with work left has no throughput to go by."""
    slowest = 0.0
    for dest, sizes in t.state_bytes.items():
        left = sizes.get("pending", 0) + sizes.get("transferring", 0)
        if not left:
            continue
        rate = throughput.get(dest)
        if not rate:
            return None
        slowest = max(slowest, left / rate)
    return round(slowest, 1)


def _recent_throughput(journal: Journal, name: str, now: float) -> float | None:
    """Bytes per second sent in the last few minutes, from verified copies."""
    row = journal.db.execute(
        "SELECT COALESCE(SUM(bytes_sent), 0), MIN(verified_at) FROM copies "
        "WHERE destination = ? AND verified_at >= ? AND bytes_sent > 0",
        (name, now - THROUGHPUT_WINDOW),
    ).fetchone()
    if not row[0]:
        return None
    return round(row[0] / max(30.0, now - row[1]), 1)


def _destination(config: Config, journal: Journal, dest: Any, live: LiveFigures | None = None) -> DestinationStatus:
    backlog = journal.db.execute(
        "SELECT COUNT(*), COALESCE(SUM(f.size), 0), MIN(f.first_seen) FROM copies c JOIN files f ON f.id = c.file_id "
        "WHERE c.destination = ? AND f.current = 1 AND c.state IN ('pending', 'transferring')",
        (dest.name,),
    ).fetchone()
    state = journal.destination_state(dest.name)
    return DestinationStatus(
        name=dest.name,
        type=dest.type,
        media=dest.media,
        offsite=dest.offsite,
        state=state[0] if state else "unknown",
        error=state[1] if state else None,
        backlog_files=backlog[0],
        backlog_bytes=backlog[1],
        oldest_pending_seconds=None if backlog[2] is None else round(time.time() - backlog[2], 1),
        throughput_bytes_per_s=live.throughput(dest.name) if live else _recent_throughput(journal, dest.name, time.time()),
        in_flight=live.in_flight(dest.name) if live else 0,
        bandwidth_limit_bytes_per_s=limit_at(dest.bandwidth),
    )


def render_text(status: Status) -> str:
    """Plain text (no colours, no terminal needed): what `status` prints into a pipe."""
    from .status_view import plain

    return plain(status)
