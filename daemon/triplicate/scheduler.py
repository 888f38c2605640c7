"""Destination workers: claim a copy row, put it, record the outcome.

Each destination has its own workers (its `concurrency`), so a slow or broken
destination never holds the others back. Outcomes are written to the journal by
plain synchronous calls between awaits: a cancellation can interrupt a transfer
but never a half-written outcome.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import structlog

from .destinations.base import CopiesInPlace, Destination, Receipt, SharedReads, SourceFile
from .errors import (
    CopyRefused,
    PermanentError,
    SourceChanged,
    SourceUnreadable,
    TransientError,
    VerificationFailed,
)
from .journal import CopyJob, Journal
from .retry import Backoff
from .shared_read import START_BYTES

log = structlog.get_logger("triplicate.scheduler")


class JournalResume:
    """ResumeState of one copy row, kept in the journal."""

    def __init__(self, journal: Journal, copy_id: int) -> None:
        self.journal = journal
        self.copy_id = copy_id
        self._empty = False  # known to hold nothing: a clear need not write

    def load(self) -> dict[str, Any] | None:
        state = self.journal.load_resume(self.copy_id)
        self._empty = state is None
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.journal.save_resume(self.copy_id, state)
        self._empty = False

    def clear(self) -> None:
        if not self._empty:  # a transaction per copied file otherwise, for a small file's nothing
            self.journal.save_resume(self.copy_id, None)
            self._empty = True


class FilesInFlight:
    """File versions some destination is copying right now. Other destinations
    take those first, so they read alongside it (shared_read.py) instead of
    reading the same file again later."""

    def __init__(self) -> None:
        self.copying: dict[int, set[str]] = {}  # file id -> destinations copying it
        self.runners: list[DestinationRunner] = []

    def add(self, file_id: int, destination: str) -> None:
        self.copying.setdefault(file_id, set()).add(destination)

    def remove(self, file_id: int, destination: str) -> None:
        left = self.copying.get(file_id)
        if left is not None:
            left.discard(destination)
            if not left:
                del self.copying[file_id]

    def elsewhere(self, destination: str) -> list[int]:
        """Files other destinations are copying and `destination` is not."""
        return [f for f, dests in self.copying.items() if destination not in dests]

    def readers_coming(self, job: CopyJob, me: DestinationRunner) -> int:
        """How many destinations will read this version together: `me` and each
        other one with a free worker and the copy due, which takes the file
        within moments (it prefers files copied elsewhere). Busy ones are not
        waited for: they read on their own when they get to it."""
        if job.size <= START_BYTES:
            return 1  # held whole until its last reader leaves
        now = time.time()
        return 1 + sum(1 for r in self.runners if r is not me and r.free_for(job, now))


class DestinationRunner:
    def __init__(
        self,
        dest: Destination,
        journal: Journal,
        backoff: Backoff,
        once_attempts: int | None,
        on_verified: Callable[[CopyJob], None],
        on_source_changed: Callable[[CopyJob], None],
        degraded_after: int = 5,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        files_in_flight: FilesInFlight | None = None,
    ) -> None:
        self.dest = dest
        self.name = dest.name
        self.journal = journal
        self.backoff = backoff
        self.once_attempts = once_attempts  # None: daemon mode, retry forever
        self.on_verified = on_verified
        self.on_source_changed = on_source_changed
        self.wake = asyncio.Event()
        self.stopping = False
        self.opened = False
        self._opening = asyncio.Lock()
        self.open_failures = 0
        self.failures_in_a_row = 0
        self.degraded_after = degraded_after
        self.gave_up_destination = False
        self.paused_until = 0.0
        self.in_flight = 0
        self.tried: dict[int, int] = {}
        self.gave_up: set[int] = set()
        self.bytes_sent = 0
        self.on_event = on_event  # operations.py: metrics and notifications, never blocking
        self.files_in_flight = files_in_flight if files_in_flight is not None else FilesInFlight()
        self.files_in_flight.runners.append(self)
        self.throttle: Any = None  # bandwidth.Throttle, set by the daemon; rate kept by operations.py
        self.log = log.bind(destination=self.name)

    # ---- lifecycle -------------------------------------------------------

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}") for i in range(self.dest.config.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if self in self.files_in_flight.runners:
                self.files_in_flight.runners.remove(self)
            await self.dest.close()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    @property
    def settled(self) -> bool:
        """In a one-shot run: nothing in flight and nothing left to try now."""
        if self.in_flight:
            return False
        if self.gave_up_destination:
            return True
        return self._claimable(time.time() + 3600) is None and self.opened

    # ---- the loop ----------------------------------------------------------

    async def _worker(self) -> None:
        while not self.stopping:
            if not await self._ensure_open():
                continue
            job = self._claim()
            if job is None:
                await self._sleep_until_due()
                continue
            self.in_flight += 1
            self.files_in_flight.add(job.file_id, self.name)
            try:
                await self._work(job)
            finally:
                self.in_flight -= 1
                self.files_in_flight.remove(job.file_id, self.name)

    def free_for(self, job: CopyJob, now: float) -> bool:
        """Whether a worker of this destination is free to start reading this
        file from its start now, alongside the destination copying it."""
        if not self.opened or self.stopping or now < self.paused_until or self.in_flight >= self.dest.config.concurrency:
            return False
        if self.name in self.files_in_flight.copying.get(job.file_id, ()):
            return False
        if isinstance(self.dest, SharedReads) and not self.dest.joins_shared_read(job.size, job.xxh64 is not None):
            return False
        return bool(self.journal.due_among(self.name, [job.file_id], now))

    def _claimable(self, now: float) -> int | None:
        elsewhere = self.files_in_flight.elsewhere(self.name)
        if elsewhere:
            for copy_id in self.journal.due_among(self.name, elsewhere, now):
                if copy_id not in self.gave_up:
                    return copy_id
        for copy_id in self.journal.due_ids(self.name, now, limit=len(self.gave_up) + 1):
            if copy_id not in self.gave_up:
                return copy_id
        return None

    def _claim(self) -> CopyJob | None:
        now = time.time()
        if now < self.paused_until:
            return None
        copy_id = self._claimable(now)
        return None if copy_id is None else self.journal.claim_id(copy_id, now)

    async def _sleep_until_due(self) -> None:
        due = self.journal.next_due(self.name)
        wait = 60.0 if due is None else max(0.05, min(60.0, due - time.time()))
        if self.paused_until > time.time():
            wait = max(wait, self.paused_until - time.time())
        await self._pause(wait)

    async def _ensure_open(self) -> bool:
        if self.opened:
            return True
        async with self._opening:  # one worker opens; another must never take a half-open destination for open
            return self.opened or await self._open()

    async def _open(self) -> bool:
        try:
            await self.dest.open()
        except (TransientError, PermanentError) as exc:
            self.open_failures += 1
            self.journal.set_destination_state(self.name, "down", str(exc))
            if self.open_failures == 1:
                self.log.error("destination_unavailable", error=str(exc))
            if self.once_attempts is not None and self.open_failures >= self.once_attempts:
                self.gave_up_destination = True
                self.stopping = True
                return False
            await self._pause(self.backoff.delay(self.open_failures))
            return False
        if self.open_failures:
            self.log.info("destination_available", after_failures=self.open_failures)
        self.opened, self.open_failures = True, 0
        known = self.journal.destination_state(self.name)
        if known is not None and known[0] == "degraded":
            self.failures_in_a_row = self.degraded_after  # the first good copy will say it recovered
        else:
            self.journal.set_destination_state(self.name, "up", None)
        return True

    def _count_outcome(self, error: Exception | None) -> None:
        """Degraded after `degraded_after` failed copies in a row: one log line
        when it happens and one when the destination recovers, not one per file."""
        if error is None:
            if self.failures_in_a_row >= self.degraded_after:
                self.log.info("destination_recovered", after_failures=self.failures_in_a_row)
                self._emit("destination_recovered", after_failures=self.failures_in_a_row)
                self.journal.set_destination_state(self.name, "up", None)
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row += 1
        if self.failures_in_a_row == self.degraded_after:
            self.log.error("destination_degraded", failures_in_a_row=self.failures_in_a_row, error=str(error))
            self._emit("destination_degraded", failures_in_a_row=self.failures_in_a_row, error=str(error))
        if self.failures_in_a_row >= self.degraded_after:
            self.journal.set_destination_state(self.name, "degraded", str(error))

    async def _pause(self, seconds: float) -> None:
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except TimeoutError:
            pass

    # ---- one copy --------------------------------------------------------------

    async def _work(self, job: CopyJob) -> None:
        src = SourceFile(
            job.source_path, job.relpath, job.size, job.mtime_ns, job.xxh64, limiter=self.throttle,
            readers=self.files_in_flight.readers_coming(job, self),
        )
        jlog = self.log.bind(offload=job.offload, file=job.relpath, attempt=job.attempts)
        self.tried[job.copy_id] = self.tried.get(job.copy_id, 0) + 1
        started = time.monotonic()
        try:
            receipt = await self._copy_or_put(job, src)
        except asyncio.CancelledError:
            self.journal.release(job.copy_id)
            raise
        except SourceChanged as exc:
            self._source_changed(job, str(exc), jlog)
        except SourceUnreadable as exc:
            self.journal.record_failed(job.copy_id, str(exc))
            jlog.error("source_unreadable", error=str(exc))
            self._emit("file_failed", offload=job.offload, file=job.relpath, error=str(exc))
        except CopyRefused as exc:  # this file only: no pause, and not the destination's failure
            self._retry_later(job, exc, "permanent", jlog, counts=False)
        except PermanentError as exc:
            self._retry_later(job, exc, "permanent", jlog)
            self.paused_until = time.time() + self.backoff.permanent
            if self.once_attempts is not None and self.failures_in_a_row >= self.once_attempts:
                self.gave_up_destination = self.stopping = True  # it needs a person; end this run
        except (TransientError, VerificationFailed) as exc:
            self._retry_later(job, exc, "transient", jlog)
        except Exception as exc:  # a bug must cost a retry, never a file
            jlog.exception("transfer_crashed")
            self._retry_later(job, TransientError(f"internal error: {exc!r}"), "transient", jlog)
        else:
            self._record(job, receipt, time.monotonic() - started, jlog)

    async def _copy_or_put(self, job: CopyJob, src: SourceFile) -> Receipt:
        """A moved file is copied from the copy this destination already holds,
        where the destination can (`Destination.copy`); otherwise sent."""
        if job.copy_from is not None and src.xxh64 is not None and isinstance(self.dest, CopiesInPlace):
            receipt = await self.dest.copy(job.copy_from, src)
            if receipt is not None:
                return receipt
            self.log.info("copy_source_unusable", file=job.relpath, copy_from=job.copy_from)
        return await self.dest.put(src, JournalResume(self.journal, job.copy_id), self._progress)

    def _record(self, job: CopyJob, receipt: Receipt, seconds: float, jlog: Any) -> None:
        if receipt.key != job.relpath or receipt.size != job.size:
            self._retry_later(job, VerificationFailed(f"destination answered for {receipt.key} ({receipt.size} bytes)"), "transient", jlog)
            return
        if not self.journal.record_verified(job, receipt.xxh64, receipt.bytes_sent):
            self._source_changed(job, "two reads of the same version gave different hashes", jlog)
            return
        self._count_outcome(None)
        event = "copy_already_present" if receipt.skipped else "copy_verified"
        if job.copy_from is not None and receipt.bytes_sent == 0 and not receipt.skipped:
            fields_from = {"copy_from": job.copy_from, "verified_by": receipt.evidence.get("verified_by", "")}
        else:
            fields_from = {}
        fields: dict[str, Any] = {"size": receipt.size, "xxh64": receipt.xxh64, "seconds": round(seconds, 3)}
        if receipt.bytes_sent >= 1_000_000 and seconds > 0:
            fields["mb_per_s"] = round(receipt.bytes_sent / seconds / 1e6, 1)
        jlog.info(event, **fields, **fields_from)
        self._emit("copy_verified", offload=job.offload, file=job.relpath, size=receipt.size,
                   bytes_sent=receipt.bytes_sent, seconds=seconds, skipped=receipt.skipped)
        self.on_verified(job)

    def _source_changed(self, job: CopyJob, error: str, jlog: Any) -> None:
        """The bytes read are not the version the journal describes: drop the
        version; the watcher looks at the file again and records the new one."""
        self.journal.supersede(job.file_id)
        jlog.warning("source_changed", error=error)
        self.on_source_changed(job)

    def _retry_later(self, job: CopyJob, exc: Exception, kind: str, jlog: Any, counts: bool = True) -> None:
        if counts:
            self._count_outcome(exc)
        delay = self.backoff.permanent if kind == "permanent" else self.backoff.delay(job.attempts)
        self.journal.record_retry(job.copy_id, str(exc), kind, time.time() + delay)
        if self.once_attempts is not None and self.tried[job.copy_id] >= self.once_attempts:
            self.gave_up.add(job.copy_id)
        jlog.warning("copy_failed_will_retry", error=str(exc), kind=kind, retry_in_s=round(delay, 1))
        self._emit("copy_retry", offload=job.offload, file=job.relpath, kind=kind, error_class=type(exc).__name__)

    def _progress(self, n: int) -> None:
        self.bytes_sent += n

    def _emit(self, event: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, {"destination": self.name, **fields})
