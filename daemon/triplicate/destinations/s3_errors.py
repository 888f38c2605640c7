"""SDK and transport errors of S3 requests as TransientError / PermanentError,
each one sentence that names the destination and the fix (rclone's
`shouldRetry`, done once for every request).

Stores that reject the newer checksum headers (Backblaze B2, Wasabi and older
MinIO answer 400 InvalidArgument "Unsupported header 'x-amz-checksum-crc32'")
get a PermanentError telling the user to set checksum = "none". "Not there"
comes out as `Missing`, which the callers that expect it handle.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError, TransientError, TriplicateError

if TYPE_CHECKING:
    from .s3 import S3Config


class Missing(PermanentError):
    """The object or upload asked for is not there (handled by the caller)."""


_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
               "InvalidToken", "TokenRefreshRequired", "InvalidClientTokenId", "AccountProblem",
               "AllAccessDisabled", "Forbidden", "403"}
_MISSING_CODES = {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
                    "TooManyRequests", "RequestTimeout", "RequestTimeoutException", "InternalError",
                    "ServiceUnavailable", "BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody",
                    "OperationAborted", "RequestLimitExceeded", "BandwidthLimitExceeded",
                    "PriorRequestNotComplete",
                    "InvalidPart"}  # InvalidPart: a part changed at the server; the next attempt lists them again


@dataclass(frozen=True)
class Where:
    """What an error message says about the destination."""

    name: str
    bucket: str
    endpoint: str
    credentials_hint: str

    @classmethod
    def of(cls, config: S3Config) -> Where:
        return cls(config.name, config.bucket, _endpoint_text(config), _credentials_hint(config))


def _endpoint_text(config: S3Config) -> str:
    return config.endpoint_url or f"AWS S3 ({config.region or 'default region'})"


def _credentials_hint(config: S3Config) -> str:
    if config.access_key_id_env:
        return f"the env vars {config.access_key_id_env} / {config.secret_access_key_env}"
    if config.profile:
        return f"profile {config.profile!r} in ~/.aws/credentials"
    return "AWS_PROFILE / the env vars AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the instance role)"


def sdk_errors() -> tuple[type[BaseException], ...]:
    """What the SDK and its transport raise; anything else is a bug, not the network."""
    import aiohttp
    # botocore ships no type hints
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    return (ClientError, BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


def classify(exc: BaseException, where: Where, what: str) -> TriplicateError:
    """An SDK or transport error as TransientError / PermanentError (one sentence)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        return classify_answer(exc.response, where, what)
    if isinstance(exc, BotoCoreError):
        return _classify_sdk(exc, where, what)
    # aiohttp / asyncio errors that escape botocore's wrapping while a body streams
    return TransientError(
        f"destination {where.name!r}: connection to {where.endpoint} failed while {what}: "
        f"{_one_line(exc) or type(exc).__name__}"
    )


def classify_answer(response: dict[str, Any], where: Where, what: str) -> TriplicateError:
    """The service's error answer (ClientError.response) as one of our errors.
    The order of the checks matters: a 403 RequestTimeTooSkewed, say, comes out
    as refused credentials."""
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    message = _one_line(error.get("Message", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    said = f"{code}: {message}" if message else code
    if _rejects_checksum_headers(code, status, message):
        return _checksum_headers_rejected(said, where, what)
    if code == "NoSuchBucket":
        return no_such_bucket(where)
    if code in _MISSING_CODES:
        return Missing(f"destination {where.name!r}: not found while {what} ({said})")
    if code in _AUTH_CODES or status in (401, 403):
        return _credentials_refused(code if code and not code.isdigit() else f"HTTP {status}", where, what)
    if code == "InvalidObjectState":
        return PermanentError(
            f"destination {where.name!r}: the object is in an archive storage class while {what}; "
            f"restore it first ({said})"
        )
    if code == "RequestTimeTooSkewed":
        return PermanentError(
            f"destination {where.name!r}: {where.endpoint} says this computer's clock is wrong; set the time (NTP)"
        )
    if code in _TRANSIENT_CODES or status == 429 or status >= 500 or status == 0:
        return TransientError(f"destination {where.name!r}: {where.endpoint} answered {said or status} while {what}")
    return PermanentError(
        f"destination {where.name!r}: {where.endpoint} refused {what} ({said or status}); "
        "check the destination's settings"
    )


def _checksum_headers_rejected(said: str, where: Where, what: str) -> PermanentError:
    return PermanentError(
        f"destination {where.name!r}: {where.endpoint} rejects S3 checksum headers while {what} "
        f'({said}); set checksum = "none" for this destination (Backblaze B2, Wasabi and older '
        "MinIO need it)"
    )


def _credentials_refused(said: str, where: Where, what: str) -> PermanentError:
    return PermanentError(
        f"destination {where.name!r}: credentials refused by {where.endpoint} for bucket "
        f"{where.bucket!r} while {what} ({said}); check {where.credentials_hint} and the bucket's policy"
    )


def no_such_bucket(where: Where) -> PermanentError:
    return PermanentError(
        f"destination {where.name!r}: bucket {where.bucket!r} does not exist at {where.endpoint}; "
        "create it or fix `bucket`"
    )


def _classify_sdk(exc: BaseException, where: Where, what: str) -> TriplicateError:
    from botocore.exceptions import (
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PermanentError(
            f"destination {where.name!r}: no usable AWS credentials for {where.endpoint}; set {where.credentials_hint}"
        )
    if isinstance(exc, ProfileNotFound):
        return PermanentError(f"destination {where.name!r}: {_one_line(exc)}; add it to ~/.aws/config or fix `profile`")
    if isinstance(exc, NoRegionError):
        return PermanentError(f"destination {where.name!r}: no region for {where.endpoint}; set `region`")
    if isinstance(exc, ParamValidationError):
        return PermanentError(f"destination {where.name!r}: invalid request while {what}: {_one_line(exc)}")
    return TransientError(f"destination {where.name!r}: cannot reach {where.endpoint} while {what}: {_one_line(exc)}")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def _rejects_checksum_headers(code: str, status: int, message: str) -> bool:
    """B2/Wasabi/old MinIO answer 400 InvalidArgument "Unsupported header
    'x-amz-checksum-crc32' ..." (or NotImplemented) to the newer headers."""
    text = message.lower()
    return status in (400, 501) and code in ("InvalidArgument", "NotImplemented", "InvalidRequest", "BadRequest") and (
        "checksum" in text or "x-amz-sdk" in text
    )
