"""Resuming S3 multipart uploads: after an interrupted attempt, after a
SIGKILL mid-transfer (300 MB), after a kill between complete and check; and
dropping what no longer fits (a changed source, an upload that is gone)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import xxhash
from aiohttp import web
from triplicate.destinations.base import SourceFile
from triplicate.destinations.s3 import S3Destination
from triplicate.errors import PermanentError

from tests.conformance.cases.s3 import (
    MemoryResume,
    S3Proxy,
    client,
    config,
    key_env,
)
from tests.conformance.crash import kill_and_resume, random_file

pytestmark = pytest.mark.servers

MiB = 1024 * 1024
PART = 5 * MiB
SIZE = 6 * PART + 999  # seven parts


def write_source(path: Path, size: int) -> tuple[SourceFile, str]:
    data = os.urandom(size)
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, "A001/A001C001.mov", size, st.st_mtime_ns), xxhash.xxh64_hexdigest(data)


async def opened(server: Any, bucket: str, monkeypatch: Any, endpoint: str | None = None, **extra: Any) -> S3Destination:
    names = key_env(server, monkeypatch)
    dest = S3Destination(config(server, bucket, names, endpoint_url=endpoint or server.endpoint_url,
                                part_concurrency=2, **extra))
    await dest.open()
    return dest


def stored_xxh64(server: Any, bucket: str, key: str) -> str:
    digest = xxhash.xxh64()
    for chunk in client(server).get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(8 * MiB):
        digest.update(chunk)
    return digest.hexdigest()


def open_uploads(server: Any, bucket: str) -> list[str]:
    return [u["UploadId"] for u in client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def refuse_part(number: int) -> Any:
    """An intercept that refuses one part for good (403), as a revoked key would."""

    async def intercept(request: Any) -> Any:
        if request.method == "PUT" and request.query.get("partNumber") == str(number):
            await request.read()
            body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            return web.Response(status=403, body=body, content_type="application/xml")
        return None

    return intercept


async def interrupted(server: Any, bucket: str, monkeypatch: Any, src: SourceFile, resume: MemoryResume) -> None:
    """One attempt that stops at part 5, leaving parts and resume state behind."""
    async with S3Proxy(server.endpoint_url, intercept=refuse_part(5)) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        try:
            with pytest.raises(PermanentError, match="credentials refused"):
                await dest.put(src, resume)
        finally:
            await dest.close()


async def test_an_interrupted_upload_sends_only_the_missing_parts(server, bucket, monkeypatch, tmp_path) -> None:
    src, expected = write_source(tmp_path / "C001.mov", SIZE)
    resume = MemoryResume()
    await interrupted(server, bucket, monkeypatch, src, resume)
    state = resume.load()
    assert state and len(state["parts"]) >= 3 and "5" not in state["parts"]
    kept = sum(p[2] for p in state["parts"].values())

    dest = await opened(server, bucket, monkeypatch)
    try:
        receipt = await dest.put(src, resume)
    finally:
        await dest.close()
    assert receipt.xxh64 == expected and receipt.bytes_sent == SIZE - kept
    assert stored_xxh64(server, bucket, src.key) == expected
    assert resume.load() is None and open_uploads(server, bucket) == []


async def test_a_changed_source_drops_the_old_upload(server, bucket, monkeypatch, tmp_path) -> None:
    src, _ = write_source(tmp_path / "C001.mov", SIZE)
    resume = MemoryResume()
    await interrupted(server, bucket, monkeypatch, src, resume)
    old_upload = resume.load()["upload_id"]  # type: ignore[index]

    changed, expected = write_source(tmp_path / "C001.mov", SIZE)  # same name and size, new bytes and mtime
    assert changed.mtime_ns != src.mtime_ns
    dest = await opened(server, bucket, monkeypatch)
    try:
        receipt = await dest.put(changed, resume)
    finally:
        await dest.close()
    assert receipt.xxh64 == expected and receipt.bytes_sent == SIZE
    assert old_upload not in open_uploads(server, bucket) and open_uploads(server, bucket) == []
    assert stored_xxh64(server, bucket, src.key) == expected


async def test_an_upload_that_is_gone_starts_over(server, bucket, monkeypatch, tmp_path) -> None:
    src, expected = write_source(tmp_path / "C001.mov", SIZE)
    resume = MemoryResume()
    await interrupted(server, bucket, monkeypatch, src, resume)
    state = resume.load()
    client(server).abort_multipart_upload(Bucket=bucket, Key=state["key"], UploadId=state["upload_id"])  # type: ignore[index]

    dest = await opened(server, bucket, monkeypatch)
    try:
        receipt = await dest.put(src, resume)
    finally:
        await dest.close()
    assert receipt.xxh64 == expected and receipt.bytes_sent == SIZE
    assert stored_xxh64(server, bucket, src.key) == expected


async def test_a_kill_between_complete_and_check_is_checked_not_resent(server, bucket, monkeypatch, tmp_path) -> None:
    src, expected = write_source(tmp_path / "C001.mov", SIZE)
    resume = MemoryResume()
    completed: list[str] = []

    async def refuse_checks_after_complete(request: Any) -> Any:
        if request.method == "POST" and "uploadId" in request.query:
            completed.append(request.path_qs)
        elif completed and request.method == "HEAD":
            return web.Response(status=403)  # the attempt dies here, as if killed
        return None

    async with S3Proxy(server.endpoint_url, intercept=refuse_checks_after_complete) as proxy:
        dest = await opened(server, bucket, monkeypatch, endpoint=proxy.endpoint_url)
        try:
            with pytest.raises(PermanentError):
                await dest.put(src, resume)
        finally:
            await dest.close()
    assert completed and resume.load()["completing"]  # type: ignore[index]

    dest = await opened(server, bucket, monkeypatch)
    try:
        receipt = await dest.put(src, resume)
    finally:
        await dest.close()
    assert receipt.xxh64 == expected and receipt.bytes_sent == 0 and not receipt.skipped
    assert resume.load() is None


CRASH_SIZE = 300 * 1000 * 1000
CRASH_PART = 8 * MiB
PARTS_IN_FLIGHT = 4


def test_killed_upload_resumes_from_its_parts(server, bucket, tmp_path: Path) -> None:
    source = tmp_path / "A001C003_230101_R1AB.mov"
    expected = random_file(source, CRASH_SIZE)
    destination = {
        "name": "offsite-s3", "type": "s3", "bucket": bucket, "endpoint_url": server.endpoint_url,
        "region": server.region, "prefix": "crash", "part_size": "8MiB", "part_concurrency": PARTS_IN_FLIGHT,
        "access_key_id_env": "TRIPLICATE_TEST_S3_CRASH_KEY_ID", "secret_access_key_env": "TRIPLICATE_TEST_S3_CRASH_SECRET",
    }
    env = {"TRIPLICATE_TEST_S3_CRASH_KEY_ID": server.access_key, "TRIPLICATE_TEST_S3_CRASH_SECRET": server.secret_key}
    began = time.monotonic()
    try:
        result = kill_and_resume(tmp_path, destination, source, "A001/A001C003_230101_R1AB.mov",
                                 kill_after=int(CRASH_SIZE * 0.4), env=env)
        seconds = time.monotonic() - began
        print(f"\ns3 crash/resume on {server.name}: {CRASH_SIZE} bytes, killed after {result.progress_at_kill} "
              f"reported sent, second run sent {result.second_run_sent}, re-sent {result.resent} bytes "
              f"(limit {PARTS_IN_FLIGHT * CRASH_PART}), {seconds:.1f} s in all")
        assert result.xxh64 == expected
        assert result.resent <= PARTS_IN_FLIGHT * CRASH_PART
        assert stored_xxh64(server, bucket, "crash/A001/A001C003_230101_R1AB.mov") == expected
        assert open_uploads(server, bucket) == []
        assert not (tmp_path / "resume.json").exists()
    finally:
        if server.name == "moto":
            server.restart()  # moto keeps the 300 MB (and more) in memory otherwise
