"""A destination in a process of its own: the daemon's side.

The protocol work of a network destination (botocore's request building and
signing, asyncssh's packets, Azure's SDK) is pure Python: in the daemon's
process it shares one core with the journal, the watcher and every other
destination. `ProcessDestination` runs the same destination class in a child
process (process_host.py) and forwards each `Destination` call to it, so that
work runs on another core. The child reads the source itself, hashing what it
sends as every put does; it reads alongside the daemon's own readers, so the
page cache rather than the disk serves the second read.

The journal stays with the daemon: resume states come back as messages and
are saved here, in order, before the call's answer. If the child dies, the
calls in flight fail as TransientError and the next call starts a new child.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import TransientError
from ..logs import SETTINGS
from ..shared_read import COUNTERS
from .base import DestinationConfig, Progress, Receipt, RemoteObject, ResumeState, SourceFile
from .process_wire import encode, read_stream

log = structlog.get_logger("triplicate.process")
# A stop must stay bounded whatever the child is waiting on (a server that is
# down): each step gets a few seconds, then the child is killed, as the daemon's
# own tasks would be cancelled. Its journal state is already safe either way.
CANCEL_WAIT = 2.0  # seconds a cancelled call may take to wind down in the child
CLOSE_WAIT = 3.0  # per step of a close: calls in flight, the destination's close, the exit


@dataclass
class _Call:
    resume: ResumeState | None = None
    progress: Progress | None = None
    limiter: Any = None
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class ProcessDestination:
    """Any destination type, run in a child process; implements `Destination`,
    `CopiesInPlace` and `SharedReads`."""

    def __init__(self, config: DestinationConfig) -> None:
        self.config = config
        self.name = config.name
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._starting: asyncio.Lock | None = None
        self._rate_sent: float | None = None
        self._opened = False
        self.log = log.bind(destination=self.name)

    # ---- the protocol ------------------------------------------------------

    async def open(self) -> None:
        await self._invoke(await self._running(starting=True), "open", (), {})
        self._opened = True  # a new child (after one died) is opened before its first call

    async def close(self) -> None:
        self._opened = False
        proc = self._proc
        if proc is None:
            return
        try:
            if self._alive():
                # calls still running (an ASC MHL generation being written) end first, as they
                # would in the daemon's own process, rather than being cut off with the child
                ending = [call.ended.wait() for call in self._calls.values()]
                if ending:
                    await asyncio.wait_for(asyncio.gather(*ending), CLOSE_WAIT)
                await asyncio.wait_for(self._invoke(proc, "close", (), {}), CLOSE_WAIT)
        except (TransientError, asyncio.TimeoutError):
            pass
        finally:
            await self._stop(proc)

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        value: Receipt = await self._call(
            "put", self._portable(src), resume.load(), resume=resume, progress=progress, limiter=src.limiter
        )
        return value

    async def copy(self, from_key: str, src: SourceFile) -> Receipt | None:
        value: Receipt | None = await self._call("copy", from_key, self._portable(src))
        return value

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        await self._call("verify", key, xxh64, size)

    async def stat(self, key: str) -> RemoteObject | None:
        value: RemoteObject | None = await self._call("stat", key)
        return value

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def read_bytes(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("read_bytes", key)
        return value

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        await self._call("write_bytes", key, data)

    def joins_shared_read(self, size: int, hash_known: bool) -> bool:
        return False  # the child reads on its own

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and self._alive() else None

    def _alive(self) -> bool:
        """A child that runs and whose messages are still being read."""
        return (
            self._proc is not None and self._proc.returncode is None
            and self._reader is not None and not self._reader.done()
        )

    # ---- calls -------------------------------------------------------------

    @staticmethod
    def _portable(src: SourceFile) -> SourceFile:
        return dataclasses.replace(src, limiter=None, readers=1)

    async def _call(self, method: str, *args: Any, **context: Any) -> Any:
        return await self._invoke(await self._running(), method, args, context)

    async def _invoke(self, proc: asyncio.subprocess.Process, method: str, args: tuple[Any, ...], context: dict[str, Any]) -> Any:
        call_id = next(self._ids)
        call = _Call(**context)
        self._calls[call_id] = call
        try:
            self._send_rate(proc, call)
            await self._send(proc, ("call", call_id, method, args))
            return await asyncio.shield(call.future)
        except asyncio.CancelledError:
            await self._wind_down(proc, call_id, call)
            raise
        finally:
            self._calls.pop(call_id, None)

    async def _wind_down(self, proc: asyncio.subprocess.Process, call_id: int, call: _Call) -> None:
        """A cancelled call: the child cancels its side; its last resume
        state is saved before the claim on the copy is released."""
        if call.ended.is_set() or proc.returncode is not None:
            return
        try:
            await self._send(proc, ("cancel", call_id))
            await asyncio.wait_for(call.ended.wait(), CANCEL_WAIT)
        except (asyncio.TimeoutError, TransientError, asyncio.CancelledError):
            pass  # the child is gone or slow: the claim is released all the same
        finally:
            if not call.future.done():
                call.future.cancel()

    def _send_rate(self, proc: asyncio.subprocess.Process, call: _Call) -> None:
        rate = getattr(call.limiter, "rate", None)
        if call.limiter is not None and rate != self._rate_sent:
            self._rate_sent = rate
            assert proc.stdin is not None
            proc.stdin.write(encode(("rate", rate)))

    async def _send(self, proc: asyncio.subprocess.Process, message: tuple[Any, ...]) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(encode(message))
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise TransientError(f"destination {self.name!r}: its process is gone ({exc})") from None

    # ---- the child -----------------------------------------------------------

    async def _running(self, starting: bool = False) -> asyncio.subprocess.Process:
        """The child, started again if it died; none is started for a
        destination not opened (or closed), which could only refuse the call."""
        if not (starting or self._opened):
            raise TransientError(f"destination {self.name!r} is not open")
        if self._alive():
            assert self._proc is not None
            return self._proc
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._alive():
                proc = await self._start()
                if self._opened:
                    await self._invoke(proc, "open", (), {})
        assert self._proc is not None
        return self._proc

    async def _start(self) -> asyncio.subprocess.Process:
        if self._proc is not None:
            await self._stop(self._proc)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "triplicate.destinations.process_host",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise TransientError(f"destination {self.name!r}: cannot start its process: {exc}") from None
        self._proc = proc
        self._rate_sent = None
        await self._send(proc, ("start", self.config, SETTINGS["level"]))
        self._reader = asyncio.create_task(self._read(proc), name=f"{self.name}-process")
        self.log.info("destination_process_started", pid=proc.pid)
        return proc

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), CLOSE_WAIT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while (message := await read_stream(proc.stdout)) is not None:
                self._handle(message)
        except asyncio.CancelledError:
            # torn down without close() (an event loop ending under an open
            # destination): the child waits for a stdin nobody will close, so
            # waiting for it below would never end
            if proc.returncode is None:
                proc.kill()
            raise
        finally:
            code = await proc.wait()
            self._orphan(code)

    def _orphan(self, code: int) -> None:
        """The child has gone: whatever it was doing failed, to be retried."""
        calls, self._calls = self._calls, {}
        for call in calls.values():
            if not call.future.done():
                call.future.set_exception(TransientError(f"destination {self.name!r}: its process ended (exit code {code})"))
            call.ended.set()
        if calls:
            self.log.warning("destination_process_ended", exit_code=code, calls_failed=len(calls))

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":
            _, level, fields = message
            logger = structlog.get_logger()
            getattr(logger, level, logger.info)(fields.pop("event", ""), **fields)
            return
        if kind == "counters":
            COUNTERS.add(message[1], message[2])
            return
        call = self._calls.get(message[1])
        if call is None:
            return
        if kind == "progress":
            if call.progress is not None:
                call.progress(message[2])
            if self._proc is not None:
                self._send_rate(self._proc, call)
        elif kind == "resume":
            if call.resume is not None:
                call.resume.clear() if message[2] is None else call.resume.save(message[2])
        elif kind in ("done", "error"):
            if not call.future.done():
                if kind == "done":
                    call.future.set_result(message[2])
                else:
                    call.future.set_exception(message[2])
            call.ended.set()
            self._calls.pop(message[1], None)
