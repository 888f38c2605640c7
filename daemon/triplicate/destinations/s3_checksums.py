"""The integrity checksum S3 makes of every request, and how its answer about
a stored object proves the bytes arrived.

"crc32c" (default) and "sha256" send x-amz-checksum-* headers, and the service
refuses a part whose bytes do not match; "md5" sends Content-MD5 only; "none"
sends no integrity header (see s3_client.py for botocore's own CRC, and
s3_errors.py for the stores that reject the newer headers).

What the service says about the stored object: after a PutObject, the
whole-object checksum; after a multipart upload, the composite
"<checksum of the part checksums>-N", computed here from the part checksums.
With "md5" or "none" the ETag is the evidence: the MD5 of the object, or the
MD5 of the part MD5s plus "-N" (MD5 is computed locally in both).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from typing import Any, ClassVar


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Checksum:
    """One `checksum` setting: the digest each request carries, and how the
    service's answer about the stored object is compared with it."""

    FIELDS: ClassVar[dict[str, str]] = {"crc32c": "ChecksumCRC32C", "sha256": "ChecksumSHA256"}

    def __init__(self, name: str) -> None:
        self.name = name
        # x-amz-checksum-* as botocore names it; None: ETag/MD5 instead
        self.field = self.FIELDS.get(name)

    def digest(self, data: bytes | bytearray) -> bytes:
        if self.name == "crc32c":
            # imported on first use, like the SDK: importing the registry stays fast
            from awscrt.checksums import crc32c  # type: ignore[import-untyped]  # awscrt ships no type hints

            return struct.pack(">I", crc32c(data))
        if self.name == "sha256":
            return hashlib.sha256(data).digest()
        return hashlib.md5(data).digest()  # "md5", and "none" to check the ETag with

    def running(self) -> Running:
        """A digest fed block by block, while each block is still in the CPU cache."""
        return Running(self.name)

    # Any values, as S3Api.new_object's: spread into S3Api.request's **params,
    # they must not look like values for its typed body= and sent= keywords
    def create_params(self) -> dict[str, Any]:
        return {"ChecksumAlgorithm": self.name.upper()} if self.field else {}

    def request_params(self, digest: bytes) -> dict[str, Any]:
        if self.field:
            return {"ChecksumAlgorithm": self.name.upper(), self.field: b64(digest)}
        return {"ContentMD5": b64(digest)} if self.name == "md5" else {}

    def part_entry(self, digest: bytes) -> dict[str, str]:
        return {self.field: b64(digest)} if self.field else {}

    def head_params(self) -> dict[str, str]:
        return {"ChecksumMode": "ENABLED"} if self.field else {}

    def expected(self, digests: list[bytes], multipart: bool) -> list[str]:
        """The service's answers that prove these bytes are stored."""
        if self.field:
            if not multipart:
                return [b64(digests[0])]
            combined = b64(self.digest(b"".join(digests)))
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


class Running:
    """The digest of one request body, fed in blocks; equal to `Checksum.digest`
    of the blocks joined."""

    def __init__(self, name: str) -> None:
        self._crc: int | None = None
        self._hash: Any = None
        if name == "crc32c":
            self._crc = 0
        else:
            self._hash = hashlib.sha256() if name == "sha256" else hashlib.md5()

    def update(self, block: bytes) -> None:
        if self._crc is not None:
            from awscrt.checksums import crc32c

            self._crc = crc32c(block, self._crc)
        else:
            self._hash.update(block)

    def digest(self) -> bytes:
        if self._crc is not None:
            return struct.pack(">I", self._crc)
        return bytes(self._hash.digest())
