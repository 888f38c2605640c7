"""A destination in a process of its own: the child's side.

The daemon (process.py) starts `python -m triplicate.destinations.process_host`
with a pipe each way. The first message is ("start", config, log level); then
("call", id, method, args), ("cancel", id) and ("rate", bytes_per_s) arrive,
and every call ends with ("done", id, value) or ("error", id, exception). Along
the way the child sends ("progress", id, n), ("resume", id, state) (the
daemon keeps it in the journal), ("counters", read, served) and ("log", level,
fields): one log stream, the daemon's.

Signals from the terminal or the service manager are the daemon's to act on:
the child ignores SIGINT and SIGTERM and ends when its input ends, which is
also what happens when the daemon dies (and on Linux it is killed with it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

import structlog

from ..bandwidth import Throttle
from ..errors import TransientError, TriplicateError
from ..libc import limit_arenas
from ..logs import configure_forwarding, log_loop_errors
from ..shared_read import COUNTERS, SHARES
from ..source import io_threads
from . import registry
from .base import SourceFile
from .process_wire import Sender, read_message

METHODS = frozenset({"open", "close", "put", "copy", "verify", "stat", "delete", "read_bytes", "write_bytes"})
PROGRESS_EVERY = 0.2  # seconds between progress messages of one call


class _Resume:
    """ResumeState whose saves go to the daemon's journal."""

    def __init__(self, call_id: int, state: dict[str, Any] | None, sender: Sender) -> None:
        self.call_id, self.state, self.sender = call_id, state, sender

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        self.state = state
        self.sender.send("resume", self.call_id, state)

    def clear(self) -> None:
        if self.state is not None:  # nothing saved nor loaded: nothing to clear
            self.state = None
            self.sender.send("resume", self.call_id, None)


class _Progress:
    """Bytes sent, summed and passed on a few times a second (it may be called from threads)."""

    def __init__(self, call_id: int, sender: Sender) -> None:
        self.call_id, self.sender = call_id, sender
        self.pending = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.pending += n
            now = time.monotonic()
            if now - self.last < PROGRESS_EVERY:
                return
            n, self.pending, self.last = self.pending, 0, now
        self.sender.send("progress", self.call_id, n)

    def flush(self) -> None:
        with self.lock:
            n, self.pending = self.pending, 0
        if n:
            self.sender.send("progress", self.call_id, n)


class Host:
    def __init__(self, config: Any, sender: Sender) -> None:
        self.dest = registry.create(config)
        SHARES.readers_here = 1  # this process's one destination reads alone
        self.sender = sender
        self.throttle = Throttle(None)
        self.calls: dict[int, asyncio.Task[None]] = {}
        self.counted = (0, 0)

    async def serve(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        log_loop_errors(loop)  # as in the daemon: asyncssh leaves unretrieved task errors when a connection drops
        loop.set_default_executor(ThreadPoolExecutor(io_threads(self.dest.config.concurrency), thread_name_prefix="triplicate-io"))
        inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

        def pump() -> None:  # blocking reads in a thread: no event-loop pipe plumbing needed
            while True:
                message = read_message(fd)
                loop.call_soon_threadsafe(inbox.put_nowait, message)
                if message is None:
                    return

        threading.Thread(target=pump, name="from-daemon", daemon=True).start()
        while (message := await inbox.get()) is not None:
            self._dispatch(message)
        for task in self.calls.values():
            task.cancel()
        await asyncio.gather(*self.calls.values(), return_exceptions=True)
        with suppress(Exception):
            await asyncio.wait_for(self.dest.close(), 5)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "call":
            _, call_id, method, args = message
            self.calls[call_id] = asyncio.create_task(self._call(call_id, method, args))
        elif kind == "cancel":
            task = self.calls.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == "rate":
            self.throttle.set_rate(message[1])

    async def _call(self, call_id: int, method: str, args: tuple[Any, ...]) -> None:
        progress = _Progress(call_id, self.sender)
        try:
            value = await self._run(call_id, method, args, progress)
        except asyncio.CancelledError:
            self.sender.send("error", call_id, TransientError("cancelled"))
        except TriplicateError as exc:
            self._finish(progress)
            self.sender.send("error", call_id, exc)
        except Exception as exc:  # a bug costs a retry, never the daemon
            structlog.get_logger("triplicate.process").exception("destination_call_crashed", method=method)
            self._finish(progress)
            self.sender.send("error", call_id, TransientError(f"internal error in destination {self.dest.name!r}: {exc!r}"))
        else:
            self._finish(progress)
            self.sender.send("done", call_id, value)
        finally:
            self.calls.pop(call_id, None)

    async def _run(self, call_id: int, method: str, args: tuple[Any, ...], progress: _Progress) -> Any:
        if method not in METHODS:
            raise TransientError(f"unknown destination method {method!r}")
        if method == "put":
            src, state = args
            return await self.dest.put(self._local(src), _Resume(call_id, state, self.sender), progress)
        if method == "copy":
            from_key, src = args
            copy = getattr(self.dest, "copy", None)
            return None if copy is None else await copy(from_key, self._local(src))
        return await getattr(self.dest, method)(*args)

    def _local(self, src: SourceFile) -> SourceFile:
        return dataclasses.replace(src, limiter=self.throttle, readers=1)

    def _finish(self, progress: _Progress) -> None:
        progress.flush()
        counted = (COUNTERS.read_bytes, COUNTERS.served_bytes)
        if counted != self.counted:
            self.sender.send("counters", counted[0] - self.counted[0], counted[1] - self.counted[1])
            self.counted = counted


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _ship_logs(sender: Sender, level: str) -> None:
    """Log events go to the daemon, which renders them in its own stream."""
    configure_forwarding(lambda lvl, event: sender.send("log", lvl, {k: _plain(v) for k, v in event.items()}), level)


def _die_with_parent() -> None:
    """Linux: be killed when the daemon dies, even by SIGKILL (elsewhere the
    end of the input pipe says the same, a moment later)."""
    if not sys.platform.startswith("linux"):
        return
    with suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> int:
    limit_arenas()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        return 1
    out = os.dup(1)
    os.dup2(2, 1)  # a stray print must never land in the message pipe
    sender = Sender(out)
    start = read_message(0)
    if start is None or start[0] != "start":
        return 1
    _, config, level = start
    _ship_logs(sender, level)
    asyncio.run(Host(config, sender).serve(0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
