"""AWS S3 and every S3-compatible store (Wasabi, Backblaze B2, MinIO, Ceph).

How a copy is made
    A file no larger than `part_size` goes up in one PutObject that carries its
    checksum header and the metadata `xxh64` (the source's hash: the whole body
    is read before the request) and `mtime` (nanoseconds since the epoch, as a
    decimal string). A larger file is a multipart upload (s3_multipart.py, which
    also explains why its xxh64 may cost a first read of the source), cut into
    parts by s3_parts.py. Either way the stored object is checked before `put`
    returns (s3_verify.py: a PutObject by the checksum in its own answer, a
    multipart upload by a HeadObject), and an interrupted multipart upload is
    picked up by the next attempt (s3_resume.py).

The other modules of this destination
    s3_checksums.py  the checksum setting: request headers, expected answers
    s3_errors.py     SDK errors as TransientError / PermanentError
    s3_client.py     credentials and SDK settings of the aioboto3 client
    s3_requests.py   one request, retried; bodies that count progress
    s3_source.py     reading the source whole, in parts, or to hash it first

The registry imports this module (and through it the others); none of them
imports the SDK before a destination opens, so the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Literal

import structlog
import xxhash
from pydantic import Field, field_validator, model_validator

from ..errors import (
    CopyRefused,
    PermanentError,
    TransientError,
    TriplicateError,
    VerificationFailed,
)
from ..fields import ByteSize
from .base import (
    DestinationConfig,
    Progress,
    Receipt,
    RemoteObject,
    ResumeState,
    SourceFile,
    check_key,
)
from .s3_checksums import Checksum
from .s3_copy import copy_within
from .s3_errors import Missing, Where, classify, sdk_errors
from .s3_listing import FolderListings
from .s3_multipart import MultipartSender
from .s3_parts import MAX_PART, MIN_PART, MiB, plan_parts
from .s3_requests import Meter, S3Api
from .s3_resume import SavedUploads
from .s3_source import read_whole
from .s3_verify import StoredCheck, read_back

log = structlog.get_logger("triplicate.s3")

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
        default=8 * MiB,
        description='One part of a multipart upload, e.g. "16MiB" (5 MiB to 5 GiB), grown so that no file needs more '
        "than 10,000 parts (beyond 78 GiB at 8 MiB). Files up to this size go up in one request.",
    )
    part_concurrency: int = Field(
        default=8, ge=1, le=32,
        description="Parts of one file in flight at once, each in a buffer of part_size: a file being sent holds "
        "part_concurrency x part_size of memory (64 MiB by default), whatever its size (when parts grow, fewer fly).",
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
    def _env_names(self) -> S3Config:
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


class S3Destination:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.name = config.name
        self.checksum = Checksum(config.checksum)
        self.log = log.bind(destination=config.name, bucket=config.bucket)
        self._api = S3Api(config, Where.of(config), self.log)
        self._stored = StoredCheck(self._api, self.checksum)
        self._saved = SavedUploads(self._api, self._stored)
        self._multipart = MultipartSender(self._saved, config.part_size, config.part_concurrency)
        self._listings = FolderListings(self._api)

    def _full(self, key: str) -> str:
        full = self.config.prefix + check_key(key)
        if len(full.encode()) > 1024:
            raise CopyRefused(
                f"destination {self.name!r}: key {full!r} is longer than S3's 1024 bytes; use a shorter prefix"
            )
        return full

    def _require_open(self) -> None:
        if self._api.client is None:
            raise TransientError(f"destination {self.name!r} is not open")

    async def open(self) -> None:
        await self._api.open()

    async def close(self) -> None:
        await self._api.close()

    def joins_shared_read(self, size: int, hash_known: bool) -> bool:
        return hash_known or size <= self.config.part_size  # multipart: the xxh64 goes in CreateMultipartUpload's metadata

    async def put(self, src: SourceFile, resume: ResumeState, progress: Progress | None = None) -> Receipt:
        # order: a saved upload (maybe already completed), else an identical object, else send
        full = self._full(src.key)
        self._require_open()
        meter = Meter(progress)
        plan = plan_parts(src.size, self.config.part_size)
        upload = await self._saved.load(resume, src, full, plan)
        if upload is not None and upload.completing:
            receipt = await self._saved.finish_completed(upload, resume)
            if receipt is not None:
                return await self._done(receipt, full, resume)
            upload = await self._saved.revalidated(upload, resume)
        if upload is None:
            existing = await self._identical(src, full)
            if existing is not None:
                return await self._done(existing, full, resume)
        if src.size <= self.config.part_size:
            receipt = await self._put_single(src, full, meter)
        else:
            receipt = await self._multipart.put(src, full, plan, upload, resume, meter)
        return await self._done(receipt, full, resume)

    async def _identical(self, src: SourceFile, full: str) -> Receipt | None:
        """An object already there with the known size and xxh64 is kept."""
        if src.xxh64 is None or await self._listings.surely_absent(full):
            return None
        head = await self._api.head(full)
        if head is None or head.get("ContentLength") != src.size:
            return None
        if head.get("Metadata", {}).get("xxh64") != src.xxh64:
            return None
        return Receipt(key=src.key, size=src.size, xxh64=src.xxh64, skipped=True)

    async def _put_single(self, src: SourceFile, full: str, meter: Meter) -> Receipt:
        data, digest, xxh64 = await asyncio.to_thread(read_whole, src, self.checksum)
        answer = await self._api.request(
            "put_object", f"uploading {src.key}", body=data, sent=meter, Key=full, ContentLength=len(data),
            **self._api.new_object(xxh64, src.mtime_ns), **self.checksum.request_params(digest),
        )
        del data  # not held through a fallback check, which may read the object back
        evidence = self._stored.by_answer(answer, digest)
        if evidence is None:
            evidence = await self._stored.check(src.key, full, src.size, xxh64, [digest], multipart=False)
        return Receipt(key=src.key, size=src.size, xxh64=xxh64, bytes_sent=meter.total, evidence=evidence)

    async def _done(self, receipt: Receipt, full: str, resume: ResumeState) -> Receipt:
        """The copy is verified: forget the resume state and abort uploads of the
        key that no attempt will finish (a superseded version's, say)."""
        resume.clear()
        self._listings.stored(full)
        try:
            await self._saved.abort_others(full)
        except TriplicateError as exc:  # the copy is fine; the next put tries again
            self.log.warning("s3_cleanup_failed", object=full, error=str(exc))
        return receipt

    async def copy(self, from_key: str, src: SourceFile) -> Receipt | None:
        """A copy inside the bucket (s3_copy.py)."""
        full, full_from = self._full(src.key), self._full(from_key)
        self._require_open()
        existing = await self._identical(src, full)
        if existing is not None:
            return existing
        receipt = await copy_within(self._api, full_from, full, src, self.config.part_size)
        if receipt is not None:
            self._listings.stored(full)
        return receipt

    async def verify(self, key: str, xxh64: str, size: int) -> None:
        full = self._full(key)
        self._require_open()
        if await self._api.head(full) is None:
            raise PermanentError(f"copy missing at destination {self.name!r}: {key}")
        found, length = await read_back(self._api, full, f"verifying {key}")
        if (found, length) != (xxh64, size):
            raise VerificationFailed(
                f"copy of {key} at {self.name!r} reads as xxh64 {found} ({length} bytes), "
                f"expected {xxh64} ({size} bytes)"
            )

    async def stat(self, key: str) -> RemoteObject | None:
        full = self._full(key)
        self._require_open()
        head = await self._api.head(full)
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
        with contextlib.suppress(Missing):
            await self._api.request("delete_object", f"deleting {key}", Key=full)

    async def read_bytes(self, key: str) -> bytes | None:
        full = self._full(key)
        self._require_open()
        what = f"reading {key}"
        try:
            answer = await self._api.request("get_object", what, Key=full)
            body = answer["Body"]
            async with body:
                data: bytes = await body.read()
                return data
        except Missing:
            return None
        except sdk_errors() as exc:
            raise classify(exc, self._api.where, what) from None

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        """One PutObject: S3 shows an object only once it is whole."""
        full = self._full(key)
        self._require_open()
        await self._api.request(
            "put_object", f"writing {key}", body=data, Key=full, ContentLength=len(data),
            **self._api.new_object(xxhash.xxh64_hexdigest(data), None),
            **self.checksum.request_params(self.checksum.digest(data)),
        )
