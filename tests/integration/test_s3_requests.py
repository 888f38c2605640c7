"""What one S3 put costs, counted on the real servers with a botocore event
hook: requests per small file, buffers per multipart upload, and the open
uploads learnt once per run (still none left behind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import xxhash
from triplicate.destinations import s3_parts
from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.s3 import S3Destination
from triplicate.errors import PermanentError

from tests.conformance.cases.s3 import (
    PART,
    MemoryResume,
    S3Proxy,
    client,
    config,
    key_env,
)
from tests.integration.test_s3_resume import refuse_part

pytestmark = pytest.mark.servers


class Calls:
    """The operations a destination's client makes, and the request bodies."""

    def __init__(self, dest: S3Destination) -> None:
        self.names: list[str] = []
        self.bodies: list[Any] = []
        dest._api.client.meta.events.register("before-call.s3", self._seen)
        direct = dest._api.direct
        if direct is not None:  # PutObject without the SDK's events (s3_direct.py)
            put = direct.put

            async def counted(params: dict[str, Any]) -> dict[str, Any]:
                self.names.append("PutObject")
                return await put(params)

            direct.put = counted  # type: ignore[method-assign]

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.names.append(model.name)
        if model.name == "UploadPart":
            self.bodies.append(params["body"])

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


async def opened(server: Any, bucket: str, monkeypatch: Any, endpoint: str | None = None, **extra: Any) -> S3Destination:
    dest = S3Destination(config(server, bucket, key_env(server, monkeypatch),
                                endpoint_url=endpoint or server.endpoint_url, **extra))
    await dest.open()
    return dest


def source(tmp_path: Path, key: str, data: bytes, known: bool = False) -> SourceFile:
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, key, len(data), st.st_mtime_ns, xxhash.xxh64_hexdigest(data) if known else None)


def open_uploads(server: Any, bucket: str) -> list[tuple[str, str]]:
    found = client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sorted((u["Key"], u["UploadId"]) for u in found)


async def test_a_new_small_file_costs_one_request(server, bucket, monkeypatch, tmp_path) -> None:
    dest = await opened(server, bucket, monkeypatch)
    calls = Calls(dest)
    try:
        await dest.put(source(tmp_path, "A001/first.mov", os.urandom(2000)), NoResume())
        assert calls.take() == ["PutObject", "ListMultipartUploads"]  # open uploads are learnt once per run
        receipt = await dest.put(source(tmp_path, "A001/second.mov", os.urandom(3000)), NoResume())
        assert calls.take() == ["PutObject"] and receipt.evidence["verified_by"] == "service-checksum"
        data = os.urandom(4000)
        await dest.put(source(tmp_path, "A001/third.mov", data, known=True), NoResume())
        # a copy might be there already: the folder is listed once, and it is not
        assert calls.take() == ["ListObjectsV2", "PutObject"]
        await dest.put(source(tmp_path, "A001/fourth.mov", os.urandom(10), known=True), NoResume())
        assert calls.take() == ["PutObject"]  # the same listing still says so
        again = await dest.put(source(tmp_path, "A001/third.mov", data, known=True), NoResume())
        assert again.skipped and calls.take() == ["HeadObject"]  # listed (put by this run): look at it
    finally:
        await dest.close()
    assert client(server).get_object(Bucket=bucket, Key="A001/third.mov")["Body"].read() == data


async def test_a_copy_made_before_this_run_is_found_not_sent(server, bucket, monkeypatch, tmp_path) -> None:
    data = os.urandom(5000)
    known = source(tmp_path, "B002/frame_0001.dpx", data, known=True)
    first = await opened(server, bucket, monkeypatch)
    try:
        await first.put(known, NoResume())
    finally:
        await first.close()
    dest = await opened(server, bucket, monkeypatch)  # a new run: a journal started anew, say
    calls = Calls(dest)
    try:
        again = await dest.put(known, NoResume())
        assert again.skipped and calls.take() == ["ListObjectsV2", "HeadObject", "ListMultipartUploads"]
    finally:
        await dest.close()


async def test_a_bucket_that_refuses_listing_gets_head_requests(server, bucket, monkeypatch, tmp_path) -> None:
    dest = await opened(server, bucket, monkeypatch)
    calls = Calls(dest)
    real = dest._api.request

    async def write_only_policy(operation: str, what: str, **params: Any) -> Any:
        if operation == "list_objects_v2":
            raise PermanentError("AccessDenied: s3:ListBucket is not allowed")
        return await real(operation, what, **params)

    monkeypatch.setattr(dest._api, "request", write_only_policy)
    try:
        for name in ("a.mov", "b.mov"):
            await dest.put(source(tmp_path, f"C003/{name}", os.urandom(100), known=True), NoResume())
        assert [n for n in calls.take() if n != "ListMultipartUploads"] == ["HeadObject", "PutObject"] * 2
    finally:
        await dest.close()


async def test_parts_in_flight_reuse_their_buffers(server, bucket, monkeypatch, tmp_path) -> None:
    dest = await opened(server, bucket, monkeypatch, part_concurrency=2)
    calls = Calls(dest)
    data = os.urandom(6 * PART + 999)
    try:
        receipt = await dest.put(source(tmp_path, "A001/seven.mov", data), NoResume())
    finally:
        await dest.close()
    buffers: list[bytearray] = []
    for body in calls.bodies:
        if not any(body.view.obj is b for b in buffers):
            buffers.append(body.view.obj)
    assert len(calls.bodies) == 7 and len(buffers) == 2  # seven parts through two buffers
    assert all(isinstance(b, bytearray) and len(b) == PART for b in buffers)
    assert receipt.bytes_sent == len(data)
    assert client(server).get_object(Bucket=bucket, Key="A001/seven.mov")["Body"].read() == data


async def test_grown_parts_fly_fewer_at_once(server, bucket, monkeypatch, tmp_path) -> None:
    """Past S3's part count the parts grow; the buffers in flight must not grow
    with them: 4 x 5 MiB configured, 8 MiB parts, so two at once."""
    monkeypatch.setattr(s3_parts, "MAX_PARTS", 4)  # stands for 10,000 without a 49 GiB file
    dest = await opened(server, bucket, monkeypatch, part_concurrency=4)
    calls = Calls(dest)
    data = os.urandom(6 * PART + 1)
    try:
        receipt = await dest.put(source(tmp_path, "A001/grown.mov", data), NoResume())
    finally:
        await dest.close()
    buffers = {id(body.view.obj): body.view.obj for body in calls.bodies}.values()
    assert len(calls.bodies) == 4 and len(buffers) == 2
    assert all(len(b) == 8 * 2**20 for b in buffers) and 4 * PART >= 2 * 8 * 2**20
    assert receipt.bytes_sent == len(data)
    assert client(server).get_object(Bucket=bucket, Key="A001/grown.mov")["Body"].read() == data


async def test_uploads_left_behind_are_aborted_without_listing_each_time(server, bucket, monkeypatch, tmp_path) -> None:
    """One left by an earlier run (found by the one listing), one started in this
    run for a version that was then replaced (known without listing again)."""
    s3 = client(server)
    earlier = s3.create_multipart_upload(Bucket=bucket, Key="A001/old-run.mov")["UploadId"]
    unrelated = s3.create_multipart_upload(Bucket=bucket, Key="A001/other.mov")["UploadId"]
    async with S3Proxy(server.endpoint_url, intercept=refuse_part(3)) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        calls = Calls(dest)
        try:
            await dest.put(source(tmp_path, "A001/old-run.mov", os.urandom(100)), NoResume())
            assert calls.take() == ["PutObject", "ListMultipartUploads", "AbortMultipartUpload"]

            resume = MemoryResume()
            with pytest.raises(PermanentError):
                await dest.put(source(tmp_path, "A001/replaced.mov", os.urandom(3 * PART)), resume)
            started = resume.load()["upload_id"]  # type: ignore[index]
            calls.take()
            await dest.put(source(tmp_path, "A001/replaced.mov", os.urandom(500)), NoResume())  # its next version
            assert calls.take() == ["PutObject", "AbortMultipartUpload"]
        finally:
            await dest.close()
    left = open_uploads(server, bucket)
    assert left == [("A001/other.mov", unrelated)]  # a key not copied keeps its upload (lifecycle rules)
    assert earlier not in {u for _, u in left} and started not in {u for _, u in left}
