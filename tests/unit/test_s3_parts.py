"""The S3 destination's pure parts: the part planner, the config, the checksum
arithmetic, the error classification. No server needed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from triplicate.config import load_config
from triplicate.destinations.base import pieces_in_flight
from triplicate.destinations.s3 import S3Config
from triplicate.destinations.s3_checksums import Checksum
from triplicate.destinations.s3_errors import Where, classify_answer
from triplicate.destinations.s3_parts import MAX_PART, MAX_PARTS, MIN_PART, plan_parts
from triplicate.errors import ConfigError, PermanentError, TransientError

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4


def covers(plan) -> bool:  # type: ignore[no-untyped-def]
    """The parts tile the object exactly, all within S3's limits."""
    spans = [plan.span(n) for n in range(1, plan.count + 1)]
    contiguous = all(a[0] + a[1] == b[0] for a, b in zip(spans, spans[1:]))
    sizes_ok = all(MIN_PART <= length <= MAX_PART for _, length in spans[:-1]) and spans[-1][1] <= MAX_PART
    return spans[0][0] == 0 and contiguous and sum(s[1] for s in spans) == plan.size and sizes_ok


def test_a_5_tib_object_is_plannable() -> None:
    plan = plan_parts(5 * TiB, 64 * MiB)
    assert plan.count <= MAX_PARTS and plan.part_size % MiB == 0
    assert plan.part_size == 525 * MiB  # the smallest whole-MiB part that fits in 10,000
    assert plan.span(plan.count)[0] + plan.span(plan.count)[1] == 5 * TiB
    assert covers(plan)


def test_part_size_grows_only_when_10000_parts_are_not_enough() -> None:
    assert plan_parts(64 * MiB * MAX_PARTS, 64 * MiB).part_size == 64 * MiB
    grown = plan_parts(64 * MiB * MAX_PARTS + 1, 64 * MiB)
    assert grown.part_size == 65 * MiB and grown.count <= MAX_PARTS and covers(grown)


def test_part_size_is_clamped_to_s3_limits() -> None:
    assert plan_parts(100 * MiB, 1 * MiB).part_size == MIN_PART  # 5 MiB minimum
    assert plan_parts(20 * GiB, 6 * GiB).part_size == MAX_PART  # 5 GiB maximum
    smallest = plan_parts(MIN_PART + 1, MIN_PART)
    assert (smallest.count, smallest.span(2)) == (2, (MIN_PART, 1))
    assert covers(plan_parts(3 * MAX_PART + 7, MAX_PART))


def test_empty_and_tiny_objects_are_one_part() -> None:
    assert plan_parts(0, 64 * MiB).count == 1
    assert plan_parts(1, 64 * MiB).span(1) == (0, 1)


def test_beyond_5_tib_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="5 TiB"):
        plan_parts(5 * TiB + 1, 64 * MiB)


def s3(**extra: object) -> S3Config:
    return S3Config(**{"name": "offsite", "type": "s3", "bucket": "camera-originals", **extra})  # type: ignore[arg-type]


def test_config_defaults_and_sizes_with_units() -> None:
    config = s3(part_size="128MiB", prefix="/show/")
    assert config.part_size == 128 * MiB and config.prefix == "show/"
    default = s3()
    assert (default.part_size, default.part_concurrency, default.checksum) == (8 * MiB, 8, "crc32c")
    assert default.offsite and default.media == "cloud" and default.prefix == ""


def test_default_parts_in_flight_fit_the_memory_budget() -> None:
    """A file in flight holds part_concurrency buffers of the part size; with the
    defaults that stays at 64 MiB up to 78 GiB, and the part only grows beyond."""
    default = s3()
    assert default.part_concurrency * plan_parts(20 * GiB, default.part_size).part_size <= 64 * MiB
    assert plan_parts(8 * MiB * MAX_PARTS, default.part_size).part_size == 8 * MiB
    assert plan_parts(8 * MiB * MAX_PARTS + 1, default.part_size).part_size == 9 * MiB


@pytest.mark.parametrize(("size", "in_flight", "part_mib"), [
    (20 * GiB, 8, 8), (8 * MiB * MAX_PARTS, 8, 8), (8 * MiB * MAX_PARTS + 1, 7, 9),
    (200 * GiB, 3, 21), (5 * TiB, 1, 525),
])
def test_grown_parts_fly_fewer_at_once(size: int, in_flight: int, part_mib: int) -> None:
    """The default 8 x 8 MiB budget holds whatever the file's size, until a
    single part is larger than it (beyond 625 GiB)."""
    default = s3()
    plan = plan_parts(size, default.part_size)
    assert (pieces_in_flight(plan.part_size, default.part_size, default.part_concurrency), plan.part_size) == (in_flight, part_mib * MiB)
    if plan.part_size <= 64 * MiB:
        assert in_flight * plan.part_size <= 64 * MiB


@pytest.mark.parametrize("bad", [{"part_size": "4MiB"}, {"part_size": "6GiB"}, {"checksum": "crc64"},
                                 {"prefix": "a/../b"}, {"access_key_id_env": "ONLY_ONE"},
                                 {"storage_class": "glacier"}, {"secret": "x"}])
def test_config_refuses(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        s3(**bad)


def test_a_pasted_key_is_refused_without_being_echoed(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    (tmp_path / "t.toml").write_text(f"""
[daemon]
journal = "j.db"
[[watch]]
path = "watch"
destinations = ["offsite"]
[[destination]]
name = "offsite"
type = "s3"
bucket = "camera-originals"
access_key_id_env = "AKIAIOSFODNN7EXAMPLE"
secret_access_key_env = "{secret}"
""")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "t.toml")
    text = str(info.value)
    assert "NAME of an environment variable" in text
    assert secret not in text and "AKIAIOSFODNN7EXAMPLE" not in text


def test_composite_checksums_follow_s3() -> None:
    from awscrt.checksums import crc32c

    parts = [b"a" * 10, b"b" * 20, b"c"]
    for name in ("crc32c", "sha256"):
        kind = Checksum(name)
        digests = [kind.digest(p) for p in parts]
        combined = kind.digest(b"".join(digests))
        assert kind.expected(digests, multipart=True)[0] == f"{base64.b64encode(combined).decode()}-3"
    assert Checksum("crc32c").digest(b"123456789") == (0xE3069283).to_bytes(4, "big")
    assert crc32c(b"123456789") == 0xE3069283
    md5 = Checksum("md5")
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert md5.expected([md5.digest(p) for p in parts], multipart=True) == [etag]
    assert Checksum("none").expected([md5.digest(b"x")], multipart=False) == [hashlib.md5(b"x").hexdigest()]


@pytest.mark.parametrize("name", ["crc32c", "sha256", "md5", "none"])
def test_a_digest_fed_in_blocks_equals_the_digest_of_the_whole(name: str) -> None:
    kind = Checksum(name)
    data = bytes(range(256)) * 4099
    running = kind.running()
    for start in range(0, len(data), 10_000):
        running.update(data[start:start + 10_000])
    assert running.digest() == kind.digest(data)
    assert kind.running().digest() == kind.digest(b"")


def test_a_part_is_read_into_the_callers_buffer(tmp_path: Path) -> None:
    from triplicate.destinations.base import SourceFile
    from triplicate.destinations.s3_source import FILL_BLOCK, fill
    from triplicate.errors import SourceChanged
    from triplicate.source import SourceReader

    data = bytes(range(256)) * (3 * FILL_BLOCK // 256) + b"tail"
    path = tmp_path / "clip.mov"
    path.write_bytes(data)
    st = path.stat()
    src = SourceFile(path, "A001/clip.mov", len(data), st.st_mtime_ns)
    buffer = bytearray(2 * FILL_BLOCK + 5)
    with SourceReader(src) as reader:
        first = fill(reader, memoryview(buffer), Checksum("crc32c"))
        assert buffer == data[:len(buffer)] and first == Checksum("crc32c").digest(data[:len(buffer)])
        rest = memoryview(buffer)[:len(data) - len(buffer)]  # the same buffer, reused for the next part
        fill(reader, rest, Checksum("crc32c"))
        assert bytes(rest) == data[len(buffer):]
        assert reader.finish() == hashlib_xxh64(data)
        with pytest.raises(SourceChanged, match="shrank"):
            fill(reader, memoryview(bytearray(1)), Checksum("crc32c"))


def hashlib_xxh64(data: bytes) -> str:
    import xxhash

    return xxhash.xxh64_hexdigest(data)


def test_a_request_body_is_a_view_of_the_buffer_not_a_copy() -> None:
    from triplicate.destinations.s3_requests import _Body

    buffer = bytearray(b"0123456789")
    counted: list[int] = []
    body = _Body(memoryview(buffer)[2:8], counted.append)
    assert body.read(3) == b"234" and counted == []  # botocore's own read (signing) is not sending
    body.seek(0)
    buffer[2] = ord("X")  # the body sees the buffer itself
    assert body.read() == b"X34567" and body.read() == b"" and body.tell() == 6
    assert body.seek(-2, 2) == 4 and body.read(10) == b"67"
    assert not isinstance(body, io.IOBase), "aiohttp would send a file-like body 64 KiB per worker-thread hop"


def test_a_request_body_is_sent_in_slices_counted_as_they_go(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import payload

    from triplicate.destinations import s3_requests
    from triplicate.destinations.s3_requests import _Body

    monkeypatch.setattr(s3_requests, "SEND_CHUNK", 4)
    buffer = bytearray(b"0123456789")
    counted: list[int] = []
    body = _Body(buffer, counted.append)
    assert isinstance(payload.PAYLOAD_REGISTRY.get(body), payload.AsyncIterablePayload)

    async def drain() -> list[memoryview]:
        return [chunk async for chunk in body]

    chunks = asyncio.run(drain())
    assert [bytes(c) for c in chunks] == [b"0123", b"4567", b"89"] and counted == [4, 4, 2]
    assert all(c.obj is buffer for c in chunks), "slices of the caller's buffer, not copies"


def test_only_crc32c_and_sha256_send_checksum_headers() -> None:
    assert set(Checksum("crc32c").request_params(b"1234")) == {"ChecksumAlgorithm", "ChecksumCRC32C"}
    assert Checksum("md5").request_params(b"0" * 16) == {"ContentMD5": base64.b64encode(b"0" * 16).decode()}
    assert Checksum("none").request_params(b"0" * 16) == {} and Checksum("none").head_params() == {}


WHERE = Where("offsite", "camera-originals", "https://s3.eu-central-003.backblazeb2.com", "the env vars A / B")


def answer(status: int, code: str, message: str = "") -> dict[str, object]:
    return {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_a_b2_checksum_rejection_says_to_set_checksum_none() -> None:
    error = classify_answer(answer(400, "InvalidArgument", "Unsupported header 'x-amz-checksum-crc32c' received for this API call."), WHERE, "uploading x")
    assert isinstance(error, PermanentError) and 'checksum = "none"' in str(error)


@pytest.mark.parametrize("status,code,kind", [
    (503, "SlowDown", TransientError), (500, "InternalError", TransientError), (429, "", TransientError),
    (400, "RequestTimeout", TransientError), (400, "BadDigest", TransientError),
    (403, "SignatureDoesNotMatch", PermanentError), (403, "403", PermanentError),
    (404, "NoSuchBucket", PermanentError), (400, "InvalidArgument", PermanentError),
])
def test_errors_are_classified_like_rclone(status: int, code: str, kind: type) -> None:
    error = classify_answer(answer(status, code), WHERE, "uploading x")
    assert type(error) is kind and "offsite" in str(error)


def test_importing_the_module_leaves_the_sdk_unloaded() -> None:
    """The CLI imports every destination through the registry: keep it fast."""
    code = "import sys, triplicate.destinations.registry; print(any(m.startswith(('botocore', 'aioboto3', 'aiobotocore')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_endpoints_of_different_objects_share_one_resolution() -> None:
    """botocore keys its endpoint cache by parameters that include the object
    key, which no rule reads: without `cache_endpoints` every new key ran the
    whole rule set. With it, the answer is the same and comes from the cache."""
    import aioboto3

    from triplicate.destinations.s3_client import cache_endpoints, unread_endpoint_parameters

    assert "Key" in unread_endpoint_parameters() and "Bucket" not in unread_endpoint_parameters()

    async def urls(shimmed: bool) -> tuple[set[str], int]:
        session = aioboto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
        async with session.client("s3", endpoint_url="http://127.0.0.1:9") as client:
            if shimmed:
                cache_endpoints(client)
            put = client.meta.service_model.operation_model("PutObject")
            resolver = client._ruleset_resolver
            before = resolver._provider.resolve_endpoint.cache_info().misses
            found = {
                (await resolver.construct_endpoint(put, {"Bucket": "b", "Key": f"A001/{i}.dpx"}, {})).url
                for i in range(20)
            }
            return found, resolver._provider.resolve_endpoint.cache_info().misses - before

    plain, plain_misses = asyncio.run(urls(False))
    cached, cached_misses = asyncio.run(urls(True))
    assert plain == cached == {"http://127.0.0.1:9/b"}
    assert plain_misses == 20 and cached_misses <= 1


def test_requests_carry_the_user_agent_given_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore assembles its own header from components per request (twice,
    13 % of a small PutObject's CPU); the client sends the one it is given."""
    from triplicate.destinations.s3_client import new_client, user_agent

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    seen: list[str] = []

    class Sent(Exception):
        pass

    def capture(request: Any, **kwargs: Any) -> None:
        seen.append(request.headers["User-Agent"].decode())
        raise Sent  # nothing listens on port 9: stop before the request goes out

    async def put() -> None:
        cfg = S3Config(type="s3", name="cloud", bucket="b-1", endpoint_url="http://127.0.0.1:9", region="us-east-1")
        async with new_client(cfg) as client:
            client.meta.events.register("before-send.s3", capture)
            with pytest.raises(Sent):
                await client.put_object(Bucket="b-1", Key="A001/f.mov", Body=b"x")

    asyncio.run(put())
    assert len(seen) == 1 and seen[0].startswith(f"{user_agent()} botocore/") and seen[0].startswith("triplicate/0.")


def test_the_direct_put_is_for_endpoints_with_a_checked_checksum() -> None:
    """AWS itself, and checksum "none" (whose only check is the body's
    SHA-256, which the SDK computes), stay with the SDK."""
    from triplicate.destinations.s3_requests import S3Api

    def cfg(**extra: Any) -> S3Config:
        return S3Config(type="s3", name="s3", bucket="b-1", region="us-east-1", **extra)

    assert S3Api.wants_direct(cfg(endpoint_url="http://127.0.0.1:9"))
    assert S3Api.wants_direct(cfg(endpoint_url="https://minio.example:9000", checksum="md5"))
    assert not S3Api.wants_direct(cfg())
    assert not S3Api.wants_direct(cfg(endpoint_url="http://127.0.0.1:9", checksum="none"))
