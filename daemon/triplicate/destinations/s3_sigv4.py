"""AWS Signature Version 4 for the direct PutObject (s3_direct.py).

botocore's signer (awscrt's when installed) costs ~0.3 ms of CPU a request:
the request is copied into awscrt's types and back, its headers parsed as
email headers on the way, and the signing key derived from the secret anew
each time. Here the key is derived once a day and a signature is one SHA-256
of the canonical request and one HMAC (~0.03 ms).

It follows AWS's published algorithm for S3: the path signed as it is sent
(S3 does not encode it twice), no query string (PutObject has none here),
every header signed but those botocore also leaves out, and the payload's
SHA-256 over plain HTTP; over HTTPS, where a checksum header the service
checks is always present on this path, "UNSIGNED-PAYLOAD", as botocore does.
tests/unit/test_s3_sigv4.py holds it to botocore's own signature, and the
integration tests to an independent verifier in front of real services.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})  # as botocore


def host_header(url: str) -> str:
    """The Host header for `url`: its host, with the port unless it is the scheme's own."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class SigV4:
    """Signs requests to one region and service."""

    def __init__(self, region: str, service: str) -> None:
        self.region, self.service = region, service
        self._key: tuple[tuple[str, str], bytes] | None = None  # ((day, secret), signing key)

    def sign(self, credentials: Any, method: str, path: str, headers: dict[str, str], payload_hash: str,
             amz_date: str | None = None) -> None:
        """Add X-Amz-Date, X-Amz-Content-SHA256, the session token if any, and
        Authorization to `headers` (`credentials`: botocore's frozen ones)."""
        amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        headers["X-Amz-Date"] = amz_date
        headers["x-amz-content-sha256"] = payload_hash
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        signed = sorted((k.lower(), " ".join(str(v).split())) for k, v in headers.items()
                        if k.lower() not in UNSIGNED_HEADERS)
        names = ";".join(k for k, _ in signed)
        canonical = "\n".join((method, path, "", "".join(f"{k}:{v}\n" for k, v in signed), names, payload_hash))
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(day, credentials.secret_key), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                                    f"SignedHeaders={names}, Signature={signature.hexdigest()}")

    def _signing_key(self, day: str, secret: str) -> bytes:
        if self._key is None or self._key[0] != (day, secret):  # a new day, or rotated credentials
            key = f"AWS4{secret}".encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._key = ((day, secret), key)
        return self._key[1]
