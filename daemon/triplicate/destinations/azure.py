"""Azure Blob Storage: every copy is a block blob, built on azure-storage-blob's
asyncio client (azure.storage.blob.aio, over aiohttp).

How a copy is made
------------------
A file smaller than `block_size` goes up in one Put Blob request. A bigger one
goes up as blocks (Put Block, `block_concurrency` of them in flight per file)
that become the blob in one Put Block List at the end. Until that commit the
blocks are invisible ("uncommitted"): the final name shows the previous version
or the complete new one, never a half blob. The commit also sets the metadata
`xxh64` (ASC MHL hex of the source) and `mtime` (the source's mtime in
nanoseconds since the epoch, decimal), the whole-blob Content-MD5, and the
access tier. `block_size` grows for a big file so that no blob needs more than
Azure's 50,000 blocks (past 781 GiB at 16 MiB), and then fewer blocks fly at
once (base.pieces_in_flight), so memory stays what the configuration allows.

Why a copy counts as checked without reading it back
----------------------------------------------------
Azure computes no MD5 of a block blob as a whole: the Content-MD5 given with
Put Block List is stored as it is, unchecked. The proof comes from the blocks:

1. Every block buffer is hashed twice locally from the same bytes: into the
   file's xxh64 (by SourceReader) and into the block's own MD5.
2. That MD5 travels with the block as its transactional Content-MD5. The
   service hashes the bytes that arrived and refuses the block (400) when they
   differ, so a staged block holds exactly the bytes that were hashed.
3. After the commit the committed block list must be exactly this upload's
   block ids, in order, with their sizes; the blob's size must be the source's
   size, its metadata `xxh64` the hash reader.finish() returned, and its
   Content-MD5 the whole-file MD5 computed while reading.

So the stored bytes are the concatenation of the bytes that produced the
source's xxh64, checked by the service on arrival. A small file (Put Blob) is
the same argument with one block. The whole-blob Content-MD5 is not part of
that proof (Azure does not check it); it is set so that any later download
(azcopy --check-md5, the SDKs) can check the blob on its own. The price of
all this is local CPU: two MD5 passes over every byte (per block, and whole
file; about 650 MB/s per core each) beside the xxh64.

Reading every blob back after the upload would re-prove what the service has
already checked, at the price of a second full transfer: as long as the upload
again, internet egress charges, a per-GB retrieval fee on Cool and Cold, and
impossible on Archive until the blob is rehydrated. `verify()` does that read
(streamed, hashed with xxh64) when the scheduler asks for a re-check.

Resume
------
The resume state holds the source version (size, mtime_ns), the blob name, the
block size, a random token that starts every block id of this upload, and the
MD5 of each block once the service acknowledged it (saved right then). The next
put asks for the uncommitted block list: a block is reused only if it is still
there with its exact size and the MD5 of the same range, read again from the
source, equals the recorded one. Everything else is sent again; Azure discards
uncommitted blocks after 7 days and on any commit to the blob, so blocks can
disappear. Block ids are "<token><index>" (fixed length; the SDK base64s
them): because no other upload uses the token, committing with "latest" can
never pick up a stale committed block of an older version, and a commit that is
retried after its answer was lost commits the same blocks again.

Blocks left uncommitted by a put that never finishes (the source changed, the
file was removed) cannot be deleted on their own; Azure drops them after 7 days
or at the next commit to the same name.

Progress is reported per block (or per small file) when the service has
acknowledged it, so a block lost in flight is never counted as sent. Requests
are retried on their own (tenacity: 4 tries, exponential backoff with jitter);
the SDK's own retries are off so that there is one retry layer. Small objects
(write_bytes: ASC MHL files) never go to the Archive tier, because the next
generation of the history has to read them.

Credentials: `connection_string_env`, or `account_url` with `account_key_env`,
`sas_token_env`, or azure-identity's DefaultAzureCredential when that package
is installed. The TOML names environment variables; secrets never appear in it,
in messages or in logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal, TypeVar
from urllib.parse import urlsplit

import structlog
from pydantic import Field, field_validator, model_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ..errors import PermanentError, TransientError, VerificationFailed
from ..fields import ByteSize
from ..hashing import new_digest
from ..source import SourceReader
from .azure_account import AzureAccount, BlobMissing
from .azure_blocks import (
    MAX_BLOCK_SIZE,
    BlockPlan,
    Window,
    b64,
    block_id,
    plan_blocks,
    read_and_hash,
    read_exactly,
)
from .base import (
    DestinationConfig,
    Progress,
    Receipt,
    RemoteObject,
    ResumeState,
    SourceFile,
    check_key,
    pieces_in_flight,
)

if TYPE_CHECKING:  # the SDK takes ~0.4 s to import: only when a destination connects
    from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient, StorageStreamDownloader

log = structlog.get_logger("triplicate.azure")

T = TypeVar("T")
MiB = 1024 * 1024
READ_CHUNK = 8 * MiB  # range size of verify()'s streamed read-back
TRIES = 4  # per request; the scheduler retries the whole put later with backoff
STATE_VERSION = 1
Tier = Literal["Hot", "Cool", "Cold", "Archive"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class AzureConfig(DestinationConfig):
    type: Literal["azure"]
    account_url: str | None = Field(
        default=None,
        description="Blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net; credentials from account_key_env, "
        "sas_token_env, or azure-identity. Use either this or connection_string_env.",
    )
    connection_string_env: str | None = Field(
        default=None,
        description="NAME of the environment variable holding the connection string (never the string itself).",
    )
    account_key_env: str | None = Field(
        default=None, description="With account_url: NAME of the env var holding the account key.",
    )
    sas_token_env: str | None = Field(
        default=None, description="With account_url: NAME of the env var holding a SAS token.",
    )
    container: str = Field(description="Container that holds the copies; it must exist.")
    prefix: str = Field(default="", description="Folder inside the container, e.g. \"camera/\"; keys go below it.")
    access_tier: Tier | None = Field(
        default=None, description="Hot, Cool, Cold or Archive; default: the account's default tier.",
    )
    block_size: ByteSize = Field(
        default=16 * MiB, ge=MiB, le=MAX_BLOCK_SIZE,
        description="Block size of big files (grown per file so that none needs more than 50,000 blocks); "
        "smaller files go up in one request.",
    )
    block_concurrency: int = Field(
        default=4, ge=1, le=32,
        description="Blocks in flight per file (memory: about (this + 1) x block_size per file; fewer fly when a "
        "big file's blocks grow).",
    )
    media: str = "cloud"
    offsite: bool = True

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not _CONTAINER.match(value):
            raise ValueError(
                "a container name has 3-63 lowercase letters, digits and single hyphens, "
                "and starts and ends with a letter or digit"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        value = value.strip("/")
        if value:
            try:
                check_key(value)
            except PermanentError as exc:
                raise ValueError(str(exc)) from None
        return f"{value}/" if value else ""

    @model_validator(mode="after")
    def _credentials_are_named(self) -> "AzureConfig":
        # Checked on the model, not the fields: a field error would echo the
        # value, and someone may have pasted the secret itself.
        for key in ("connection_string_env", "account_key_env", "sas_token_env"):
            value = getattr(self, key)
            if value is not None and not _ENV_NAME.match(value):
                raise ValueError(
                    f"destination {self.name!r}: {key} must be the NAME of an environment variable "
                    "(letters, digits, _) that holds the secret, never the secret itself"
                )
        if (self.account_url is None) == (self.connection_string_env is None):
            raise ValueError(f"destination {self.name!r}: set exactly one of account_url and connection_string_env")
        if self.connection_string_env and (self.account_key_env or self.sas_token_env):
            raise ValueError(
                f"destination {self.name!r}: account_key_env and sas_token_env go with account_url, "
                "not connection_string_env"
            )
        if self.account_key_env and self.sas_token_env:
            raise ValueError(f"destination {self.name!r}: set account_key_env or sas_token_env, not both")
        url = urlsplit(self.account_url or "")
        if self.account_url is not None and (url.query or not url.netloc):
            raise ValueError(
                f"destination {self.name!r}: account_url must be a plain endpoint such as "
                "https://ACCOUNT.blob.core.windows.net (a SAS token goes in an env var named by sas_token_env)"
            )
        return self


class AzureDestination:
    def __init__(self, config: AzureConfig) -> None:
        self.config = config
        self.name = config.name
        self._account = AzureAccount(config)
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None

    def _blob(self, key: str) -> "BlobClient":
        if self._container is None:
            raise PermanentError(f"destination {self.name!r} is not open")
        return self._container.get_blob_client(self.config.prefix + check_key(key))

    async def open(self) -> None:
        if self._service is None:
            self._service = self._account.service()
            self._account.account = self._service.account_name or self._account.account
            self._container = self._service.get_container_client(self.config.container)
        await self._call("checking the container", self._list_one)

    async def _list_one(self) -> None:
        """One listing request: proves the container exists and the
        credentials work, and unlike Get Container Properties it is allowed
        to a container-scoped SAS."""
        assert self._container is not None
        async for page in self._container.list_blobs(results_per_page=1).by_page():
            async for _ in page:
                break
            break

    async def close(self) -> None:
        service = self._service
        self._service = self._container = None
        if service is not None:
            await service.close()
        await self._account.close()

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        blob = self._blob(src.key)
        existing = await self._identical(blob, src)
        if existing is not None:
            return existing
        plan = plan_blocks(src.size, self.config.block_size)
        if src.size < self.config.block_size:
            sent, xxh64, md5 = await self._put_whole(blob, src, progress)
            expected_blocks = None
        else:
            sent, xxh64, md5, expected_blocks = await self._put_blocks(blob, src, plan, resume, progress)
        await self._check_stored(blob, src, xxh64, md5, expected_blocks)
        resume.clear()
        blocks = len(expected_blocks) if expected_blocks else 1
        log.debug("azure_put_done", destination=self.name, key=src.key, bytes_sent=sent, blocks=blocks)
        return Receipt(key=src.key, size=src.size, xxh64=xxh64, bytes_sent=sent,
                       evidence={"content_md5": b64(md5), "blocks": str(blocks)})

    async def _identical(self, blob: "BlobClient", src: SourceFile) -> Receipt | None:
        """A blob already there with the known size and xxh64 is kept as is."""
        if src.xxh64 is None:
            return None
        props = await self._properties(blob, "looking for an existing copy")
        if props is None or props.size != src.size or (props.metadata or {}).get("xxh64") != src.xxh64:
            return None
        return Receipt(key=src.key, size=src.size, xxh64=src.xxh64, skipped=True)

    async def _put_whole(
        self, blob: "BlobClient", src: SourceFile, progress: Progress | None,
    ) -> tuple[int, str, bytes]:
        """One Put Blob; the service checks the body against its MD5."""
        with SourceReader(src) as reader:
            data = await asyncio.to_thread(read_exactly, reader, src.size)
            xxh64 = reader.finish()
        md5 = await asyncio.to_thread(lambda: hashlib.md5(data).digest())
        metadata = self._metadata(xxh64, src.mtime_ns)
        await self._upload(blob, data, md5, metadata, self.config.access_tier, f"uploading {src.key}")
        if progress:
            progress(len(data))
        return len(data), xxh64, md5

    async def _upload(
        self, blob: "BlobClient", data: bytes, md5: bytes, metadata: dict[str, str], tier: str | None, what: str,
    ) -> None:
        from azure.storage.blob import ContentSettings, StandardBlobTier

        await self._call(
            what, blob.upload_blob, data, length=len(data), overwrite=True, metadata=metadata,
            content_settings=ContentSettings(content_md5=bytearray(md5)),
            standard_blob_tier=StandardBlobTier(tier) if tier else None,
            transactional_content_md5=md5,
        )

    def _metadata(self, xxh64: str, mtime_ns: int) -> dict[str, str]:
        return {"xxh64": xxh64, "mtime": str(mtime_ns)}

    async def _put_blocks(
        self, blob: "BlobClient", src: SourceFile, plan: BlockPlan, resume: ResumeState, progress: Progress | None,
    ) -> tuple[int, str, bytes, list[tuple[str, int]]]:
        state = await self._resume_state(blob, src, plan, resume)
        whole = hashlib.md5()
        window = Window(pieces_in_flight(plan.block_size, self.config.block_size, self.config.block_concurrency))
        with SourceReader(src, plan.block_size) as reader:
            try:
                for index in range(plan.count):
                    data = await asyncio.to_thread(read_and_hash, reader, plan.length(index), whole)
                    await window.submit(self._stage(blob, state, index, data, resume, progress))
                await window.drain()
            finally:
                await window.cancel()
            xxh64 = reader.finish()
        blocks = [(block_id(state["token"], i), plan.length(i)) for i in range(plan.count)]
        await self._commit(blob, src, [b for b, _ in blocks], xxh64, whole.digest())
        return window.total, xxh64, whole.digest(), blocks

    async def _resume_state(
        self, blob: "BlobClient", src: SourceFile, plan: BlockPlan, resume: ResumeState,
    ) -> dict[str, Any]:
        """The saved state if it belongs to this version and layout, with only
        the blocks still staged at their exact size; else a fresh one."""
        fresh = {"v": STATE_VERSION, "blob": blob.blob_name, "size": src.size, "mtime_ns": src.mtime_ns,
                 "block_size": plan.block_size, "token": secrets.token_hex(4), "md5": [None] * plan.count}
        saved = resume.load()
        if not saved or any(saved.get(k) != fresh[k] for k in ("v", "blob", "size", "mtime_ns", "block_size")):
            return fresh
        recorded = sum(1 for m in saved["md5"] if m)
        staged = await self._uncommitted(blob)
        for index, md5 in enumerate(saved["md5"]):
            if md5 and staged.get(block_id(saved["token"], index)) != plan.length(index):
                saved["md5"][index] = None
        reusable = sum(1 for m in saved["md5"] if m)
        log.info("azure_resume", destination=self.name, key=src.key, blocks=plan.count,
                 recorded=recorded, still_staged=reusable, vanished=recorded - reusable)
        return saved

    async def _uncommitted(self, blob: "BlobClient") -> dict[str, int]:
        try:
            _, uncommitted = await self._call("listing staged blocks", blob.get_block_list, "uncommitted")
        except BlobMissing:  # nothing staged (or all of it discarded)
            return {}
        return {b.id: b.size for b in uncommitted}

    async def _stage(
        self, blob: "BlobClient", state: dict[str, Any], index: int, data: bytes,
        resume: ResumeState, progress: Progress | None,
    ) -> int:
        """Stage one block unless the same bytes are staged already; returns bytes sent."""
        md5 = await asyncio.to_thread(lambda: hashlib.md5(data).digest())
        if state["md5"][index] == b64(md5):
            return 0
        if state["md5"][index] is not None:
            # Forget the old record before the staged block changes, so that a
            # recorded MD5 never describes bytes the server no longer holds.
            state["md5"][index] = None
            resume.save(state)
        await self._call(
            f"staging block {index} of {blob.blob_name}", blob.stage_block,
            block_id(state["token"], index), data, length=len(data), transactional_content_md5=md5,
        )
        state["md5"][index] = b64(md5)
        resume.save(state)  # on the event loop thread, as JournalResume requires
        if progress:
            progress(len(data))
        return len(data)

    async def _commit(self, blob: "BlobClient", src: SourceFile, ids: list[str], xxh64: str, md5: bytes) -> None:
        from azure.storage.blob import BlobBlock, BlockState, ContentSettings, StandardBlobTier

        tier = self.config.access_tier
        await self._call(
            f"committing {src.key}", blob.commit_block_list,
            [BlobBlock(block_id, BlockState.LATEST) for block_id in ids],
            content_settings=ContentSettings(content_md5=bytearray(md5)),
            metadata=self._metadata(xxh64, src.mtime_ns),
            standard_blob_tier=StandardBlobTier(tier) if tier else None,
        )

    async def _check_stored(
        self, blob: "BlobClient", src: SourceFile, xxh64: str, md5: bytes, blocks: list[tuple[str, int]] | None,
    ) -> None:
        """The committed blob is exactly what was sent; else it is removed."""
        props = await self._properties(blob, f"checking {src.key}")
        problems = _property_problems(props, src.size, xxh64, md5)
        if blocks is not None and not problems:
            committed, _ = await self._call(f"checking the blocks of {src.key}", blob.get_block_list, "committed")
            if [(b.id, b.size) for b in committed] != blocks:
                problems.append(f"its committed block list is not the {len(blocks)} blocks sent")
        if problems:
            await self.delete(src.key)
            log.warning("azure_copy_rejected", destination=self.name, key=src.key, problems=problems)
            raise VerificationFailed(
                f"copy of {src.key} at {self.name!r} failed its check ({'; '.join(problems)}); removed"
            )

    async def copy(self, from_key: str, src: SourceFile) -> Receipt | None:
        """Copy Blob within the account (the service copies; Azure finishes a
        same-account copy before it answers, a slower one is polled), then a
        read-back: the copied Content-MD5 property is the old blob's, no
        evidence of the new bytes. Never touches the old blob."""
        assert src.xxh64 is not None
        blob, old = self._blob(src.key), self._blob(from_key)
        existing = await self._identical(blob, src)
        if existing is not None:
            return existing
        props = await self._properties(old, f"looking up {from_key}")
        if props is None or props.size != src.size or (props.metadata or {}).get("xxh64") != src.xxh64:
            return None
        from azure.core import MatchConditions
        from azure.storage.blob import StandardBlobTier

        tier = self.config.access_tier
        await self._call(
            f"copying {from_key} to {src.key}", blob.start_copy_from_url, old.url,
            metadata=self._metadata(src.xxh64, src.mtime_ns), source_etag=props.etag,
            source_match_condition=MatchConditions.IfNotModified,
            standard_blob_tier=StandardBlobTier(tier) if tier else None,
        )
        copied = await self._copy_finished(blob, src.key)
        found = await self._hash_blob(blob, src.size, copied.etag, f"reading back {src.key}")
        if (copied.size, found) != (src.size, src.xxh64):
            await self.delete(src.key)
            raise VerificationFailed(
                f"copy of {from_key} to {src.key} at {self.name!r} reads back as xxh64 {found} ({copied.size} bytes), "
                f"expected {src.xxh64} ({src.size} bytes); removed"
            )
        return Receipt(key=src.key, size=src.size, xxh64=found, bytes_sent=0,
                       evidence={"copied_from": from_key, "verified_by": "read-back"})

    async def _copy_finished(self, blob: "BlobClient", key: str) -> Any:
        """The new blob's properties once the service's copy is done."""
        for delay in (0.1, 0.2, 0.5, 1, 2, *([5] * 120)):
            props = await self._properties(blob, f"checking the copy to {key}")
            state = getattr(props.copy, "status", None) if props is not None else "missing"
            if state in (None, "success"):
                return props
            if state != "pending":
                break
            await asyncio.sleep(delay)
        # never leave a blob whose metadata claims bytes it may not hold
        await self.delete(key)
        raise TransientError(f"destination {self.name!r}: the service's copy to {key} did not finish ({state}); removed")

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        blob = self._blob(key)
        props = await self._properties(blob, f"re-checking {key}")
        if props is None:
            raise PermanentError(f"copy missing at destination {self.name!r}: {key}")
        if props.size != size:
            raise VerificationFailed(f"copy of {key} at {self.name!r} holds {props.size} bytes, expected {size}")
        if props.blob_tier == "Archive":
            raise PermanentError(
                f"copy of {key} at {self.name!r} is in the Archive tier and cannot be read; rehydrate it to verify it"
            )
        found = await self._hash_blob(blob, size, props.etag, f"reading back {key}")
        if found != xxh64:
            raise VerificationFailed(
                f"copy of {key} at {self.name!r} reads as xxh64 {found}, expected {xxh64} ({size} bytes)"
            )

    async def _hash_blob(self, blob: "BlobClient", size: int, etag: str, what: str) -> str:
        """xxh64 of the blob, read in ranges (each retried on its own), a few
        ranges ahead, hashed in order."""
        digest = new_digest("xxh64")
        offsets = iter(range(0, size, READ_CHUNK))
        ahead: deque[asyncio.Task[bytes]] = deque()
        try:
            while True:
                while len(ahead) < self.config.block_concurrency and (offset := next(offsets, None)) is not None:
                    length = min(READ_CHUNK, size - offset)
                    read = self._call(what, self._read_range, blob, offset, length, etag)
                    ahead.append(asyncio.ensure_future(read))
                if not ahead:
                    return digest.hexdigest()
                digest.update(await ahead.popleft())
        finally:
            for task in ahead:
                task.cancel()
            await asyncio.gather(*ahead, return_exceptions=True)

    async def _read_range(self, blob: "BlobClient", offset: int, length: int, etag: str) -> bytes:
        from azure.core import MatchConditions

        # etag: a blob replaced during the read fails (412) instead of mixing versions
        stream = await blob.download_blob(offset, length, etag=etag, match_condition=MatchConditions.IfNotModified)
        data = await stream.readall()
        if len(data) != length:
            raise TransientError(f"short read of {blob.blob_name} at {offset}: {len(data)} of {length} bytes")
        return data

    async def stat(self, key: str) -> RemoteObject | None:
        props = await self._properties(self._blob(key), f"looking up {key}")
        if props is None:
            return None
        metadata = props.metadata or {}
        mtime = metadata.get("mtime", "")
        return RemoteObject(key=key, size=props.size, xxh64=metadata.get("xxh64"),
                            mtime_ns=int(mtime) if mtime.isdigit() else None)

    async def _properties(self, blob: "BlobClient", what: str) -> Any:
        """The blob's properties, or None if there is no blob."""
        try:
            return await self._call(what, blob.get_blob_properties)
        except BlobMissing:
            return None

    async def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            await self._call(f"deleting {key}", blob.delete_blob, delete_snapshots="include")
        except BlobMissing:
            pass

    async def read_bytes(self, key: str) -> bytes | None:
        blob = self._blob(key)
        try:
            # bytes, without an encoding: the annotation picks that overload of download_blob
            stream: StorageStreamDownloader[bytes] = await self._call(f"reading {key}", blob.download_blob)
            return await self._call(f"reading {key}", stream.readall)
        except BlobMissing:
            return None

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        # Small objects (ASC MHL) are read again for the next generation, so
        # they never go to Archive, where they could not be read.
        tier = None if self.config.access_tier == "Archive" else self.config.access_tier
        data = bytes(data)  # the SDK sends only bytes as one body; anything else it takes for chunks
        digest = new_digest("xxh64")
        digest.update(data)
        metadata = {"xxh64": digest.hexdigest()}
        await self._upload(self._blob(key), data, hashlib.md5(data).digest(), metadata, tier, f"writing {key}")

    # ---- requests and their errors ---------------------------------------------

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One request, retried a few times (exponential + jitter) when the
        failure is transient; SDK errors leave as TriplicateErrors."""
        def before_sleep(rs: RetryCallState) -> None:
            assert rs.outcome is not None  # tenacity sleeps only after an attempt has failed
            log.info("azure_request_retry", destination=self.name, what=what,
                     attempt=rs.attempt_number, error=str(rs.outcome.exception()))

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(TRIES), wait=wait_exponential(multiplier=0.5, max=8) + wait_random(0, 0.5),
            retry=retry_if_exception_type(TransientError), reraise=True, before_sleep=before_sleep,
        ):
            with attempt:
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    mapped = self._account.error(exc, what)
                    if mapped is None:
                        raise
                    raise mapped from None
        raise AssertionError("unreachable")  # pragma: no cover



def _property_problems(props: Any, size: int, xxh64: str, md5: bytes) -> list[str]:
    if props is None:
        return ["it is not there after the upload"]
    problems = []
    if props.size != size:
        problems.append(f"it holds {props.size} bytes, expected {size}")
    found = (props.metadata or {}).get("xxh64")
    if found != xxh64:
        problems.append(f"its metadata xxh64 is {found}, expected {xxh64}")
    stored_md5 = bytes(props.content_settings.content_md5 or b"")
    if stored_md5 != md5:
        problems.append(f"its Content-MD5 is {b64(stored_md5) or 'missing'}, expected {b64(md5)}")
    return problems
