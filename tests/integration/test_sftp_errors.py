"""SFTP: refusals that need a person say what to do, and never show a secret."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import asyncssh
import pytest

from servers import free_port
from triplicate.config import load_config
from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.sftp import SftpConfig, SftpDestination
from triplicate.errors import ConfigError, PermanentError, TransientError
from triplicate.hashing import xxh64_bytes

from tests.conformance.cases.sftp import config, fresh_folder, unauthorized_key

pytestmark = pytest.mark.servers

PASSPHRASE = "correct horse battery staple 7f3a"
ENV = "TRIPLICATE_TEST_SFTP_PASSPHRASE"
FAST = {"rounds": 16, "ignore_few_rounds": True}  # bcrypt rounds: keys that open in ms, for tests only


async def refusal(dest: SftpDestination) -> str:
    """The one-line PermanentError message that open() raises."""
    try:
        with pytest.raises(PermanentError) as info:
            await dest.open()
    finally:
        await dest.close()
    message = str(info.value)
    assert dest.name in message and len(message.splitlines()) == 1
    return message


async def test_unknown_host_key_is_refused_with_the_fix(sshd, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {other[0]} {other[1]}\n")
    message = await refusal(SftpDestination(config(sshd, str(fresh_folder(sshd)), known_hosts=known_hosts)))
    assert "host key" in message and f"ssh-keyscan -p {sshd.port} {sshd.host} >> {known_hosts}" in message


async def test_missing_known_hosts_is_refused_with_the_fix(sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "no_known_hosts"
    message = await refusal(SftpDestination(config(sshd, str(fresh_folder(sshd)), known_hosts=known_hosts)))
    assert str(known_hosts) in message and "ssh-keyscan" in message


async def test_refused_key_names_server_key_and_user(sshd, tmp_path: Path) -> None:
    key = unauthorized_key(tmp_path)
    message = await refusal(SftpDestination(config(sshd, str(fresh_folder(sshd)), key_file=key)))
    assert f"{sshd.host}:{sshd.port}" in message and str(key) in message and sshd.username in message
    assert "authorized_keys" in message


async def test_passphrase_never_appears_in_messages_or_logs(
    sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, PASSPHRASE)
    folder = str(fresh_folder(sshd))
    stranger = unauthorized_key(tmp_path, passphrase=PASSPHRASE)  # decrypts, then the server refuses it
    refused = await refusal(SftpDestination(config(sshd, folder, key_file=stranger, key_passphrase_env=ENV)))
    assert "refused" in refused
    wrong = tmp_path / "wrong_passphrase_ed25519"
    asyncssh.read_private_key(sshd.client_key).write_private_key(wrong, passphrase=PASSPHRASE + "-other", **FAST)
    undecryptable = await refusal(SftpDestination(config(sshd, folder, key_file=wrong, key_passphrase_env=ENV)))
    assert ENV in undecryptable and str(wrong) in undecryptable
    out = capsys.readouterr()
    for text in (refused, undecryptable, out.out, out.err):
        assert PASSPHRASE not in text


async def test_encrypted_key_with_passphrase_from_env(sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "client_encrypted_ed25519"
    asyncssh.read_private_key(sshd.client_key).write_private_key(key, passphrase=PASSPHRASE, **FAST)
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder), key_file=key, key_passphrase_env=ENV))
    monkeypatch.delenv(ENV, raising=False)
    message = await refusal(dest)
    assert ENV in message and "not set" in message
    monkeypatch.setenv(ENV, PASSPHRASE)
    dest = SftpDestination(config(sshd, str(folder), key_file=key, key_passphrase_env=ENV))
    try:
        await dest.open()
        src_path = tmp_path / "C001.mov"
        src_path.write_bytes(b"frames" * 1000)
        st = src_path.stat()
        receipt = await dest.put(SourceFile(src_path, "A001/C001.mov", st.st_size, st.st_mtime_ns), NoResume())
        assert receipt.xxh64 == xxh64_bytes(b"frames" * 1000)
        assert (folder / "A001" / "C001.mov").read_bytes() == b"frames" * 1000
    finally:
        await dest.close()


async def test_encrypted_key_without_passphrase_env_says_so(sshd, tmp_path: Path) -> None:
    key = tmp_path / "client_encrypted_ed25519"
    asyncssh.read_private_key(sshd.client_key).write_private_key(key, passphrase=PASSPHRASE, **FAST)
    message = await refusal(SftpDestination(config(sshd, str(fresh_folder(sshd)), key_file=key)))
    assert "key_passphrase_env" in message


async def test_missing_key_file(sshd, tmp_path: Path) -> None:
    message = await refusal(SftpDestination(config(sshd, str(fresh_folder(sshd)), key_file=tmp_path / "nope")))
    assert "does not exist" in message


async def test_a_file_as_base_path_is_refused(sshd) -> None:
    folder = fresh_folder(sshd)
    (folder / "plain").write_bytes(b"")
    message = await refusal(SftpDestination(config(sshd, str(folder / "plain"))))
    assert "not a folder" in message


async def test_nothing_listening_is_transient_and_quick(sshd) -> None:
    dest = SftpDestination(config(sshd, str(fresh_folder(sshd)), port=free_port()))
    began = time.monotonic()
    try:
        with pytest.raises(TransientError) as info:
            await dest.open()
    finally:
        await dest.close()
    assert "retrying" in str(info.value) and time.monotonic() - began < 15


def test_key_passphrase_env_holding_a_passphrase_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "watch").mkdir()
    toml = f"""
[daemon]
journal = "state/journal.db"

[[watch]]
path = "watch"
destinations = ["facility-b"]

[[destination]]
name = "facility-b"
type = "sftp"
host = "sftp.example.com"
username = "triplicate"
key_file = "keys/id_ed25519"
known_hosts = "keys/known_hosts"
key_passphrase_env = "{PASSPHRASE}"
path = "/backup/camera"
"""
    path = tmp_path / "t.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = "\n".join(info.value.problems)
    assert "key_passphrase_env" in text and PASSPHRASE not in text


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg = SftpConfig.model_validate(
        {"name": "b", "type": "sftp", "host": "h", "username": "u", "key_file": "keys/id",
         "known_hosts": "keys/known_hosts", "path": "/backup/"},
        context={"base_dir": tmp_path},
    )
    assert cfg.key_file == tmp_path / "keys" / "id" and cfg.known_hosts == tmp_path / "keys" / "known_hosts"
    assert cfg.port == 22 and cfg.connections == 1 and cfg.path == "/backup" and cfg.fsync
    default = SftpConfig.model_validate({"name": "b", "type": "sftp", "host": "h", "username": "u",
                                         "key_file": "/k", "path": "p", "chunk_size": "4MiB"})
    assert default.known_hosts == Path(os.path.expanduser("~/.ssh/known_hosts")) and default.chunk_size == 4 << 20


async def test_a_server_that_never_answers_is_a_transient_timeout(sshd) -> None:
    with socket.socket() as silent:  # the kernel accepts the TCP connection; nobody ever speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        dest = SftpDestination(config(sshd, str(fresh_folder(sshd)), port=port, connect_timeout=0.3))
        try:
            with pytest.raises(TransientError, match="timed out"):
                await dest.open()
        finally:
            await dest.close()
