"""What the S3 destination tells the user when it cannot work: refused
credentials (on servers that really check them), missing keys, a missing
bucket, an unreachable endpoint, an unknown profile. One sentence each, with
the destination's name, and never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers import free_port
from tests.conformance.cases.s3 import auth_server, config, fresh_bucket, key_env
from triplicate.destinations.s3 import S3Config, S3Destination
from triplicate.errors import PermanentError, TransientError

pytestmark = pytest.mark.servers


async def open_error(dest: S3Destination) -> str:
    try:
        with pytest.raises((PermanentError, TransientError)) as info:
            await dest.open()
    finally:
        await dest.close()
    message = str(info.value)
    print(f"\n{type(info.value).__name__}: {message}")
    assert dest.name in message and "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("variant", ["s3-seaweed", "s3-moto"])
@pytest.mark.parametrize("wrong", ["secret", "key id"])
async def test_refused_credentials_name_the_fix_and_never_the_secret(variant, wrong, monkeypatch) -> None:
    server = auth_server(variant)
    secret = "s3cr3t-" + "x" * 33
    monkeypatch.setenv("FACILITY_B_KEY_ID", server.access_key if wrong == "secret" else "AKIAUNKNOWNKEY000000")
    monkeypatch.setenv("FACILITY_B_SECRET", secret)
    dest = S3Destination(config(server, "any-bucket", ("FACILITY_B_KEY_ID", "FACILITY_B_SECRET")))
    message = await open_error(dest)
    assert "credentials refused" in message and "FACILITY_B_KEY_ID / FACILITY_B_SECRET" in message
    assert secret not in message and server.secret_key not in message


async def test_the_right_keys_open_the_authenticating_server(monkeypatch, request) -> None:
    server = auth_server("s3-seaweed")
    bucket = fresh_bucket(server, request)
    dest = S3Destination(config(server, bucket, key_env(server, monkeypatch, "_AUTH")))
    await dest.open()
    await dest.write_bytes("A001/ascmhl/ascmhl_chain.xml", b"<chain/>")
    assert await dest.read_bytes("A001/ascmhl/ascmhl_chain.xml") == b"<chain/>"
    await dest.close()


async def test_an_unset_key_variable_is_named(seaweed, monkeypatch) -> None:
    monkeypatch.delenv("NOT_EXPORTED_KEY_ID", raising=False)
    monkeypatch.setenv("NOT_EXPORTED_SECRET", "s3cr3t-value")
    dest = S3Destination(config(seaweed, "any-bucket", ("NOT_EXPORTED_KEY_ID", "NOT_EXPORTED_SECRET")))
    message = await open_error(dest)
    assert "NOT_EXPORTED_KEY_ID is not set" in message and "s3cr3t-value" not in message


@pytest.mark.parametrize("name", ["seaweed", "moto"])
async def test_a_missing_bucket_says_how_to_fix_it(name, monkeypatch, request) -> None:
    server = request.getfixturevalue(name)
    dest = S3Destination(config(server, "no-such-bucket-here", key_env(server, monkeypatch)))
    message = await open_error(dest)
    assert message == (f"destination 'offsite-s3': bucket 'no-such-bucket-here' does not exist at "
                       f"{server.endpoint_url}; create it or fix `bucket`")


async def test_an_unreachable_endpoint_is_transient(seaweed, monkeypatch) -> None:
    dest = S3Destination(config(seaweed, "any-bucket", key_env(seaweed, monkeypatch),
                                endpoint_url=f"http://127.0.0.1:{free_port()}"))
    message = await open_error(dest)
    assert "cannot reach" in message


async def test_an_unknown_profile_is_named(tmp_path: Path, monkeypatch) -> None:
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[profile other]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    dest = S3Destination(S3Config(name="offsite-s3", type="s3", bucket="any-bucket", profile="facility-b",
                                  endpoint_url="http://127.0.0.1:9"))
    message = await open_error(dest)
    assert "facility-b" in message and "profile" in message
