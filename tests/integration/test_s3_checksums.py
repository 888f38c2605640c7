"""The S3 destination's checksum settings against SeaweedFS and moto, and the
faults the servers cannot make themselves (a store that rejects the checksum
headers like Backblaze B2, a wrong service checksum, a failed part, a lost
answer), made by a small proxy in front of the real server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import xxhash
from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.s3 import S3Destination
from triplicate.errors import PermanentError, VerificationFailed

from tests.conformance.cases.s3 import (
    PART,
    S3Proxy,
    client,
    config,
    key_env,
    rejects_checksum_headers,
)

pytestmark = pytest.mark.servers

SINGLE = 1000
MULTI = 2 * PART + 12345  # three parts


def source(tmp_path: Path, name: str, size: int) -> tuple[SourceFile, bytes]:
    data = os.urandom(size)
    path = tmp_path / name.replace("/", "_")
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, name, size, st.st_mtime_ns), data


async def opened(server: Any, bucket: str, monkeypatch: Any, endpoint: str | None = None, **extra: Any) -> S3Destination:
    """A destination on `server` (or on a proxy in front of it at `endpoint`)."""
    dest = S3Destination(config(server, bucket, key_env(server, monkeypatch), endpoint_url=endpoint or server.endpoint_url, **extra))
    await dest.open()
    return dest


def stored(server: Any, bucket: str, key: str) -> bytes | None:
    s3 = client(server)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def expected_evidence(server: Any, checksum: str, multipart: bool) -> str:
    """How each server lets a copy be confirmed (DESIGN.md: moto's deviations)."""
    if checksum in ("md5", "none"):
        return "etag-md5"
    if server.name == "moto" and checksum == "crc32c" and multipart:
        return "read-back"  # moto reports a composite CRC32C that is neither AWS's nor the full-object CRC
    return "service-checksum"


@pytest.mark.parametrize("checksum", ["crc32c", "sha256", "md5", "none"])
async def test_every_checksum_setting_is_verified(server, bucket, monkeypatch, tmp_path, checksum) -> None:
    dest = await opened(server, bucket, monkeypatch, checksum=checksum)
    try:
        for size in (SINGLE, MULTI):
            src, data = source(tmp_path, f"A001/{checksum}-{size}.mov", size)
            sent: list[int] = []
            receipt = await dest.put(src, NoResume(), sent.append)
            assert receipt.xxh64 == xxhash.xxh64_hexdigest(data)
            assert receipt.bytes_sent == sum(sent) == size
            assert receipt.evidence["verified_by"] == expected_evidence(server, checksum, size > PART)
            assert stored(server, bucket, src.key) == data
            head = client(server).head_object(Bucket=bucket, Key=src.key)
            assert head["Metadata"] == {"xxh64": receipt.xxh64, "mtime": str(src.mtime_ns)}
    finally:
        await dest.close()


async def test_checksum_none_works_with_a_store_that_rejects_checksum_headers(server, bucket, monkeypatch, tmp_path) -> None:
    async with S3Proxy(server.endpoint_url, intercept=rejects_checksum_headers) as proxy:
        for checksum in ("none", "md5"):
            dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url, checksum=checksum)
            try:
                for size in (SINGLE, MULTI):
                    src, data = source(tmp_path, f"A001/{checksum}-{size}.mov", size)
                    receipt = await dest.put(src, NoResume())
                    await dest.verify(src.key, receipt.xxh64, size)
                    assert (await dest.stat(src.key)).xxh64 == receipt.xxh64  # type: ignore[union-attr]
                    assert stored(server, bucket, src.key) == data
                await dest.write_bytes("A001/ascmhl/0001.mhl", b"<hashlist/>")
                assert await dest.read_bytes("A001/ascmhl/0001.mhl") == b"<hashlist/>"
                await dest.delete("A001/ascmhl/0001.mhl")
            finally:
                await dest.close()
        assert not [p for _, p in proxy.seen if "x-amz-checksum" in p.lower()]


@pytest.mark.parametrize("size", [SINGLE, MULTI])
async def test_rejected_checksum_headers_tell_the_user_what_to_set(server, bucket, monkeypatch, tmp_path, size) -> None:
    async with S3Proxy(server.endpoint_url, intercept=rejects_checksum_headers) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url, checksum="crc32c")
        try:
            src, _ = source(tmp_path, "A001/C001.mov", size)
            with pytest.raises(PermanentError) as info:
                await dest.put(src, NoResume())
        finally:
            await dest.close()
    message = str(info.value)
    print(f"\n{message}")
    assert 'checksum = "none"' in message and "offsite-s3" in message and "\n" not in message
    assert "Unsupported header 'x-amz-" in message
    assert client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _wrong_checksum(request: Any, status: int, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    # the answer to a PutObject carries the stored checksum too, and settles a single-part copy by itself
    if request.method in ("HEAD", "PUT") and "x-amz-checksum-crc32c" in {k.lower() for k in headers}:
        headers = {k: ("AAAAAA==" if k.lower() == "x-amz-checksum-crc32c" else v) for k, v in headers.items()}
    return status, headers, body


def _corrupt_reads(request: Any, status: int, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = _wrong_checksum(request, status, headers, body)
    if request.method == "GET" and status in (200, 206) and body and "uploads" not in request.query:
        body = bytes([body[0] ^ 0xFF]) + body[1:]
    return status, headers, body


async def test_a_disagreeing_service_checksum_is_settled_by_reading_back(server, bucket, monkeypatch, tmp_path) -> None:
    async with S3Proxy(server.endpoint_url, rewrite=_wrong_checksum) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        try:
            src, data = source(tmp_path, "A001/C001.mov", MULTI)
            receipt = await dest.put(src, NoResume())
        finally:
            await dest.close()
    assert receipt.evidence["verified_by"] == "read-back" and receipt.evidence["service"] == "AAAAAA=="
    assert stored(server, bucket, src.key) == data


@pytest.mark.parametrize("size", [SINGLE, MULTI])
async def test_a_copy_that_reads_back_wrong_is_removed(server, bucket, monkeypatch, tmp_path, size) -> None:
    async with S3Proxy(server.endpoint_url, rewrite=_corrupt_reads) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        try:
            src, _ = source(tmp_path, "A001/C001.mov", size)
            with pytest.raises(VerificationFailed, match="removed"):
                await dest.put(src, NoResume())
        finally:
            await dest.close()
    assert stored(server, bucket, src.key) is None
    assert client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_a_failed_part_is_sent_again_alone(server, bucket, monkeypatch, tmp_path) -> None:
    from aiohttp import web

    failed: list[str] = []

    async def fail_part_two_once(request: Any) -> Any:
        if request.method == "PUT" and request.query.get("partNumber") == "2" and not failed:
            await request.read()
            failed.append(request.path_qs)
            error = "<Error><Code>InternalError</Code><Message>try again</Message></Error>"
            return web.Response(status=500, body=error.encode(), content_type="application/xml")
        return None

    async with S3Proxy(server.endpoint_url, intercept=fail_part_two_once) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        try:
            src, data = source(tmp_path, "A001/C001.mov", MULTI)
            receipt = await dest.put(src, NoResume())
        finally:
            await dest.close()
    part_puts = [p for m, p in proxy.seen if m == "PUT" and "partNumber=" in p]
    assert failed and len(part_puts) == 4  # three parts, part 2 twice
    assert receipt.bytes_sent == MULTI + PART  # part 2 went twice, nothing else did
    assert stored(server, bucket, src.key) == data


async def test_a_lost_answer_to_complete_is_checked_not_repeated(server, bucket, monkeypatch, tmp_path) -> None:
    lost: list[str] = []

    def lose_complete_answer(request: Any, status: int, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if request.method == "POST" and "uploadId" in request.query and not lost:
            lost.append(request.path_qs)  # the server completed it; the client hears a 503
            return 503, {"Content-Type": "application/xml"}, b"<Error><Code>ServiceUnavailable</Code></Error>"
        return status, headers, body

    async with S3Proxy(server.endpoint_url, rewrite=lose_complete_answer) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        try:
            src, data = source(tmp_path, "A001/C001.mov", MULTI)
            receipt = await dest.put(src, NoResume())
        finally:
            await dest.close()
    assert lost and receipt.bytes_sent == MULTI
    assert stored(server, bucket, src.key) == data
