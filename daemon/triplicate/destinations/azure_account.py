"""Reaching an Azure storage account: the credentials (a connection string, an
account key, a SAS token, or azure-identity), all read from environment
variables the TOML names, and the service's errors in the scheduler's
classes. Secrets never appear in a message: errors are cut before any URL
query, where a SAS token would be."""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import PermanentError, TransientError

if TYPE_CHECKING:  # the SDK takes ~0.4 s to import: only when a destination connects
    from azure.storage.blob.aio import BlobServiceClient

    from .azure import AzureConfig

MAX_PUT_BLOB = 5000 * 1024 * 1024
_MD5_MISMATCH = ("Md5Mismatch", "InvalidMd5", "Crc64Mismatch")


class BlobMissing(PermanentError):
    """The blob (not the container) does not exist."""


class AzureAccount:
    """The account a destination reaches: the service client built from the
    credentials the config names, and what the service's failures mean (one
    sentence, transient or permanent, naming the variable to check)."""

    def __init__(self, config: "AzureConfig") -> None:
        self.config = config
        self.name = config.name
        self.account = account_from_url(config.account_url) if config.account_url else "?"
        self._credential: Any = None  # an azure-identity credential to close, if one is used

    def service(self) -> "BlobServiceClient":
        from azure.storage.blob.aio import BlobServiceClient

        options: dict[str, Any] = {
            "retry_total": 0,  # one retry layer: tenacity around each request (AzureDestination._call)
            # bytes handed to upload_blob always go in one Put Blob (our
            # transactional MD5 covers the whole body); big files never get there
            "max_single_put_size": MAX_PUT_BLOB,
            "connection_timeout": 20,
            "read_timeout": 120,
        }
        cfg = self.config
        if cfg.connection_string_env:
            try:
                conn = env_value(self.name, cfg.connection_string_env)
                return BlobServiceClient.from_connection_string(conn, **options)
            except ValueError:
                raise PermanentError(
                    f"destination {self.name!r}: the connection string in env var {cfg.connection_string_env} "
                    "is malformed; copy it again from the portal (Access keys)"
                ) from None
        assert cfg.account_url is not None
        return BlobServiceClient(cfg.account_url, credential=self._account_credential(), **options)

    def _account_credential(self) -> Any:
        from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

        cfg = self.config
        if cfg.account_key_env:
            return AzureNamedKeyCredential(self.account, env_value(self.name, cfg.account_key_env))
        if cfg.sas_token_env:
            return AzureSasCredential(env_value(self.name, cfg.sas_token_env).lstrip("?"))
        try:
            # optional package; when absent, it looks like an untyped part of the azure namespace
            from azure.identity.aio import DefaultAzureCredential  # type: ignore[import-untyped]
        except ImportError:
            raise PermanentError(
                f"destination {self.name!r}: no credentials for {cfg.account_url}; set account_key_env or "
                "sas_token_env, or install azure-identity to use a managed identity or `az login`"
            ) from None
        self._credential = DefaultAzureCredential()
        return self._credential

    def secret_source(self) -> str:
        cfg = self.config
        if cfg.sas_token_env:
            return f"the SAS token in the env var {cfg.sas_token_env} (it needs read, write, delete and list)"
        if cfg.connection_string_env or cfg.account_key_env:
            return f"the env var {cfg.connection_string_env or cfg.account_key_env}"
        return "the identity azure-identity found (AZURE_* env vars, managed identity, az login) and its role"

    async def close(self) -> None:
        credential, self._credential = self._credential, None
        if credential is not None:
            await credential.close()

    def error(self, exc: Exception, what: str) -> Exception | None:
        """The scheduler's class for an SDK failure (None: not an SDK error)."""
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            # set on the exception by the storage SDK's error handling; azure-core does not declare it
            error_code = exc.error_code  # type: ignore[attr-defined]
            code = getattr(error_code, "value", error_code) or ""  # an enum member, a string, or None
            return self._http_error(exc.status_code, str(code), str(exc.message or ""), what)
        if isinstance(exc, ClientAuthenticationError):  # a key that is not base64, or no identity for a token
            return PermanentError(
                f"destination {self.name!r}: the credentials for account {self.account!r} cannot be used "
                f"(not a valid key, or no identity found); check {self.secret_source()}"
            )
        if isinstance(exc, (AzureError, asyncio.TimeoutError, OSError)) or type(exc).__module__.startswith("aiohttp"):
            return TransientError(
                f"destination {self.name!r}: cannot reach account {self.account!r} while {what} ({brief(exc)})"
            )
        return None

    def _http_error(self, status: int, code: str, message: str, what: str) -> Exception:
        where = f"destination {self.name!r}"
        if status in (408, 429) or status >= 500:
            return TransientError(f"{where}: Azure answered {status} {code} while {what}; retrying later")
        if status == 403 or code in ("AuthenticationFailed", "AuthorizationFailure", "InvalidAuthenticationInfo"):
            return PermanentError(
                f"{where}: credentials refused by account {self.account!r} ({code or status}); "
                f"check {self.secret_source()}"
            )
        if code == "ContainerNotFound":
            return PermanentError(
                f"{where}: container {self.config.container!r} does not exist in account {self.account!r}; "
                "create it or fix `container`"
            )
        if code == "BlobNotFound" or (status == 404 and not code):
            return BlobMissing(f"{where}: blob missing while {what}")
        if status == 400 and (code in _MD5_MISMATCH or (code == "InvalidOperation" and "md5" in message.lower())):
            # Azure says Md5Mismatch; Azurite InvalidOperation "Provided contentMD5 doesn't match"
            return TransientError(f"{where}: the data arrived damaged (checksum mismatch) while {what}; sending it again")
        if code == "InvalidBlockList":  # staged blocks vanished before the commit: the next put stages them again
            return TransientError(f"{where}: staged blocks were discarded by Azure while {what}; sending them again")
        if code == "BlobArchived":
            return PermanentError(f"{where}: the blob is in the Archive tier while {what}; rehydrate it first")
        if code == "ConditionNotMet":  # verify's etag: the blob was replaced during the read
            return TransientError(f"{where}: the blob changed while {what}; trying again")
        return PermanentError(f"{where}: Azure refused {what} with {status} {code}; check the destination's settings")


def env_value(destination: str, name: str) -> str:
    value = os.environ.get(name, "")
    if not value.strip():
        raise PermanentError(
            f"destination {destination!r}: environment variable {name} is not set; set it in the service's environment"
        )
    return value.strip()


def account_from_url(url: str) -> str:
    """The account name as the SDK reads it: the first host label, or the
    first path segment for an IP or localhost endpoint (Azurite)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if re.fullmatch(r"[\d.]+|localhost|\[.*\]", host) or host.count(".") == 0:
        return parts.path.strip("/").split("/")[0] or host
    return host.split(".")[0]


def brief(exc: BaseException) -> str:
    """Class and first line of an error, without any URL query (a SAS token)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = re.sub(r"\?\S*", "", text)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
