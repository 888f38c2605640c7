"""Milestones of an offload: "safe to format" and "report written".

A milestone is kept in the journal's `milestones` table with the signature
(paths and hashes of the current files) it was reached with, so it holds only
while the offload is still that set of files: a file added later to the same
card folder makes the offload unsafe again until it, too, is everywhere.

`OffloadMilestones` is the running daemon's part. After every verified copy it
looks at the offload again (coalesced: one look per offload however many copies
land at once); when the offload has stopped arriving, every file is verified
at every destination and 3-2-1 is met, it marks it safe, says so (event
`offload_safe`) and writes the chain-of-custody report into every local
destination that holds the whole offload.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

import structlog

from .config import Config
from .journal import Journal

if TYPE_CHECKING:
    from .status import OffloadStatus  # status imports this module

log = structlog.get_logger("triplicate.milestones")

SAFE = "safe"
REPORT = "report"
LOOKED = "looked"  # the change stamp and config a look left nothing to do with
LOOK_PACE = 4.0  # bench/RESULTS.md, case 2: looks were 70% of the loop for 2,000 small files


def signature(files: Iterable[tuple[str, str | None]]) -> str:
    """(relpath, xxh64) pairs -> one digest; order does not matter."""
    return _digest(sorted(files, key=lambda pair: pair[0])).hexdigest()


def signature_in_order(files: Iterable[tuple[str, str | None]]) -> str:
    """`signature` of pairs already in path order (as the journal's index
    gives them), without holding them."""
    return _digest(files).hexdigest()


def offload_signature(journal: Journal, offload_id: int) -> str:
    """`signature` of an offload's current files, read in order from the
    journal's index instead of sorted in memory: an offload of 100,000 frames
    is looked at without a Python object per file. The digests are equal
    because SQLite compares UTF-8 bytes, and UTF-8 byte order is code point order."""
    rows = journal.db.execute(
        "SELECT relpath, xxh64 FROM files WHERE offload_id = ? AND current = 1 ORDER BY relpath", (offload_id,)
    )
    return signature_in_order(rows)


class FileSignature:
    """An offload's `offload_signature`, read from the journal at most once
    however many parts of one look or report ask for it (each read walks
    every current file)."""

    def __init__(self, journal: Journal, offload_id: int) -> None:
        self.journal, self.offload_id = journal, offload_id
        self._value: str | None = None

    def __call__(self) -> str:
        if self._value is None:
            self._value = offload_signature(self.journal, self.offload_id)
        return self._value


def _digest(ordered: Iterable[tuple[str, str | None]]) -> Any:
    digest = hashlib.sha256()
    for relpath, xxh64 in ordered:
        digest.update(f"{relpath}\0{xxh64}\n".encode())
    return digest


def signatures(journal: Journal, kind: str) -> dict[int, str]:
    rows = journal.db.execute("SELECT offload_id, signature FROM milestones WHERE kind = ?", (kind,))
    return {r[0]: r[1] for r in rows}


def reached_at(journal: Journal, offload_id: int, kind: str) -> tuple[str, float] | None:
    row = journal.db.execute(
        "SELECT signature, at FROM milestones WHERE offload_id = ? AND kind = ?", (offload_id, kind)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def mark(journal: Journal, offload_id: int, kind: str, sig: str) -> None:
    with journal._tx():
        journal.db.execute(
            "INSERT INTO milestones (offload_id, kind, signature, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (offload_id, kind) DO UPDATE SET signature = excluded.signature, at = excluded.at",
            (offload_id, kind, sig, time.time()),
        )


Emit = Callable[[str, dict[str, object]], None]


@dataclass(frozen=True)
class Seen:
    """What a look read from one snapshot of the journal."""

    o: OffloadStatus
    reasons: list[str]  # why it is not safe to format; none when it is
    signature: str  # of the current files, as a SAFE mark holds it
    report_signature: str  # the files, the destinations holding all, the verdict and the generations


class OffloadMilestones:
    """Looks at offloads after their copies land; marks, announces, reports."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        settling: Callable[[str, str], bool],
        emit: Emit,
        write_reports: Callable[[int, bool], Awaitable[bool]],
        before_look: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.journal = journal
        self.settling = settling  # (watch, offload) -> files of it still settling
        self.emit = emit
        self.write_reports = write_reports  # (offload id, safe) -> True when written everywhere due
        self.before_look = before_look  # lets ASC MHL generations in progress land first
        self._wanted: set[int] = set()
        self._not_before: dict[int, float] = {}  # offload id -> monotonic time its next look may start
        self._unpaced: set[int] = set()  # offloads whose next look is not paused (request_now)
        self._digested: Config | None = None  # the config _digest was made from
        self._digest = ""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def request(self, offload_id: int) -> None:
        self._wanted.add(offload_id)
        self._idle.clear()
        self._wake.set()

    def request_now(self, offload_id: int) -> None:
        """A look without the pause: an ASC MHL generation landed, once per
        offload and destination (not per file), and it may be all that keeps
        the offload from being safe to format."""
        self._unpaced.add(offload_id)
        self._not_before.pop(offload_id, None)
        self.request(offload_id)

    def request_all(self) -> None:
        for offload_id in self.journal.offload_ids():
            self.request(offload_id)

    async def idle(self) -> None:
        """Until every requested look has been taken."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._wanted:
                offload_id = await self._next_due()
                if offload_id is None:
                    break
                await self.before_look()  # generations scheduled by the copies that asked for this look
                began = time.monotonic()
                try:
                    await self.look(offload_id)
                except Exception:  # a report that cannot be written must not stop the daemon
                    log.exception("milestone_check_crashed", offload_id=offload_id)
                self._paused(offload_id, began)
                await asyncio.sleep(0)  # copies go on between looks (a restart looks at every offload)
            if not self._wanted:
                self._idle.set()

    async def _next_due(self) -> int | None:
        """A wanted offload whose pause is over, waiting for one if need be;
        None when the ones left need no look after all.

        A look reads the whole offload, and every verified copy asks for one:
        without a pause, an offload of N files landing one by one costs N
        looks of N rows and starves the copies. After a look, the same
        offload waits LOOK_PACE times as long as the look took, so looks
        take at most 1/(1+LOOK_PACE) of the time; other offloads do not wait.
        One whose look would stop at its first checks is not waited for."""
        while True:
            now = time.monotonic()
            for offload_id in list(self._wanted):
                if self._not_before.get(offload_id, 0.0) <= now:
                    self._wanted.discard(offload_id)
                    return offload_id
                if self._nothing_to_do(offload_id):
                    self._wanted.discard(offload_id)
            if not self._wanted:
                return None
            self._wake.clear()  # a request_now ends the wait
            try:
                await asyncio.wait_for(self._wake.wait(), min(self._not_before[o] for o in self._wanted) - now)
            except TimeoutError:
                pass

    def _paused(self, offload_id: int, began: float) -> None:
        if offload_id in self._unpaced:  # asked for during this look: it may have read too early
            self._unpaced.discard(offload_id)
            return
        ended = time.monotonic()
        if len(self._not_before) > 1000:  # forget pauses that are over
            self._not_before = {o: t for o, t in self._not_before.items() if t > ended}
        self._not_before[offload_id] = ended + (ended - began) * LOOK_PACE

    def _rule_321_reachable(self, offload_id: int) -> bool:
        """Whether 3-2-1 is met by the destinations holding every current file.
        Both milestones need it, and it takes two indexed counts where the
        look proper reads every file: most looks (history offloads at a
        restart, an offload still landing) stop here."""
        from .status import rule_321  # status imports this module

        files, verified = self.journal.verified_counts(offload_id)
        if not files:
            return False
        watch, _ = self.journal.offload(offload_id)
        return not rule_321(self.config, watch, [d for d, n in verified.items() if n == files])[3]

    def _stamp(self, offload_id: int) -> str:
        return f"{self.journal.changes(offload_id)} {self._config_digest()}"

    def _nothing_to_do(self, offload_id: int) -> bool:
        """3-2-1 cannot be met yet, or nothing a look reads has changed since
        one that left nothing to do: a few indexed reads."""
        if not self._rule_321_reachable(offload_id):
            return True
        return signatures_of(self.journal, offload_id, LOOKED) == self._stamp(offload_id)

    async def look(self, offload_id: int) -> None:
        if self._nothing_to_do(offload_id):
            return
        stamp = self._stamp(offload_id)
        if self.settling(*self.journal.offload(offload_id)):
            return
        # reads every current file: in a thread, on a snapshot, so copies go on meanwhile
        seen = await self.journal.read_apart(lambda view: self._read(view, offload_id))
        if seen is None or self.settling(seen.o.watch, seen.o.name):
            return  # a file began to arrive while the look read: its copy asks for the next one
        o, safe = seen.o, not seen.reasons
        log.debug("offload_looked", offload=o.name, safe=safe, reasons=seen.reasons)
        if safe and signatures_of(self.journal, offload_id, SAFE) != seen.signature:
            mark(self.journal, offload_id, SAFE, seen.signature)
            log.info("offload_safe", offload=o.name, files=o.files, bytes=o.bytes, copies=o.copies)
            self.emit("offload_safe", {
                "offload": o.name, "watch": o.watch, "files": o.files, "bytes": o.bytes,
                "copies": o.copies, "media_types": o.media_types, "offsite_copies": o.offsite_copies,
            })
        if o.rule_321_met and signatures_of(self.journal, offload_id, REPORT) != seen.report_signature:
            if not await self.write_reports(offload_id, safe):
                return  # not written everywhere: the next look tries again
            mark(self.journal, offload_id, REPORT, seen.report_signature)
        mark(self.journal, offload_id, LOOKED, stamp)

    def _read(self, view: Journal, offload_id: int) -> Seen | None:
        from .status import offload_status, unverified_reasons  # status imports this module

        read_files = FileSignature(view, offload_id)
        o = offload_status(self.config, view, offload_id, read_files)
        if o is None:
            return None
        reasons = unverified_reasons(self.config, o)
        safe = not reasons
        complete = sorted(d for d, states in o.destinations.items() if states.get("verified") == o.files)
        files = read_files()
        # what the report shows beside the files (names start with NUL, which no path holds)
        report = signature([
            ("\0files", files), ("\0complete", ",".join(complete)), ("\0safe", str(safe)),
            ("\0generations", str(_generation_count(view, offload_id))),
        ])
        return Seen(o, reasons, files, report)

    def _config_digest(self) -> str:
        """What a look reads from the config: destinations' media and off-site
        flags, each watch folder's media and destinations."""
        if self._digested is not self.config:
            parts = [[d.name, d.media, d.offsite] for d in self.config.destination]
            parts += [[str(w.path), w.media, list(w.destinations)] for w in self.config.watch]
            self._digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
            self._digested = self.config
        return self._digest


def _generation_count(journal: Journal, offload_id: int) -> int:
    return int(journal.db.execute("SELECT COUNT(*) FROM generations WHERE offload_id = ?", (offload_id,)).fetchone()[0])


def signatures_of(journal: Journal, offload_id: int, kind: str) -> str | None:
    found = reached_at(journal, offload_id, kind)
    return None if found is None else found[0]
