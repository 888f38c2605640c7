"""The operator-facing parts of a running daemon, wired in one place.

Live throughput, Prometheus metrics, the offload milestones (safe to format,
chain-of-custody reports), notifications, the HTTP endpoint, systemd's notify
protocol and config reloads. `Daemon` calls in at a few points (start, copy
events, files ready, copies verified, stop); everything here runs beside the
copying and never holds it up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from . import report
from .bandwidth import limit_at
from .config import NOTIFY_EVENTS, Config, WatchConfig
from .fields import age_text, format_size
from .journal import SeenFile
from .live import LiveView
from .metrics import Metrics
from .milestones import OffloadMilestones
from .notify import Notifier
from .service import SystemdNotifier

if TYPE_CHECKING:
    from .daemon import Daemon
    from .http_api import HttpApi

log = structlog.get_logger("triplicate.operations")

NOTIFY_DRAIN_SECONDS = 10.0  # at a stop, time given to notifications still queued
BANDWIDTH_CHECK_SECONDS = 10.0  # how soon a schedule's next window takes effect


class Operations:
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.journal = daemon.journal
        self.live = LiveView(daemon.runners)
        self.metrics = Metrics(self.journal, self._destination_names, self.live, self._settling_counts)
        self.notifier = Notifier(daemon.config.notify, self.metrics.notification)
        self.milestones = OffloadMilestones(
            daemon.config, self.journal, self._settling, self.event, self._write_reports,
            daemon.manifests.wait_current,
        )
        daemon.manifests.on_written = self.milestones.request_now
        self.systemd = SystemdNotifier.from_environment()
        self.http: HttpApi | None = None
        self.started = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._reload_lock = asyncio.Lock()

    @property
    def config(self) -> Config:
        return self.daemon.config

    # ---- what the daemon calls ---------------------------------------------------

    def event(self, name: str, fields: dict[str, Any]) -> None:
        """A copy event from a runner, or a milestone: metrics, then notifications."""
        try:
            self.metrics.observe(name, fields)
        except Exception:  # metrics must never cost a copy
            log.exception("metrics_failed", metric_event=name)
        if name in NOTIFY_EVENTS:
            self.notifier.send(name, fields)

    def on_ready(self, watch: WatchConfig, batch: list[SeenFile]) -> None:
        """Files handed on by a watcher: an offload none of whose files still
        settles is ready."""
        for offload in sorted({item.offload for item in batch}):
            if self._settling(str(watch.path), offload):
                continue
            files, size = self.journal.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(f.size), 0) FROM files f JOIN offloads o ON o.id = f.offload_id "
                "WHERE o.watch = ? AND o.name = ? AND f.current = 1",
                (str(watch.path), offload),
            ).fetchone()
            self.event("offload_ready", {"offload": offload, "watch": str(watch.path), "files": files,
                                         "bytes": size, "destinations": list(watch.destinations)})

    def on_verified(self, offload_id: int) -> None:
        self.milestones.request(offload_id)

    async def start(self) -> None:
        """After the journal is open and the watchers run: serve, announce READY."""
        spawn = asyncio.create_task
        self._tasks += [spawn(self.live.run(), name="live"), spawn(self.milestones.run(), name="milestones")]
        self.notifier.start()
        await self._start_http(self.config)
        self.milestones.request_all()  # offloads that completed before a restart
        self._tasks.append(spawn(self._sweep_now_and_then(), name="milestone-sweep"))
        self._tasks.append(spawn(self._keep_bandwidth(), name="bandwidth"))
        self.started = True
        if self.systemd.enabled:  # the status line counts every pending copy: only for a listener
            self.systemd.ready(self.status_line())
            self._tasks.append(spawn(self.systemd.run(self.status_line), name="systemd"))

    async def _sweep_now_and_then(self) -> None:
        """A look at every offload per rescan period: a generation that landed
        after its offload's last look still reaches the report."""
        while True:
            await asyncio.sleep(self.config.daemon.rescan_seconds)
            self.milestones.request_all()

    async def _keep_bandwidth(self) -> None:
        """Each destination's limit follows its schedule (and a reload) live."""
        while True:
            for name, runner in list(self.daemon.runners.items()):
                rate = limit_at(runner.dest.config.bandwidth)
                if runner.throttle is not None and rate != runner.throttle.rate:
                    runner.throttle.set_rate(rate)
                    log.info("bandwidth_limit", destination=name,
                             limit="unlimited" if rate is None else f"{format_size(rate)}/s")
            await asyncio.sleep(BANDWIDTH_CHECK_SECONDS)

    async def settle(self) -> None:
        """End of a one-shot run: every offload looked at, reports written."""
        self.milestones.request_all()
        await self.milestones.idle()

    def stopping(self) -> None:
        self.systemd.stopping()

    async def stop(self) -> None:
        await self.notifier.drain(NOTIFY_DRAIN_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.close()
        if self.http is not None:
            await self.http.stop()
        self.systemd.close()

    # ---- reload ---------------------------------------------------------------------

    def request_reload(self) -> None:
        self._tasks.append(asyncio.create_task(self._reload(), name="reload"))

    async def _reload(self) -> None:
        from .reload import reload

        async with self._reload_lock:
            self.systemd.reloading()
            new = await reload(self.daemon)
            if new is not None:
                await self._apply(new)
            self.systemd.notify("READY=1", f"STATUS={self.status_line()}")

    async def _apply(self, old: Config) -> None:
        """The parts of a new config that live here."""
        self.milestones.config = self.config
        if [n.model_dump() for n in old.notify] != [n.model_dump() for n in self.config.notify]:
            previous, self.notifier = self.notifier, Notifier(self.config.notify, self.metrics.notification)
            self.notifier.start()
            await previous.drain(NOTIFY_DRAIN_SECONDS)
            await previous.close()
        if old.http != self.config.http:
            if self.http is not None:
                await self.http.stop()
                self.http = None
            await self._start_http(self.config)

    # ---- helpers ---------------------------------------------------------------------

    async def _start_http(self, config: Config) -> None:
        if config.http is None:
            return
        from .http_api import HttpApi  # aiohttp's server, ~0.1 s to import: only with [http]

        api = HttpApi(config.http, self.ready_problems, self.metrics.render, self.status_json, self.request_reload)
        if await api.start():
            self.http = api

    def ready_problems(self) -> list[str]:
        problems = []
        try:
            self.journal.db.execute("SELECT 1").fetchone()
        except Exception as exc:  # any failure means not ready, said in words
            problems.append(f"the journal does not answer: {exc}")
        if not self.started:
            problems.append("starting: the first scan of the watch folders is not done")
        running = {t.get_name() for t in self.daemon._tasks if not t.done()}
        for watcher in self.daemon.watchers:
            observer = getattr(watcher, "_observer", None)
            events_ok = getattr(watcher, "mode", "events") == "polling" or (observer is not None and observer.is_alive())
            if f"watch-{watcher.root}" not in running or not events_ok:
                problems.append(f"watcher of {watcher.root} is not running")
        for task in self.daemon._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                problems.append(f"task {task.get_name()} stopped: {task.exception()!r}")
        return problems

    async def status_json(self) -> str:
        """/api/status: every current file, so read in a worker thread from a
        snapshot of the journal (a 100,000-file journal takes seconds)."""
        from .status import collect

        config, live = self.config, self.live.frozen()

        return await self.journal.read_apart(lambda view: collect(config, view, live).model_dump_json(indent=2))

    def status_line(self) -> str:
        """systemd's STATUS=: the backlog per destination, in one line."""
        from .status import _destination

        parts = []
        for dest in self.config.destination:
            d = _destination(self.config, self.journal, dest, self.live)
            if d.backlog_files:
                age = f", oldest {age_text(d.oldest_pending_seconds)}" if d.oldest_pending_seconds else ""
                parts.append(f"{d.name} {d.state}: {d.backlog_files} files, {format_size(d.backlog_bytes)}{age}")
            else:
                parts.append(f"{d.name} {d.state}: up to date")
        return "backlog — " + "; ".join(parts)

    def _destination_names(self) -> list[str]:
        return [d.name for d in self.config.destination]

    def _settling(self, watch: str, offload: str) -> bool:
        watcher = self.daemon._watcher_of(watch)
        return watcher is not None and watcher.unsettled(offload)

    def _settling_counts(self) -> dict[str, int]:
        return {str(w.root): len(w.settler) for w in self.daemon.watchers}

    async def _write_reports(self, offload_id: int, safe: bool) -> bool:
        return await report.write_to_destinations(self.config, self.journal, self.daemon.destinations, offload_id)
