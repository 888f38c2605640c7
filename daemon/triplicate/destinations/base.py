"""The destination protocol and the small types it speaks.

A destination is one place that holds copies: a local/mounted path, an S3
bucket, an Azure container, an SFTP server. Each type is one module beside this
one with a pydantic config model (subclass of `DestinationConfig`) and a class
implementing `Destination`. The registry (`registry.py`) joins them.

Keys are destination-relative, POSIX separators, Unicode NFC:
"<offload>/<path inside the offload>". A destination adds its own root or
prefix. Keys never contain ".." segments or a leading "/" (checked by
`check_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..bandwidth import Schedule
from ..errors import CopyRefused

Progress = Callable[[int], None]
"""Called with the number of bytes just sent; must be cheap and never raise."""


class DestinationConfig(BaseModel):
    """Keys every destination type has. Subclasses add `type: Literal[...]`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Name used in [[watch]].destinations and in status.")
    media: str = Field(default="disk", description="Media kind of this copy (raid, nas, lto, cloud, ...); counts toward 3-2-1's two media.")
    offsite: bool = Field(default=False, description="True when this copy is in another building; counts toward 3-2-1's one off-site.")
    concurrency: int = Field(default=2, ge=1, le=64, description="Files transferred at once to this destination.")
    bandwidth: Schedule = Field(
        default_factory=list,
        description='Limit, e.g. "200Mbit/s", or rules such as [{ days = "mon-fri", from = "09:00", to = "19:00", '
        'limit = "200Mbit/s" }, { limit = "unlimited" }]; see bandwidth.py. Default: unlimited.',
    )
    own_process: bool | None = Field(
        default=None,
        description="Run this destination's transfers in a process of its own, so that its protocol work (request "
        "signing, encryption, packets) uses another CPU core than the daemon's. Default: yes for network destinations "
        "(s3, azure, sftp) on a machine with more than one core; no for local folders, which share the daemon's "
        "one read of each source file.",
    )


@dataclass(frozen=True)
class SourceFile:
    """One version of a source file, as the journal knows it.

    `path` is reopenable: every attempt reads it again from the start (or from a
    resume point), so a retry never depends on a consumed stream.
    """

    path: Path
    key: str
    size: int
    mtime_ns: int
    xxh64: str | None = None  # known hash of this version, None until first read
    # bandwidth.Throttle of the destination; SourceReader waits on it for every block it hands out
    limiter: Any = field(default=None, compare=False, repr=False)
    # destinations about to read this version together (scheduler.py); the first
    # reader holds the file's start until they have joined it (shared_read.py)
    readers: int = field(default=1, compare=False, repr=False)


@dataclass
class Receipt:
    """What `put` proves about the copy it made."""

    key: str
    size: int
    xxh64: str  # hash of the bytes read from the source and found at the destination
    bytes_sent: int = 0  # bytes actually transmitted in this attempt (0 when skipped)
    skipped: bool = False  # an identical copy was already there
    evidence: dict[str, str] = field(default_factory=dict)  # e.g. {"crc32c": "..."}


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    xxh64: str | None = None  # from the object's metadata, if it carries one
    mtime_ns: int | None = None


class ResumeState(Protocol):
    """Per (file version, destination) scratch space kept in the journal, so that
    an interrupted transfer continues after a crash (upload ids, finished parts,
    byte offsets). Values must be JSON-serialisable."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...


class NoResume:
    """A ResumeState that keeps nothing (tests, one-off commands)."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        return None

    def clear(self) -> None:
        return None


@runtime_checkable
class Destination(Protocol):
    """One place that holds copies. All methods may be called concurrently for
    different keys; none is called concurrently for the same key.

    Errors: every method raises only TransientError (retry later),
    PermanentError (needs someone to act), VerificationFailed, or SourceChanged;
    SDK exceptions are mapped inside the module.
    """

    name: str
    config: DestinationConfig

    async def open(self) -> None:
        """Connect and check that the target (folder, bucket, container, remote
        path) exists and is usable. Raises PermanentError with a sentence that
        says how to fix it when it does not."""

    async def close(self) -> None:
        """Release connections. Safe to call twice."""

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        """Copy `src` to `src.key` and check the stored copy before returning.

        - Reads the source with `source.SourceReader` (hashes what it reads and
          raises SourceChanged if the file changes underneath).
        - The copy becomes visible under its final key only when complete
          (temporary name + rename, multipart complete, block list commit).
        - Returns only when the destination holds exactly the bytes read, checked
          against what was sent (read-back, or the service's own checksum of the
          stored object). On a mismatch the bad copy is removed and
          VerificationFailed is raised.
        - If an identical copy already exists (same size and xxh64, src.xxh64
          known), records it without sending: Receipt(skipped=True).
        - Idempotent: calling again after any failure is safe; `resume` may let
          it continue where the last attempt stopped.
        """

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        """Re-read the stored copy and compare it with `xxh64` and `size`.
        Raises VerificationFailed on a mismatch (without deleting anything) and
        PermanentError if the object is missing."""

    async def stat(self, key: str) -> RemoteObject | None:
        """The object under `key`, or None if there is none."""

    async def delete(self, key: str) -> None:
        """Remove `key`; no error if it is already gone."""

    async def read_bytes(self, key: str) -> bytes | None:
        """A small object in full (ASC MHL files), or None if missing."""

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        """Store a small object atomically (never visible half-written); ASC MHL
        generations come as a bytearray."""


@runtime_checkable
class CopiesInPlace(Protocol):
    """What a destination offers when it can make one stored copy from another
    without the bytes crossing the network again (a file renamed or moved at
    the source). Optional: a destination without it gets a `put`."""

    async def copy(self, from_key: str, src: SourceFile) -> Receipt | None:
        """Make `src.key` from the copy stored under `from_key` (`src.xxh64` is
        known): a server-side copy, a hard link. Verified before it returns,
        like `put`: the new object is checked against `src.xxh64` by the
        service's checksum of it or by reading it back. Returns None, changing
        nothing, when `from_key` is missing or does not hold those bytes: the
        file is then sent with `put`. Never removes `from_key` (a sealed ASC
        MHL generation lists it). `Receipt.bytes_sent` counts what crossed the
        network: 0 for a copy inside the service."""


@runtime_checkable
class SharedReads(Protocol):
    """What a destination says when some of its puts would not join other
    destinations' shared read of a file from its start: an S3 multipart put
    whose hash is unknown reads the whole source once on its own first (the
    xxh64 goes in the upload's metadata), and a destination in a process of
    its own reads there. The scheduler holds a shared read's start only for
    destinations that join it. Without this method a destination joins."""

    def joins_shared_read(self, size: int, hash_known: bool) -> bool:
        """Whether a put of a file of `size` bytes reads alongside the others from its start."""


DestinationFactory = Callable[[DestinationConfig], Destination]
Opener = Callable[[], Awaitable[None]]


def check_key(key: str) -> str:
    """Refuse keys that could escape a destination root."""
    if not key or key.startswith("/") or "\\" in key:
        raise CopyRefused(f"refusing key {key!r}: keys are relative POSIX paths")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise CopyRefused(f"refusing key {key!r}: empty, '.' or '..' segments could escape the destination root")
    return key


def pieces_in_flight(piece_size: int, configured_size: int, concurrency: int) -> int:
    """How many pieces (S3 parts, Azure blocks) of `piece_size` one file sends
    at once, each from its own buffer: `concurrency`, or, once a big file's
    pieces have grown past `configured_size`, as many as fit in concurrency x
    configured_size, and at least one. Memory then stays what the configuration
    allows whatever the file's size, and so do the bytes on the link."""
    return max(1, min(concurrency, concurrency * configured_size // piece_size))
