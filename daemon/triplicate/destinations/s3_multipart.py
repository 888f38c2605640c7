"""One multipart upload, driven with the low-level client
(CreateMultipartUpload, UploadPart with per-part retries,
CompleteMultipartUpload): aioboto3's `upload_fileobj` aborts the whole upload
when one part fails, never resumes and does not grow the part size. Up to
`part_concurrency` parts per file are in flight, each read into one of
`part_concurrency` buffers of the part size that are reused from part to part
and sent without a copy (s3_requests.py): memory is about part_concurrency x
part_size per file, whatever its size (fewer parts fly when they grow:
base.pieces_in_flight).

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
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

from ..errors import SourceChanged, TransientError, VerificationFailed
from ..source import SourceReader
from .base import Receipt, ResumeState, SourceFile, pieces_in_flight
from .s3_checksums import b64
from .s3_errors import Missing
from .s3_parts import PartPlan
from .s3_requests import Meter
from .s3_resume import SavedUploads, Upload
from .s3_source import fill, hash_source, with_reader


class MultipartSender:
    """Sends one file as a multipart upload, new or resumed, and checks the result."""

    def __init__(self, saved: SavedUploads, part_size: int, part_concurrency: int) -> None:
        self.saved = saved
        self.api = saved.api
        self.stored = saved.stored
        self.checksum = saved.stored.checksum
        self.part_size = part_size  # as configured; a plan's parts may be larger
        self.part_concurrency = part_concurrency

    async def put(
        self, src: SourceFile, full: str, plan: PartPlan, upload: Upload | None, resume: ResumeState, meter: Meter
    ) -> Receipt:
        if upload is None:
            upload = await self._create(src, full, plan, resume)
        self.api.log.info("s3_upload", key=src.key, size=src.size, parts=plan.count, part_size=plan.part_size,
                          parts_at_server=len(upload.parts),
                          in_flight=self._in_flight(plan))
        try:
            await self._send_parts(upload, resume, meter)
        except SourceChanged:
            await self.saved.drop(upload, resume, "source changed")
            raise
        upload.completing = True
        resume.save(upload.state(self.checksum.name))
        await self._complete(upload)
        try:
            evidence = await self.stored.check(src.key, full, src.size, upload.xxh64, upload.digests(), multipart=True)
        except VerificationFailed:
            resume.clear()
            raise
        return Receipt(key=src.key, size=src.size, xxh64=upload.xxh64, bytes_sent=meter.total, evidence=evidence)

    def _in_flight(self, plan: PartPlan) -> int:
        return pieces_in_flight(plan.part_size, self.part_size, self.part_concurrency)

    async def _create(self, src: SourceFile, full: str, plan: PartPlan, resume: ResumeState) -> Upload:
        xxh64 = src.xxh64
        if xxh64 is None:  # the metadata needs it now: a first read (see the module's docstring)
            xxh64 = await asyncio.to_thread(hash_source, src)
            self.api.log.info("s3_source_hashed_first", key=src.key, size=src.size)
        answer = await self.api.request(
            "create_multipart_upload", f"starting the upload of {src.key}", Key=full,
            **self.api.new_object(xxh64, src.mtime_ns), **self.checksum.create_params(),
        )
        upload = Upload(src, full, plan, xxh64, answer["UploadId"])
        self.saved.started(full, upload.upload_id)
        resume.save(upload.state(self.checksum.name))  # before any part: a kill now leaves no unknown upload
        return upload

    async def _send_parts(self, upload: Upload, resume: ResumeState, meter: Meter) -> None:
        hashed = dataclasses.replace(upload.src, xxh64=upload.xxh64)  # the read must hash to the metadata
        pool = _PartPool(self._in_flight(upload.plan), upload.plan.part_size)
        with SourceReader(hashed) as reader:
            try:
                for number in range(1, upload.plan.count + 1):
                    offset, length = upload.plan.span(number)
                    if number in upload.parts:  # already at the server: hash it, don't send it
                        await with_reader(reader.skip_to, offset + length)
                        continue
                    buffer = await pool.reserve()
                    view = memoryview(buffer)[:length]
                    digest = await with_reader(fill, reader, view, self.checksum)
                    pool.start(self._send_part(upload, number, view, digest, resume, meter), buffer)
                await pool.drain()
            finally:
                await pool.cancel()
            await with_reader(reader.finish)
        self.api.log.info("s3_parts_sent", key=upload.src.key, buffers=pool.made, buffer_size=upload.plan.part_size)

    async def _send_part(
        self, upload: Upload, number: int, data: memoryview, digest: bytes, resume: ResumeState, meter: Meter
    ) -> None:
        what = f"uploading part {number}/{upload.plan.count} of {upload.src.key}"
        try:
            answer = await self.api.request(
                "upload_part", what, body=data, sent=meter, Key=upload.full, UploadId=upload.upload_id,
                PartNumber=number, ContentLength=len(data), **self.checksum.request_params(digest),
            )
        except Missing:  # aborted by someone else (or a lifecycle rule): the next attempt starts over
            raise TransientError(f"destination {self.api.name!r}: the upload vanished at the server while {what}") from None
        upload.parts[number] = (answer["ETag"], b64(digest), len(data))
        resume.save(upload.state(self.checksum.name))  # on the event loop: the part is durable now

    async def _complete(self, upload: Upload) -> None:
        if sorted(upload.parts) != list(range(1, upload.plan.count + 1)):  # never assemble a partial object
            raise TransientError(f"destination {self.api.name!r}: parts missing before completing {upload.src.key}")
        parts = [
            {"PartNumber": n, "ETag": etag, **self.checksum.part_entry(base64.b64decode(digest))}
            for n, (etag, digest, _) in sorted(upload.parts.items())
        ]
        try:
            await self.api.request(
                "complete_multipart_upload", f"completing the upload of {upload.src.key}", Key=upload.full,
                UploadId=upload.upload_id, MultipartUpload={"Parts": parts},
            )
        except Missing:
            pass  # an earlier try completed it but its answer was lost; the check below decides
        self.saved.ended(upload.full, upload.upload_id)


class _PartPool:
    """Part uploads in flight: at most `limit` at once, and the first failure
    stops the rest. Each holds one buffer of the part size while it is read and
    sent; a finished upload hands its buffer to the next part, so a file costs
    at most `limit` buffers however many parts it has."""

    def __init__(self, limit: int, part_size: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task[None]] = set()
        self.part_size = part_size
        self.free: list[bytearray] = []
        self.made = 0  # buffers allocated, at most `limit`

    async def reserve(self) -> bytearray:
        """A free buffer, once a slot is free."""
        await self.slots.acquire()
        self.raise_failure()
        if self.free:
            return self.free.pop()
        self.made += 1
        return bytearray(self.part_size)

    def start(self, coro: Any, buffer: bytearray) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

        def done(_: Any) -> None:  # the request is over: nothing reads the buffer now
            self.free.append(buffer)
            self.slots.release()

        task.add_done_callback(done)

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
