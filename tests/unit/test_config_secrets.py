"""Which config values hold a secret by themselves (config_secrets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from triplicate.config import load_config
from triplicate.config_secrets import looks_like_secret, url_holds_secret
from triplicate.errors import ConfigError


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abcdefghijklmnopqrstuvwx",
    "https://discord.com/api/webhooks/123456789012345678/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "https://ops.example.com/hooks/9f8e7d6c5b4a39281716aabbccdd",
    "https://user:password@example.com/hook",
    "https://example.com/hook?token=abc",
])
def test_urls_that_carry_a_credential(url: str) -> None:
    assert url_holds_secret(url)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "https://s3.eu-west-1.amazonaws.com", "https://minio.example.com:9000/flaky",
    "https://example.com/ingest/offload-events-2024", "not a url",
])
def test_plain_urls(url: str) -> None:
    assert not url_holds_secret(url)


@pytest.mark.parametrize("name", ["WASABI_SECRET_KEY", "TEST_S3_SECRET", "MyCompany_S3_Key2", "SLACK_WEBHOOK_URL",
                                  "TRIPLICATE_TEST_AZURE_CRASH_CONNECTION"])
def test_variable_names_are_names(name: str) -> None:
    assert not looks_like_secret(name)


@pytest.mark.parametrize("value", ["AKIAABCDEF0123456789", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
                                   "a3f9c0d1e2b4a5968778695a4b3c2d1e",
                                   "95740a10bb86542b2c5664c817bbb85ef190f357"])
def test_keys_are_not_names(value: str) -> None:
    assert looks_like_secret(value)


def test_a_pasted_key_is_refused_without_being_shown(tmp_path: Path) -> None:
    key = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
    path = tmp_path / "t.toml"
    path.write_text(f"""
[[watch]]
path = "watch"
destinations = ["nearline"]

[[destination]]
name = "nearline"
type = "local"
path = "nearline"

[http]
token_env = "{key}"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [problem] = info.value.problems
    assert "[http].token_env takes the NAME of an environment variable" in problem and key not in problem
