"""Checking what S3 stored, before `put` returns.

A single PutObject is checked by its own answer: the service returns the
checksum of the body it received and stored (x-amz-checksum-crc32c / -sha256,
or with "md5" / "none" the ETag, the MD5 of the body). That value is compared
with the digest computed here from the very bytes read from the source, the
same bytes the xxh64 was computed from, so it proves the stored bytes are the
source's, exactly as the same value read by a HeadObject would; the object's
size and metadata are those of the request the service accepted, as a whole.
It relies, as the HeadObject check does, on the service computing that value
from what it received (AWS and SeaweedFS refuse a body that does not match
the header, with BadDigest). An answer without such a value, or with one that
disagrees, falls back to the check below. This saves one request per file.

After a multipart upload (and when the answer settles nothing), HeadObject (ChecksumMode=ENABLED for crc32c/sha256) must show the size, the
`xxh64` metadata equal to what `SourceReader.finish` returned, and the
service's checksum equal to the one computed here from the bytes sent (see
s3_checksums.py for the whole-object and composite values, and the ETag with
"md5" or "none"). When the service gives nothing to compare, or a value that
disagrees (moto's composite CRC32C, the ETag of an SSE-KMS object), the
object is read back and hashed and the log says so
(`s3_verified_by_read_back`); a mismatch there deletes the object and raises
VerificationFailed. A verification is never skipped.
"""

from __future__ import annotations

from typing import Any

import xxhash

from ..errors import VerificationFailed
from .s3_checksums import Checksum
from .s3_requests import S3Api


async def read_back(api: S3Api, full: str, what: str) -> tuple[str, int]:
    """(xxh64, size) of the stored object, streamed."""
    digest = xxhash.xxh64()
    length = await api.read_object(full, what, digest.update)
    return digest.hexdigest(), length


class StoredCheck:
    """The check of one stored object against what was sent."""

    def __init__(self, api: S3Api, checksum: Checksum) -> None:
        self.api = api
        self.checksum = checksum

    def by_answer(self, answer: dict[str, Any], digest: bytes) -> dict[str, str] | None:
        """Evidence from a PutObject's answer that the body stored is the one
        whose `digest` was sent; None when the answer does not settle it."""
        found = self.checksum.answer(answer)
        if found is None or found not in self.checksum.expected([digest], multipart=False):
            return None
        method = "service-checksum" if self.checksum.field else "etag-md5"
        return {"checksum": self.checksum.name, "service": found, "verified_by": method}

    async def check(
        self, key: str, full: str, size: int, xxh64: str, digests: list[bytes], multipart: bool
    ) -> dict[str, str]:
        """Size, xxh64 metadata and the service's checksum of what was stored;
        reads the object back when the service cannot confirm its checksum.
        A mismatch removes the object and raises VerificationFailed."""
        head = await self.api.head(full, **self.checksum.head_params())
        if head is None:
            raise VerificationFailed(f"destination {self.api.name!r}: {key} is missing right after its upload")
        found = (head.get("ContentLength"), head.get("Metadata", {}).get("xxh64"))
        if found != (size, xxh64):
            await self._remove_bad(full)
            raise VerificationFailed(
                f"destination {self.api.name!r}: {key} stored as {found[0]} bytes with xxh64 metadata "
                f"{found[1]}, expected {size} bytes and {xxh64}; removed"
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
        found, length = await read_back(self.api, full, f"reading back {key}")
        self.api.log.info("s3_verified_by_read_back", key=key, reason=reason, service=answer, computed=expected,
                          matches=(found, length) == (xxh64, size))
        if (found, length) != (xxh64, size):
            await self._remove_bad(full)
            raise VerificationFailed(
                f"destination {self.api.name!r}: {key} reads back as xxh64 {found} ({length} bytes), "
                f"expected {xxh64} ({size} bytes); removed"
            )

    async def _remove_bad(self, full: str) -> None:
        await self.api.request("delete_object", f"removing a bad copy of {full}", Key=full)
        self.api.log.warning("s3_bad_copy_removed", object=full)
