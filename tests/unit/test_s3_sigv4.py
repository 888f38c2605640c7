"""The direct PutObject's SigV4 signature (s3_sigv4.py) against botocore's own
Python signer, header for header, for the same request at the same moment."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from triplicate.destinations.s3_sigv4 import UNSIGNED_PAYLOAD, SigV4, host_header

AMZ_DATE = "20261128T013000Z"
BODY = b"frame bytes " * 1000


def _botocore_headers(url: str, headers: dict[str, str], credentials: Credentials, region: str,
                      monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    moment = datetime.datetime(2026, 11, 28, 1, 30, 0)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: moment)
    request = AWSRequest("PUT", url, headers=dict(headers), data=BODY)
    # what the SDK's flexible-checksum handler and the PutObject model put in the context
    request.context["checksum"] = {"request_algorithm": {"in": "header", "name": "x-amz-checksum-crc32c"}}
    request.context["has_streaming_input"] = True
    botocore_auth.S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("http://127.0.0.1:8333/bucket/B001/000/frame_0000001.dpx", None),
        # keys that need escaping, a session token, a standard port left out
        ("http://s3.example.test/bucket/A%20b%2Bc~%C3%A9/%28take%202%29.mov", "session/token+=="),
        ("https://bucket.s3.example.test:9443/B001/clip.mxf", None),
    ],
)
def test_the_signature_is_botocores(url: str, token: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    headers = {
        "Content-Length": str(len(BODY)),
        "x-amz-meta-xxh64": "0123456789abcdef",
        "x-amz-meta-mtime": "  1700000000   000 ",  # values are trimmed and spaces folded when signed
        "x-amz-checksum-crc32c": "yZRlqg==",
        "x-amz-sdk-checksum-algorithm": "CRC32C",
        "User-Agent": "triplicate/0.1.0 test",
    }
    https = url.startswith("https:")
    ours = {**headers, "host": host_header(url)}
    payload = UNSIGNED_PAYLOAD if https else hashlib.sha256(BODY).hexdigest()
    path = url.split("/", 3)[3]
    SigV4("eu-central-1", "s3").sign(credentials.get_frozen_credentials(), "PUT", "/" + path, ours, payload, AMZ_DATE)
    theirs = _botocore_headers(url, headers, credentials, "eu-central-1", monkeypatch)
    ours_lower = {k.lower(): v for k, v in ours.items()}
    for name in ("authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"):
        assert ours_lower.get(name) == theirs.get(name), name
    assert "user-agent" not in ours_lower["authorization"].split("SignedHeaders=")[1].split(",")[0]


def test_the_signing_key_follows_the_day_and_the_secret() -> None:
    signer = SigV4("us-east-1", "s3")
    a = Credentials("AK", "secret-one").get_frozen_credentials()
    b = Credentials("AK", "secret-two").get_frozen_credentials()

    def signature(credentials: object, amz_date: str) -> str:
        headers = {"host": "h"}
        signer.sign(credentials, "PUT", "/k", headers, UNSIGNED_PAYLOAD, amz_date)
        return headers["Authorization"].rsplit("=", 1)[1]

    first = signature(a, "20261128T000000Z")
    assert signature(a, "20261128T235959Z") != first  # the date is signed, the key kept
    assert signature(a, "20261129T000000Z") != signature(b, "20261129T000000Z"), "a rotated secret signs anew"
    fresh = SigV4("us-east-1", "s3")
    headers = {"host": "h"}
    fresh.sign(b, "PUT", "/k", headers, UNSIGNED_PAYLOAD, "20261129T000000Z")
    assert headers["Authorization"].rsplit("=", 1)[1] == signature(b, "20261129T000000Z")


def test_host_header() -> None:
    assert host_header("http://127.0.0.1:8333/bucket") == "127.0.0.1:8333"
    assert host_header("https://S3.Example.test:443") == "s3.example.test"
    assert host_header("http://[::1]:9000/b") == "[::1]:9000"
