"""What is safe and what is not yet: status computed from the journal.

The JSON shape is a contract (tools and tests read it), so it is declared as
pydantic models: `offloads` with the 3-2-1 verdict, `files` with each
destination's state, `destinations` with their backlog.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from pydantic import BaseModel

from .config import Config
from .journal import Journal
from .fields import age_text, format_size


class FileStatus(BaseModel):
    offload: str
    path: str  # relative to the watch folder, as at every destination
    size: int
    xxh64: str | None
    destinations: dict[str, str]
    errors: dict[str, str] = {}


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


class Status(BaseModel):
    generated_at: float
    offloads: list[OffloadStatus]
    files: list[FileStatus]
    destinations: list[DestinationStatus]


def collect(config: Config, journal: Journal) -> Status:
    files, per_offload = _files(journal)
    offloads = [_offload(config, watch, name, members) for (watch, name), members in per_offload.items()]
    return Status(
        generated_at=time.time(),
        offloads=offloads,
        files=files,
        destinations=[_destination(config, journal, d) for d in config.destination],
    )


def _files(journal: Journal) -> tuple[list[FileStatus], dict[tuple[str, str], list[FileStatus]]]:
    by_id: dict[int, FileStatus] = {}
    per_offload: dict[tuple[str, str], list[FileStatus]] = defaultdict(list)
    for r in journal.rows(
        "SELECT f.id, o.watch, o.name, f.relpath, f.size, f.xxh64, c.destination, c.state, c.last_error "
        "FROM files f JOIN offloads o ON o.id = f.offload_id LEFT JOIN copies c ON c.file_id = f.id "
        "WHERE f.current = 1 ORDER BY o.name, f.relpath, c.destination"
    ):
        item = by_id.get(r["id"])
        if item is None:
            item = by_id[r["id"]] = FileStatus(offload=r["name"], path=r["relpath"], size=r["size"], xxh64=r["xxh64"], destinations={})
            per_offload[(r["watch"], r["name"])].append(item)
        if r["destination"] is not None:
            item.destinations[r["destination"]] = r["state"]
            if r["last_error"] and r["state"] != "verified":
                item.errors[r["destination"]] = r["last_error"]
    return list(by_id.values()), per_offload


def _offload(config: Config, watch: str, name: str, members: list[FileStatus]) -> OffloadStatus:
    configured = {d.name: d for d in config.destination}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in members:
        for dest, state in f.destinations.items():
            counts[dest][state] += 1
    complete = [configured[d] for d, c in counts.items() if d in configured and c.get("verified", 0) == len(members)]
    source_media = next((w.media for w in config.watch if str(w.path) == watch), "source")
    media = {source_media} | {d.media for d in complete}
    offsite = sum(1 for d in complete if d.offsite)
    copies = 1 + len(complete)
    missing = []
    if copies < 3:
        missing.append(f"{3 - copies} more verified cop{'y' if copies == 2 else 'ies'}")
    if len(media) < 2:
        missing.append("a second kind of media")
    if offsite < 1:
        missing.append("an off-site copy")
    return OffloadStatus(
        name=name,
        watch=watch,
        files=len(members),
        bytes=sum(f.size for f in members),
        verified_files=sum(1 for f in members if f.destinations and all(s == "verified" for s in f.destinations.values())),
        failed_files=sum(1 for f in members if "failed" in f.destinations.values()),
        copies=copies,
        media_types=len(media),
        offsite_copies=offsite,
        rule_321_met=not missing,
        missing=missing,
        destinations={d: dict(c) for d, c in sorted(counts.items())},
    )


def _destination(config: Config, journal: Journal, dest: Any) -> DestinationStatus:
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
    )


def render_text(status: Status) -> str:
    """A plain table per offload, then the destinations."""
    lines: list[str] = []
    for o in status.offloads:
        verdict = "3-2-1 met" if o.rule_321_met else "3-2-1 NOT met: needs " + ", ".join(o.missing)
        lines.append(f"{o.name}  ({o.files} files, {format_size(o.bytes)})  {verdict}")
        lines.append(f"  copies {o.copies}, media {o.media_types}, off-site {o.offsite_copies}")
        for dest, counts in o.destinations.items():
            parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            lines.append(f"  {dest:<16} {parts}")
        for f in status.files:
            if f.offload == o.name and f.errors:
                for dest, err in f.errors.items():
                    lines.append(f"  ! {f.path} -> {dest}: {err}")
    if not status.offloads:
        lines.append("no offloads seen yet")
    lines.append("")
    lines.append("destinations:")
    for d in status.destinations:
        age = "" if d.oldest_pending_seconds is None else f", oldest {age_text(d.oldest_pending_seconds)}"
        err = f" — {d.error}" if d.error and d.state != "up" else ""
        lines.append(
            f"  {d.name:<16} {d.type:<6} {d.state:<7} backlog {d.backlog_files} files, {format_size(d.backlog_bytes)}{age}{err}"
        )
    return "\n".join(lines)
