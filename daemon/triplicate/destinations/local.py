"""A mounted path: RAID, NAS share, second disk, LTO staging area.

Copies are written under a hidden temporary name in the target folder, flushed
with fsync, read back from the device (cached pages dropped) and compared with
the hash of the bytes read from the source; only then renamed into place, so the
final name never holds a torn or unverified file.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field

from ..errors import PermanentError, TransientError, VerificationFailed
from ..fields import ConfigPath
from ..hashing import hash_file, hash_open_file
from ..source import SourceReader
from .base import (
    DestinationConfig,
    Progress,
    Receipt,
    RemoteObject,
    ResumeState,
    SourceFile,
    check_key,
)

TMP_MARK = ".triplicate-"
_RUN = f"{os.getpid()}-{secrets.token_hex(4)}"
"""This process's mark in temporary names: a pid alone repeats (pid 1 in every
container start), and temporary files of a killed run must not pass as ours."""


class LocalConfig(DestinationConfig):
    type: Literal["local"]
    path: ConfigPath = Field(description="Root folder of the copies; offloads keep their relative paths below it.")
    media: str = "disk"
    fsync: bool = Field(default=True, description="Flush every copy to the device before it counts.")


def _os_error(exc: OSError, what: str) -> Exception:
    """Map an OSError at the destination to the scheduler's classes."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TransientError(f"destination disk full while {what}: {reason}; free space, the copy is retried")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentError(f"destination not writable while {what}: {reason}; fix the permissions or the mount")
    return TransientError(f"destination I/O error while {what}: {reason}")


class LocalDestination:
    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.name = config.name
        self.root = config.path
        self._ready: set[Path] = set()  # folders made and cleaned of stale temporary files
        self._cleaning = threading.Lock()
        self._dir_sync = _DirSync()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def open(self) -> None:
        if not self.root.is_dir():
            raise PermanentError(
                f"destination {self.name!r}: folder {self.root} does not exist; create it or mount the volume"
            )

    async def close(self) -> None:
        return None

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        return await asyncio.to_thread(self._put, src, progress)

    def _put(self, src: SourceFile, progress: Progress | None) -> Receipt:
        def send(tmp: Path) -> Receipt:
            xxh64 = self._copy(src, tmp, progress)
            return Receipt(key=src.key, size=src.size, xxh64=xxh64, bytes_sent=src.size)

        try:
            landed = self._land(src, send)
        except OSError as exc:
            raise _os_error(exc, f"writing {src.key}") from None
        assert landed is not None  # send() never declines
        return landed

    def _land(self, src: SourceFile, make: Callable[[Path], Receipt | None]) -> Receipt | None:
        """The frame of every copy: an identical copy already in place is kept;
        otherwise `make` fills a temporary file and checks it, and only then is
        it renamed into place and the rename made durable. `make` returns None
        to decline (nothing lands)."""
        final = self._path(src.key)
        self._ready_folder(final.parent)
        existing = self._identical(final, src)
        if existing is not None:
            return existing
        tmp = _temp_for(final)
        landed = False
        try:
            receipt = make(tmp)
            if receipt is not None:
                os.replace(tmp, final)
                landed = True
                if self.config.fsync:
                    self._dir_sync.sync(final.parent)
        except FileNotFoundError:
            self._forget_folder(final.parent)
            raise
        finally:
            if not landed:
                tmp.unlink(missing_ok=True)
        return receipt

    def _ready_folder(self, folder: Path) -> None:
        """Made, and cleaned of stale temporary files, once per process: stale
        ones can only come from a process that died. Listing the folder before
        every file cost N² names for a frame sequence of N files, and a
        mkdir per file a system call (and a GIL hand-off) for nothing."""
        with self._cleaning:
            if folder in self._ready:
                return
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(folder)  # twice at once is harmless: each removes others' files only
        with self._cleaning:
            self._ready.add(folder)

    def _forget_folder(self, folder: Path) -> None:
        with self._cleaning:  # the folder went away: the next attempt makes it again
            self._ready.discard(folder)

    async def copy(self, from_key: str, src: SourceFile) -> Receipt | None:
        return await asyncio.to_thread(self._copy_within, from_key, src)

    def _copy_within(self, from_key: str, src: SourceFile) -> Receipt | None:
        """A hard link when the old copy's mtime is the new one's (a rename
        keeps it; no bytes move and no space is taken), else a copy made by
        the kernel (copy_file_range: reflinks on btrfs/XFS, a server-side copy
        on NFS 4.2); either way read back from the device before it counts."""
        old = self._path(from_key)
        try:
            old_st = old.stat()
        except FileNotFoundError:
            return None
        if old_st.st_size != src.size or src.xxh64 is None:
            return None

        def clone(tmp: Path) -> Receipt | None:
            how = _clone(old, tmp, old_st.st_mtime_ns == src.mtime_ns)
            if how != "hard-link":
                os.utime(tmp, ns=(time.time_ns(), src.mtime_ns))
            copied, length = hash_file(tmp, uncached=True, size_hint=src.size)
            if (copied, length) != (src.xxh64, src.size):
                return None  # the old copy is not those bytes (`verify` will say so): send the file
            return Receipt(key=src.key, size=src.size, xxh64=copied, bytes_sent=0,
                           evidence={"copied_from": from_key, "how": how, "verified_by": "read-back"})

        try:
            return self._land(src, clone)
        except OSError as exc:
            raise _os_error(exc, f"copying {from_key} to {src.key}") from None

    def _identical(self, final: Path, src: SourceFile) -> Receipt | None:
        """A copy already in place with the known size and hash is kept as is."""
        if src.xxh64 is None:
            return None
        try:
            if final.stat().st_size != src.size:
                return None
        except FileNotFoundError:
            return None
        xxh64, _ = hash_file(final, uncached=True, size_hint=src.size)
        if xxh64 != src.xxh64:
            return None
        return Receipt(key=src.key, size=src.size, xxh64=xxh64, skipped=True)

    def _copy(self, src: SourceFile, tmp: Path, progress: Progress | None) -> str:
        """Write `tmp`, flush it, and read it back from the device through the
        same descriptor (a small file's copy costs ~9 system calls, each a GIL
        hand-off between the copy threads); returns the source's xxh64."""
        with SourceReader(src) as reader:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if src.size > reader.block_size:  # one write of a smaller file fails as soon on a full disk
                    _preallocate(fd, src.size)
                while block := reader.read_block():
                    view = memoryview(block)
                    while view:
                        view = view[os.write(fd, view):]
                    if progress:
                        progress(len(block))
                os.utime(fd, ns=(time.time_ns(), src.mtime_ns))  # before the fsync, which then keeps it too
                if self.config.fsync:
                    os.fsync(fd)
                xxh64 = reader.finish()
                self._check_copy(fd, tmp, xxh64, src.size)
            finally:
                os.close(fd)
        return xxh64

    def _check_copy(self, fd: int, path: Path, xxh64: str, size: int) -> None:
        copied, length = hash_open_file(fd, uncached=True, size_hint=size)
        if length != size or copied != xxh64:
            raise VerificationFailed(
                f"copy at {path} read back as xxh64 {copied} ({length} bytes), expected {xxh64} ({size} bytes); removed"
            )

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        path = self._path(key)
        try:
            found, length = await asyncio.to_thread(hash_file, path, "xxh64", True, size)
        except FileNotFoundError:
            raise PermanentError(f"copy missing at destination {self.name!r}: {key}") from None
        except OSError as exc:
            raise _os_error(exc, f"reading back {key}") from None
        if length != size or found != xxh64:
            raise VerificationFailed(
                f"copy of {key} at {self.name!r} reads as xxh64 {found} ({length} bytes), expected {xxh64} ({size} bytes)"
            )

    async def stat(self, key: str) -> RemoteObject | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return RemoteObject(key=key, size=st.st_size, mtime_ns=st.st_mtime_ns)

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def read_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        await asyncio.to_thread(self._write_bytes, key, data)

    def _write_bytes(self, key: str, data: bytes | bytearray) -> None:
        # ASC MHL files and reports: their folders are cleaned of a killed
        # process's temporary files like the copies' (ascmhl/ holds no copies)
        final = self._path(key)
        tmp = _temp_for(final)
        landed = False
        try:
            self._ready_folder(final.parent)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                if self.config.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, final)
            landed = True
            if self.config.fsync:
                _fsync_dir(final.parent)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                self._forget_folder(final.parent)
            raise _os_error(exc, f"writing {key}") from None
        finally:
            if not landed:
                tmp.unlink(missing_ok=True)


def _temp_for(final: Path) -> Path:
    """The hidden temporary name `final` is written under by this process."""
    return final.with_name(f".{final.name}{TMP_MARK}{_RUN}-{time.monotonic_ns()}.tmp")


def _remove_stale_temps(folder: Path) -> None:
    """Temporary files other (killed) processes left behind in `folder`; this
    process's own are copies in progress."""
    mine = f"{TMP_MARK}{_RUN}-"
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith(".") and TMP_MARK in name and name.endswith(".tmp") and mine not in name:
            Path(entry.path).unlink(missing_ok=True)


class _DirSync:
    """Group commit of folder fsyncs: a rename is durable once an fsync of its
    folder that began after the rename has finished, so copies landing in one
    folder at once share fsyncs instead of queueing one each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[Path, _FolderSync] = {}

    def sync(self, folder: Path) -> None:
        with self._lock:
            state = self._folders.setdefault(folder, _FolderSync())
        state.sync(folder)


class _FolderSync:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.requested = 0  # tickets handed out, one per rename to make durable
        self.done = 0  # every ticket up to this one is durable
        self.running = False

    def sync(self, folder: Path) -> None:
        with self.cond:
            self.requested += 1
            ticket = self.requested
            while self.done < ticket:
                if not self.running:
                    break
                self.cond.wait()
            else:
                return  # an fsync that began after this rename covered it
            self.running = True
            covers = self.requested
        try:
            _fsync_dir(folder)
        except BaseException:
            with self.cond:
                self.running = False
                self.cond.notify_all()
            raise
        with self.cond:
            self.running = False
            self.done = max(self.done, covers)
            self.cond.notify_all()


def _clone(old: Path, new: Path, link: bool) -> str:
    """`new` holding `old`'s bytes: a hard link if `link` and the file system
    has them, else a kernel copy. Returns how."""
    if link:
        try:
            os.link(old, new)
            return "hard-link"
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
    how = "copy_file_range"
    with open(old, "rb") as fin, open(new, "xb") as fout:
        left = os.fstat(fin.fileno()).st_size
        try:
            while left > 0 and (done := os.copy_file_range(fin.fileno(), fout.fileno(), left)):
                left -= done
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, 1 << 20)
            how = "copy"
        fout.flush()
        os.fsync(fout.fileno())
    return how


def _preallocate(fd: int, size: int) -> None:
    """Reserve the space up front: a full disk fails now, not at 90%."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
