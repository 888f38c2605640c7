"""The chain-of-custody report of one offload: the page a DIT hands to a producer.

Every file with its size and xxh64, each destination's copy with the time it
was verified, the 3-2-1 verdict, "safe to format", and the ASC MHL generations
that record it. The page's head is a pydantic model (the JSON format); its
file table is read from the journal row by row as it is rendered, as CSV (one
row per file and destination), JSON or a self-contained HTML page laid out for
printing, so a 100,000-frame offload costs no Python object per file.

The running daemon writes the HTML page into every local destination's copy of
the offload (`REPORT_FILENAME`) once the offload meets 3-2-1, and again when it
becomes safe to format; ASC MHL generations list that name among their ignore
patterns, so `ascmhl-debug verify` at the destination does not call it a new file.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import html
import io
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import structlog
from pydantic import BaseModel, PrivateAttr

from . import __version__, milestones
from .config import Config
from .destinations.base import Destination
from .errors import PermanentError, TransientError
from .fields import format_size
from .journal import Journal

log = structlog.get_logger("triplicate.report")

REPORT_FILENAME = "triplicate-report.html"


@dataclass(slots=True)
class ReportCopy:
    destination: str
    state: str  # pending | transferring | verified | failed | missing
    verified_at: float | None = None
    error: str | None = None


@dataclass(slots=True)
class ReportFile:
    path: str  # relative to the watch folder, as at every destination
    size: int
    xxh64: str | None
    copies: list[ReportCopy]


class ReportDestination(BaseModel):
    name: str
    type: str
    media: str
    offsite: bool
    location: str
    verified_files: int
    complete: bool  # every file of the offload verified there


class ReportGeneration(BaseModel):
    destination: str
    number: int
    filename: str
    created_at: float


class Report(BaseModel):
    offload: str
    watch: str
    source_media: str
    generated_at: float
    generated_by: str
    file_count: int
    total_bytes: int
    copies: int
    media_types: int
    offsite_copies: int
    rule_321_met: bool
    missing: list[str]
    safe_to_format: bool
    safe_since: float | None
    unsafe_reasons: list[str]
    destinations: list[ReportDestination]
    generations: list[ReportGeneration]
    _rows: Callable[[], Iterator[ReportFile]] | None = PrivateAttr(default=None)

    def files(self) -> Iterator[ReportFile]:
        """The file table, by path, read from the journal as it is iterated."""
        return iter(()) if self._rows is None else self._rows()


class ReportError(Exception):
    """No such offload, or the name is ambiguous: one sentence."""


# ---- building --------------------------------------------------------------------


def find_offload(journal: Journal, name: str, watch: str | None = None) -> int:
    rows = journal.db.execute("SELECT id, watch FROM offloads WHERE name = ? ORDER BY id", (name,)).fetchall()
    if watch is not None:
        rows = [r for r in rows if r[1] == watch]
    if len(rows) == 1:
        return int(rows[0][0])
    if rows:
        watches = ", ".join(r[1] for r in rows)
        raise ReportError(f"offload {name!r} exists in more than one watch folder ({watches}); add --watch PATH")
    known = [r[0] for r in journal.db.execute("SELECT DISTINCT name FROM offloads ORDER BY first_seen DESC LIMIT 8")]
    hint = f"; recent offloads: {', '.join(known)}" if known else "; the journal has no offloads yet"
    raise ReportError(f"no offload named {name!r} in the journal {journal.path}{hint}")


def location(dest: Any) -> str:
    """Where a destination's copies are, in words (no secrets: config holds none)."""
    kind = dest.type
    if kind == "local":
        return str(dest.path)
    if kind == "s3":
        where = f" at {dest.endpoint_url}" if dest.endpoint_url else ""
        return f"s3://{dest.bucket}/{dest.prefix}{where}"
    if kind == "azure":
        return f"azure container {dest.container}/{dest.prefix}"
    if kind == "sftp":
        return f"sftp://{dest.username}@{dest.host}:{dest.port}/{dest.path}"
    return kind


def build_report(config: Config, journal: Journal, offload_id: int) -> Report:
    from .status import offload_status, unverified_reasons

    signature = milestones.FileSignature(journal, offload_id)
    o = offload_status(config, journal, offload_id, signature)
    if o is None:
        raise ReportError(f"offload #{offload_id} has no current files in the journal")
    reasons = unverified_reasons(config, o)
    mark = milestones.reached_at(journal, offload_id, milestones.SAFE)
    safe = not reasons and mark is not None and mark[0] == signature()
    if not reasons and not safe:
        reasons = ["complete in the journal, but the daemon has not yet confirmed the offload stopped arriving"]
    names = _destination_names(config, o.destinations)
    report = Report(
        offload=o.name, watch=o.watch,
        source_media=next((w.media for w in config.watch if str(w.path) == o.watch), "source"),
        generated_at=time.time(), generated_by=f"triplicate {__version__} on {socket.gethostname()}",
        file_count=o.files, total_bytes=o.bytes, copies=o.copies, media_types=o.media_types,
        offsite_copies=o.offsite_copies, rule_321_met=o.rule_321_met, missing=o.missing,
        safe_to_format=safe, safe_since=mark[1] if safe and mark else None, unsafe_reasons=reasons,
        destinations=[_destination(config, n, o.destinations.get(n, {}), o.files) for n in names],
        generations=_generations(journal, offload_id),
    )
    report._rows = functools.partial(_file_rows, journal, offload_id, names)
    return report


def _destination_names(config: Config, present: dict[str, Any]) -> list[str]:
    configured = [d.name for d in config.destination]
    return [n for n in configured if n in present] + sorted(n for n in present if n not in configured)


def _destination(config: Config, name: str, counts: dict[str, int], files: int) -> ReportDestination:
    dest = next((d for d in config.destination if d.name == name), None)
    verified = counts.get("verified", 0)
    if dest is None:
        return ReportDestination(name=name, type="?", media="?", offsite=False,
                                 location="no longer configured", verified_files=verified, complete=verified == files)
    return ReportDestination(
        name=name, type=dest.type, media=dest.media, offsite=dest.offsite, location=location(dest),
        verified_files=verified, complete=verified == files,
    )


def _file_rows(journal: Journal, offload_id: int, names: list[str]) -> Iterator[ReportFile]:
    rows = journal.db.execute(
        "SELECT f.id, f.relpath, f.size, f.xxh64, c.destination, c.state, c.verified_at, c.last_error FROM files f "
        "LEFT JOIN copies c ON c.file_id = f.id WHERE f.offload_id = ? AND f.current = 1 ORDER BY f.relpath, f.id",
        (offload_id,),
    )
    held: dict[str, ReportCopy]
    last, held, file = None, {}, None
    for file_id, path, size, xxh64, dest, state, verified_at, error in rows:
        if file_id != last:
            if file is not None:
                yield _with_copies(file, held, names)
            last, held, file = file_id, {}, ReportFile(path, size, xxh64, [])
        if dest is not None:
            held[dest] = ReportCopy(dest, state, verified_at, None if state == "verified" else error)
    if file is not None:
        yield _with_copies(file, held, names)


def _with_copies(file: ReportFile, held: dict[str, ReportCopy], names: list[str]) -> ReportFile:
    file.copies = [held.get(n) or ReportCopy(n, "missing") for n in names]
    return file


def _generations(journal: Journal, offload_id: int) -> list[ReportGeneration]:
    rows = journal.rows(
        "SELECT destination, number, filename, created_at FROM generations WHERE offload_id = ? "
        "ORDER BY destination, number",
        (offload_id,),
    )
    return [ReportGeneration(**dict(r)) for r in rows]


# ---- rendering -------------------------------------------------------------------


def utc_text(seconds: float | None) -> str:
    return "" if seconds is None else _utc_second(int(seconds))


@functools.lru_cache(maxsize=4096)
def _utc_second(second: int) -> str:
    # a report's copies are verified a few hundred to the second: format each second once
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_json(report: Report) -> str:
    whole = report.model_dump(mode="json")
    whole["files"] = [dataclasses.asdict(f) for f in report.files()]
    return json.dumps(whole, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS = ["offload", "path", "size", "xxh64", "destination", "media", "offsite", "state", "verified_at_utc", "error"]


def render_csv(report: Report) -> str:
    """One row per file and destination: what a spreadsheet filters and sorts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    dests = {d.name: d for d in report.destinations}
    for f in report.files():
        for c in f.copies:
            d = dests.get(c.destination)
            writer.writerow([
                report.offload, f.path, f.size, f.xxh64 or "", c.destination, d.media if d else "",
                "yes" if d and d.offsite else "no", c.state,
                utc_text(c.verified_at) if c.state == "verified" else "", c.error or "",
            ])
    return out.getvalue()


def render_html(report: Report) -> str:
    from .report_html import page

    return "".join(page(report))


RENDERERS = {"html": render_html, "json": render_json, "csv": render_csv}


# ---- writing into the destinations ---------------------------------------------------


async def write_to_destinations(
    config: Config, journal: Journal, destinations: dict[str, Destination], offload_id: int,
) -> bool:
    """The HTML report into every local destination holding the whole offload.
    True when every such write worked (or there is nowhere to write)."""
    if not journal.has_folders(offload_id):
        return True  # a loose file has no folder to hold a report
    report, data = await journal.read_apart(lambda view: _render_page(config, view, offload_id))
    ok = True
    for d in report.destinations:
        dest = destinations.get(d.name)
        if dest is None or d.type != "local" or not d.complete:
            continue
        key = f"{report.offload}/{REPORT_FILENAME}"
        try:
            await dest.write_bytes(key, data)
        except (TransientError, PermanentError, OSError) as exc:
            log.error("report_write_failed", offload=report.offload, destination=d.name, error=str(exc))
            ok = False
            continue
        log.info("report_written", offload=report.offload, destination=d.name, key=key,
                 safe_to_format=report.safe_to_format, size=format_size(len(data)))
    return ok


def _render_page(config: Config, journal: Journal, offload_id: int) -> tuple[Report, bytearray]:
    """The HTML page, read from a snapshot of the journal (a worker thread's
    job: 100,000 rows take seconds), encoded row by row."""
    from .report_html import page

    report = build_report(config, journal, offload_id)
    data = bytearray()  # no second whole copy of the page as one str
    for piece in page(report):
        data += piece.encode("utf-8")
    return report, data


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)
