"""S3 on two real servers: "s3-seaweed" (SeaweedFS, whose checksums behave like
AWS's) and "s3-moto" (moto, the AWS dialect with moto's deviations). A fresh
bucket per test; the keys reach the destination through environment variables
(access_key_id_env / secret_access_key_env). Independent reads, the corruption
and the leftover check go through boto3, not the destination's code.

Neither shared server checks credentials (SeaweedFS without an identity config
and moto by default accept any key), so the refused-credentials case talks to
a second server of the same kind started with authentication on: SeaweedFS
with an admin key pair in its environment, moto with
INITIAL_NO_AUTH_ACTION_COUNT=0 (its IAM check: unknown keys are refused).
They start on first use and stop when the test process ends.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any, Awaitable, Callable

import boto3
from botocore.config import Config

from servers import MotoS3, SeaweedS3, free_port
from triplicate.destinations.s3 import S3Config, S3Destination

from .base import Case, Context

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part keeps the suite quick


def server_for(ctx: Context) -> Any:
    return ctx.request.getfixturevalue("moto" if ctx.variant == "s3-moto" else "seaweed")


def client(server: Any) -> Any:
    """A plain boto3 client: the independent view of the bucket."""
    return boto3.client(
        "s3", endpoint_url=server.endpoint_url, region_name=server.region,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        # like the daemon: moto stores a wrong checksum header on copied objects; the bytes are what the tests compare
        config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}, response_checksum_validation="when_required"),
    )


def fresh_bucket(server: Any, request: Any) -> str:
    """An empty bucket, emptied and deleted when the test ends."""
    s3 = client(server)
    bucket = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=bucket)

    def remove() -> None:
        try:
            for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=item["Key"])
            s3.delete_bucket(Bucket=bucket)
        except Exception:  # a server stopped by the test itself; its data goes with it
            pass

    request.addfinalizer(remove)
    return bucket


def key_env(server: Any, monkeypatch: Any, tag: str = "") -> tuple[str, str]:
    """Environment variable names holding `server`'s keys, for the config."""
    names = (f"TRIPLICATE_TEST_S3{tag}_KEY_ID", f"TRIPLICATE_TEST_S3{tag}_SECRET")
    monkeypatch.setenv(names[0], server.access_key)
    monkeypatch.setenv(names[1], server.secret_key)
    return names


def config(server: Any, bucket: str, names: tuple[str, str], **extra: Any) -> S3Config:
    return S3Config(**{
        "name": "offsite-s3", "type": "s3", "bucket": bucket, "endpoint_url": server.endpoint_url,
        "region": server.region, "access_key_id_env": names[0], "secret_access_key_env": names[1],
        "part_size": PART, **extra,
    })


def open_uploads(server: Any, bucket: str) -> list[str]:
    found = client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [f"{u['Key']} (open multipart upload)" for u in found]


# ---- servers with authentication on ---------------------------------------------


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # 403 to an unsigned request: it is up
    except (urllib.error.URLError, OSError):
        return False


class AuthSeaweed(SeaweedS3):
    """SeaweedFS that requires its one key pair (given in its environment)."""

    name = "seaweedfs-auth"
    access_key = "triplicate-admin"
    secret_key = "triplicate-admin-secret-do-not-log"

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def _ready(self) -> bool:
        return _answers(self.endpoint_url + "/")


class AuthMoto(MotoS3):
    """moto with its IAM check on: keys it never issued are refused."""

    name = "moto-auth"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}

    def _ready(self) -> bool:
        return _answers(self.endpoint_url + "/")


_auth_servers: dict[str, Any] = {}
_auth_lock = threading.Lock()


def auth_server(variant: str) -> Any:
    """The authenticating server for `variant`, started on first use."""
    with _auth_lock:
        if variant not in _auth_servers:
            server = AuthMoto() if variant == "s3-moto" else AuthSeaweed()
            try:
                server.start()
            except BaseException:
                server.close()
                raise
            atexit.register(server.close)
            _auth_servers[variant] = server
        return _auth_servers[variant]


def refused_destination(ctx: Context, monkeypatch: Any) -> S3Destination:
    """Right key id, wrong secret (SeaweedFS) or an unknown key (moto)."""
    server = auth_server(ctx.variant)
    monkeypatch.setenv("TRIPLICATE_TEST_S3_BAD_KEY_ID", server.access_key)
    monkeypatch.setenv("TRIPLICATE_TEST_S3_BAD_SECRET", "wrong-secret-" + uuid.uuid4().hex)
    names = ("TRIPLICATE_TEST_S3_BAD_KEY_ID", "TRIPLICATE_TEST_S3_BAD_SECRET")
    return S3Destination(config(server, f"t-{uuid.uuid4().hex[:20]}", names))


# ---- the case ---------------------------------------------------------------------


async def make(ctx: Context) -> Case:
    server = server_for(ctx)
    monkeypatch = ctx.request.getfixturevalue("monkeypatch")
    bucket = fresh_bucket(server, ctx.request)
    names = key_env(server, monkeypatch)
    s3 = client(server)

    async def read(key: str) -> bytes | None:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    async def corrupt(key: str) -> None:
        """Flip the first byte, keeping size and metadata: bit rot, as verify() must see it."""
        found = s3.get_object(Bucket=bucket, Key=key)
        data = bytearray(found["Body"].read())
        data[0] ^= 0xFF
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=found["Metadata"])

    async def leftovers() -> list[str]:
        return open_uploads(server, bucket)

    return Case(
        dest=S3Destination(config(server, bucket, names)),
        read=read,
        corrupt=corrupt,
        missing_target=lambda: S3Destination(config(server, f"missing-{uuid.uuid4().hex[:12]}", names)),
        bad_credentials=lambda: refused_destination(ctx, monkeypatch),
        part_size=PART,
        leftovers=leftovers,
    )


# ---- a proxy for the faults the servers cannot make -----------------------------

B2_REJECTION = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Error>\n'
    "    <Code>InvalidArgument</Code>\n"
    "    <Message>Unsupported header '{header}' received for this API call.</Message>\n</Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "expect", "upgrade"}

Intercept = Callable[[Any], Awaitable[Any]]  # aiohttp request -> web.Response or None (forward it)
Rewrite = Callable[[Any, int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


async def rejects_checksum_headers(request: Any) -> Any:
    """What Backblaze B2 answers to the headers boto3 sends since 1.36."""
    from aiohttp import web

    for header in request.headers:
        if header.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-")):
            body = B2_REJECTION.format(header=header.lower())
            return web.Response(status=400, body=body.encode(), content_type="application/xml")
    return None


class S3Proxy:
    """An HTTP proxy in front of a real S3 server, run in the test's event loop,
    that can answer a request itself (`intercept`) or change the server's
    answer (`rewrite`). Requests are forwarded with their signature unchanged
    (neither SeaweedFS nor moto checks it by default)."""

    def __init__(self, upstream: str, intercept: Intercept | None = None, rewrite: Rewrite | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.intercept = intercept
        self.rewrite = rewrite
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[str, str]] = []  # (method, path?query)

    async def __aenter__(self) -> "S3Proxy":
        import aiohttp
        from aiohttp import web

        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
        await self.session.close()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        self.seen.append((request.method, request.path_qs))
        if self.intercept is not None:
            answer = await self.intercept(request)
            if answer is not None:
                return answer
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self.session.request(request.method, self.upstream + request.raw_path, headers=headers,
                                        data=body, allow_redirects=False) as found:
            data = await found.read()
            status, out = found.status, {k: v for k, v in found.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.rewrite is not None:
            status, out, data = self.rewrite(request, status, out, data)
        if request.method == "HEAD":
            return web.Response(status=status, headers=out)
        out.pop("Content-Length", None)
        return web.Response(status=status, headers=out, body=data)


class MemoryResume:
    """A ResumeState kept in memory (standing in for the journal), JSON round-tripped like it."""

    def __init__(self) -> None:
        self.text: str | None = None

    def load(self) -> dict[str, Any] | None:
        return None if self.text is None else json.loads(self.text)

    def save(self, state: dict[str, Any]) -> None:
        self.text = json.dumps(state)

    def clear(self) -> None:
        self.text = None
