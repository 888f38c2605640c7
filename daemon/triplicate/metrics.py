"""Prometheus metrics of the running daemon (served at /metrics by http_api.py).

Two kinds: counters that events bump as they happen (bytes sent and hashed,
copies verified, retries and errors by kind, notifications), and gauges read
from the journal and the runners at scrape time (files and bytes per state and
destination, backlog and its age, queue depths, throughput, destination state),
so a scrape always shows the journal's truth, even just after a restart.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__, milestones
from .shared_read import COUNTERS as SOURCE_READS
from .journal import Journal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("pending", "transferring", "verified", "failed")
DESTINATION_STATES = ("up", "degraded", "down", "unknown")


disable_created_metrics()  # *_created series only double the output; scrapers know when a process started


class Metrics:
    def __init__(self, journal: Journal, destinations: Callable[[], list[str]], live: Any,
                 settling: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.verified = Counter("triplicate_copies_verified", "Copies verified at a destination.",
                                ["destination"], registry=self.registry)
        self.sent = Counter("triplicate_transferred_bytes", "Bytes sent to a destination.",
                            ["destination"], registry=self.registry)
        self.hashed = Counter("triplicate_hashed_bytes", "Source bytes read and hashed (xxh64) for copies.",
                              ["destination"], registry=self.registry)
        self.seconds = Histogram("triplicate_copy_seconds", "Time to put and verify one copy.", ["destination"],
                                 buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600), registry=self.registry)
        self.retries = Counter("triplicate_retries", "Copies that failed and will be retried, by error kind.",
                               ["destination", "kind"], registry=self.registry)
        self.errors = Counter("triplicate_errors", "Errors by kind (exception class).",
                              ["destination", "kind"], registry=self.registry)
        self.notifications = Counter("triplicate_notifications", "Notifications by target and outcome.",
                                     ["target", "outcome"], registry=self.registry)
        self.registry.register(_JournalCollector(journal, destinations, live, settling))

    def observe(self, event: str, fields: dict[str, Any]) -> None:
        """Bump counters for one event from the runners (never raises)."""
        dest = str(fields.get("destination", ""))
        if event == "copy_verified":
            self.verified.labels(dest).inc()
            self.sent.labels(dest).inc(fields.get("bytes_sent", 0))
            self.hashed.labels(dest).inc(fields.get("size", 0))
            self.seconds.labels(dest).observe(fields.get("seconds", 0.0))
        elif event == "copy_retry":
            self.retries.labels(dest, fields.get("kind", "transient")).inc()
            self.errors.labels(dest, fields.get("error_class", "Error")).inc()
        elif event == "file_failed":
            self.errors.labels(dest, "SourceUnreadable").inc()

    def notification(self, target: str, outcome: str) -> None:
        self.notifications.labels(target, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _source_reads() -> Iterator[Metric]:
    """Read once, write many: read below served means destinations shared reads."""
    read = CounterMetricFamily("triplicate_source_read_bytes", "Bytes read from source files (all destinations).")
    read.add_metric([], SOURCE_READS.read_bytes)
    served = CounterMetricFamily("triplicate_source_served_bytes",
                                 "Source bytes handed to destinations; above read bytes when reads were shared.")
    served.add_metric([], SOURCE_READS.served_bytes)
    yield read
    yield served


class _JournalCollector(Collector):
    def __init__(self, journal: Journal, destinations: Callable[[], list[str]], live: Any,
                 settling: Callable[[], dict[str, int]]) -> None:
        self.journal = journal
        self.destinations = destinations
        self.live = live
        self.settling = settling

    def describe(self) -> list[Metric]:
        return []  # collected fresh on every scrape

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("triplicate_build", "Version of the running daemon.")
        info.add_metric([], {"version": __version__})
        yield info
        yield from self._copies()
        yield from self._backlog(time.time())
        yield from self._destinations()
        yield from self._offloads()
        yield from _source_reads()
        watch = GaugeMetricFamily("triplicate_settling_files", "Files seen in a watch folder, waiting to settle.",
                                  labels=["watch"])
        for path, count in sorted(self.settling().items()):
            watch.add_metric([path], count)
        yield watch

    def _copies(self) -> Iterator[Metric]:
        files = GaugeMetricFamily("triplicate_files", "Copies of current file versions by destination and state.",
                                  labels=["destination", "state"])
        size = GaugeMetricFamily("triplicate_bytes", "Bytes of current file versions by destination and state.",
                                 labels=["destination", "state"])
        found = {(r[0], r[1]): (r[2], r[3]) for r in self.journal.db.execute(
            "SELECT c.destination, c.state, COUNT(*), COALESCE(SUM(f.size), 0) FROM copies c "
            "JOIN files f ON f.id = c.file_id WHERE f.current = 1 GROUP BY c.destination, c.state")}
        for dest in self.destinations():
            for state in STATES:
                n, b = found.get((dest, state), (0, 0))
                files.add_metric([dest, state], n)
                size.add_metric([dest, state], b)
        yield files
        yield size

    def _backlog(self, now: float) -> Iterator[Metric]:
        oldest = GaugeMetricFamily("triplicate_backlog_oldest_seconds",
                                   "Age of the oldest file not yet verified at a destination.", labels=["destination"])
        due = GaugeMetricFamily("triplicate_queue_due", "Pending copies whose next attempt is due now.",
                                labels=["destination"])
        waiting = GaugeMetricFamily("triplicate_queue_waiting", "Pending copies waiting for a retry (backoff).",
                                    labels=["destination"])
        for dest in self.destinations():
            row = self.journal.db.execute(
                "SELECT MIN(f.first_seen), SUM(c.state = 'pending' AND c.next_attempt_at <= ?), "
                "SUM(c.state = 'pending' AND c.next_attempt_at > ?) FROM copies c JOIN files f ON f.id = c.file_id "
                "WHERE c.destination = ? AND f.current = 1 AND c.state IN ('pending', 'transferring')",
                (now, now, dest),
            ).fetchone()
            oldest.add_metric([dest], 0.0 if row[0] is None else now - row[0])
            due.add_metric([dest], row[1] or 0)
            waiting.add_metric([dest], row[2] or 0)
        yield oldest
        yield due
        yield waiting

    def _destinations(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("triplicate_destination_state", "1 for the state a destination is in.",
                                  labels=["destination", "state"])
        rate = GaugeMetricFamily("triplicate_transfer_throughput_bytes_per_second",
                                 "Bytes per second sent to a destination over the last seconds.", labels=["destination"])
        flight = GaugeMetricFamily("triplicate_in_flight", "Copies being transferred now.", labels=["destination"])
        for dest in self.destinations():
            known = self.journal.destination_state(dest)
            now = known[0] if known else "unknown"
            for s in DESTINATION_STATES:
                state.add_metric([dest, s], 1.0 if s == now else 0.0)
            rate.add_metric([dest], self.live.throughput(dest) or 0.0)
            flight.add_metric([dest], self.live.in_flight(dest))
        yield state
        yield rate
        yield flight

    def _offloads(self) -> Iterator[Metric]:
        total = self.journal.db.execute("SELECT COUNT(*) FROM offloads").fetchone()[0]
        offloads = GaugeMetricFamily("triplicate_offloads", "Offloads in the journal.")
        offloads.add_metric([], total)
        safe = GaugeMetricFamily("triplicate_offloads_safe_to_format",
                                 "Offloads marked safe to format (they may have changed since; see status).")
        safe.add_metric([], len(milestones.signatures(self.journal, milestones.SAFE)))
        yield offloads
        yield safe
