"""The xxh64 of a file on an SFTP server, found the cheaper of two ways.

OpenSSH offers no server-side hashing over SFTP (its sftp-server and
internal-sftp, checked on 9.2, announce no "check-file"/"check-file-name").
Where the login may run commands, `xxhsum -H1 FILE` (or `xxh64sum`) on the
server hashes the file: the bytes cross the network once. Whether a command
works is probed once when the destination opens (sftp.py writes the probe
file over SFTP, which also proves that the command sees the paths the SFTP
session sees: a chroot or a forced internal-sftp fails the probe).

Otherwise, and for files small enough to read back in less time than a
command takes (a login shell; measured per destination, sftp_costs.py, or
`remote_hash_min_size`), the file is read back over SFTP, pipelined like the
writes, and hashed here: each byte crosses the network twice. Either way the
bytes may come from the server's page cache: this proves what the server's
file system returns, not what its disk holds.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from ..errors import PermanentError, TransientError, TriplicateError
from ..hashing import new_digest
from .sftp_costs import VerifyCosts
from .sftp_login import Login
from .sftp_session import Missing, RemoteFile, Session, asyncssh_module, is_connection_error, run_command, top_up

if TYPE_CHECKING:  # asyncssh takes ~0.3 s to import: only when a destination connects
    import asyncssh

    from .sftp import SftpConfig

T = TypeVar("T")
Call = Callable[[str, Callable[[Session], Awaitable[T]]], Awaitable[T]]

MiB = 1024 * 1024
# Commands that print a file's xxh64 as big-endian hex (as ASC MHL writes it), tried in this order.
REMOTE_HASHERS = ("xxhsum -H1", "xxh64sum")
PROBE_SECONDS = 15.0  # a server that forces internal-sftp answers an exec with an SFTP server: it ends at stdin's EOF
COMMAND_COST_SIZE = 4 * MiB  # remote hashes of files this small measure what a command costs
REMOTE_HASH_RATE = 20 * MiB  # bytes/s a server hashes at least, for the command's timeout on a big file
_HEX64 = re.compile(r"^[0-9a-f]{16}$")


class CommandFailed(TriplicateError):
    """The hash command ran but printed no hash for a file that exists."""


class RemoteHashes:
    """One destination's way to the xxh64 of its remote files."""

    def __init__(self, config: SftpConfig, call: Call[Any], login: Login, log: Any) -> None:
        self.config = config
        self.name = config.name
        self._call = call  # the destination's request runner: reconnects and retries
        self._login = login
        self.log = log
        self.command: str | None = None  # the server's xxh64 command, once the probe found one
        self.costs = VerifyCosts()

    @property
    def where(self) -> str:
        return self._login.where

    def _cutoff(self) -> int:
        """The smallest file the server's command hashes; smaller ones are read back."""
        cutoff = self.config.remote_hash_min_size
        return self.costs.cutoff() if cutoff is None else cutoff

    async def hash(self, path: str, size: int) -> tuple[str, int, str]:
        """xxh64 and length of a remote file expected to hold `size` bytes, and
        how they were found: hashed by the server when it can and the file is
        big enough, else read back. Raises Missing."""
        command = self.command
        if command is not None and size >= self._cutoff():
            try:
                return *await self.by_command(command, path), "remote-hash"
            except CommandFailed as exc:
                if self.config.verify == "remote-hash":
                    raise TransientError(str(exc)) from None
                # auto: the command worked at open and broke since (uninstalled, PATH changed)
                self.command = None
                self.log.warning("sftp_remote_hash_failed", error=str(exc), method="read-back")
        return *await self.read_back(path, size), "read-back"

    async def read_back(self, path: str, size: int) -> tuple[str, int]:
        """xxh64 and length of a remote file expected to hold `size` bytes, read
        in order with the next chunk already requested while the current one is
        hashed. Raises Missing.

        Only the expected bytes are asked for, and one byte past them to see the
        end: asyncssh splits a read into requests of the server's size, so a
        chunk-sized read of a 100 KiB file was 32 requests, 31 of them answered
        with end-of-file, and learning the size first was a round trip more."""
        remote = RemoteFile(self._call, path, "rb")
        began = time.monotonic()
        digest = new_digest("xxh64")
        chunk = self.config.chunk_size
        reads: deque[asyncio.Future[bytes]] = deque()
        total = 0
        try:
            await remote.open()
            spans = iter([*((o, min(chunk, size - o)) for o in range(0, size, chunk)), (size, 1)])
            top_up(reads, remote, spans)
            while reads:
                data = await reads.popleft()
                top_up(reads, remote, spans)
                digest.update(data)
                total += len(data)
                if not reads and total > size:
                    total += await remote.remaining(total)  # longer than expected: say by how much
                if len(data) < chunk and total != size:
                    break  # a short read before the expected end: the length will not match
        finally:
            for pending in reads:
                pending.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            await remote.close()
        self.costs.note_read_back(total, time.monotonic() - began)
        return digest.hexdigest(), total

    async def by_command(self, command: str, path: str) -> tuple[str, int]:
        """xxh64 and length of a remote file, hashed on the server by `command`
        (the bytes its file system holds). Raises Missing."""
        ssh = asyncssh_module()

        async def op(session: Session) -> tuple[str, int]:
            try:
                size = (await session.sftp.stat(path)).size or 0
            except (ssh.SFTPNoSuchFile, ssh.SFTPNoSuchPath):
                raise Missing(path) from None
            timeout = 60.0 + size / REMOTE_HASH_RATE
            began = time.monotonic()
            try:
                result = await run_command(session, _command_line(command, path), timeout=timeout)
            except (ssh.ChannelOpenError, ssh.TimeoutError) as exc:
                if session.closed:
                    raise
                why = f"did not finish within {timeout:.0f} s" if isinstance(exc, ssh.TimeoutError) else exc.reason
                raise TransientError(
                    f"destination {self.name!r}: `{command}` on {self.where} for {path}: {why}; retrying"
                ) from None
            xxh64 = _printed_hash(result)
            if xxh64 is None:
                if not await session.sftp.exists(path):
                    raise Missing(path)
                raise CommandFailed(
                    f"destination {self.name!r}: `{command}` on {self.where} printed no hash for {path} "
                    f"(exit status {result.exit_status}: {_first_line(result.stderr)}); retrying"
                )
            if size <= COMMAND_COST_SIZE:  # a bigger file's time is mostly hashing, not the command's cost
                self.costs.note_command(time.monotonic() - began)
            return xxh64, size

        return await self._call(f"hashing {path} on the server", op)

    async def probe(self, session: Session, command: str, path: str, expected: str) -> str | None:
        """Why `command` cannot hash this server's files, tried on the probe
        file at `path` whose xxh64 is `expected`; None when it can."""
        ssh = asyncssh_module()
        try:
            began = time.monotonic()
            result = await run_command(session, _command_line(command, path), timeout=PROBE_SECONDS)
        except (ssh.Error, OSError) as exc:  # no exec channel, a timeout: this server hashes nothing for us
            if is_connection_error(exc) and session.closed:
                raise self._login.mapped(exc, "probing for a hash command") from None
            return f"{command.split()[0]}: {type(exc).__name__} {exc}".strip()
        if _printed_hash(result) == expected:
            self.costs.note_command(time.monotonic() - began)
            return None
        return (f"{command.split()[0]}: exit status {result.exit_status}, "
                f"{_first_line(result.stderr) or _first_line(result.stdout) or 'no output'}")

    def use(self, command: str | None, reason: str) -> None:
        """Check copies with `command` (None: read them back), as the probe
        found for `reason`, and say so."""
        if command is None and self.config.verify == "remote-hash":
            raise PermanentError(
                f"destination {self.name!r}: verify = \"remote-hash\" but {self.where} cannot hash files over "
                f"SSH ({reason}); install xxhsum there (Debian/Ubuntu: apt-get install xxhash) and allow "
                f"{self.config.username} to run commands, or set verify = \"auto\" or \"read-back\""
            )
        self.command = command
        method = "read-back" if command is None else "remote-hash"
        self.log.info("sftp_verification", method=method, command=command, reason=reason)


def _printed_hash(result: asyncssh.SSHCompletedProcess) -> str | None:
    """The xxh64 a successful `xxhsum -H1 FILE` printed ("HASH  FILE"; a
    leading backslash marks an escaped file name)."""
    if result.exit_status != 0 or not isinstance(result.stdout, str):
        return None
    words = result.stdout.split(maxsplit=1)
    found = words[0].lstrip("\\").lower() if words else ""
    return found if _HEX64.match(found) else None


def _first_line(text: object) -> str:
    return str(text or "").strip().split("\n", 1)[0][:200]


def _command_line(command: str, path: str) -> str:
    """`command` on `path`, quoted for the login shell; a relative path
    (starting, as SFTP's do, in the login folder) gets "./" so the command
    cannot take it for an option."""
    return f"{command} {shlex.quote(path if path.startswith('/') else f'./{path}')}"
