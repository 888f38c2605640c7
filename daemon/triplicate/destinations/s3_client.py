"""The aioboto3 client of one S3 destination: credentials and SDK settings.

Credentials
    The standard AWS chain (environment, shared config with `profile`, instance
    or container role); `access_key_id_env` / `secret_access_key_env` name the
    environment variables that hold a key pair, for facilities with several
    accounts. Keys never appear in the TOML, in a message or in a log line.
    With `endpoint_url` set, requests use path-style addressing, which every
    S3-compatible store accepts.

botocore's own checksums
    With checksum "md5" or "none", botocore's default CRC is off
    (request_checksum_calculation = "when_required"): Backblaze B2, Wasabi and
    older MinIO reject its x-amz-checksum-crc32 header. Reads are never checked
    by botocore (response_checksum_validation = "when_required", so no
    x-amz-checksum-mode header on GET): every read-back is compared with the
    source's xxh64.

Endpoint resolution
    botocore resolves each request's endpoint through S3's rule set, cached by
    the request's parameters; those include the object's key, which no rule
    reads, so every new object missed the cache and the whole rule set (0.8 ms
    of Python) ran per request: a sixth of a small file's upload in a profile
    (boto/botocore#3528). `cache_endpoints` leaves out of the resolver's
    parameters those that no rule of the installed rule set reads, as
    botocore itself does from late 2026 on.

User-Agent
    Given whole, so botocore sends it as it is. Left to botocore, the header
    is assembled per request from a dozen sanitised components, twice (once
    when the request is made, once before signing): 13 % of a small file's
    PutObject in CPU, measured on 2,000 uploads of 100 KiB.

The SDK is imported here only when a client is made, so importing the
destination registry stays fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError

if TYPE_CHECKING:
    from .s3 import S3Config


def new_client(cfg: S3Config) -> Any:
    """The client, as an async context manager (not yet entered)."""
    import aioboto3  # type: ignore[import-untyped]  # aioboto3 ships no type hints
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]  # nor does aiobotocore

    session = aioboto3.Session(profile_name=cfg.profile, region_name=cfg.region, **keys_from_env(cfg))
    legacy = cfg.checksum in ("md5", "none")  # no x-amz-checksum-* unless an operation requires one
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},  # requests are retried by tenacity, per part
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=cfg.concurrency * cfg.part_concurrency + 4,
        request_checksum_calculation="when_required" if legacy else "when_supported",
        # reads are checked against the source's xxh64, which is stronger than a CRC
        # and needs no x-amz-checksum-mode header on GET
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if cfg.endpoint_url else "auto", **_payload_signing(cfg)},
        user_agent=user_agent(),
    )
    return session.client("s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region, config=config)


def user_agent() -> str:
    """triplicate's name and version first, then the SDK's, as AWS's logs
    and support expect to find them (the session adds botocore's)."""
    import platform

    import aiobotocore  # type: ignore[import-untyped]  # aiobotocore ships no type hints

    from .. import __version__

    return (f"triplicate/{__version__} aiobotocore/{aiobotocore.__version__} Python/{platform.python_version()} "
            f"{platform.system()}/{platform.release()}")


def cache_endpoints(client: Any) -> None:
    """Resolve endpoints without the parameters S3's rule set never reads, so
    that requests for different objects of a bucket share one cached answer.
    Leaves the client as it is where the SDK does not have this shape."""
    resolver = getattr(client, "_ruleset_resolver", None)
    params_of = getattr(resolver, "_get_provider_params", None)
    if resolver is None or params_of is None:
        return
    unread = unread_endpoint_parameters(getattr(client, "_loader", None))
    if not unread:
        return

    async def read_only(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = await params_of(*args, **kwargs)
        for name in unread:
            params.pop(name, None)
        return params

    resolver._get_provider_params = read_only


def unread_endpoint_parameters(loader: Any = None) -> frozenset[str]:
    """Parameters S3's endpoint rule set declares but none of its rules refers
    to (`loader`: the client's, which has the rule set read already)."""
    from botocore.loaders import create_loader  # type: ignore[import-untyped]  # botocore ships no type hints

    ruleset = (loader or create_loader()).load_service_model("s3", "endpoint-rule-set-1")
    read: set[str] = set()
    pending: list[Any] = [ruleset.get("rules", [])]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if isinstance(item.get("ref"), str):
                read.add(item["ref"])
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return frozenset(ruleset.get("parameters", {})) - read


def _payload_signing(cfg: S3Config) -> dict[str, bool]:
    """Off whenever every body goes with a checksum the service checks.

    botocore already leaves the payload out of the signature over HTTPS when a
    checksum header is sent, and hashes it with SHA-256 otherwise: over plain
    HTTP (an on-site MinIO or Ceph, the test servers) that is a second pass
    over every byte, on the event loop, through Python-level reads of the body
    (a fifth of an upload's CPU in a profile). The checksum header is itself
    signed, so the stored bytes are still checked by the service, and the copy
    by triplicate afterwards. With checksum "none" the payload hash is the
    only check a request gets, so it stays."""
    return {} if cfg.checksum == "none" else {"payload_signing_enabled": False}


def keys_from_env(config: S3Config) -> dict[str, str]:
    """The key pair named by access_key_id_env / secret_access_key_env."""
    if not config.access_key_id_env or not config.secret_access_key_env:
        return {}
    names = (config.access_key_id_env, config.secret_access_key_env)
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise PermanentError(
            f"destination {config.name!r}: environment variable {' and '.join(missing)} is not set; "
            "export it in the service's environment (systemd EnvironmentFile, launchd plist)"
        )
    return {"aws_access_key_id": os.environ[names[0]], "aws_secret_access_key": os.environ[names[1]]}
