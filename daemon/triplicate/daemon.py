"""The running daemon: journal + watchers + one runner per destination.

`Daemon.run()` is the whole flow: recover the journal, open destinations, scan
and watch, copy, write ASC MHL generations; until a signal (daemon mode) or
until everything present has been dealt with (`once`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import structlog

from . import config_secrets, offload_checks, pidfile
from .bandwidth import Throttle, limit_at
from .config import Config, WatchConfig, token_problem
from .destinations import registry
from .destinations.base import Destination
from .journal import CopyJob, Journal, SeenFile
from .journal_file import IntegrityCheck
from .known import KnownVersions
from .logs import log_loop_errors
from .manifests import ManifestWriter
from .operations import Operations
from .retry import Backoff
from .scheduler import DestinationRunner, FilesInFlight
from .shared_read import COUNTERS as SOURCE_READS
from .shared_read import SHARES
from .source import io_threads
from .watch import WatchFolder

DEFERRED_LOOK_SECONDS = 0.25
"""How often offloads that were still arriving when a copy verified are looked
at again for their ASC MHL generation."""

log = structlog.get_logger("triplicate.daemon")


def preflight(config: Config) -> list[str]:
    """Problems that stop the daemon before it starts, as sentences."""
    problems = []
    where = f"{config.source_file}: " if config.source_file else ""
    for i, watch in enumerate(config.watch):
        if not watch.path.is_dir():
            problems.append(
                f"{where}watch[{i}].path {watch.path} does not exist or is not a folder; "
                "create it or mount the volume, then start again"
            )
    token = token_problem(config.http, where)
    if token:
        problems.append(token)
    exposed, allowed = config_secrets.problems(config)
    for sentence in allowed:
        log.warning("secret_readable_by_others", problem=sentence)
    return problems + exposed


class Daemon:
    def __init__(self, config: Config, once: bool = False, check: IntegrityCheck | None = None) -> None:
        self.config = config
        self.once = once
        self.check = check  # the journal's integrity check, begun before the daemon was loaded
        self.journal = Journal(config.daemon.journal_path())
        self.destinations = {d.name: registry.create_for_daemon(d) for d in config.destination}
        SHARES.readers_here = registry.readers_in_daemon(config.destination)
        self.manifests = ManifestWriter(self.journal, self.destinations)
        self.files_in_flight = FilesInFlight()
        self.runners = {name: self._runner(dest) for name, dest in self.destinations.items()}
        self.watchers = [self._watcher(w) for w in config.watch]
        self._stop = asyncio.Event()
        self._deferred_looks: dict[tuple[int, str], tuple[str, str]] = {}  # (offload id, destination) -> (watch, offload)
        self._deferred_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ops = Operations(self)

    def _runner(self, dest: Destination) -> DestinationRunner:
        retry = self.config.daemon.retry
        runner = DestinationRunner(
            dest, self.journal, Backoff.from_settings(retry, self.once), retry.once_attempts if self.once else None,
            self._on_verified, self._on_source_changed, degraded_after=retry.degraded_after,
            on_event=lambda name, fields: self.ops.event(name, fields), files_in_flight=self.files_in_flight,
        )
        runner.throttle = Throttle(limit_at(dest.config.bandwidth))
        return runner

    def _watcher(self, watch: WatchConfig) -> WatchFolder:
        known = KnownVersions(self.journal.path, str(watch.path))  # read per offload as the scan reaches it
        return WatchFolder(watch, known, lambda batch: self._on_ready(watch, batch), journal=self.journal)

    # ---- callbacks -----------------------------------------------------------

    def _on_ready(self, watch: WatchConfig, batch: list[SeenFile]) -> None:
        new = self.journal.ingest(batch, watch.destinations)  # the watcher logs files_ready, summed per offload
        self.ops.on_ready(watch, batch)
        if new:
            for name in watch.destinations:
                if name in self.runners:  # absent for a moment while a reload replaces it
                    self.runners[name].wake.set()

    def _on_verified(self, job: CopyJob) -> None:
        self._generation_look(job.offload_id, job.destination, job.watch, job.offload)
        self.ops.on_verified(job.offload_id)

    def _generation_look(self, offload_id: int, destination: str, watch: str, offload: str) -> None:
        watcher = self._watcher_of(watch)
        if watcher is not None and watcher.unsettled(offload):
            # Still arriving: the history is written once it settles, even when
            # what settles last is never sent (a marker file, an excluded name).
            self._deferred_looks[(offload_id, destination)] = (watch, offload)
            self._deferred_wake.set()
        else:
            self.manifests.schedule(offload_id, destination)

    def _generations_cut_short(self) -> None:
        """Offloads held whole by a destination that changed there since its
        last look: a stop between the last copy and its generation (a crash,
        a power cut) is made good at the start, not at the first rescan."""
        for offload_id, destination, watch, offload in self.journal.generations_due():
            if destination in self.destinations:
                self._generation_look(offload_id, destination, watch, offload)

    async def _look_when_settled(self) -> None:
        while True:
            await self._deferred_wake.wait()
            await asyncio.sleep(DEFERRED_LOOK_SECONDS)
            for key, (watch, offload) in list(self._deferred_looks.items()):
                watcher = self._watcher_of(watch)
                if watcher is None or not watcher.unsettled(offload):
                    del self._deferred_looks[key]
                    self.manifests.schedule(*key)
            if not self._deferred_looks:
                self._deferred_wake.clear()

    def _on_source_changed(self, job: CopyJob) -> None:
        watcher = self._watcher_of(job.watch)
        if watcher is not None:
            watcher.forget(job.relpath, job.disk_path)

    def _watcher_of(self, watch: str) -> WatchFolder | None:
        return next((w for w in self.watchers if str(w.root) == watch), None)

    # ---- running ---------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def retry_now(self) -> None:
        """SIGUSR1 from `triplicate retry`: rows it made due are tried now,
        not when a destination's pause for an error that needed a person ends."""
        log.info("retry_requested")
        for runner in self.runners.values():
            runner.paused_until = 0.0
            runner.wake.set()

    async def run(self) -> int:
        """Returns the exit code: 0 when every copy is verified (once), else 1."""
        loop = asyncio.get_running_loop()
        log_loop_errors(loop)
        threads = io_threads(sum(d.config.concurrency for d in self.destinations.values()))
        loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="triplicate-io"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        if not self.once:
            loop.add_signal_handler(signal.SIGHUP, self.ops.request_reload)
            loop.add_signal_handler(signal.SIGUSR1, self.retry_now)
            pidfile.write(self.journal.path)
        recovered = self.journal.recover(self.check)
        self.journal.group_commits(call_later=loop.call_later)
        if self.once:
            self.journal.make_due_now()
        log.info("daemon_started", journal=str(self.journal.path), resumed_copies=recovered,
                 watches=[str(w.root) for w in self.watchers], destinations=list(self.destinations),
                 mode="once" if self.once else "daemon")
        tasks = self._tasks
        tasks += [asyncio.create_task(r.run(), name=f"runner-{n}") for n, r in self.runners.items()]
        tasks.append(asyncio.create_task(self._look_when_settled(), name="deferred-mhl-looks"))
        for watcher in self.watchers:
            watcher.start_events()
            tasks.append(asyncio.create_task(watcher.run(), name=f"watch-{watcher.root}"))
        for watcher in self.watchers:
            await watcher.full_scan("start-up")
        self._generations_cut_short()
        tasks.append(asyncio.create_task(self._housekeeping()))
        await self.ops.start()
        try:
            if self.once:
                await self._until_settled()
            else:
                await self._stop.wait()
        finally:
            await self._shutdown(tasks)
        return self._exit_code()

    async def _until_settled(self) -> None:
        """A one-shot run ends when no watcher waits for a file to settle and
        no destination has anything left to try in this run."""
        while not self._stop.is_set():
            if self._all_settled():
                await asyncio.sleep(0)  # let verified callbacks schedule their manifests
                if self._all_settled():
                    await self.manifests.drain()
                    await self.manifests.sweep()
                    await self.ops.settle()
                    return
            try:
                await asyncio.wait_for(self._stop.wait(), 0.1)
            except TimeoutError:
                pass

    def _all_settled(self) -> bool:
        return all(w.idle for w in self.watchers) and all(r.settled for r in self.runners.values())

    async def _housekeeping(self) -> None:
        """Periodic rescan (events get lost) and a manifest sweep."""
        interval = self.config.daemon.rescan_seconds
        while True:
            await asyncio.sleep(interval)
            for watcher in self.watchers:
                await watcher.full_scan("rescan")
            await self.manifests.sweep()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self.ops.stopping()
        for watcher in self.watchers:
            watcher.stop()
        for runner in self.runners.values():
            runner.stop()
        deadline = time.monotonic() + self.config.daemon.shutdown_grace_seconds
        while any(r.in_flight for r in self.runners.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.manifests.drain()
        await self.ops.stop()
        self.journal.commit()
        if not self.once:
            pidfile.remove(self.journal.path)
        # bytes read from source files against bytes handed to destinations: < 1 when copies shared reads
        log.info("daemon_stopped", source_read_bytes=SOURCE_READS.read_bytes, source_served_bytes=SOURCE_READS.served_bytes)

    def _exit_code(self) -> int:
        if not self.once:
            return 0
        states = self.journal.copy_state_counts()
        ok = states.get("verified", 0)
        undecided = offload_checks.undecided_count(self.journal)  # source files that need a person
        # an offload held by an unusable upstream history has no copy rows at all, yet needs a person too
        invalid = offload_checks.invalid_offloads(self.journal, [str(w.root) for w in self.watchers])
        not_ok = undecided + sum(n for s, n in states.items() if s not in ("verified", "superseded"))
        log.info("run_finished", verified=ok, not_verified=not_ok, mhl_generations=self.manifests.written,
                 source_problems=undecided, mhl_invalid=invalid)
        return 0 if not_ok == 0 and not invalid else 1

    def close(self) -> None:
        self.journal.close()


async def run_daemon(config: Config, once: bool, check: IntegrityCheck | None = None) -> int:
    daemon = Daemon(config, once, check)
    try:
        return await daemon.run()
    finally:
        daemon.close()

