"""Azure Blob on Azurite: a fresh container per test, reached through a
connection string in an environment variable. Independent reads and the
corruption go through the synchronous SDK, not the destination's code."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from triplicate.destinations.azure import AzureConfig, AzureDestination

from .base import Case, Context

MiB = 1024 * 1024
CONN_ENV = "TRIPLICATE_TEST_AZURE_CONNECTION"
BAD_CONN_ENV = "TRIPLICATE_TEST_AZURE_BAD_CONNECTION"
WRONG_KEY = base64.b64encode(b"not the account key, 64 bytes long, for a refused signature...").decode()


def fresh_container(azurite: Any, request: Any) -> ContainerClient:
    """An empty container, deleted when the test ends (Azurite keeps blobs in memory)."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"t-{uuid.uuid4().hex[:20]}")

    def remove() -> None:
        try:
            container.delete_container()
        except ResourceNotFoundError:
            pass
        service.close()

    request.addfinalizer(remove)
    return container


def config(name: str, container: str, env: str = CONN_ENV, **extra: Any) -> AzureConfig:
    return AzureConfig(name=name, type="azure", connection_string_env=env, container=container, **extra)


def staged_leftovers(container: ContainerClient) -> list[str]:
    """Blobs with uncommitted blocks: what an interrupted upload leaves."""
    found = []
    for item in container.list_blobs(include=["uncommittedblobs"]):
        _, uncommitted = container.get_blob_client(item.name).get_block_list("uncommitted")
        if uncommitted:
            found.append(f"{item.name} ({len(uncommitted)} uncommitted blocks)")
    return found


async def make(ctx: Context) -> Case:
    azurite = ctx.request.getfixturevalue("azurite")
    monkeypatch = ctx.request.getfixturevalue("monkeypatch")
    monkeypatch.setenv(CONN_ENV, azurite.connection_string)
    monkeypatch.setenv(BAD_CONN_ENV, azurite.connection_string.replace(azurite.account_key, WRONG_KEY))
    container = fresh_container(azurite, ctx.request)
    name = container.container_name

    def dest(**changes: Any) -> AzureDestination:
        return AzureDestination(config(**{"name": "offsite-azure", "container": name, "block_size": MiB, **changes}))

    async def read(key: str) -> bytes | None:
        try:
            return container.download_blob(key).readall()
        except ResourceNotFoundError:
            return None

    async def corrupt(key: str) -> None:
        """Flip the first byte, keeping size and metadata: bit rot, as verify() must see it."""
        blob = container.get_blob_client(key)
        props = blob.get_blob_properties()
        data = bytearray(blob.download_blob().readall())
        data[0] ^= 0xFF
        blob.upload_blob(bytes(data), overwrite=True, metadata=props.metadata)

    async def leftovers() -> list[str]:
        return staged_leftovers(container)

    return Case(
        dest=dest(),
        read=read,
        corrupt=corrupt,
        missing_target=lambda: dest(container=f"missing-{uuid.uuid4().hex[:12]}"),
        bad_credentials=lambda: dest(env=BAD_CONN_ENV),
        part_size=MiB,
        leftovers=leftovers,
    )
