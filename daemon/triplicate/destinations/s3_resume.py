"""Picking up a multipart upload that an earlier attempt left, and cleaning up
the ones no attempt will finish.

The resume state holds the source version (size, mtime), the upload id, part
size, checksum setting, the xxh64 the upload was created with, and the
finished parts (number, ETag, checksum, size), saved as each part is
acknowledged. The next attempt asks ListParts, keeps the parts the server
still has, hashes them from the source with `SourceReader.skip_to` (so the
whole-file hash stays complete) and sends the rest: after a kill, at most the
parts that were in flight go again. A state that no longer fits (other
version or settings, upload gone) is dropped and its upload aborted; after a
verified copy every other open upload of the key is aborted. A kill between
CompleteMultipartUpload and the check resumes by checking the completed
object against the saved part checksums. Uploads of a key that never gets
another attempt stay open: a bucket lifecycle rule
AbortIncompleteMultipartUpload (e.g. 7 days) removes them.

Which uploads are open is learnt once per run, not per copy: the open
uploads under the prefix are listed when the first copy is verified (those
a killed process left, a superseded version's), and the uploads this
process starts are added as it starts them and removed as they complete or
are aborted. So a verified copy costs a ListMultipartUploads only once, and
only a key with a known open upload costs an AbortMultipartUpload; what the
listing is for (no orphan uploads after a crash or a superseded version) is
kept, since an upload is either older than the listing or started since.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import VerificationFailed
from .base import Receipt, ResumeState, SourceFile
from .s3_errors import Missing
from .s3_parts import PartPlan
from .s3_requests import S3Api
from .s3_verify import StoredCheck

STATE_VERSION = 1


@dataclass
class Upload:
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

    @classmethod
    def from_state(cls, state: dict[str, Any], src: SourceFile, full: str, plan: PartPlan) -> Upload:
        parts = {int(n): (p[0], p[1], int(p[2])) for n, p in state.get("parts", {}).items()}
        return cls(src, full, plan, state["xxh64"], state["upload_id"], parts, bool(state.get("completing")))

    def digests(self) -> list[bytes]:
        return [base64.b64decode(self.parts[n][1]) for n in range(1, self.plan.count + 1)]


def fits(state: dict[str, Any], src: SourceFile, full: str, plan: PartPlan, checksum: str) -> bool:
    """Does a saved state belong to this source version and these settings?"""
    expect = {"v": STATE_VERSION, "key": full, "size": src.size, "mtime_ns": src.mtime_ns,
              "part_size": plan.part_size, "checksum": checksum}
    if any(state.get(k) != v for k, v in expect.items()) or not state.get("upload_id"):
        return False
    return src.xxh64 is None or state.get("xxh64") == src.xxh64


class SavedUploads:
    """The uploads earlier attempts left: resumed, checked, or aborted."""

    def __init__(self, api: S3Api, stored: StoredCheck) -> None:
        self.api = api
        self.stored = stored
        self.checksum = stored.checksum.name
        self._open: dict[str, set[str]] = {}  # key -> ids of uploads open at the service (module docstring)
        self._listed = False
        self._listing = asyncio.Lock()

    async def load(self, resume: ResumeState, src: SourceFile, full: str, plan: PartPlan) -> Upload | None:
        """The upload a previous attempt left, if it still fits and still exists."""
        state = resume.load()
        if not state:
            return None
        if not fits(state, src, full, plan, self.checksum):
            await self._drop_state(state, resume, "source version or settings changed")
            return None
        upload = Upload.from_state(state, src, full, plan)
        return upload if upload.completing else await self.revalidated(upload, resume)

    async def revalidated(self, upload: Upload, resume: ResumeState) -> Upload | None:
        """The upload with the saved parts the server still holds; None if it is gone."""
        on_server = await self._listed_parts(upload)
        if on_server is None:
            self.api.log.info("s3_resume_upload_gone", key=upload.src.key)
            resume.clear()
            return None
        upload.parts = {n: p for n, p in upload.parts.items() if on_server.get(n) == (p[0], p[2])}
        upload.completing = False
        return upload

    async def _listed_parts(self, upload: Upload) -> dict[int, tuple[str, int]] | None:
        """Parts the server holds: number -> (ETag, size); None if the upload is gone."""
        found: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                page = await self.api.request(
                    "list_parts", f"checking the upload of {upload.src.key}", Key=upload.full,
                    UploadId=upload.upload_id, PartNumberMarker=marker,
                )
            except Missing:
                return None
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = (part["ETag"], int(part["Size"]))
            if not page.get("IsTruncated"):
                return found
            marker = int(page["NextPartNumberMarker"])

    async def finish_completed(self, upload: Upload, resume: ResumeState) -> Receipt | None:
        """A kill came after CompleteMultipartUpload was sent: check what it made.
        None when the completion never happened."""
        head = await self.api.head(upload.full)
        if head is None or head.get("Metadata", {}).get("xxh64") != upload.xxh64:
            return None
        self.ended(upload.full, upload.upload_id)
        key, size = upload.src.key, upload.src.size
        try:
            evidence = await self.stored.check(key, upload.full, size, upload.xxh64, upload.digests(), multipart=True)
        except VerificationFailed:
            resume.clear()
            raise
        return Receipt(key=key, size=size, xxh64=upload.xxh64, evidence=evidence)

    async def _drop_state(self, state: dict[str, Any], resume: ResumeState, why: str) -> None:
        upload_id, key = state.get("upload_id"), state.get("key")
        if upload_id and key:
            await self._abort(key, upload_id, why)
        resume.clear()

    async def drop(self, upload: Upload, resume: ResumeState, why: str) -> None:
        await self._abort(upload.full, upload.upload_id, why)
        resume.clear()

    def started(self, full: str, upload_id: str) -> None:
        self._open.setdefault(full, set()).add(upload_id)

    def ended(self, full: str, upload_id: str) -> None:
        """Completed or aborted: no longer one to abort."""
        ids = self._open.get(full)
        if ids is not None:
            ids.discard(upload_id)
            if not ids:
                del self._open[full]

    async def abort_others(self, full: str) -> None:
        """Open uploads of this exact key, once its copy is verified."""
        await self._list_once()
        for upload_id in sorted(self._open.get(full, ())):
            await self._abort(full, upload_id, "left by an earlier attempt")

    async def _list_once(self) -> None:
        """Learn the open uploads under the prefix, the first time it succeeds."""
        async with self._listing:
            if self._listed:
                return
            params: dict[str, Any] = {"Prefix": self.api.config.prefix}
            while True:
                page = await self.api.request("list_multipart_uploads", "listing open uploads", **params)
                for item in page.get("Uploads", []):
                    self.started(item["Key"], item["UploadId"])
                if not page.get("IsTruncated"):
                    break
                params.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])
            self._listed = True

    async def _abort(self, full: str, upload_id: str, why: str) -> None:
        with contextlib.suppress(Missing):
            await self.api.request("abort_multipart_upload", f"aborting an upload of {full}", Key=full,
                                   UploadId=upload_id)
        self.ended(full, upload_id)
        self.api.log.info("s3_upload_aborted", object=full, reason=why)
