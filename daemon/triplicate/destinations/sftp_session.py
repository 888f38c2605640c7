"""SFTP sessions for the SFTP destination: a pool of SSH connections with one
SFTP session each, one open remote file that survives a dropped connection,
commands run on the server, and the few quick retries of one request."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from ..errors import TransientError, TriplicateError, VerificationFailed

if TYPE_CHECKING:  # asyncssh takes ~0.3 s to import: only when a destination connects
    import asyncssh

TRIES = 4  # per request; the scheduler retries the whole put later with backoff
# Commands at once per connection: OpenSSH's MaxSessions (10) counts them with the SFTP session, and
# a refused channel must not look like a lost connection.
COMMANDS_PER_CONNECTION = 4
Call = Callable[..., Awaitable[Any]]


def asyncssh_module() -> Any:
    import asyncssh

    return asyncssh


def retrying() -> AsyncRetrying:
    """A few quick tries of one request; VerificationFailed is never retried here."""
    return AsyncRetrying(
        retry=retry_if_exception(lambda e: isinstance(e, TransientError) and not isinstance(e, VerificationFailed)),
        stop=stop_after_attempt(TRIES),
        wait=wait_exponential(multiplier=0.25, max=4.0) + wait_random(0, 0.25),
        reraise=True,
    )


def is_connection_error(exc: BaseException) -> bool:
    ssh = asyncssh_module()
    return isinstance(exc, (OSError, TimeoutError, ssh.DisconnectError, ssh.ChannelOpenError,
                            ssh.SFTPConnectionLost, ssh.SFTPNoConnection))



def is_missing(exc: BaseException) -> bool:
    ssh = asyncssh_module()
    return isinstance(exc, (ssh.SFTPNoSuchFile, ssh.SFTPNoSuchPath))



class Missing(TriplicateError):
    """The remote file does not exist (turned into the caller's own message)."""


class RemoteFile:
    """One open remote file. Reads and writes are retried a few times; after a
    dropped connection the file is reopened on a fresh one (never truncated
    again: a write is only acknowledged once it is in the file, so every byte
    before an unacknowledged chunk is there)."""

    def __init__(self, call: Call, path: str, mode: str) -> None:
        self.call = call  # the destination's _call: one request, reconnecting and retrying
        self.path = path
        self.mode = mode
        self.session: Session | None = None
        self.handle: "asyncssh.SFTPClientFile | None" = None

    async def open(self) -> None:
        """Open (or reopen) the file."""
        await self.call(f"opening {self.path}", self._ensure, holder=self)

    async def remaining(self, offset: int) -> int:
        """Bytes of the file after `offset` (0 if none)."""
        size = await self.call(f"looking up {self.path}", self._size, holder=self)
        return max(0, size - offset)

    async def _ensure(self, session: Session) -> "asyncssh.SFTPClientFile":
        if self.handle is None or session is not self.session:
            try:
                self.handle = await session.sftp.open(self.path, self.mode)
            except Exception as exc:
                if is_missing(exc) and self.mode == "rb":
                    raise Missing(self.path) from None
                raise
            self.session = session
            self.mode = self.mode.replace("w", "r+")  # reopening must keep what was written
        return self.handle

    async def _size(self, session: Session) -> int:
        return (await (await self._ensure(session)).stat()).size or 0

    async def write(self, data: bytes | bytearray, offset: int) -> None:
        async def op(session: Session) -> None:
            # asyncssh's annotation says str or bytes; it sends any buffer, and copying one to bytes costs a pass
            await (await self._ensure(session)).write(data, offset)  # type: ignore[type-var]

        await self.call(f"writing {self.path}", op, holder=self)

    async def read(self, size: int, offset: int) -> bytes:
        async def op(session: Session) -> bytes:
            data = await (await self._ensure(session)).read(size, offset)
            assert isinstance(data, bytes)  # remote files are opened in binary modes
            return data

        return await self.call(f"reading {self.path}", op, holder=self)

    async def fsync(self) -> None:
        ssh = asyncssh_module()

        async def op(session: Session) -> None:
            try:
                await (await self._ensure(session)).fsync()
            except ssh.SFTPOpUnsupported:
                pass  # the server cannot flush on request; its own write-back applies

        await self.call(f"flushing {self.path}", op, holder=self)

    async def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None and self.session is not None and not self.session.closed:
            with contextlib.suppress(Exception):
                await handle.close()


@dataclass(eq=False)
class Session:
    conn: "asyncssh.SSHClientConnection"
    sftp: "asyncssh.SFTPClient"
    commands: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(COMMANDS_PER_CONNECTION))

    @property
    def closed(self) -> bool:
        return self.conn.is_closed()

    def abort(self) -> None:
        # Its event loop may be closed already (then its socket goes with the loop's garbage).
        with contextlib.suppress(Exception):
            self.conn.abort()


class Pool:
    """`size` SFTP sessions, each opened on first use and again after a drop.

    Connections belong to the event loop that made them: when called from
    another loop (a second asyncio.run, a test framework), the old ones are
    abandoned and new ones made.
    """

    def __init__(self, connect: Callable[[], Awaitable[Session]], size: int) -> None:
        self._connect = connect
        self._slots: list[Session | None] = [None] * size
        self._locks: list[asyncio.Lock] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            for session in self._slots:
                if session is not None:
                    session.abort()
            self._slots = [None] * len(self._slots)
            self._locks = [asyncio.Lock() for _ in self._slots]
            self._loop = loop

    async def get(self, prefer: Session | None = None) -> Session:
        """A live session: `prefer` while it lives, else the next one round-robin."""
        self._bind_loop()
        if prefer is not None and not prefer.closed and prefer in self._slots:
            return prefer
        i = self._next
        self._next = (i + 1) % len(self._slots)
        async with self._locks[i]:
            session = self._slots[i]
            if session is None or session.closed:
                self._slots[i] = session = await self._connect()
        return session

    def drop(self, session: Session) -> None:
        for i, held in enumerate(self._slots):
            if held is session:
                self._slots[i] = None
        session.abort()

    async def close(self) -> None:
        slots, self._slots = self._slots, [None] * len(self._slots)
        same_loop = self._loop is not None and self._loop is asyncio.get_running_loop()
        for session in slots:
            if session is None:
                continue
            if not same_loop:
                session.abort()
                continue
            session.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.conn.wait_closed(), 5)


def top_up(reads: deque[asyncio.Future[bytes]], remote: RemoteFile, spans: Iterator[tuple[int, int]]) -> None:
    """Keep two chunk reads in flight, so the pipe stays full while one is hashed."""
    while len(reads) < 2 and (span := next(spans, None)) is not None:
        reads.append(asyncio.ensure_future(remote.read(span[1], span[0])))


async def replace_without_posix_rename(sftp: "asyncssh.SFTPClient", tmp: str, final: str) -> None:
    """SFTP v3's rename refuses an existing target: remove it first. Between the
    two requests the final name is briefly absent (see the module docstring)."""
    with contextlib.suppress(asyncssh_module().SFTPNoSuchFile):
        await sftp.remove(final)
    await sftp.rename(tmp, final)


async def run_command(session: Session, command: str, timeout: float) -> "asyncssh.SSHCompletedProcess":
    """Run `command` on the server with no input (stdin at EOF at once)."""
    ssh = asyncssh_module()
    async with session.commands:
        process = await session.conn.create_process(command, stdin=ssh.DEVNULL, encoding="utf-8", errors="replace")
        try:
            return await process.wait(check=False, timeout=timeout)
        finally:
            process.close()  # after a timeout the channel would stay open
