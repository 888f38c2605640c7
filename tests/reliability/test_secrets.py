"""Security: the secret values of a full run (S3 keys, an Azure connection
string and its key, an SSH key passphrase, the HTTP bearer token) appear in no
output at all: the daemon's log at debug level, status (text and JSON), the
HTTP API and metrics, report, verify, doctor, check-config, and the errors of a
run where every credential is wrong. The HTTP endpoint binds 127.0.0.1 unless
told otherwise. A config that holds a secret (or points at a private key) and
is readable by other users stops the daemon, or warns when allowed."""

from __future__ import annotations

import base64
import os
import secrets
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from azure.storage.blob import BlobServiceClient
from servers import free_port

from tests.harness import Setup, make_setup, write_file
from tests.reliability import cloud
from tests.reliability.figures import FIGURES
from tests.reliability.procs import DaemonProcess, all_verified, wait_until

OLD = 1_700_000_000.0
AZ_ENV, PASS_ENV, TOKEN_ENV = "REL_AZURE_CONNECTION", "REL_SSH_PASSPHRASE", "REL_HTTP_TOKEN"


def name_shaped_secret() -> str:
    """40 letters and digits, both cases: a key that would pass as a variable name."""
    return "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(secrets.token_hex(20)))


def encrypted_key(sshd: Any, folder: Path, passphrase: str) -> Path:
    """A client key only a passphrase opens, authorized at the server."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = folder / "client_encrypted"
    key.write_private_key(path, passphrase=passphrase, rounds=16, ignore_few_rounds=True)
    path.chmod(0o600)
    with open(sshd.authorized_keys, "a") as fh:
        fh.write(key.export_public_key().decode())
    return path


def config_lines(sshd: Any, offsite: cloud.Offsite, container: str, key: Path) -> dict[str, str]:
    dests = cloud.destinations(offsite)
    dests["sftp"] = dests["sftp"].replace(f'key_file = "{sshd.client_key}"',
                                          f'key_file = "{key}"\nkey_passphrase_env = "{PASS_ENV}"')
    dests["azure"] = "\n".join(['type = "azure"', f'connection_string_env = "{AZ_ENV}"', f'container = "{container}"',
                                'media = "cloud"', "offsite = true"])
    return dests


def outputs_of_a_full_run(setup: Setup, port: int, token: str) -> dict[str, str]:
    journal = setup.root / "state/journal.db"
    daemon = DaemonProcess(setup)
    seen: dict[str, str] = {}
    try:
        wait_until(lambda: all_verified(journal, 2, 4), 90, "every copy verified", daemon)
        wait_until(lambda: _listening(port), 10, "the HTTP endpoint", daemon)
        seen["http bind address"] = _listening(port)
        for path in ("/api/status", "/metrics", "/healthz", "/readyz"):
            seen[f"GET {path}"] = _get(port, path, token)
        seen["GET /api/status without token"] = _get(port, "/api/status", None)
        for args in (("status",), ("status", "--json"), ("report", "S001", "--format", "json"), ("verify",),
                     ("check-config",), ("doctor",)):
            done = setup.cli(*args)
            seen[" ".join(args)] = done.stdout + done.stderr
    finally:
        seen["daemon log (debug)"] = daemon.stop()
    return seen


def test_no_secret_in_any_output(tmp_path: Path, seaweed: Any, azurite: Any, sshd: Any, monkeypatch: Any) -> None:
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    container = f"rel-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    values = {  # SeaweedFS takes any key pair: these are only here to be looked for
        cloud.S3_KEY_ENV: "AKIA" + secrets.token_hex(8).upper(),
        cloud.S3_SECRET_ENV: name_shaped_secret(),  # the hardest to tell from a variable's name
        AZ_ENV: azurite.connection_string,
        PASS_ENV: secrets.token_urlsafe(18),
        TOKEN_ENV: name_shaped_secret(),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    key = encrypted_key(sshd, tmp_path, values[PASS_ENV])
    port = free_port()
    setup = cloud.cloud_setup(tmp_path / "run", config_lines(sshd, offsite, container, key),
                              extra_daemon='log_level = "debug"')
    setup.config.write_text(setup.config.read_text() + f'[http]\nport = {port}\ntoken_env = "{TOKEN_ENV}"\n')
    setup.config.chmod(0o600)
    cloud.write_sources(setup, {"S001/CLIPS/S001C001.mov": os.urandom(6 * 1024 * 1024), "S001/take.xml": b"<t/>"})
    seen = outputs_of_a_full_run(setup, port, values[TOKEN_ENV])
    seen.update(outputs_with_every_credential_wrong(setup, monkeypatch, values, seaweed.endpoint_url))

    secret_values = {**values, "azure account key": azurite.account_key}
    leaks = {(what, name) for what, text in seen.items() for name, value in secret_values.items() if value in text}
    FIGURES.scenario("secrets", f"{len(secret_values)} secret values looked for in {len(seen)} outputs "
                     f"({sum(map(len, seen.values()))} characters): {len(leaks)} found; HTTP bound to "
                     f"{seen['http bind address']}")

    assert leaks == set(), f"secrets in: {sorted(leaks)}"
    assert seen["http bind address"] == "127.0.0.1"
    assert "401" in seen["GET /api/status without token"] or "nauthorized" in seen["GET /api/status without token"]
    assert "verified" in seen["GET /api/status"]


def outputs_with_every_credential_wrong(setup: Setup, monkeypatch: Any, values: dict[str, str],
                                        endpoint: str) -> dict[str, str]:
    """Errors are where secrets leak: a wrong passphrase, a refused Azure key,
    an unreachable S3 endpoint, and keys pasted into the config by mistake."""
    wrong = {
        PASS_ENV: secrets.token_urlsafe(18),
        AZ_ENV: values[AZ_ENV].replace(values[AZ_ENV].split("AccountKey=")[1].split(";")[0],
                                       base64.b64encode(os.urandom(64)).decode()),
    }
    for name, value in wrong.items():
        monkeypatch.setenv(name, value)
    values.update({f"wrong {k}": v for k, v in wrong.items()})
    write_file(setup.watch / "S002/clip.mov", os.urandom(1000), mtime=OLD)
    text = setup.config.read_text()
    unreachable = text.replace(endpoint, "http://127.0.0.1:9")
    setup.config.write_text(unreachable.replace("[daemon.retry]", "[daemon.retry]\nonce_attempts = 1"))
    failing = setup.run_once(timeout=120)
    retry = setup.cli("verify")
    pasted = text.replace(f'secret_access_key_env = "{cloud.S3_SECRET_ENV}"',
                          f'secret_access_key_env = "{values[cloud.S3_SECRET_ENV]}"')
    setup.config.write_text(pasted)
    check = setup.cli("check-config")
    setup.config.write_text(text.replace(f'token_env = "{TOKEN_ENV}"', f'token_env = "{values[TOKEN_ENV]}"'))
    token = setup.cli("check-config")
    setup.config.write_text(text)
    assert failing.returncode == 1 and check.returncode == 2 and token.returncode == 2
    return {"run --once with wrong credentials": failing.stdout + failing.stderr,
            "verify with wrong credentials": retry.stdout + retry.stderr,
            "check-config with a pasted key": check.stdout + check.stderr,
            "check-config with a pasted token": token.stdout + token.stderr}


def _listening(port: int) -> str:
    """The address a LISTEN socket on `port` is bound to ("" if none)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    return ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
                return address
    return ""


def _get(port: int, path: str, token: str | None) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


# ---- a config that shows a secret to other users -----------------------------------------------

SLACK = "https://hooks.slack.com/services/T0RELIAB1/B0RELIAB2/" + "Zx9" * 8


@pytest.mark.parametrize("holder", ["webhook url", "sftp key file"])
def test_readable_secret_stops_the_daemon_unless_allowed(holder: str, tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    key = tmp_path / "id_ed25519"
    if holder == "webhook url":
        setup.config.write_text(setup.config.read_text() + f'[[notify]]\nurl = "{SLACK}"\n')
        exposed, fix = setup.config, lambda: setup.config.chmod(0o600)
    else:
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(key)
        key.chmod(0o644)
        setup.config.write_text(setup.config.read_text() + "\n".join([
            "[[destination]]", 'name = "facility"', 'type = "sftp"', 'host = "127.0.0.1"', 'username = "x"',
            f'key_file = "{key}"', 'path = "/srv/copies"', ""]))
        exposed, fix = key, lambda: key.chmod(0o600)
    setup.config.chmod(0o644)

    refused = setup.cli("check-config")
    started = setup.run_once(timeout=60)
    fix()
    fixed = setup.cli("check-config")
    (setup.config if holder == "webhook url" else key).chmod(0o644)
    setup.config.write_text(setup.config.read_text().replace("[daemon]", "[daemon]\nallow_readable_secrets = true", 1))
    allowed = setup.cli("check-config")
    FIGURES.scenario(f"readable-secret-{holder.replace(' ', '-')}", f"refused (exit {refused.returncode}): "
                     f"{refused.stderr.strip()[:140]}...; chmod 600: exit {fixed.returncode}; allowed: exit "
                     f"{allowed.returncode} with a warning")

    for done in (refused, started):
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert str(exposed) in line and "readable by other users" in line and "allow_readable_secrets" in line
        assert "Zx9Zx9" not in line, "the secret itself is never shown"
    assert fixed.returncode == 0, fixed.stderr
    assert allowed.returncode == 0 and "secret_readable_by_others" in allowed.stdout + allowed.stderr
    assert "Zx9Zx9" not in allowed.stdout + allowed.stderr
