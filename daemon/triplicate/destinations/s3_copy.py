"""A copy made inside the bucket, for a file renamed or moved at the source.

CopyObject up to 5 GiB, UploadPartCopy (parts cut like an upload's, ranges of
the old object) above: no byte of the file crosses the network on the way in.
The new object gets the `xxh64` and `mtime` metadata of the new version.

The check is a read-back: the new object is streamed and hashed with xxh64.
The service's checksum of the copy cannot stand in for it: it only says the
copy equals the old object, and the old object may have changed since its own
upload was checked (its checksum then changed with it). Reading costs GET
traffic, never upload bandwidth. A mismatch removes the new object and raises
VerificationFailed; the old one is never touched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import TriplicateError, VerificationFailed
from .base import Receipt, SourceFile
from .s3_parts import MAX_PART, plan_parts
from .s3_requests import S3Api
from .s3_verify import read_back

SINGLE_COPY_LIMIT = MAX_PART
"""Largest object CopyObject copies in one request (5 GiB)."""


async def copy_within(api: S3Api, full_from: str, full: str, src: SourceFile, part_size: int) -> Receipt | None:
    assert src.xxh64 is not None
    head = await api.head(full_from)
    if head is None or head.get("ContentLength") != src.size or head.get("Metadata", {}).get("xxh64") != src.xxh64:
        return None
    source = {"Bucket": api.bucket, "Key": full_from}
    if etag := head.get("ETag"):
        source_if = {"CopySourceIfMatch": etag}  # the object read above, not one replaced since
    else:
        source_if = {}
    meta = api.new_object(src.xxh64, src.mtime_ns)
    if src.size <= SINGLE_COPY_LIMIT:
        await api.request("copy_object", f"copying {full_from} to {full}", Key=full, CopySource=source,
                          MetadataDirective="REPLACE", **meta, **source_if)
        parts = 1
    else:
        parts = await _copy_in_parts(api, source, source_if, full, src, part_size, meta)
    found, length = await read_back(api, full, f"reading back {full}")
    if (found, length) != (src.xxh64, src.size):
        await api.request("delete_object", f"removing a bad copy of {full}", Key=full)
        raise VerificationFailed(
            f"destination {api.name!r}: the copy of {full_from} at {full} reads back as xxh64 {found} "
            f"({length} bytes), expected {src.xxh64} ({src.size} bytes); removed"
        )
    return Receipt(key=src.key, size=src.size, xxh64=found, bytes_sent=0,
                   evidence={"copied_from": full_from, "parts": str(parts), "verified_by": "read-back"})


async def _copy_in_parts(
    api: S3Api, source: dict[str, str], source_if: dict[str, Any], full: str, src: SourceFile, part_size: int,
    meta: dict[str, Any],
) -> int:
    plan = plan_parts(src.size, part_size)
    answer = await api.request("create_multipart_upload", f"starting a copy to {full}", Key=full, **meta)
    upload_id = answer["UploadId"]
    try:
        etags = await asyncio.gather(*(
            _part(api, source, source_if, full, upload_id, n, *plan.span(n)) for n in range(1, plan.count + 1)
        ))
        await api.request(
            "complete_multipart_upload", f"completing the copy to {full}", Key=full, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
        )
    except (TriplicateError, asyncio.CancelledError):
        try:
            await api.request("abort_multipart_upload", f"aborting a copy to {full}", Key=full, UploadId=upload_id)
        except TriplicateError:
            pass  # the next put's cleanup (abort_others) finds it
        raise
    return plan.count


async def _part(
    api: S3Api, source: dict[str, str], source_if: dict[str, Any], full: str, upload_id: str, number: int,
    offset: int, length: int,
) -> str:
    answer = await api.request(
        "upload_part_copy", f"copying part {number} to {full}", Key=full, UploadId=upload_id, PartNumber=number,
        CopySource=source, CopySourceRange=f"bytes={offset}-{offset + length - 1}", **source_if,
    )
    return str(answer["CopyPartResult"]["ETag"])
