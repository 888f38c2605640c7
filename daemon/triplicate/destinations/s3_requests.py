"""The requests one S3 destination makes: each retried a few times on
transient errors (the SDK's own retries are off), SDK errors mapped by
s3_errors.py, request bodies that count the bytes really sent.

Two levels of retry, as litestream does: a request (one part, one HEAD) is
retried here within seconds; the scheduler retries the whole copy with its
longer backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import TransientError
from .base import Progress
from .s3_client import cache_endpoints, new_client
from .s3_direct import Declined, DirectPut
from .s3_errors import Missing, Where, classify, no_such_bucket, sdk_errors
from .s3_source import READ_CHUNK

if TYPE_CHECKING:
    from .s3 import S3Config

ATTEMPTS = 4  # of one request, before the scheduler's retry of the copy takes over
RETRY_WAIT = 0.5  # seconds: the first wait is drawn below it, each next below twice the last
MAX_WAIT = 8.0  # seconds: the bound on any one wait


class S3Api:
    """The client of one destination (`client` is None until `open`), bound to its bucket."""

    def __init__(self, config: S3Config, where: Where, log: Any) -> None:
        self.config = config
        self.name = config.name
        self.bucket = config.bucket
        self.where = where
        self.log = log
        self.client: Any = None
        self.direct: DirectPut | None = None  # PutObject without the SDK's pipeline (s3_direct.py)
        self._stack: contextlib.AsyncExitStack | None = None

    async def open(self) -> None:
        """Makes the client and checks that the bucket answers."""
        if self.client is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            self.client = await stack.enter_async_context(new_client(self.config))
            cache_endpoints(self.client)
            self._stack = stack
            await self._check_bucket()
            if self.wants_direct(self.config):
                self.direct = await DirectPut.for_client(self.client, self.bucket)
        except BaseException as exc:
            self.client, self._stack = None, None
            await stack.aclose()
            if isinstance(exc, sdk_errors()):
                raise classify(exc, self.where, "connecting") from None
            raise

    @staticmethod
    def wants_direct(config: S3Config) -> bool:
        """PutObject by s3_direct.py: for S3-compatible services, with a
        checksum header the service checks."""
        return bool(config.endpoint_url) and config.checksum != "none"

    async def _check_bucket(self) -> None:
        try:
            await self.request("head_bucket", "checking the bucket")
        except Missing:
            raise no_such_bucket(self.where) from None

    async def close(self) -> None:
        stack, self._stack, self.client, self.direct = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    async def request(
        self, operation: str, what: str, *, body: bytes | bytearray | memoryview | None = None,
        sent: Callable[[int], None] | None = None, **params: Any,
    ) -> dict[str, Any]:
        """One request on the bucket, retried a few times on transient errors; SDK
        errors come out as TransientError / PermanentError (Missing for "not there")."""
        from tenacity import AsyncRetrying

        call = getattr(self.client, operation)
        params["Bucket"] = self.bucket
        # The first attempt runs outside tenacity: nearly every request succeeds
        # at once, and building and stepping a retry loop cost ~4 % of a small
        # file's CPU in the S3 process (py-spy, case 4 of bench).
        try:
            return await self._attempt(operation, call, what, params, body, sent)
        except TransientError as first:
            self._retrying(what, 1, first)
        await asyncio.sleep(_wait_after(1))
        async for attempt in AsyncRetrying(**self._retry_policy(what, done=1)):
            with attempt:
                return await self._attempt(operation, call, what, params, body, sent)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _attempt(
        self, operation: str, call: Callable[..., Any], what: str, params: dict[str, Any],
        body: bytes | bytearray | memoryview | None, sent: Callable[[int], None] | None,
    ) -> dict[str, Any]:
        if body is not None:
            params["Body"] = _Body(body, sent or _nothing)  # fresh per try
        try:
            if operation == "put_object" and self.direct is not None:
                return await self._put_direct(self.direct, call, params)
            answer: dict[str, Any] = await call(**params)
        except sdk_errors() as exc:
            raise classify(exc, self.where, what) from None
        return answer

    async def _put_direct(self, direct: DirectPut, call: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
        """PutObject by the direct path; what it cannot place goes again
        through the SDK, and if the SDK places it, the path is left for good."""
        try:
            return await direct.put(params)
        except Declined as declined:
            params["Body"] = params["Body"].fresh()  # the first one is spent
            answer: dict[str, Any] = await call(**params)
            if self.direct is direct:
                self.direct = None
                self.log.warning("s3_direct_put_off", status=declined.status, code=declined.code)
            return answer

    async def head(self, full: str, **params: Any) -> dict[str, Any] | None:
        """HeadObject of `full`; None when there is no such object."""
        try:
            return await self.request("head_object", f"looking up {full}", Key=full, **params)
        except Missing:
            return None

    async def read_object(self, full: str, what: str, sink: Callable[[bytes], None]) -> int:
        """Streams the object into `sink` and returns its length; a dropped
        connection continues from the last byte read, pinned to the same ETag."""
        from tenacity import AsyncRetrying

        position = _Position()
        async for attempt in AsyncRetrying(**self._retry_policy(what)):
            with attempt:
                await self._stream(full, position, sink, what)
        return position.offset

    async def _stream(self, full: str, position: _Position, sink: Callable[[bytes], None], what: str) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if position.offset:
            params.update(Range=f"bytes={position.offset}-", IfMatch=position.etag)
        try:
            answer = await self.client.get_object(**params)
            position.etag = position.etag or answer.get("ETag")
            body = answer["Body"]
            async with body:
                while chunk := await body.read(READ_CHUNK):
                    sink(chunk)
                    position.offset += len(chunk)
        except sdk_errors() as exc:
            raise classify(exc, self.where, what) from None

    def new_object(self, xxh64: str, mtime_ns: int | None) -> dict[str, Any]:
        """What every object this destination creates carries: the source's
        xxh64 and mtime (nanoseconds, as a decimal string) as metadata, and the
        storage class when one is set."""
        meta = {"xxh64": xxh64}
        if mtime_ns is not None:
            meta["mtime"] = str(mtime_ns)
        storage = {"StorageClass": self.config.storage_class} if self.config.storage_class else {}
        return {"Metadata": meta, **storage}

    def _retry_policy(self, what: str, done: int = 0) -> dict[str, Any]:
        """Tenacity's settings for what is left of ATTEMPTS after `done` failed
        attempts: waits drawn up to RETRY_WAIT, doubling from one to the next."""
        from tenacity import retry_if_exception_type, stop_after_attempt

        def before_sleep(state: Any) -> None:
            self._retrying(what, done + state.attempt_number, state.outcome.exception())

        return {
            "retry": retry_if_exception_type(TransientError),
            "stop": stop_after_attempt(ATTEMPTS - done),
            "wait": lambda state: _wait_after(done + state.attempt_number),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _retrying(self, what: str, attempt: int, error: BaseException | None) -> None:
        self.log.warning("s3_request_retry", what=what, attempt=attempt, error=str(error))


def _wait_after(failures: int) -> float:
    """The wait after the `failures`-th failed attempt of a request, full
    jitter: drawn below RETRY_WAIT doubled per earlier failure, up to MAX_WAIT.
    The first wait (outside tenacity) and tenacity's draw from this one rule."""
    return random.uniform(0, min(MAX_WAIT, RETRY_WAIT * 2 ** (failures - 1)))


def _nothing(n: int) -> None:
    """Progress nobody follows."""


@dataclass
class _Position:
    """How far a streamed read got, and the ETag it is pinned to."""

    offset: int = 0
    etag: str | None = None


# ---- request bodies that report progress -----------------------------------------

SEND_CHUNK = 1024**2  # what the body hands the socket at a time


class _Body:
    """One request's body: a read-only view of the caller's buffer, never
    copied whole, sent by aiohttp as an async iterable of slices.

    Not an io.IOBase on purpose: aiohttp sends a file-like body 64 KiB at a
    time, each read in a worker thread and handed back to the event loop (128
    round trips per 8 MiB part, and the largest share of an upload's CPU after
    payload signing). Slices of 1 MiB go from the loop to the socket directly;
    what the socket does not take at once is the only copy made. read/seek/tell
    are for botocore, which checks that a body is file-like and reads it only
    to sign it (checksum "none" over plain HTTP); bytes count as sent only as
    they are handed to the socket."""

    def __init__(self, data: bytes | bytearray | memoryview, sent: Callable[[int], None]) -> None:
        self.view = memoryview(data).cast("B")
        self.position = 0
        self._sent = sent

    def fresh(self) -> _Body:
        """The same bytes from the start, for a request sent again."""
        return _Body(self.view, self._sent)

    def whole(self) -> memoryview | None:
        """The body as one buffer when it fits one slice, counted as sent: aiohttp
        then writes it with the request's headers in one call instead of
        stepping an async iterator (~5 % of a small file's CPU, py-spy)."""
        if len(self.view) > SEND_CHUNK:
            return None
        self._sent(len(self.view))
        return self.view

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        for start in range(0, len(self.view), SEND_CHUNK):
            chunk = self.view[start:start + SEND_CHUNK]
            self._sent(len(chunk))
            yield chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.view)}[whence]
        self.position = max(0, base + offset)
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        end = len(self.view) if size is None or size < 0 else min(len(self.view), self.position + size)
        chunk = bytes(self.view[self.position:end])  # one chunk copied, never the whole body
        self.position = max(self.position, end)
        return chunk


@dataclass
class Meter:
    """Bytes sent in one `put`, passed on to the caller's progress."""

    progress: Progress | None
    total: int = 0

    def __call__(self, n: int) -> None:
        self.total += n
        if self.progress is not None:
            self.progress(n)
