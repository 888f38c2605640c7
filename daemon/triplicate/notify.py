"""Notifications: webhooks (generic JSON or Slack-compatible) and command hooks.

Events: `offload_ready` (an offload stopped arriving and is queued), `offload_safe`
(every file verified everywhere, 3-2-1 met: the card may be formatted),
`file_failed` (a source file cannot be read: no destination can help),
`destination_degraded` and `destination_recovered`.

`Notifier.send` never waits: it puts the event in each interested target's
queue; one task per target delivers in order, retrying with exponential backoff
(1 s doubling, at most 5 min apart) up to the target's `max_attempts`. A webhook
URL can hold a secret (Slack's do), so logs name a target by its `name` or its
position, never by its URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import structlog

from .config import NotifySettings
from .fields import format_size

if TYPE_CHECKING:  # aiohttp takes ~0.1 s to import: only when a webhook is posted
    import aiohttp

log = structlog.get_logger("triplicate.notify")

FIRST_DELAY = 1.0
MAX_DELAY = 300.0
QUEUE_LIMIT = 1000


class DeliveryFailed(Exception):
    """One attempt failed; `retry` says whether another could work."""

    def __init__(self, reason: str, retry: bool = True) -> None:
        super().__init__(reason)
        self.retry = retry


def message(event: str, f: dict[str, Any]) -> str:
    """The event in one line, for people (Slack text, the JSON `message`)."""
    size = f" ({format_size(f['bytes'])})" if "bytes" in f else ""
    if event == "offload_ready":
        return f"Offload {f.get('offload')} is ready: {f.get('files')} files{size} queued for {', '.join(f.get('destinations', []))}."
    if event == "offload_safe":
        return (f"Offload {f.get('offload')} is SAFE TO FORMAT: {f.get('files')} files{size} verified at every "
                f"destination; 3-2-1 met ({f.get('copies')} copies, {f.get('media_types')} media, "
                f"{f.get('offsite_copies')} off-site).")
    if event == "file_failed":
        return f"File {f.get('file')} cannot be copied to {f.get('destination')}: {f.get('error')}"
    if event == "destination_degraded":
        return f"Destination {f.get('destination')} is degraded ({f.get('failures_in_a_row')} failed copies in a row): {f.get('error')}"
    if event == "destination_recovered":
        return f"Destination {f.get('destination')} has recovered; copies are flowing again."
    return f"{event}: {json.dumps(f, default=str)}"


def payload(event: str, fields: dict[str, Any], fmt: str, at: float) -> dict[str, Any]:
    text = message(event, fields)
    if fmt == "slack":
        return {"text": f"[triplicate on {socket.gethostname()}] {text}"}
    stamp = datetime.fromtimestamp(at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return {"event": event, "at": stamp, "host": socket.gethostname(), "message": text, **fields}


@dataclass
class _Target:
    settings: NotifySettings
    label: str
    queue: asyncio.Queue[tuple[str, dict[str, Any], float]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    busy: bool = False


class Notifier:
    def __init__(self, targets: list[NotifySettings], on_outcome: Callable[[str, str], None] | None = None) -> None:
        self.on_outcome = on_outcome  # (target label, "delivered" | "failed" | "dropped")
        self._targets = [_Target(t, t.label(i)) for i, t in enumerate(targets)]
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def send(self, event: str, fields: dict[str, Any]) -> None:
        for target in self._targets:
            if event not in target.settings.events:
                continue
            try:
                target.queue.put_nowait((event, fields, time.time()))
            except asyncio.QueueFull:
                log.error("notification_dropped", target=target.label, notify_event=event, reason="queue full")
                self._outcome(target.label, "dropped")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._deliver_all(t), name=f"notify-{t.label}") for t in self._targets]

    async def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until every queued event was dealt with."""
        deadline = time.monotonic() + timeout
        while any(t.busy or not t.queue.empty() for t in self._targets):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left = sum(t.queue.qsize() for t in self._targets)
        if left:
            log.warning("notifications_not_sent", count=left, reason="daemon stopping")
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- delivery ---------------------------------------------------------------

    async def _deliver_all(self, target: _Target) -> None:
        while True:
            event, fields, at = await target.queue.get()
            target.busy = True
            try:
                await self._deliver(target, event, fields, at)
            finally:
                target.busy = False

    async def _deliver(self, target: _Target, event: str, fields: dict[str, Any], at: float) -> None:
        settings = target.settings
        for attempt in range(1, settings.max_attempts + 1):
            try:
                await self._attempt(settings, event, fields, at)
            except DeliveryFailed as exc:
                final = not exc.retry or attempt == settings.max_attempts
                log.warning("notification_failed", target=target.label, notify_event=event, attempt=attempt,
                            error=str(exc), will_retry=not final)
                if final:
                    self._outcome(target.label, "failed")
                    return
                await asyncio.sleep(min(MAX_DELAY, FIRST_DELAY * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))
                continue
            log.info("notification_sent", target=target.label, notify_event=event, attempt=attempt)
            self._outcome(target.label, "delivered")
            return

    async def _attempt(self, s: NotifySettings, event: str, fields: dict[str, Any], at: float) -> None:
        body = payload(event, fields, s.format, at)
        if s.command is not None:
            await _run_command(s.command, event, body, s.timeout_seconds)
            return
        url = s.url or os.environ.get(s.url_env or "", "")
        if not url:
            raise DeliveryFailed(f"environment variable {s.url_env} is not set; set it to the webhook URL", retry=False)
        await self._post(url, body, s.timeout_seconds)

    async def _post(self, url: str, body: dict[str, Any], timeout: float) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if 200 <= resp.status < 300:
                    return
                retry = resp.status >= 500 or resp.status in (408, 429)
                raise DeliveryFailed(f"the webhook answered HTTP {resp.status}", retry=retry)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # the exception text can quote the URL, which may hold a secret
            raise DeliveryFailed(f"cannot reach the webhook ({type(exc).__name__})") from None

    def _outcome(self, label: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(label, outcome)


async def _run_command(argv: list[str], event: str, body: dict[str, Any], timeout: float) -> None:
    env = {**os.environ, "TRIPLICATE_EVENT": event}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
    except OSError as exc:
        raise DeliveryFailed(f"cannot run {argv[0]}: {exc.strerror}", retry=False) from None
    try:
        _, err = await asyncio.wait_for(proc.communicate(json.dumps(body).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DeliveryFailed(f"{argv[0]} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise DeliveryFailed(f"{argv[0]} exited with {proc.returncode}: {tail[0][:200]}")
