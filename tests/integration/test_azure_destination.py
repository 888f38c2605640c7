"""The Azure destination against Azurite: credentials and their messages,
access tiers and metadata, resume from staged blocks, damaged blocks, and the
checks after a commit. (The shared behaviour is in tests/conformance.)"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import os
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobClient
from pydantic import TypeAdapter, ValidationError

from tests.conformance.cases.azure import WRONG_KEY, fresh_container, staged_leftovers
from triplicate.config import describe_errors
from triplicate.destinations import azure_blocks, registry
from triplicate.destinations.azure import AzureConfig, AzureDestination
from triplicate.destinations.azure_blocks import MAX_BLOCKS, MiB, plan_blocks
from triplicate.destinations.base import NoResume, SourceFile
from triplicate.errors import PermanentError, SourceChanged, VerificationFailed
from triplicate.hashing import xxh64_bytes

pytestmark = pytest.mark.servers

ENV = "TRIPLICATE_TEST_AZ_CONN"
KEY_ENV = "TRIPLICATE_TEST_AZ_KEY"
SAS_ENV = "TRIPLICATE_TEST_AZ_SAS"


@pytest.fixture
def container(azurite, request, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv(ENV, azurite.connection_string)
    return fresh_container(azurite, request)


def make_config(where: Any, **extra: Any) -> AzureConfig:
    settings: dict[str, Any] = {"name": "offsite-azure", "type": "azure", "container": where.container_name,
                                "block_size": "1MiB", **extra}
    if "account_url" not in settings:
        settings.setdefault("connection_string_env", ENV)
    return AzureConfig(**settings)


@contextlib.asynccontextmanager
async def opened(config: AzureConfig) -> AsyncIterator[AzureDestination]:
    dest = AzureDestination(config)
    await dest.open()
    try:
        yield dest
    finally:
        await dest.close()


def source(tmp_path: Path, key: str, data: bytes, known: bool = False) -> SourceFile:
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, key, st.st_size, st.st_mtime_ns, xxh64_bytes(data) if known else None)


async def open_error(config: AzureConfig) -> str:
    dest = AzureDestination(config)
    with pytest.raises(PermanentError) as info:
        await dest.open()
    await dest.close()
    message = str(info.value)
    assert len(message.splitlines()) == 1 and config.name in message
    return message


class MemoryResume:
    """Resume state in memory; `fail_after` saves, every save raises, as if the
    process died right after staging that many blocks."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.state: dict[str, Any] | None = None
        self.fail_after = fail_after
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        if self.fail_after is not None and self.saves >= self.fail_after:
            raise RuntimeError("killed")
        self.saves += 1
        self.state = {**state, "md5": list(state["md5"])}

    def clear(self) -> None:
        self.state = None


# ---- credentials and configuration ------------------------------------------------


async def test_refused_key_names_the_env_var_and_never_the_key(azurite, container, monkeypatch) -> None:
    monkeypatch.setenv("TRIPLICATE_TEST_AZ_BAD", azurite.connection_string.replace(azurite.account_key, WRONG_KEY))
    message = await open_error(make_config(container, connection_string_env="TRIPLICATE_TEST_AZ_BAD"))
    assert "credentials refused" in message and "TRIPLICATE_TEST_AZ_BAD" in message
    assert WRONG_KEY not in message and azurite.account_key not in message

    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    message = await open_error(make_config(container, account_url=azurite.account_url, account_key_env=KEY_ENV))
    assert "credentials refused" in message and KEY_ENV in message and WRONG_KEY not in message


async def test_malformed_key_and_missing_env_var(azurite, container, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "not base64 at all: %%%")
    message = await open_error(make_config(container, account_url=azurite.account_url, account_key_env=KEY_ENV))
    assert KEY_ENV in message and "%%%" not in message
    monkeypatch.delenv(KEY_ENV)
    message = await open_error(make_config(container, account_url=azurite.account_url, account_key_env=KEY_ENV))
    assert f"environment variable {KEY_ENV} is not set" in message


async def test_missing_container(container) -> None:
    message = await open_error(make_config(container, container="no-such-container"))
    assert "container 'no-such-container' does not exist in account 'devstoreaccount1'; create it or fix `container`" in message


async def test_account_url_with_key_or_sas(azurite, container, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEY_ENV, azurite.account_key)
    sas = generate_container_sas(
        azurite.account_name, container.container_name, account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    monkeypatch.setenv(SAS_ENV, sas)
    for i, extra in enumerate([{"account_key_env": KEY_ENV}, {"sas_token_env": SAS_ENV}]):
        data = os.urandom(3 * MiB + i)
        async with opened(make_config(container, account_url=azurite.account_url, **extra)) as dest:
            receipt = await dest.put(source(tmp_path, f"A001/{i}.mov", data), NoResume())
            await dest.verify(f"A001/{i}.mov", receipt.xxh64, len(data))
        assert container.download_blob(f"A001/{i}.mov").readall() == data


async def test_account_url_without_credentials_needs_azure_identity(azurite, container) -> None:
    try:
        import azure.identity  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("azure-identity is installed: DefaultAzureCredential would be used")
    message = await open_error(make_config(container, account_url=azurite.account_url))
    assert "install azure-identity" in message


def test_config_refuses_a_pasted_secret_without_echoing_it(azurite) -> None:
    adapter = TypeAdapter(registry.AnyDestinationConfig)
    for raw in (
        {"name": "az", "type": "azure", "container": "copies", "connection_string_env": azurite.connection_string},
        {"name": "az", "type": "azure", "container": "copies", "account_url": azurite.account_url,
         "account_key_env": azurite.account_key},
        {"name": "az", "type": "azure", "container": "copies", "account_url": azurite.account_url + "?sv=2022&sig=SECRETSIG"},
    ):
        with pytest.raises(ValidationError) as info:
            adapter.validate_python(raw)
        text = " ".join(describe_errors(info.value, raw))
        assert "NAME of an environment variable" in text or "plain endpoint" in text
        assert azurite.account_key not in text and "SECRETSIG" not in text


def test_config_keys() -> None:
    with pytest.raises(ValidationError, match="exactly one of account_url and connection_string_env"):
        AzureConfig(name="az", type="azure", container="copies")
    with pytest.raises(ValidationError, match="container name"):
        AzureConfig(name="az", type="azure", container="Copies_2024", connection_string_env="X")
    config = AzureConfig(name="az", type="azure", container="copies", connection_string_env="X",
                         prefix="/camera/day1", block_size="64MiB")
    assert config.prefix == "camera/day1/" and config.block_size == 64 * MiB
    assert config.block_concurrency == 4 and config.concurrency == 2 and config.offsite and config.access_tier is None


def test_block_size_grows_so_no_blob_needs_more_than_50000_blocks() -> None:
    assert plan_blocks(100 * MiB, 16 * MiB).block_size == 16 * MiB
    tb = 1000**4
    plan = plan_blocks(5 * tb, 16 * MiB)
    assert plan.count <= MAX_BLOCKS and plan.block_size % MiB == 0 and plan.block_size > 16 * MiB
    assert plan.block_size * plan.count >= 5 * tb
    with pytest.raises(PermanentError):
        plan_blocks(MAX_BLOCKS * 4000 * MiB + 1, 16 * MiB)


async def test_grown_blocks_fly_fewer_at_once(container, tmp_path: Path, monkeypatch) -> None:
    """Past 50,000 blocks they grow; the blocks in flight must not grow with
    them: 4 x 1 MiB configured, 2 MiB blocks, so at most two at once."""
    monkeypatch.setattr(azure_blocks, "MAX_BLOCKS", 4)  # stands for 50,000 without a 49 GiB file
    data = os.urandom(6 * MiB + 1)
    sizes: list[int] = []
    flying = peak = 0
    async with opened(make_config(container, block_concurrency=4)) as dest:
        stage = dest._stage

        async def counted(blob: Any, state: Any, index: int, block: bytes, *rest: Any) -> int:
            nonlocal flying, peak
            flying += 1
            peak = max(peak, flying)
            sizes.append(len(block))
            try:
                return await stage(blob, state, index, block, *rest)
            finally:
                flying -= 1

        monkeypatch.setattr(dest, "_stage", counted)
        receipt = await dest.put(source(tmp_path, "A001/grown.mov", data), NoResume())
    assert sizes == [2 * MiB] * 3 + [1] and 1 <= peak <= 2
    assert receipt.xxh64 == xxh64_bytes(data)
    assert container.download_blob("A001/grown.mov").readall() == data


# ---- tiers and metadata -------------------------------------------------------------


@pytest.mark.parametrize("tier", ["Hot", "Cool", "Cold", "Archive"])
async def test_access_tier_and_metadata_land(container, tmp_path: Path, tier: str) -> None:
    # Azurite 3.35 accepts all four tiers on Put Blob and Put Block List and,
    # like Azure, refuses to read an Archive blob (409 BlobArchived).
    async with opened(make_config(container, access_tier=tier)) as dest:
        for key, size in (("A001/small.mov", 1000), ("A001/blocks.mov", 2 * MiB + 5)):
            data = os.urandom(size)
            src = source(tmp_path, key, data)
            receipt = await dest.put(src, NoResume())
            props = container.get_blob_client(key).get_blob_properties()
            assert props.blob_tier == tier
            assert props.metadata == {"xxh64": xxh64_bytes(data), "mtime": str(src.mtime_ns)}
            assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()
            assert receipt.evidence["content_md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
            found = await dest.stat(key)
            assert found is not None and (found.xxh64, found.mtime_ns) == (xxh64_bytes(data), src.mtime_ns)
            again = await dest.put(source(tmp_path, key, data, known=True), NoResume())
            assert again.skipped and again.bytes_sent == 0
            if tier == "Archive":
                with pytest.raises(PermanentError, match="Archive tier"):
                    await dest.verify(key, receipt.xxh64, size)
            else:
                await dest.verify(key, receipt.xxh64, size)
        # ASC MHL files are read again later: never archived
        await dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", b"<chain/>")
        assert await dest.read_bytes("A001/ascmhl/ascmhl_chain.xml") == b"<chain/>"
        expected_tier = "Hot" if tier == "Archive" else tier
        assert container.get_blob_client("A001/ascmhl/ascmhl_chain.xml").get_blob_properties().blob_tier == expected_tier


# ---- resume -----------------------------------------------------------------------


async def _interrupted(dest: AzureDestination, src: SourceFile, blocks: int) -> MemoryResume:
    resume = MemoryResume(fail_after=blocks)
    with pytest.raises(RuntimeError, match="killed"):
        await dest.put(src, resume)
    resume.fail_after = None
    assert resume.state is not None and sum(1 for m in resume.state["md5"] if m) == blocks
    return resume


async def test_resume_reuses_staged_blocks_it_can_trust(container, tmp_path: Path) -> None:
    data = os.urandom(10 * MiB + 123)
    async with opened(make_config(container, block_concurrency=2)) as dest:
        src = source(tmp_path, "A001/resume.mov", data)
        resume = await _interrupted(dest, src, 4)
        assert container.get_blob_client("A001/resume.mov").exists() is False  # nothing visible yet
        receipt = await dest.put(src, resume)
        assert receipt.bytes_sent == len(data) - 4 * MiB
        assert receipt.xxh64 == xxh64_bytes(data) and resume.state is None
    assert container.download_blob("A001/resume.mov").readall() == data
    assert staged_leftovers(container) == []


async def test_resume_resends_blocks_it_cannot_trust(container, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    async with opened(make_config(container, block_concurrency=1)) as dest:
        src = source(tmp_path, "A001/doubt.mov", data)
        resume = await _interrupted(dest, src, 3)
        assert resume.state is not None
        token = resume.state["token"]
        resume.state["md5"][0] = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()  # MD5 not ours
        blob = container.get_blob_client("A001/doubt.mov")
        blob.stage_block(f"{token}{1:06d}", b"short")  # same id, wrong size
        receipt = await dest.put(src, resume)
        assert receipt.bytes_sent == len(data) - MiB  # only block 2 was trusted
    assert container.download_blob("A001/doubt.mov").readall() == data


async def test_resume_after_staged_blocks_vanished(container, tmp_path: Path) -> None:
    # Azure drops uncommitted blocks after 7 days and whenever the blob is
    # committed; an empty commit by someone else stands in for both.
    data = os.urandom(5 * MiB + 1)
    async with opened(make_config(container)) as dest:
        src = source(tmp_path, "A001/vanished.mov", data)
        resume = await _interrupted(dest, src, 3)
        container.get_blob_client("A001/vanished.mov").commit_block_list([])
        receipt = await dest.put(src, resume)
        assert receipt.bytes_sent == len(data)
    assert container.download_blob("A001/vanished.mov").readall() == data


async def test_source_changed_during_a_block_upload_commits_nothing(container, tmp_path: Path) -> None:
    data = os.urandom(4 * MiB)
    src = source(tmp_path, "A001/growing.mov", data)

    class Appending(MemoryResume):
        def save(self, state: dict[str, Any]) -> None:
            super().save(state)
            if self.saves == 1:  # the camera app is still writing
                with open(src.path, "ab") as fh:
                    fh.write(b"more frames")

    async with opened(make_config(container, block_concurrency=1)) as dest:
        with pytest.raises(SourceChanged):
            await dest.put(src, Appending())
    assert not container.get_blob_client("A001/growing.mov").exists()


# ---- damage in transit and after the commit --------------------------------------------


async def test_block_damaged_in_transit_is_refused_by_the_service_and_sent_again(
    container, tmp_path: Path, monkeypatch,
) -> None:
    original = BlobClient.stage_block
    calls: list[str] = []

    async def flaky(self: BlobClient, block_id: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        calls.append(block_id)
        if len(calls) == 2:  # the second request loses a bit on the way; its MD5 is the true one
            data = bytes([data[0] ^ 1]) + data[1:]
        return await original(self, block_id, data, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "stage_block", flaky)
    data = os.urandom(3 * MiB)
    async with opened(make_config(container, block_concurrency=1)) as dest:
        receipt = await dest.put(source(tmp_path, "A001/flip.mov", data), NoResume())
    assert len(calls) == 4 and calls[1] == calls[2]  # the damaged block went again
    assert receipt.bytes_sent == len(data)
    assert container.download_blob("A001/flip.mov").readall() == data


async def test_a_commit_that_is_not_what_was_sent_is_removed(container, tmp_path: Path, monkeypatch) -> None:
    original = BlobClient.commit_block_list

    async def lossy(self: BlobClient, block_list: list[Any], *args: Any, **kwargs: Any) -> Any:
        return await original(self, block_list[:-1], *args, **kwargs)

    monkeypatch.setattr(BlobClient, "commit_block_list", lossy)
    data = os.urandom(3 * MiB)
    async with opened(make_config(container)) as dest:
        with pytest.raises(VerificationFailed, match="removed"):
            await dest.put(source(tmp_path, "A001/short.mov", data), NoResume())
    assert not container.get_blob_client("A001/short.mov").exists()
