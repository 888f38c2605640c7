"""SFTP to another facility or an on-prem server (OpenSSH or any SFTP v3 server),
built on asyncssh.

A copy is uploaded to a hidden temporary name beside its final name
(`.NAME.triplicate-PID-NS.tmp`), flushed with fsync@openssh.com when the server
offers it, hashed, given the source's mtime, and only then renamed into place,
so the final name never holds a torn or unverified file.

- Writes use asyncssh's pipelined writes: each chunk (`chunk_size`) goes out as
  several write requests in flight, each of the size the server announces
  (limits@openssh.com; OpenSSH: 255 KiB). Bigger requests break OpenSSH, whose
  messages are capped at 256 KiB.
- Verification (sftp_verify.py): the temp file is hashed on the server by
  `xxhsum -H1` where the login may run it (the bytes cross the network once),
  or read back and hashed here, whichever this link makes cheaper for the
  file's size.
- The rename uses posix-rename@openssh.com, which replaces an existing file
  atomically. A server without it gets remove + rename: for a moment the final
  name is absent (never half-written), and a crash in that moment leaves only
  the verified temp file, which the next put (resumed) renames.
- mtime: the source's mtime is set on the copy; SFTP v3 carries whole seconds.
  SFTP has no user metadata, so stat() reports no xxh64; an existing copy counts
  as identical only after it is hashed (as a copy is checked).
- Stale temp files (a killed process's): each folder is listed once per run;
  temp files of this run's failed attempts are known by name (`TempNames`). The
  same listing says the folder exists and which final names were there, so a
  put into a listed folder looks up neither (a frame sequence: two round
  trips per file otherwise).
- Resume: the resume state holds the temp path and the source version (size,
  mtime_ns) it belongs to, saved once, before the first byte is sent, for
  files of more than one chunk (the resume unit: a smaller file has nothing
  to resume, and a temp file a crash leaves of it is found by the listing). The temp
  file's size on the server is the offset to continue from: writes go out in
  offset order and OpenSSH handles a session's requests in order, so a killed
  transfer leaves a contiguous prefix. The source prefix is hashed again locally
  (SourceReader.skip_to) for the whole-file xxh64. The prefix on the server is
  not trusted blindly: the hash of the whole temp file catches a bad one,
  deletes the temp file and raises VerificationFailed.
- Connections: `connections` SSH connections with one SFTP session each, shared
  by all transfers (SFTP multiplexes requests). A dropped connection is replaced
  on the next request; an interrupted chunk is retried on a new connection and
  the temp file reopened, within the same put.
- Host keys are always checked against `known_hosts`; ~/.ssh/config and an
  ssh-agent are not consulted, so the TOML is the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import time
from typing import Awaitable, Callable, Literal, TypeVar

import structlog
from pydantic import Field, field_validator, model_validator

from ..errors import PermanentError, TransientError, TriplicateError, VerificationFailed
from ..fields import ByteSize, ConfigPath
from ..hashing import xxh64_bytes
from ..source import SourceReader
from .base import (
    DestinationConfig,
    NoResume,
    Progress,
    Receipt,
    RemoteObject,
    ResumeState,
    SourceFile,
    check_key,
)
from .sftp_login import Login
from .sftp_session import (
    Missing,
    Pool,
    RemoteFile,
    Session,
    asyncssh_module,
    is_connection_error,
    is_missing,
    replace_without_posix_rename,
    retrying,
)
from .sftp_temps import TMP_MARK, TempNames
from .sftp_verify import REMOTE_HASHERS, RemoteHashes

log = structlog.get_logger("triplicate.sftp")

T = TypeVar("T")
MiB = 1024 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SftpConfig(DestinationConfig):
    type: Literal["sftp"]
    host: str = Field(min_length=1, description="SFTP server name or address.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    username: str = Field(min_length=1, description="Login name on the server.")
    key_file: ConfigPath = Field(
        description="Private key used to log in (OpenSSH or PEM format); relative paths start at the config file.",
    )
    key_passphrase_env: str | None = Field(
        default=None,
        description="NAME of the environment variable holding the key's passphrase (never the passphrase itself).",
    )
    known_hosts: ConfigPath = Field(
        default="~/.ssh/known_hosts", validate_default=True,
        description="known_hosts file that must hold the server's host key; unknown keys are refused.",
    )
    path: str = Field(min_length=1, description="Remote base folder (absolute, or relative to the login folder).")
    connections: int = Field(
        default=1, ge=1, le=16,
        description="SSH connections kept open (one SFTP session each); the files in transfer share them.",
    )
    chunk_size: ByteSize = Field(
        default=8 * MiB,
        description="Bytes read and written per step (several pipelined SFTP requests); the retry and resume unit.",
    )
    connect_timeout: float = Field(
        default=30.0, gt=0, le=600,
        description="Seconds to wait for a connection: TCP, key exchange and login together.",
    )
    fsync: bool = Field(
        default=True,
        description="Ask the server to flush every copy to its disk (fsync@openssh.com) before it counts.",
    )
    verify: Literal["auto", "remote-hash", "read-back"] = Field(
        default="auto",
        description='How a copy is checked: "remote-hash" runs xxhsum -H1 (or xxh64sum) on the server over SSH, '
        'so the bytes cross the network once; "read-back" downloads the copy and hashes it here; "auto" uses the '
        "remote hash when the server has one (probed when the destination opens), else reads back.",
    )
    remote_hash_min_size: ByteSize | None = Field(
        default=None,
        description="Smallest file the remote hash checks; smaller ones are read back. Unset: the size whose "
        "read-back takes as long as a remote command (a login shell: 20-200 ms), from this destination's own "
        "measurements (sftp_costs.py): a 20 ms command makes it 6 MB at 300 MB/s, 500 KB at 200 Mbit/s.",
    )

    @field_validator("path")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/") or "/"

    @field_validator("chunk_size")
    @classmethod
    def _chunk_bounds(cls, value: int) -> int:
        if not 64 * 1024 <= value <= 256 * MiB:
            raise ValueError("chunk_size must be between 64KiB and 256MiB")
        return value

    @model_validator(mode="after")
    def _passphrase_env_is_a_name(self) -> "SftpConfig":
        # Checked on the model, not the field: a field error would echo the value,
        # and someone may have pasted the passphrase itself here.
        if self.key_passphrase_env is not None and not _ENV_NAME.match(self.key_passphrase_env):
            raise ValueError(
                f"destination {self.name!r}: key_passphrase_env must be the NAME of an environment variable "
                "(letters, digits, _) that holds the passphrase, never the passphrase itself"
            )
        return self


class SftpDestination:
    def __init__(self, config: SftpConfig) -> None:
        self.config = config
        self.name = config.name
        self.log = log.bind(destination=self.name, server=f"{config.host}:{config.port}")
        self._login = Login(config, self.log)
        self.where = self._login.where
        self._pool = Pool(self._login.connect, config.connections)
        self._temps = TempNames()
        self._hashes = RemoteHashes(config, self._call, self._login, self.log)

    def _path(self, key: str) -> str:
        return posixpath.join(self.config.path, check_key(key))

    async def open(self) -> None:
        async def check(session: Session) -> None:
            ssh = asyncssh_module()
            try:
                attrs = await session.sftp.stat(self.config.path)
            except (ssh.SFTPNoSuchFile, ssh.SFTPNoSuchPath):
                raise PermanentError(
                    f"destination {self.name!r}: folder {self.config.path} does not exist on {self.where}; "
                    "create it there (mkdir -p) or fix path"
                ) from None
            if attrs.type != ssh.FILEXFER_TYPE_DIRECTORY:
                raise PermanentError(
                    f"destination {self.name!r}: {self.config.path} on {self.where} is not a folder; "
                    "set path to a folder"
                )

        await self._call("checking the remote folder", check)
        await self._choose_verification()

    async def close(self) -> None:
        await self._pool.close()

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        final = self._path(src.key)
        tmp = self._resumable_temp(src, final, resume)
        with self._temps.forgotten_on_failure(final):
            return await self._put(src, final, tmp, resume, progress)

    async def _put(
        self, src: SourceFile, final: str, tmp: str | None, resume: ResumeState, progress: Progress | None
    ) -> Receipt:
        await self._folder_for(final)
        await self._remove_stale_temps(final, keep=tmp)
        existing = await self._identical(final, src)
        if existing is not None:
            await self._discard(tmp, resume)
            return existing
        tmp, offset = await self._temp_and_offset(src, final, tmp, resume)
        try:
            xxh64 = await self._copy(src, tmp, offset, progress)
            method = await self._check_copy(tmp, xxh64, src.size)
            await self._finish(tmp, final, src.mtime_ns)
        except VerificationFailed:
            await self._discard(tmp, resume)
            raise
        except (TransientError, PermanentError):
            raise  # the temp file stays for the next attempt to resume
        except Exception:  # SourceChanged and the like: the temp belongs to no version
            await self._discard(tmp, resume)
            raise
        resume.clear()
        return Receipt(key=src.key, size=src.size, xxh64=xxh64, bytes_sent=src.size - offset,
                       evidence={"verified_by": method})

    async def copy(self, from_key: str, src: SourceFile) -> Receipt | None:
        """copy-data@openssh.com (OpenSSH 9.0+): the server copies the old file
        to a temp name itself; then the usual read-back and rename. None (the
        file is sent) when the server lacks the extension or the old file is
        not those bytes."""
        assert src.xxh64 is not None
        old, final = self._path(from_key), self._path(src.key)
        found = await self._stat_path(old)
        if found is None or found.size != src.size:
            return None
        await self._folder_for(final)
        await self._remove_stale_temps(final, keep=None)
        existing = await self._identical(final, src)
        if existing is not None:
            return existing
        tmp = self._temps.new(final)
        ssh = asyncssh_module()

        async def op(session: Session) -> bool:
            try:
                async with session.sftp.open(old, "rb", block_size=0) as fin, \
                        session.sftp.open(tmp, "wb", block_size=0) as fout:
                    await session.sftp.remote_copy(fin, fout)
            except ssh.SFTPOpUnsupported:
                return False
            return True

        try:
            with self._temps.forgotten_on_failure(final):
                if not await self._call(f"copying {from_key} to {src.key}", op):
                    await self._discard(tmp, NoResume())
                    return None
                method = await self._check_copy(tmp, src.xxh64, src.size)
                await self._finish(tmp, final, src.mtime_ns)
        except VerificationFailed:
            await self._discard(tmp, NoResume())
            return None  # the old copy is not those bytes (`verify` will say so): send the file
        except BaseException:
            await self._discard(tmp, NoResume())
            raise
        return Receipt(key=src.key, size=src.size, xxh64=src.xxh64, bytes_sent=0,
                       evidence={"copied_from": from_key, "how": "copy-data", "verified_by": method})

    def _resumable_temp(self, src: SourceFile, final: str, resume: ResumeState) -> str | None:
        """The temp file of an interrupted put of this very version, if any."""
        state = resume.load()
        if not state:
            return None
        tmp = state.get("tmp")
        prefix = f".{posixpath.basename(final)}{TMP_MARK}"
        if (
            not isinstance(tmp, str)
            or posixpath.dirname(tmp) != posixpath.dirname(final)
            or not posixpath.basename(tmp).startswith(prefix)
            or (state.get("size"), state.get("mtime_ns")) != (src.size, src.mtime_ns)
        ):
            resume.clear()
            return None
        return tmp

    async def _temp_and_offset(
        self, src: SourceFile, final: str, tmp: str | None, resume: ResumeState
    ) -> tuple[str, int]:
        """The temp file to write and where to continue: the resumed one's size, or
        a new name (saved for the next attempt before the first byte goes out)."""
        offset = None if tmp is None else await self._resume_offset(tmp, src)
        if tmp is not None and offset is not None:
            self.log.info("sftp_resume", file=src.key, offset=offset, size=src.size)
            return tmp, offset
        tmp = self._temps.new(final)
        if src.size > self.config.chunk_size:
            # a file sent in one chunk has nothing to resume (a chunk is the resume
            # unit); a temp file a crash leaves of it is found by the next run's listing
            resume.save({"tmp": tmp, "size": src.size, "mtime_ns": src.mtime_ns})
        return tmp, 0

    async def _resume_offset(self, tmp: str, src: SourceFile) -> int | None:
        """Bytes of `tmp` already on the server, or None to start over."""
        ssh = asyncssh_module()

        async def size(session: Session) -> int | None:
            try:
                return (await session.sftp.stat(tmp)).size or 0
            except (ssh.SFTPNoSuchFile, ssh.SFTPNoSuchPath):
                return None

        found = await self._call(f"looking at {tmp}", size)
        if found is not None and found > src.size:
            await self._remove(tmp)
            return None
        return found

    async def _identical(self, final: str, src: SourceFile) -> Receipt | None:
        """A copy already in place with the known size and hash is kept as is
        (SFTP has no metadata: that takes hashing it)."""
        if src.xxh64 is None or self._temps.surely_absent(final):
            return None
        found = await self._stat_path(final)
        if found is None or found.size != src.size:
            return None
        try:
            xxh64, length, _ = await self._hashes.hash(final, src.size)
        except Missing:
            return None
        if xxh64 != src.xxh64 or length != src.size:
            return None
        return Receipt(key=src.key, size=src.size, xxh64=xxh64, skipped=True)

    async def _copy(self, src: SourceFile, tmp: str, offset: int, progress: Progress | None) -> str:
        """Send the source from `offset` to `tmp`; returns the xxh64 of the whole source."""
        with SourceReader(src, block_size=self.config.chunk_size) as reader:
            await asyncio.to_thread(reader.skip_to, offset)
            remote = RemoteFile(self._call, tmp, "r+b" if offset else "wb")
            try:
                await remote.open()
                await self._send(reader, remote, offset, progress)
                if self.config.fsync:
                    await remote.fsync()
            finally:
                await remote.close()
            return reader.finish()

    async def _send(self, reader: SourceReader, remote: RemoteFile, offset: int, progress: Progress | None) -> None:
        """Write blocks in order, reading the next block while the current one is sent."""
        pending = asyncio.ensure_future(asyncio.to_thread(reader.read_block))
        try:
            while block := await pending:
                pending = asyncio.ensure_future(asyncio.to_thread(reader.read_block))
                await remote.write(block, offset)
                offset += len(block)
                if progress:
                    progress(len(block))
        finally:
            # The reader's file descriptor must outlive a read still running in its thread.
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)

    async def _check_copy(self, path: str, xxh64: str, size: int) -> str:
        """Raises unless the copy at `path` holds `xxh64`; returns how it was checked."""
        try:
            copied, length, method = await self._hashes.hash(path, size)
        except Missing:
            raise TransientError(
                f"destination {self.name!r}: temporary file {path} vanished on {self.where} before it was checked; "
                "the copy is retried"
            ) from None
        if length != size or copied != xxh64:
            raise VerificationFailed(
                f"destination {self.name!r}: copy at {path} on {self.where} read back as xxh64 {copied} "
                f"({length} bytes), expected {xxh64} ({size} bytes); removed"
            )
        return method

    async def _finish(self, tmp: str, final: str, mtime_ns: int) -> None:
        ssh = asyncssh_module()

        async def rename(session: Session) -> None:
            await session.sftp.utime(tmp, ns=(time.time_ns(), mtime_ns))
            try:
                await session.sftp.posix_rename(tmp, final)
            except ssh.SFTPOpUnsupported:
                await replace_without_posix_rename(session.sftp, tmp, final)

        await self._call(f"renaming {tmp} to {posixpath.basename(final)}", rename)
        self._temps.gone(tmp)
        self._temps.landed(final)

    async def _discard(self, tmp: str | None, resume: ResumeState) -> None:
        """Remove a temp file that must not be resumed; never hides the first error."""
        if tmp is not None:
            with contextlib.suppress(TriplicateError):
                await self._remove(tmp)
        resume.clear()

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        path = self._path(key)
        try:
            found, length, _ = await self._hashes.hash(path, size)
        except Missing:
            raise PermanentError(
                f"copy missing at destination {self.name!r}: {key} ({path} on {self.where})"
            ) from None
        if length != size or found != xxh64:
            raise VerificationFailed(
                f"copy of {key} at {self.name!r} reads as xxh64 {found} ({length} bytes), "
                f"expected {xxh64} ({size} bytes)"
            )

    async def stat(self, key: str) -> RemoteObject | None:
        found = await self._stat_path(self._path(key))
        return None if found is None else RemoteObject(key=key, size=found.size, mtime_ns=found.mtime_ns)

    async def _stat_path(self, path: str) -> RemoteObject | None:
        ssh = asyncssh_module()

        async def op(session: Session) -> RemoteObject | None:
            try:
                attrs = await session.sftp.stat(path)
            except (ssh.SFTPNoSuchFile, ssh.SFTPNoSuchPath):
                return None
            if attrs.type == ssh.FILEXFER_TYPE_DIRECTORY:
                return None
            mtime_ns = None if attrs.mtime is None else attrs.mtime * 10**9 + (attrs.mtime_ns or 0)
            return RemoteObject(key=path, size=attrs.size or 0, mtime_ns=mtime_ns)

        return await self._call(f"looking at {path}", op)

    async def delete(self, key: str) -> None:
        await self._remove(self._path(key))

    async def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)

        async def op(session: Session) -> bytes | None:
            try:
                async with session.sftp.open(path, "rb") as fh:
                    data = await fh.read()
                    assert isinstance(data, bytes)  # opened in binary mode
                    return data
            except Exception as exc:
                if is_missing(exc):
                    return None
                raise

        return await self._call(f"reading {path}", op)

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        final = self._path(key)
        await self._folder_for(final)
        await self._remove_stale_temps(final, keep=None)
        tmp = self._temps.new(final)
        try:
            with self._temps.forgotten_on_failure(final):
                await self._write_file(tmp, data)
                await self._finish(tmp, final, time.time_ns())
        except Exception:  # a cancelled write leaves its temp to the next write's clean-up
            with contextlib.suppress(TriplicateError):
                await self._remove(tmp)
            raise

    async def _write_file(self, path: str, data: bytes | bytearray) -> None:
        """Create `path` holding `data`, flushed when so configured."""
        remote = RemoteFile(self._call, path, "wb")
        try:
            await remote.open()
            await remote.write(data, 0)
            if self.config.fsync:
                await remote.fsync()
        finally:
            await remote.close()

    async def _call(self, what: str, op: Callable[[Session], Awaitable[T]], holder: RemoteFile | None = None) -> T:
        """Run one request, reconnecting and retrying a few times on transient errors."""
        async for attempt in retrying():
            with attempt:
                session = await self._pool.get(holder.session if holder else None)
                try:
                    return await op(session)
                except Exception as exc:
                    if is_connection_error(exc):
                        self._pool.drop(session)
                        self.log.warning("sftp_connection_lost", during=what, error=str(self._login.mapped(exc, what)))
                    raise self._login.mapped(exc, what) from None
        raise AssertionError("unreachable: tenacity reraises the last error")

    # ---- how copies are checked ---------------------------------------------------

    async def _choose_verification(self) -> None:
        """Probe once for a remote xxh64 command (unless told to read back)."""
        self._hashes.command = None
        if self.config.verify == "read-back":
            self._hashes.use(None, "verify = read-back")
        else:
            self._hashes.use(*await self._probe_hashers())

    async def _probe_hashers(self) -> tuple[str | None, str]:
        """The first command that hashes a probe file written over SFTP to the
        hash of its bytes, which proves that the command works and that it sees
        the paths the SFTP session sees; else None and why not."""
        probe_final = posixpath.join(self.config.path, ".triplicate-hash-probe")
        data = f"triplicate hash probe {os.getpid()} {time.time_ns()}\n".encode()
        expected = xxh64_bytes(data)
        await self._remove_stale_temps(probe_final, keep=None)  # a killed probe's file
        tmp = self._temps.new(probe_final)
        reasons: list[str] = []
        try:
            try:
                await self._write_file(tmp, data)
            except PermanentError as exc:  # e.g. a login that may only read: `triplicate verify` still works
                return None, f"cannot write a probe file ({exc})"
            session = await self._pool.get()
            for command in REMOTE_HASHERS:
                failed = await self._hashes.probe(session, command, tmp, expected)
                if failed is None:
                    return command, f"{command.split()[0]} hashed a probe file correctly"
                reasons.append(failed)
        finally:
            with contextlib.suppress(TriplicateError):
                await self._remove(tmp)
        return None, "; ".join(reasons)

    async def _folder_for(self, final: str) -> None:
        """The folder of `final` exists: a folder listed in this run did (a put
        that fails forgets it), others are made if missing."""
        folder = posixpath.dirname(final)
        if not self._temps.listed(folder):
            await self._makedirs(folder)

    async def _makedirs(self, folder: str) -> None:
        ssh = asyncssh_module()

        async def op(session: Session) -> None:
            try:
                if (await session.sftp.stat(folder)).type == ssh.FILEXFER_TYPE_DIRECTORY:
                    return
            except (ssh.SFTPNoSuchFile, ssh.SFTPNoSuchPath):
                pass
            await session.sftp.makedirs(folder, exist_ok=True)

        await self._call(f"creating folder {folder}", op)

    async def _remove(self, path: str) -> None:
        async def op(session: Session) -> None:
            try:
                await session.sftp.remove(path)
            except Exception as exc:
                if not is_missing(exc):
                    raise

        await self._call(f"removing {path}", op)
        self._temps.gone(path)

    async def _remove_stale_temps(self, final: str, keep: str | None) -> None:
        """Temporary files left behind for this name (except the one being
        resumed): those a killed process left, found by listing the folder once
        per run, and those of this run's failed attempts, known by name."""
        folder = posixpath.dirname(final)
        if not self._temps.listed(folder):

            async def names(session: Session) -> list[bytes]:
                # bytes: a name in the folder that is not UTF-8 must not break the listing
                return list(await session.sftp.listdir(folder.encode()))

            self._temps.found(folder, await self._call(f"listing {folder}", names))
        for stale in self._temps.stale(final, keep):
            await self._remove(stale)
            self.log.info("sftp_stale_temp_removed", path=stale)

