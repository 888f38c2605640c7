"""PutObject without the SDK's pipeline (s3_direct.py), through a proxy in
front of the real servers: the proxy checks every request's SigV4 signature
against what it received (neither SeaweedFS nor moto checks signatures), and
refuses or fails the direct requests to show what the SDK then does."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import pytest
import structlog
from triplicate.destinations.base import NoResume
from triplicate.destinations.s3 import S3Destination

from tests.conformance.cases.s3 import S3Proxy, client, config, key_env
from tests.integration.test_s3_requests import source

pytestmark = pytest.mark.servers


def signature_error(request: Any, secret: str) -> str | None:
    """Why the request's SigV4 signature does not match what arrived, or None.
    Written from AWS's description of SigV4, independently of botocore."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return f"no SigV4 authorization: {auth!r}"
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    scope = fields["Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    signed = fields["SignedHeaders"].split(";")
    path, _, query = request.raw_path.partition("?")
    pairs = sorted(p if "=" in p else f"{p}=" for p in query.split("&") if p)
    canonical = "\n".join([
        request.method, path, "&".join(pairs),
        "".join(f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed),
        ";".join(signed), request.headers["x-amz-content-sha256"],
    ])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", request.headers["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    if hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() != fields["Signature"]:
        return f"signature does not match for {request.method} {request.raw_path}"
    return None


def is_direct(request: Any) -> bool:
    # the SDK sends its invocation id with every request; the direct path does not
    return request.method == "PUT" and "amz-sdk-invocation-id" not in request.headers


class DirectAnswers:
    """A proxy intercept that counts the direct path's PUTs and answers the
    first `times` of them (all when None) with `status` and an S3 error
    document; everything else goes on to the server."""

    def __init__(self, status: int, code: str, message: str = "", times: int | None = None) -> None:
        self.status, self.times, self.seen = status, times, 0
        self.body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()

    async def __call__(self, request: Any) -> Any:
        from aiohttp import web

        if not is_direct(request):
            return None
        self.seen += 1
        if self.times is not None and self.seen > self.times:
            return None
        return web.Response(status=self.status, body=self.body)


async def test_direct_puts_are_signed_for_what_arrives(server, bucket, monkeypatch, tmp_path) -> None:
    """Keys that need escaping, metadata, a storage class: the server-side
    check of the signature passes for the direct path's requests and the
    SDK's alike (which shows the check itself is right), and the objects
    are stored as sent."""
    refused: list[str] = []
    direct: list[str] = []
    agents: dict[bool, set[str]] = {True: set(), False: set()}

    async def check(request: Any) -> Any:
        from aiohttp import web

        agents[is_direct(request)].add(request.headers.get("User-Agent", ""))
        if is_direct(request):
            direct.append(request.raw_path)
        problem = signature_error(request, server.secret_key)
        if problem is not None:
            refused.append(problem)
            return web.Response(status=403, body=b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
        return None

    keys = ["A001/plain.mov", "A001/sp ace+plus%pct.mov", "Ü/naïve ünïcødé (1).R3D", "A001/q?uery&amp=.wav"]
    async with S3Proxy(server.endpoint_url, intercept=check) as proxy:
        dest = S3Destination(config(server, bucket, key_env(server, monkeypatch), endpoint_url=proxy.endpoint_url,
                                    storage_class="STANDARD"))
        await dest.open()
        try:
            assert dest._api.direct is not None
            blobs = {key: os.urandom(1000 + i) for i, key in enumerate(keys)}
            for key, data in blobs.items():
                receipt = await dest.put(source(tmp_path, key, data), NoResume())
                assert receipt.evidence["verified_by"] == "service-checksum"
            assert dest._api.direct is not None  # never declined
        finally:
            await dest.close()
    assert refused == []
    assert len(direct) == len(keys)
    assert agents[True] == agents[False] and len(agents[True]) == 1  # the same User-Agent as the SDK's
    s3 = client(server)
    for key, data in blobs.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == data and set(got["Metadata"]) == {"xxh64", "mtime"}


@pytest.mark.parametrize("checksum", ["md5", "sha256"])
async def test_other_checksums_go_direct_too(server, bucket, monkeypatch, tmp_path, checksum) -> None:
    seen: list[bool] = []

    async def note(request: Any) -> Any:
        seen.append(is_direct(request))
        assert signature_error(request, server.secret_key) is None
        return None

    async with S3Proxy(server.endpoint_url, intercept=note) as proxy:
        dest = S3Destination(config(server, bucket, key_env(server, monkeypatch), endpoint_url=proxy.endpoint_url,
                                    checksum=checksum))
        await dest.open()
        try:
            data = os.urandom(3000)
            receipt = await dest.put(source(tmp_path, "C003/clip.mxf", data), NoResume())
        finally:
            await dest.close()
    assert True in seen and receipt.evidence["checksum"] == checksum
    assert client(server).get_object(Bucket=bucket, Key="C003/clip.mxf")["Body"].read() == data


async def test_a_refused_direct_put_goes_through_the_sdk_and_the_path_is_left(server, bucket, monkeypatch,
                                                                            tmp_path) -> None:
    """A store that refuses what the direct path sends (here: every direct
    PUT answered 403) still gets every file, through the SDK, and the
    destination stops trying the direct path after the first refusal."""
    refuse = DirectAnswers(403, "AccessDenied", "no")
    async with S3Proxy(server.endpoint_url, intercept=refuse) as proxy:
        dest = S3Destination(config(server, bucket, key_env(server, monkeypatch), endpoint_url=proxy.endpoint_url))
        await dest.open()
        try:
            with structlog.testing.capture_logs() as logs:
                blobs = {f"D004/f{i}.dpx": os.urandom(500 + i) for i in range(3)}
                for key, data in blobs.items():
                    await dest.put(source(tmp_path, key, data), NoResume())
            assert dest._api.direct is None
        finally:
            await dest.close()
    assert refuse.seen == 1
    off = [e for e in logs if e["event"] == "s3_direct_put_off"]
    assert [(e["status"], e["code"]) for e in off] == [(403, "AccessDenied")]
    s3 = client(server)
    assert all(s3.get_object(Bucket=bucket, Key=k)["Body"].read() == d for k, d in blobs.items())


@pytest.mark.parametrize("status", [503, 429])
async def test_a_server_error_on_the_direct_path_is_retried_and_keeps_it(server, bucket, monkeypatch, tmp_path,
                                                                       status) -> None:
    """A 5xx or a 429 is the service's trouble, not the path's: the request
    is tried again (by the direct path) and the path stays in use."""
    flaky = DirectAnswers(status, "SlowDown", times=1)
    async with S3Proxy(server.endpoint_url, intercept=flaky) as proxy:
        dest = S3Destination(config(server, bucket, key_env(server, monkeypatch), endpoint_url=proxy.endpoint_url))
        await dest.open()
        try:
            data = os.urandom(2048)
            with structlog.testing.capture_logs() as logs:
                await dest.put(source(tmp_path, "E005/a.wav", data), NoResume())
            assert dest._api.direct is not None
        finally:
            await dest.close()
    assert flaky.seen == 2
    retries = [e for e in logs if e["event"] == "s3_request_retry"]
    assert len(retries) == 1 and "answered SlowDown while uploading E005/a.wav" in retries[0]["error"]
    assert client(server).get_object(Bucket=bucket, Key="E005/a.wav")["Body"].read() == data


async def test_a_request_that_keeps_failing_is_tried_four_times(server, bucket, monkeypatch, tmp_path) -> None:
    """The first attempt runs outside the retry loop; the attempts after it
    are counted on from it: four in all, three retries logged as 1, 2, 3,
    then the copy fails as transient (the scheduler's retry takes over)."""
    from triplicate.destinations import s3_requests
    from triplicate.errors import TransientError

    monkeypatch.setattr(s3_requests, "RETRY_WAIT", 0.001)
    failing = DirectAnswers(503, "ServiceUnavailable")
    async with S3Proxy(server.endpoint_url, intercept=failing) as proxy:
        dest = S3Destination(config(server, bucket, key_env(server, monkeypatch), endpoint_url=proxy.endpoint_url))
        await dest.open()
        try:
            with structlog.testing.capture_logs() as logs, pytest.raises(TransientError, match="ServiceUnavailable"):
                await dest.put(source(tmp_path, "E006/a.wav", os.urandom(1024)), NoResume())
        finally:
            await dest.close()
    assert failing.seen == s3_requests.ATTEMPTS == 4
    assert [e["attempt"] for e in logs if e["event"] == "s3_request_retry"] == [1, 2, 3]
