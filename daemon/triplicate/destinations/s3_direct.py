"""PutObject to an S3-compatible service without botocore's request pipeline.

Why
    Uploading many small files to an on-site store (MinIO, Ceph, SeaweedFS)
    is bound by the S3 process's CPU, and most of that CPU is botocore's
    per-request machinery rather than the bytes: a dozen events emitted, the
    endpoint rule set consulted, the request built and rebuilt, the answer
    parsed by its model (py-spy: 70 % of the S3 process in case 4 of
    `bench`). rclone's whole request costs a fraction of it.

What it keeps from botocore
    The request is still botocore's: its serializer turns the parameters into
    headers and a path, exactly as for put_object, with the client's
    credentials (refreshed as the SDK refreshes them); the aiohttp session of
    the client's own HTTP session (connection pool, TLS, timeouts and the
    proxy the SDK would take for the address) sends it. Not through that HTTP
    session's `send`, which looks the proxy up again, copies the headers and
    wraps the answer for every request (a quarter of the direct path's CPU,
    py-spy); its connection failures are aiohttp's, which s3_errors.py
    classifies as it does the SDK's: transient. The address is the one the
    client's endpoint rule set gives for the bucket, resolved once. The signature is made by
    s3_sigv4.py, a tenth of the cost of botocore's signer (awscrt's) per
    request, and held to it by the tests.

What it leaves to botocore
    Every answer but a success. A 3xx or 4xx (a redirect, a clock skew, a
    refused signature, a missing bucket) is sent again by the SDK, which knows
    them all; when the SDK then succeeds where this did not, the destination
    stops using this path and says so in its log. A 5xx or a 429 is the
    service's trouble and is retried like any other. Used only with an
    `endpoint_url` (AWS itself is reached through the SDK: there the uplink,
    not the CPU, bounds small files) and a checksum header the service
    checks (with checksum "none" the body's SHA-256 is the only check, which
    the SDK computes).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from .s3_sigv4 import UNSIGNED_PAYLOAD, SigV4, host_header

OPERATION = "PutObject"


class Declined(Exception):
    """The service did not accept the request as this path sent it."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"HTTP {status} {code}".strip())
        self.status = status
        self.code = code


class DirectPut:
    """PutObject of one destination's bucket, signed and sent directly."""

    def __init__(
        self, client: Any, session: Any, proxy: str | None, endpoint_url: str, signing_name: str, region: str,
        user_agent: str,
    ) -> None:
        from botocore.serialize import create_serializer  # type: ignore[import-untyped]  # botocore ships no type hints

        self._model = client.meta.service_model.operation_model(OPERATION)
        # without the SDK's parameter validation: the parameters are this
        # destination's own, the same few for every file
        self._serializer = create_serializer(self._model.metadata["protocol"], include_validation=False)
        self._session = session  # aiohttp's, shared with the client's other requests
        self._proxy = proxy  # the one the SDK's HTTP session takes for this address
        # as that session looks them up for each request
        self._proxy_headers = client._endpoint.http_session._proxy_config.proxy_headers_for(endpoint_url)
        self._credentials = client._request_signer._credentials
        self._endpoint_url = endpoint_url.rstrip("/")
        self._path = urlsplit(self._endpoint_url).path  # the bucket's, when addressed by path
        self._host = host_header(endpoint_url)
        self._https = endpoint_url.startswith("https:")
        self._signer = SigV4(region, signing_name)
        self._user_agent = user_agent
        # answer headers by their member names, as the SDK's parser names them
        self._answer = {
            member.serialization["name"].lower(): name
            for name, member in self._model.output_shape.members.items()
            if member.serialization.get("location") == "header" and member.type_name == "string"
        }

    @classmethod
    async def for_client(cls, client: Any, bucket: str) -> DirectPut | None:
        """The direct path for `client`'s bucket, or None when the client is not
        shaped as this expects or the bucket's endpoint wants more than SigV4."""
        # botocore ships no type hints
        from botocore.handlers import remove_bucket_from_url_paths_from_model  # type: ignore[import-untyped]

        try:
            model = client.meta.service_model.operation_model(OPERATION)
            # what the SDK does to the model on the operation's first call: the
            # rule set's address already holds the bucket
            remove_bucket_from_url_paths_from_model(params={}, model=model, context={})
            endpoint = await client._ruleset_resolver.construct_endpoint(
                model, {"Bucket": bucket, "Key": "k"}, {}
            )
            schemes = endpoint.properties.get("authSchemes") or [{}]
            scheme = schemes[0]
            if scheme.get("name") != "sigv4" or client._request_signer._credentials is None:
                return None
            region = scheme.get("signingRegion") or client.meta.region_name or "us-east-1"
            user_agent = client._user_agent_creator.to_string()  # the header the SDK's requests carry
            http = client._endpoint.http_session
            proxy = http._proxy_config.proxy_url_for(endpoint.url)
            session = await http._get_session(proxy)
            return cls(client, session, proxy, endpoint.url, scheme.get("signingName", "s3"), region, user_agent)
        except (AttributeError, LookupError, TypeError):
            return None

    async def put(self, params: dict[str, Any]) -> dict[str, Any]:
        """The answer's header fields, named as botocore names them. Raises
        Declined on a 3xx/4xx, ClientError on a 5xx or 429 (as the SDK would
        raise it), and aiohttp's errors when the connection fails."""
        request = self._serializer.serialize_to_request(params, self._model)
        if request["query_string"]:  # not with this destination's parameters; the SDK knows how
            raise Declined(0, "QueryString")
        path = request["url_path"]
        headers = {**request["headers"], "User-Agent": self._user_agent, "host": self._host}
        credentials = await self._credentials.get_frozen_credentials()  # refreshed when they expire
        self._signer.sign(credentials, "PUT", self._path + path, headers, self._payload_hash(params))
        headers["Accept-Encoding"] = "identity"  # unsigned, as the SDK's HTTP session adds it
        body = params["Body"]
        whole = body.whole()
        async with self._session.put(
            URL(self._endpoint_url + path, encoded=True),  # the serializer has escaped the key
            headers=headers, data=body if whole is None else whole,
            proxy=self._proxy, proxy_headers=self._proxy_headers,
        ) as response:
            status = response.status
            said = await response.read()
            if status < 300:
                found = response.headers  # case-insensitive
                return {name: found[header] for header, name in self._answer.items() if header in found}
        code, message = _error(said)
        if status >= 500 or status == 429:  # the service's trouble, not the request's
            from botocore.exceptions import ClientError  # type: ignore[import-untyped]  # botocore ships no type hints

            answer = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(answer, OPERATION)  # s3_errors.py classifies it, as any other
        raise Declined(status, code)

    def _payload_hash(self, params: dict[str, Any]) -> str:
        """x-amz-content-sha256: the body's SHA-256 over plain HTTP (the
        checksum setting's own when it is SHA-256), else unsigned, as botocore
        signs a PutObject that carries a checksum header over HTTPS."""
        if self._https:
            return UNSIGNED_PAYLOAD
        if "ChecksumSHA256" in params:
            return base64.b64decode(params["ChecksumSHA256"]).hex()
        return hashlib.sha256(params["Body"].view).hexdigest()


def _error(body: bytes) -> tuple[str, str]:
    """<Code> and <Message> of an S3 error document ("" where missing)."""
    import xml.etree.ElementTree as ET

    with contextlib.suppress(ET.ParseError):
        root = ET.fromstring(body) if body else None
        if root is not None:
            return root.findtext("Code") or "", root.findtext("Message") or ""
    return "", ""
