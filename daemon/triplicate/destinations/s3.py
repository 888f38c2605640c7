"""AWS S3 and every S3-compatible store (Wasabi, Backblaze B2, MinIO, Ceph).

How a copy is made
    A file no larger than `part_size` goes up in one PutObject that carries its
    checksum header and the metadata `xxh64` (the source's hash: the whole body
    is read before the request) and `mtime` (nanoseconds since the epoch, as a
    decimal string). A larger file is a multipart upload driven here with the
    low-level client (CreateMultipartUpload, UploadPart with per-part retries,
    CompleteMultipartUpload): aioboto3's `upload_fileobj` aborts the whole
    upload when one part fails, never resumes and does not grow the part size.
    The part size grows in MiB steps so that no upload needs more than 10,000
    parts (5 TiB, S3's largest object, takes 525 MiB parts). Up to
    `part_concurrency` parts per file are in flight, each held in memory while
    it is sent: memory is about part_concurrency x part_size per file.

The xxh64 metadata of a multipart upload
    S3 takes metadata only when the upload is created, before a byte has been
    read. The alternative, setting it afterwards by copying the object onto
    itself (CopyObject with MetadataDirective=REPLACE, UploadPartCopy beyond
    5 GiB), rewrites the whole object on the server, gives it a new checksum to
    check, and leaves a window in which the final key holds an object without
    its hash. So when the journal does not know the file's hash yet, one
    sequential read computes it first and the upload is created with it; the
    upload's own read hashes the bytes again and `SourceReader.finish` refuses
    them if they differ. The price is a second read of the source, usually from
    the page cache and at xxh64's ~5 GB/s far below any uplink; when the hash is
    known (another destination verified first, or a resumed upload stored it)
    there is no extra read. Nothing appears under the final key before
    CompleteMultipartUpload, and it appears with its right metadata.

Verification, before `put` returns
    HeadObject (ChecksumMode=ENABLED for crc32c/sha256) must show the size, the
    `xxh64` metadata equal to what `SourceReader.finish` returned, and the
    service's checksum equal to the one computed here from the bytes sent: the
    whole-object value after a PutObject; after a multipart upload the composite
    ("<checksum of the part checksums>-N"), computed here from the part
    checksums. With checksum "md5" or "none" the ETag is the evidence (the MD5
    of the object, or of the part MD5s plus "-N"; MD5 is computed locally in
    both). When the service gives nothing to compare, or a value that disagrees
    (moto's composite CRC32C, the ETag of an SSE-KMS object), the object is
    read back and hashed and the log says so (`s3_verified_by_read_back`); a
    mismatch there deletes the object and raises VerificationFailed. A
    verification is never skipped.

Resume
    The resume state holds the source version (size, mtime), the upload id, part
    size, checksum setting, the xxh64 the upload was created with, and the
    finished parts (number, ETag, checksum, size), saved as each part is
    acknowledged. The next attempt asks ListParts, keeps the parts the server
    still has, hashes them from the source with `SourceReader.skip_to` (so the
    whole-file hash stays complete) and sends the rest: after a kill, at most
    the parts that were in flight go again. A state that no longer fits (other
    version or settings, upload gone) is dropped and its upload aborted; after a
    verified copy every other open upload of the key is aborted. A kill between
    CompleteMultipartUpload and the check resumes by checking the completed
    object against the saved part checksums. Uploads of a key that never gets
    another attempt stay open: a bucket lifecycle rule
    AbortIncompleteMultipartUpload (e.g. 7 days) removes them.

Checksums and S3-compatible stores
    "crc32c" (default) and "sha256" send x-amz-checksum-* headers, and the
    service refuses a part whose bytes do not match; "md5" sends Content-MD5
    only; "none" sends no integrity header and turns off botocore's default
    CRC (request_checksum_calculation = "when_required"), which Backblaze B2,
    Wasabi and older MinIO reject with 400 InvalidArgument "Unsupported header
    'x-amz-checksum-crc32'". That error becomes a PermanentError telling the
    user to set checksum = "none". Reads are never checked by botocore
    (response_checksum_validation = "when_required", so no x-amz-checksum-mode
    header on GET): every read-back is compared with the source's xxh64.

Credentials
    The standard AWS chain (environment, shared config with `profile`, instance
    or container role); `access_key_id_env` / `secret_access_key_env` name the
    environment variables that hold a key pair, for facilities with several
    accounts. Keys never appear in the TOML, in a message or in a log line.
    With `endpoint_url` set, requests use path-style addressing, which every
    S3-compatible store accepts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import io
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import structlog
import xxhash
from pydantic import Field, field_validator, model_validator

from ..errors import PermanentError, SourceChanged, TransientError, TriplicateError, VerificationFailed
from ..fields import ByteSize, format_size
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

log = structlog.get_logger("triplicate.s3")

MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * TiB
READ_CHUNK = 8 * MiB
STATE_VERSION = 1
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_LOOKS_LIKE_KEY = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,}$")


class S3Config(DestinationConfig):
    type: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63, description="Bucket that holds the copies; it must exist.")
    prefix: str = Field(
        default="", description='Key prefix in the bucket, e.g. "camera-originals/"; copies go to <prefix><offload>/<path>.'
    )
    region: str | None = Field(
        default=None, description='Region of the bucket, e.g. "eu-west-1"; default: from the AWS config or environment.'
    )
    endpoint_url: str | None = Field(
        default=None, description="URL of an S3-compatible service (Wasabi, Backblaze B2, MinIO, Ceph); leave out for AWS."
    )
    profile: str | None = Field(
        default=None, description="Profile of ~/.aws/config and ~/.aws/credentials; default: the standard credential chain."
    )
    access_key_id_env: str | None = Field(
        default=None, description="NAME of the environment variable holding the access key id (never the key itself)."
    )
    secret_access_key_env: str | None = Field(
        default=None, description="NAME of the environment variable holding the secret access key (never the key itself)."
    )
    storage_class: str | None = Field(
        default=None,
        description="STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR, DEEP_ARCHIVE, ...; default: the bucket's. "
        "Objects in GLACIER or DEEP_ARCHIVE must be restored before `verify` can read them.",
    )
    part_size: ByteSize = Field(
        default=64 * MiB,
        description='One part of a multipart upload, e.g. "64MiB" (5 MiB to 5 GiB), grown so that no file needs more '
        "than 10,000 parts. Files up to this size go up in one request.",
    )
    part_concurrency: int = Field(
        default=4, ge=1, le=32, description="Parts of one file in flight at once (each held in memory while it is sent)."
    )
    checksum: Literal["crc32c", "sha256", "md5", "none"] = Field(
        default="crc32c",
        description='Integrity check the service makes of every request: "crc32c", "sha256", "md5" (Content-MD5), or '
        '"none" for stores that reject the newer checksum headers (Backblaze B2, Wasabi, older MinIO).',
    )
    media: str = "cloud"
    offsite: bool = True

    @field_validator("prefix")
    @classmethod
    def _normal_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if any(p in (".", "..") for p in value.split("/")) or "//" in value:
            raise ValueError("a prefix has no empty, '.' or '..' segments")
        return f"{value}/" if value else ""

    @field_validator("part_size")
    @classmethod
    def _part_range(cls, value: int) -> int:
        if not MIN_PART <= value <= MAX_PART:
            raise ValueError("S3 parts are 5 MiB to 5 GiB; pick a part_size in that range")
        return value

    @field_validator("storage_class")
    @classmethod
    def _class_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z_]{2,40}", value):
            raise ValueError('a storage class is written in capitals, e.g. "STANDARD_IA" or "DEEP_ARCHIVE"')
        return value

    @model_validator(mode="after")
    def _env_names(self) -> "S3Config":
        # Checked on the whole model so a pasted key is never echoed back in the config error.
        names = (self.access_key_id_env, self.secret_access_key_env)
        if (names[0] is None) != (names[1] is None):
            raise ValueError(f"destination {self.name!r}: set both access_key_id_env and secret_access_key_env, or neither")
        for name in names:
            if name is not None and (not _ENV_NAME.match(name) or _LOOKS_LIKE_KEY.match(name)):
                raise ValueError(
                    f"destination {self.name!r}: access_key_id_env / secret_access_key_env take the NAME of an "
                    "environment variable (e.g. \"WASABI_KEY_ID\"), never a key; keys do not belong in the config file"
                )
        return self


# ---- part planning -----------------------------------------------------------


@dataclass(frozen=True)
class PartPlan:
    """How one object is cut into parts: all `part_size` but the last."""

    size: int
    part_size: int
    count: int

    def span(self, number: int) -> tuple[int, int]:
        """(offset, length) of part `number` (1-based)."""
        offset = (number - 1) * self.part_size
        return offset, min(self.part_size, self.size - offset)


def plan_parts(size: int, part_size: int) -> PartPlan:
    """Parts for an object of `size` bytes: `part_size` clamped to S3's limits
    and grown (in MiB steps) until at most 10,000 parts are needed."""
    if size > MAX_OBJECT:
        raise PermanentError(f"{format_size(size)} is larger than S3's largest object (5 TiB); such a file cannot be stored in S3")
    part = min(max(part_size, MIN_PART), MAX_PART)
    if math.ceil(size / part) > MAX_PARTS:
        part = math.ceil(math.ceil(size / MAX_PARTS) / MiB) * MiB
    return PartPlan(size=size, part_size=part, count=max(1, math.ceil(size / part)))


# ---- checksums -----------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Checksum:
    """One `checksum` setting: the digest each request carries, and how the
    service's answer about the stored object is compared with it."""

    FIELDS = {"crc32c": "ChecksumCRC32C", "sha256": "ChecksumSHA256"}

    def __init__(self, name: str) -> None:
        self.name = name
        self.field = self.FIELDS.get(name)  # x-amz-checksum-* as botocore names it; None: ETag/MD5 instead

    def digest(self, data: bytes) -> bytes:
        if self.name == "crc32c":
            from awscrt.checksums import crc32c

            return struct.pack(">I", crc32c(data))
        if self.name == "sha256":
            return hashlib.sha256(data).digest()
        return hashlib.md5(data).digest()  # "md5", and "none" to check the ETag with

    def create_params(self) -> dict[str, str]:
        return {"ChecksumAlgorithm": self.name.upper()} if self.field else {}

    def request_params(self, digest: bytes) -> dict[str, str]:
        if self.field:
            return {"ChecksumAlgorithm": self.name.upper(), self.field: _b64(digest)}
        return {"ContentMD5": _b64(digest)} if self.name == "md5" else {}

    def part_entry(self, digest: bytes) -> dict[str, str]:
        return {self.field: _b64(digest)} if self.field else {}

    def head_params(self) -> dict[str, str]:
        return {"ChecksumMode": "ENABLED"} if self.field else {}

    def expected(self, digests: list[bytes], multipart: bool) -> list[str]:
        """The service's answers that prove these bytes are stored."""
        if self.field:
            if not multipart:
                return [_b64(digests[0])]
            combined = _b64(self.digest(b"".join(digests)))
            return [f"{combined}-{len(digests)}", combined]  # moto leaves out the "-N"
        if not multipart:
            return [digests[0].hex()]
        return [f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"]

    def answer(self, head: dict[str, Any]) -> str | None:
        """The service's checksum (or MD5 ETag) of the stored object, if it gave one."""
        if self.field:
            return head.get(self.field)
        etag = str(head.get("ETag", "")).strip('"')
        return etag if re.fullmatch(r"[0-9a-f]{32}(-\d+)?", etag) else None


# ---- errors ----------------------------------------------------------------------


class _Missing(PermanentError):
    """The object or upload asked for is not there (handled by the caller)."""


_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
               "InvalidToken", "TokenRefreshRequired", "InvalidClientTokenId", "AccountProblem",
               "AllAccessDisabled", "Forbidden", "403"}
_MISSING_CODES = {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
                    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
                    "BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", "OperationAborted",
                    "RequestLimitExceeded", "BandwidthLimitExceeded", "PriorRequestNotComplete",
                    "InvalidPart"}  # InvalidPart: a part changed at the server; the next attempt lists them again


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def _rejects_checksum_headers(code: str, status: int, message: str) -> bool:
    """B2/Wasabi/old MinIO answer 400 InvalidArgument "Unsupported header
    'x-amz-checksum-crc32' ..." (or NotImplemented) to the newer headers."""
    text = message.lower()
    return status in (400, 501) and code in ("InvalidArgument", "NotImplemented", "InvalidRequest", "BadRequest") and (
        "checksum" in text or "x-amz-sdk" in text
    )


@dataclass(frozen=True)
class _Where:
    """What an error message says about the destination."""

    name: str
    bucket: str
    endpoint: str
    credentials_hint: str


def _sdk_errors() -> tuple[type[BaseException], ...]:
    """What the SDK and its transport raise; anything else is a bug, not the network."""
    import aiohttp
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


def _classify(exc: BaseException, where: _Where, what: str) -> TriplicateError:
    """An SDK or transport error as TransientError / PermanentError (one sentence)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        return _classify_answer(exc.response, where, what)
    if isinstance(exc, BotoCoreError):
        return _classify_sdk(exc, where, what)
    # aiohttp / asyncio errors that escape botocore's wrapping while a body streams
    return TransientError(f"destination {where.name!r}: connection to {where.endpoint} failed while {what}: {_one_line(exc) or type(exc).__name__}")


def _classify_answer(response: dict[str, Any], where: _Where, what: str) -> TriplicateError:
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    message = _one_line(error.get("Message", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    said = f"{code}: {message}" if message else code
    if _rejects_checksum_headers(code, status, message):
        return PermanentError(
            f"destination {where.name!r}: {where.endpoint} rejects S3 checksum headers while {what} ({said}); "
            'set checksum = "none" for this destination (Backblaze B2, Wasabi and older MinIO need it)'
        )
    if code == "NoSuchBucket":
        return PermanentError(f"destination {where.name!r}: bucket {where.bucket!r} does not exist at {where.endpoint}; create it or fix `bucket`")
    if code in _MISSING_CODES:
        return _Missing(f"destination {where.name!r}: not found while {what} ({said})")
    if code in _AUTH_CODES or status in (401, 403):
        return PermanentError(
            f"destination {where.name!r}: credentials refused by {where.endpoint} for bucket {where.bucket!r} "
            f"while {what} ({code if code and not code.isdigit() else f'HTTP {status}'}); "
            f"check {where.credentials_hint} and the bucket's policy"
        )
    if code == "InvalidObjectState":
        return PermanentError(f"destination {where.name!r}: the object is in an archive storage class while {what}; restore it first ({said})")
    if code == "RequestTimeTooSkewed":
        return PermanentError(f"destination {where.name!r}: {where.endpoint} says this computer's clock is wrong; set the time (NTP)")
    if code in _TRANSIENT_CODES or status == 429 or status >= 500 or status == 0:
        return TransientError(f"destination {where.name!r}: {where.endpoint} answered {said or status} while {what}")
    return PermanentError(f"destination {where.name!r}: {where.endpoint} refused {what} ({said or status}); check the destination's settings")


def _classify_sdk(exc: BaseException, where: _Where, what: str) -> TriplicateError:
    from botocore.exceptions import (
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PermanentError(f"destination {where.name!r}: no usable AWS credentials for {where.endpoint}; set {where.credentials_hint}")
    if isinstance(exc, ProfileNotFound):
        return PermanentError(f"destination {where.name!r}: {_one_line(exc)}; add it to ~/.aws/config or fix `profile`")
    if isinstance(exc, NoRegionError):
        return PermanentError(f"destination {where.name!r}: no region for {where.endpoint}; set `region`")
    if isinstance(exc, ParamValidationError):
        return PermanentError(f"destination {where.name!r}: invalid request while {what}: {_one_line(exc)}")
    return TransientError(f"destination {where.name!r}: cannot reach {where.endpoint} while {what}: {_one_line(exc)}")


# ---- request bodies that report progress -----------------------------------------


class _Body(io.BytesIO):
    """One request's body. Bytes count as sent when the HTTP layer reads them
    to write them to the socket; botocore reads the body before that (payload
    signing), so counting starts only when the before-send hook arms it."""

    def __init__(self, data: bytes, sent: Callable[[int], None]) -> None:
        super().__init__(data)  # shares `data` (bytes) without copying
        self.armed = False
        self._sent = sent

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self.armed and chunk:
            self._sent(len(chunk))
        return chunk


def _arm_body(request: Any, **_: Any) -> None:
    body = getattr(request, "body", None)
    if isinstance(body, _Body):
        body.armed = True


@dataclass
class _Meter:
    """Bytes sent in one `put`, passed on to the caller's progress."""

    progress: Progress | None
    total: int = 0

    def __call__(self, n: int) -> None:
        self.total += n
        if self.progress is not None:
            self.progress(n)


# ---- reading the source --------------------------------------------------------------


def _read_exactly(reader: SourceReader, length: int) -> bytes:
    """The next `length` bytes of the source (hashed by the reader)."""
    chunks, got = [], 0
    while got < length:
        reader.block_size = min(READ_CHUNK, length - got)  # never read past the part
        block = reader.read_block()
        if not block:
            raise SourceChanged(f"source file shrank while it was read: {reader.src.path}")
        chunks.append(block)
        got += len(block)
    reader.block_size = READ_CHUNK
    return b"".join(chunks)


def _read_whole(src: SourceFile, checksum: Checksum) -> tuple[bytes, bytes, str]:
    """(bytes, checksum digest, xxh64) of a file small enough for one request."""
    with SourceReader(src) as reader:
        data = _read_exactly(reader, src.size)
        return data, checksum.digest(data), reader.finish()


def _hash_source(src: SourceFile) -> str:
    """The xxh64 of the whole file, for the metadata of a multipart upload."""
    with SourceReader(dataclasses.replace(src, limiter=None)) as reader:  # hashing only: nothing is sent
        while reader.read_block():
            pass
        return reader.finish()


def _read_part(reader: SourceReader, length: int, checksum: Checksum) -> tuple[bytes, bytes]:
    data = _read_exactly(reader, length)
    return data, checksum.digest(data)


async def _with_reader(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a read of the shared SourceReader in a worker thread. A cancelled
    caller still waits for the read to end: the reader (and its fd, whose
    number another file could get) is closed only after that."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await job
        raise


# ---- one multipart upload ---------------------------------------------------------------


@dataclass
class _Upload:
    """A multipart upload in progress, and its resume state."""

    src: SourceFile
    full: str  # the object key (prefix + key)
    plan: PartPlan
    xxh64: str  # created with this metadata; the read must hash to it
    upload_id: str = ""
    parts: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # number -> (etag, b64 digest, size)
    completing: bool = False

    def state(self, checksum: str) -> dict[str, Any]:
        return {
            "v": STATE_VERSION, "key": self.full, "size": self.src.size, "mtime_ns": self.src.mtime_ns,
            "part_size": self.plan.part_size, "checksum": checksum, "xxh64": self.xxh64,
            "upload_id": self.upload_id, "completing": self.completing,
            "parts": {str(n): list(p) for n, p in sorted(self.parts.items())},
        }

    def digests(self) -> list[bytes]:
        return [base64.b64decode(self.parts[n][1]) for n in range(1, self.plan.count + 1)]


def _fits(state: dict[str, Any], src: SourceFile, full: str, plan: PartPlan, checksum: str) -> bool:
    """Does a saved state belong to this source version and these settings?"""
    expect = {"v": STATE_VERSION, "key": full, "size": src.size, "mtime_ns": src.mtime_ns,
              "part_size": plan.part_size, "checksum": checksum}
    if any(state.get(k) != v for k, v in expect.items()) or not state.get("upload_id"):
        return False
    return src.xxh64 is None or state.get("xxh64") == src.xxh64


class _PartPool:
    """Part uploads in flight: at most `limit` at once (each holds its bytes),
    and the first failure stops the rest."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task[None]] = set()

    async def reserve(self) -> None:
        await self.slots.acquire()
        self.raise_failure()

    def start(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(lambda _: self.slots.release())

    def raise_failure(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def drain(self) -> None:
        try:
            await asyncio.gather(*self.tasks)
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)  # also collects every failure


# ---- the destination ------------------------------------------------------------------------


class S3Destination:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.name = config.name
        self.checksum = Checksum(config.checksum)
        self.where = _Where(config.name, config.bucket, _endpoint_text(config), _credentials_hint(config))
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.log = log.bind(destination=config.name, bucket=config.bucket)

    def _full(self, key: str) -> str:
        full = self.config.prefix + check_key(key)
        if len(full.encode()) > 1024:
            raise PermanentError(f"destination {self.name!r}: key {full!r} is longer than S3's 1024 bytes; use a shorter prefix")
        return full

    async def open(self) -> None:
        if self._client is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(self._new_client())
            self._client.meta.events.register("before-send.s3", _arm_body)
            self._stack = stack
            await self._check_bucket()
        except BaseException as exc:
            self._client, self._stack = None, None
            await stack.aclose()
            if isinstance(exc, _sdk_errors()):
                raise _classify(exc, self.where, "connecting") from None
            raise

    def _new_client(self) -> Any:
        import aioboto3
        from aiobotocore.config import AioConfig

        cfg = self.config
        keys = _keys_from_env(cfg)
        session = aioboto3.Session(profile_name=cfg.profile, region_name=cfg.region, **keys)
        legacy = cfg.checksum in ("md5", "none")  # no x-amz-checksum-* unless an operation requires one
        config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},  # requests are retried by tenacity, per part
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=cfg.concurrency * cfg.part_concurrency + 4,
            request_checksum_calculation="when_required" if legacy else "when_supported",
            # reads are checked against the source's xxh64, which is stronger than a CRC
            # and needs no x-amz-checksum-mode header on GET
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if cfg.endpoint_url else "auto"},
            user_agent_extra="triplicate",
        )
        return session.client("s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region, config=config)

    async def _check_bucket(self) -> None:
        try:
            await self._request("head_bucket", "checking the bucket", Bucket=self.config.bucket)
        except _Missing:
            raise PermanentError(
                f"destination {self.name!r}: bucket {self.config.bucket!r} does not exist at {self.where.endpoint}; create it or fix `bucket`"
            ) from None

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # ---- put ------------------------------------------------------------------------

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        # order: a saved upload (maybe already completed), else an identical object, else send
        full = self._full(src.key)
        self._require_open()
        meter = _Meter(progress)
        plan = plan_parts(src.size, self.config.part_size)
        upload = await self._saved_upload(resume, src, full, plan)
        if upload is not None and upload.completing:
            receipt = await self._finish_completed(upload, resume)
            if receipt is not None:
                return receipt
            upload = await self._revalidated(upload, resume)
        if upload is None:
            existing = await self._identical(src, full)
            if existing is not None:
                return await self._done(existing, full, resume)
        if src.size <= self.config.part_size:
            receipt = await self._put_single(src, full, meter)
        else:
            receipt = await self._put_multipart(src, full, plan, upload, resume, meter)
        return await self._done(receipt, full, resume)

    async def _done(self, receipt: Receipt, full: str, resume: ResumeState) -> Receipt:
        """The copy is verified: forget the resume state and abort uploads of the
        key that no attempt will finish (a superseded version's, say)."""
        resume.clear()
        try:
            await self._abort_others(full)
        except TriplicateError as exc:  # the copy is fine; the next put tries again
            self.log.warning("s3_cleanup_failed", object=full, error=str(exc))
        return receipt

    def _require_open(self) -> None:
        if self._client is None:
            raise TransientError(f"destination {self.name!r} is not open")

    async def _identical(self, src: SourceFile, full: str) -> Receipt | None:
        """An object already there with the known size and xxh64 is kept."""
        if src.xxh64 is None:
            return None
        head = await self._head(full, with_checksum=False)
        if head is None or head.get("ContentLength") != src.size:
            return None
        if head.get("Metadata", {}).get("xxh64") != src.xxh64:
            return None
        return Receipt(key=src.key, size=src.size, xxh64=src.xxh64, skipped=True)

    async def _put_single(self, src: SourceFile, full: str, meter: _Meter) -> Receipt:
        data, digest, xxh64 = await asyncio.to_thread(_read_whole, src, self.checksum)
        await self._request(
            "put_object", f"uploading {src.key}", body=data, sent=meter,
            Bucket=self.config.bucket, Key=full, ContentLength=len(data),
            Metadata=_metadata(xxh64, src.mtime_ns), **self._storage(), **self.checksum.request_params(digest),
        )
        evidence = await self._check_stored(src.key, full, src.size, xxh64, [digest], multipart=False)
        return Receipt(key=src.key, size=src.size, xxh64=xxh64, bytes_sent=meter.total, evidence=evidence)

    async def _put_multipart(
        self, src: SourceFile, full: str, plan: PartPlan, upload: _Upload | None, resume: ResumeState, meter: _Meter
    ) -> Receipt:
        if upload is None:
            upload = await self._create_upload(src, full, plan, resume)
        self.log.info("s3_upload", key=src.key, size=src.size, parts=plan.count, part_size=plan.part_size,
                      parts_at_server=len(upload.parts))
        try:
            await self._send_parts(upload, resume, meter)
        except SourceChanged:
            await self._drop(upload, resume, "source changed")
            raise
        upload.completing = True
        resume.save(upload.state(self.checksum.name))
        await self._complete(upload)
        try:
            evidence = await self._check_stored(src.key, full, src.size, upload.xxh64, upload.digests(), multipart=True)
        except VerificationFailed:
            resume.clear()
            raise
        return Receipt(key=src.key, size=src.size, xxh64=upload.xxh64, bytes_sent=meter.total, evidence=evidence)

    # ---- resume ---------------------------------------------------------------------------

    async def _saved_upload(self, resume: ResumeState, src: SourceFile, full: str, plan: PartPlan) -> _Upload | None:
        """The upload a previous attempt left, if it still fits and still exists."""
        state = resume.load()
        if not state:
            return None
        if not _fits(state, src, full, plan, self.checksum.name):
            await self._drop_state(state, resume, "source version or settings changed")
            return None
        parts = {int(n): (p[0], p[1], int(p[2])) for n, p in state.get("parts", {}).items()}
        upload = _Upload(src, full, plan, state["xxh64"], state["upload_id"], parts, bool(state.get("completing")))
        return upload if upload.completing else await self._revalidated(upload, resume)

    async def _revalidated(self, upload: _Upload, resume: ResumeState) -> _Upload | None:
        """The upload with the saved parts the server still holds; None if it is gone."""
        on_server = await self._listed_parts(upload)
        if on_server is None:
            self.log.info("s3_resume_upload_gone", key=upload.src.key)
            resume.clear()
            return None
        upload.parts = {n: p for n, p in upload.parts.items() if on_server.get(n) == (p[0], p[2])}
        upload.completing = False
        return upload

    async def _drop_state(self, state: dict[str, Any], resume: ResumeState, why: str) -> None:
        upload_id, key = state.get("upload_id"), state.get("key")
        if upload_id and key:
            await self._abort(key, upload_id, why)
        resume.clear()

    async def _drop(self, upload: _Upload, resume: ResumeState, why: str) -> None:
        await self._abort(upload.full, upload.upload_id, why)
        resume.clear()

    async def _listed_parts(self, upload: _Upload) -> dict[int, tuple[str, int]] | None:
        """Parts the server holds: number -> (ETag, size); None if the upload is gone."""
        found: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                page = await self._request(
                    "list_parts", f"checking the upload of {upload.src.key}", Bucket=self.config.bucket,
                    Key=upload.full, UploadId=upload.upload_id, PartNumberMarker=marker,
                )
            except _Missing:
                return None
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = (part["ETag"], int(part["Size"]))
            if not page.get("IsTruncated"):
                return found
            marker = int(page["NextPartNumberMarker"])

    async def _finish_completed(self, upload: _Upload, resume: ResumeState) -> Receipt | None:
        """A kill came after CompleteMultipartUpload was sent: check what it made."""
        head = await self._head(upload.full, with_checksum=False)
        if head is None or head.get("Metadata", {}).get("xxh64") != upload.xxh64:
            return None  # the completion never happened
        key, size = upload.src.key, upload.src.size
        try:
            evidence = await self._check_stored(key, upload.full, size, upload.xxh64, upload.digests(), multipart=True)
        except VerificationFailed:
            resume.clear()
            raise
        return await self._done(Receipt(key=key, size=size, xxh64=upload.xxh64, evidence=evidence), upload.full, resume)

    # ---- multipart steps -------------------------------------------------------------------

    async def _create_upload(self, src: SourceFile, full: str, plan: PartPlan, resume: ResumeState) -> _Upload:
        xxh64 = src.xxh64
        if xxh64 is None:  # the metadata needs it now: a first read (see the module's docstring)
            xxh64 = await asyncio.to_thread(_hash_source, src)
            self.log.info("s3_source_hashed_first", key=src.key, size=src.size)
        answer = await self._request(
            "create_multipart_upload", f"starting the upload of {src.key}", Bucket=self.config.bucket, Key=full,
            Metadata=_metadata(xxh64, src.mtime_ns), **self._storage(), **self.checksum.create_params(),
        )
        upload = _Upload(src, full, plan, xxh64, answer["UploadId"])
        resume.save(upload.state(self.checksum.name))  # before any part: a kill now leaves no unknown upload
        return upload

    async def _send_parts(self, upload: _Upload, resume: ResumeState, meter: _Meter) -> None:
        hashed = SourceFile(upload.src.path, upload.src.key, upload.src.size, upload.src.mtime_ns, upload.xxh64,
                            limiter=upload.src.limiter)
        pool = _PartPool(self.config.part_concurrency)
        with SourceReader(hashed) as reader:
            try:
                for number in range(1, upload.plan.count + 1):
                    offset, length = upload.plan.span(number)
                    if number in upload.parts:  # already at the server: hash it, don't send it
                        await _with_reader(reader.skip_to, offset + length)
                        continue
                    await pool.reserve()
                    data, digest = await _with_reader(_read_part, reader, length, self.checksum)
                    pool.start(self._send_part(upload, number, data, digest, resume, meter))
                await pool.drain()
            finally:
                await pool.cancel()
            await _with_reader(reader.finish)

    async def _send_part(
        self, upload: _Upload, number: int, data: bytes, digest: bytes, resume: ResumeState, meter: _Meter
    ) -> None:
        what = f"uploading part {number}/{upload.plan.count} of {upload.src.key}"
        try:
            answer = await self._request(
                "upload_part", what, body=data, sent=meter, Bucket=self.config.bucket, Key=upload.full,
                UploadId=upload.upload_id, PartNumber=number, ContentLength=len(data),
                **self.checksum.request_params(digest),
            )
        except _Missing:  # aborted by someone else (or a lifecycle rule): the next attempt starts over
            raise TransientError(f"destination {self.name!r}: the upload vanished at the server while {what}") from None
        upload.parts[number] = (answer["ETag"], _b64(digest), len(data))
        resume.save(upload.state(self.checksum.name))  # on the event loop: the part is durable now

    async def _complete(self, upload: _Upload) -> None:
        if sorted(upload.parts) != list(range(1, upload.plan.count + 1)):  # never assemble a partial object
            raise TransientError(f"destination {self.name!r}: parts missing before completing {upload.src.key}")
        parts = [
            {"PartNumber": n, "ETag": etag, **self.checksum.part_entry(base64.b64decode(digest))}
            for n, (etag, digest, _) in sorted(upload.parts.items())
        ]
        try:
            await self._request(
                "complete_multipart_upload", f"completing the upload of {upload.src.key}", Bucket=self.config.bucket,
                Key=upload.full, UploadId=upload.upload_id, MultipartUpload={"Parts": parts},
            )
        except _Missing:
            pass  # an earlier try completed it but its answer was lost; the check below decides

    async def _abort(self, full: str, upload_id: str, why: str) -> None:
        with contextlib.suppress(_Missing):
            await self._request("abort_multipart_upload", f"aborting an upload of {full}", Bucket=self.config.bucket,
                                Key=full, UploadId=upload_id)
        self.log.info("s3_upload_aborted", object=full, reason=why)

    async def _abort_others(self, full: str) -> None:
        """Open uploads of this exact key, once its copy is verified."""
        answer = await self._request("list_multipart_uploads", f"listing open uploads of {full}",
                                     Bucket=self.config.bucket, Prefix=full)
        for item in answer.get("Uploads", []):
            if item.get("Key") == full:
                await self._abort(full, item["UploadId"], "left by an earlier attempt")

    # ---- checking the stored object ------------------------------------------------------------

    async def _check_stored(
        self, key: str, full: str, size: int, xxh64: str, digests: list[bytes], multipart: bool
    ) -> dict[str, str]:
        """Size, xxh64 metadata and the service's checksum of what was stored;
        reads the object back when the service cannot confirm its checksum.
        A mismatch removes the object and raises VerificationFailed."""
        head = await self._head(full, with_checksum=True)
        if head is None:
            raise VerificationFailed(f"destination {self.name!r}: {key} is missing right after its upload")
        found = (head.get("ContentLength"), head.get("Metadata", {}).get("xxh64"))
        if found != (size, xxh64):
            await self._remove_bad(full)
            raise VerificationFailed(
                f"destination {self.name!r}: {key} stored as {found[0]} bytes with xxh64 metadata {found[1]}, "
                f"expected {size} bytes and {xxh64}; removed"
            )
        answer = self.checksum.answer(head)
        expected = self.checksum.expected(digests, multipart)
        evidence = {"checksum": self.checksum.name, "service": answer or ""}
        if answer is not None and answer in expected:
            return {**evidence, "verified_by": "service-checksum" if self.checksum.field else "etag-md5"}
        reason = "service gave no checksum" if answer is None else "service checksum disagrees"
        await self._confirm_by_reading(key, full, size, xxh64, reason, answer, expected[0])
        return {**evidence, "verified_by": "read-back"}

    async def _confirm_by_reading(
        self, key: str, full: str, size: int, xxh64: str, reason: str, answer: str | None, expected: str
    ) -> None:
        found, length = await self._read_back(full, f"reading back {key}")
        self.log.info("s3_verified_by_read_back", key=key, reason=reason, service=answer, computed=expected,
                      matches=(found, length) == (xxh64, size))
        if (found, length) != (xxh64, size):
            await self._remove_bad(full)
            raise VerificationFailed(
                f"destination {self.name!r}: {key} reads back as xxh64 {found} ({length} bytes), "
                f"expected {xxh64} ({size} bytes); removed"
            )

    async def _remove_bad(self, full: str) -> None:
        await self._request("delete_object", f"removing a bad copy of {full}", Bucket=self.config.bucket, Key=full)
        self.log.warning("s3_bad_copy_removed", object=full)

    async def _read_back(self, full: str, what: str) -> tuple[str, int]:
        """(xxh64, size) of the stored object, streamed; a dropped connection
        continues from the last byte hashed, pinned to the same ETag."""
        from tenacity import AsyncRetrying

        digest = xxhash.xxh64()
        done = {"offset": 0, "etag": None}
        async for attempt in AsyncRetrying(**self._retry_policy(what)):
            with attempt:
                await self._stream_into(full, digest, done, what)
        return digest.hexdigest(), int(done["offset"])  # type: ignore[arg-type]

    async def _stream_into(self, full: str, digest: Any, done: dict[str, Any], what: str) -> None:
        params: dict[str, Any] = {"Bucket": self.config.bucket, "Key": full}
        if done["offset"]:
            params.update(Range=f"bytes={done['offset']}-", IfMatch=done["etag"])
        try:
            answer = await self._client.get_object(**params)
            done["etag"] = done["etag"] or answer.get("ETag")
            body = answer["Body"]
            async with body:
                while chunk := await body.read(READ_CHUNK):
                    digest.update(chunk)
                    done["offset"] += len(chunk)
        except _sdk_errors() as exc:
            raise _classify(exc, self.where, what) from None

    # ---- requests ---------------------------------------------------------------------------

    def _retry_policy(self, what: str) -> dict[str, Any]:
        from tenacity import retry_if_exception_type, stop_after_attempt, wait_random_exponential

        def before_sleep(state: Any) -> None:
            self.log.warning("s3_request_retry", what=what, attempt=state.attempt_number,
                             error=str(state.outcome.exception()))

        return {
            "retry": retry_if_exception_type(TransientError),
            "stop": stop_after_attempt(4),
            "wait": wait_random_exponential(multiplier=0.5, max=8),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    async def _request(
        self, operation: str, what: str, *, body: bytes | None = None, sent: Callable[[int], None] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """One S3 request, retried a few times on transient errors; SDK errors
        come out as TransientError / PermanentError (_Missing for "not there")."""
        from tenacity import AsyncRetrying

        call = getattr(self._client, operation)
        async for attempt in AsyncRetrying(**self._retry_policy(what)):
            with attempt:
                if body is not None:
                    params["Body"] = _Body(body, sent or (lambda n: None))  # fresh per try
                try:
                    answer: dict[str, Any] = await call(**params)
                except _sdk_errors() as exc:
                    raise _classify(exc, self.where, what) from None
                return answer
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _head(self, full: str, with_checksum: bool) -> dict[str, Any] | None:
        params = self.checksum.head_params() if with_checksum else {}
        try:
            return await self._request("head_object", f"looking up {full}", Bucket=self.config.bucket, Key=full, **params)
        except _Missing:
            return None

    def _storage(self) -> dict[str, str]:
        return {"StorageClass": self.config.storage_class} if self.config.storage_class else {}

    # ---- the rest of the protocol ------------------------------------------------------------

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        full = self._full(key)
        self._require_open()
        head = await self._head(full, with_checksum=False)
        if head is None:
            raise PermanentError(f"copy missing at destination {self.name!r}: {key}")
        found, length = await self._read_back(full, f"verifying {key}")
        if (found, length) != (xxh64, size):
            raise VerificationFailed(
                f"copy of {key} at {self.name!r} reads as xxh64 {found} ({length} bytes), expected {xxh64} ({size} bytes)"
            )

    async def stat(self, key: str) -> RemoteObject | None:
        full = self._full(key)
        self._require_open()
        head = await self._head(full, with_checksum=False)
        if head is None:
            return None
        meta = head.get("Metadata", {})
        mtime = meta.get("mtime")
        return RemoteObject(
            key=key, size=int(head["ContentLength"]), xxh64=meta.get("xxh64"),
            mtime_ns=int(mtime) if mtime and mtime.isdigit() else None,
        )

    async def delete(self, key: str) -> None:
        full = self._full(key)
        self._require_open()
        with contextlib.suppress(_Missing):
            await self._request("delete_object", f"deleting {key}", Bucket=self.config.bucket, Key=full)

    async def read_bytes(self, key: str) -> bytes | None:
        full = self._full(key)
        self._require_open()
        what = f"reading {key}"
        try:
            answer = await self._request("get_object", what, Bucket=self.config.bucket, Key=full)
            body = answer["Body"]
            async with body:
                data: bytes = await body.read()
                return data
        except _Missing:
            return None
        except _sdk_errors() as exc:
            raise _classify(exc, self.where, what) from None

    async def write_bytes(self, key: str, data: bytes) -> None:
        """One PutObject: S3 shows an object only once it is whole."""
        full = self._full(key)
        self._require_open()
        await self._request(
            "put_object", f"writing {key}", body=data, Bucket=self.config.bucket, Key=full,
            ContentLength=len(data), Metadata=_metadata(xxhash.xxh64_hexdigest(data), None),
            **self._storage(), **self.checksum.request_params(self.checksum.digest(data)),
        )


# ---- small helpers ------------------------------------------------------------------------------


def _metadata(xxh64: str, mtime_ns: int | None) -> dict[str, str]:
    meta = {"xxh64": xxh64}
    if mtime_ns is not None:
        meta["mtime"] = str(mtime_ns)
    return meta


def _endpoint_text(config: S3Config) -> str:
    return config.endpoint_url or f"AWS S3 ({config.region or 'default region'})"


def _credentials_hint(config: S3Config) -> str:
    if config.access_key_id_env:
        return f"the env vars {config.access_key_id_env} / {config.secret_access_key_env}"
    if config.profile:
        return f"profile {config.profile!r} in ~/.aws/credentials"
    return "AWS_PROFILE / the env vars AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the instance role)"


def _keys_from_env(config: S3Config) -> dict[str, str]:
    """The key pair named by access_key_id_env / secret_access_key_env."""
    import os

    if not config.access_key_id_env or not config.secret_access_key_env:
        return {}
    names = (config.access_key_id_env, config.secret_access_key_env)
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise PermanentError(
            f"destination {config.name!r}: environment variable {' and '.join(missing)} is not set; "
            "export it in the service's environment (systemd EnvironmentFile, launchd plist)"
        )
    return {"aws_access_key_id": os.environ[names[0]], "aws_secret_access_key": os.environ[names[1]]}
