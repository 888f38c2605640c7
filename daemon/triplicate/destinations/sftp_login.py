"""Logging in to an SFTP server: the private key, decrypted with a passphrase
from the environment; the host key, always checked against known_hosts; the
SSH connection and its SFTP session; and asyncssh's errors as one sentence in
the scheduler's classes (transient or permanent), naming what to fix."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError, TransientError, TriplicateError
from .sftp_session import Session, asyncssh_module

if TYPE_CHECKING:
    import structlog

    from .sftp import SftpConfig

KEEPALIVE_INTERVAL = 15.0  # with 3 unanswered keepalives, a silent link is declared dead after ~45 s
# AES-GCM first: OpenSSL does it in one call per packet with AES instructions,
# where asyncssh's chacha20-poly1305 builds two ciphers per packet in Python (a
# 512 MiB put took 1.9 s of client CPU against 3.0-3.7 s). The rest is
# asyncssh's own order, for servers without GCM. No compression: media does not
# shrink and zlib would cost more CPU than the link saves.
ENCRYPTION_ALGS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                   "aes256-ctr", "aes192-ctr", "aes128-ctr")


class Login:
    """How one destination reaches its server; ~/.ssh/config and an ssh-agent
    are not consulted, so the TOML is the whole story."""

    def __init__(self, config: "SftpConfig", log: "structlog.typing.FilteringBoundLogger") -> None:
        self.config = config
        self.where = f"{config.host}:{config.port}"
        self.log = log
        self._key: Any = None  # the loaded private key (asyncssh.SSHKey), loaded once

    async def connect(self) -> Session:
        ssh = asyncssh_module()
        key = await self._client_key()
        self._check_known_hosts()
        began = time.monotonic()
        try:
            conn = await ssh.connect(
                self.config.host, self.config.port, username=self.config.username,
                client_keys=[key], known_hosts=str(self.config.known_hosts),
                config=[], agent_path=None, gss_kex=False, gss_auth=False, preferred_auth="publickey",
                connect_timeout=self.config.connect_timeout,
                encryption_algs=list(ENCRYPTION_ALGS), compression_algs=["none"],
                keepalive_interval=KEEPALIVE_INTERVAL, keepalive_count_max=3,
            )
        except Exception as exc:
            raise self.mapped(exc, "connecting to the server") from None
        try:
            sftp = await conn.start_sftp_client()
        except Exception as exc:
            conn.abort()
            raise self.mapped(exc, "starting the SFTP session") from None
        self.log.info("sftp_connected", user=self.config.username, seconds=round(time.monotonic() - began, 3))
        return Session(conn, sftp)

    async def _client_key(self) -> Any:
        if self._key is None:
            self._key = await asyncio.to_thread(self._load_key)
        return self._key

    def _load_key(self) -> Any:
        """The private key, decrypted with the passphrase from the environment.
        Messages name the file and the variable, never the passphrase."""
        ssh = asyncssh_module()
        path, env = self.config.key_file, self.config.key_passphrase_env
        passphrase = None
        if env is not None:
            passphrase = os.environ.get(env)
            if passphrase is None:
                raise PermanentError(
                    f"destination {self.config.name!r}: environment variable {env} (key_passphrase_env) is not set; "
                    f"set it to the passphrase of {path} in the daemon's environment"
                )
        try:
            return ssh.read_private_key(path, passphrase)
        except FileNotFoundError:
            raise PermanentError(
                f"destination {self.config.name!r}: key file {path} does not exist; "
                f"set key_file to the private key that may log in as {self.config.username}"
            ) from None
        except OSError as exc:
            raise PermanentError(
                f"destination {self.config.name!r}: cannot read key file {path} ({exc.strerror}); fix its permissions"
            ) from None
        except (ssh.KeyImportError, ssh.KeyEncryptionError, ValueError):
            if env is None:
                hint = "if it is encrypted, set key_passphrase_env to the name of a variable holding its passphrase"
            else:
                hint = f"check that ${env} holds its passphrase"
            raise PermanentError(f"destination {self.config.name!r}: cannot load the private key {path}; {hint}") from None

    def _check_known_hosts(self) -> None:
        if not self.config.known_hosts.is_file():
            raise PermanentError(
                f"destination {self.config.name!r}: known_hosts file {self.config.known_hosts} does not exist, so the host "
                f"key of {self.where} cannot be checked; add the key with `{self._keyscan()}` and compare its "
                "fingerprint (ssh-keygen -lf) with the one the server's admin gives you"
            )

    def _keyscan(self) -> str:
        return f"ssh-keyscan -p {self.config.port} {self.config.host} >> {self.config.known_hosts}"

    def _known_hosts_name(self) -> str:
        """How known_hosts spells this server: "host", or "[host]:port" off port 22."""
        return self.config.host if self.config.port == 22 else f"[{self.config.host}]:{self.config.port}"

    def mapped(self, exc: BaseException, what: str) -> TriplicateError:
        """One sentence in the scheduler's classes for an asyncssh/OS error."""
        if isinstance(exc, TriplicateError):
            return exc
        ssh = asyncssh_module()
        where = f"destination {self.config.name!r}: {what} on {self.where}"
        if isinstance(exc, ssh.HostKeyNotVerifiable):
            return PermanentError(
                f"destination {self.config.name!r}: the host key of {self.where} does not match {self.config.known_hosts} "
                f"(unknown, or changed), so the server is not trusted; once the server's admin confirms its "
                f"fingerprint, add it with `{self._keyscan()}` (after removing a changed one with "
                f"`ssh-keygen -R '{self._known_hosts_name()}' -f {self.config.known_hosts}`)"
            )
        if isinstance(exc, ssh.PermissionDenied):
            return PermanentError(
                f"destination {self.config.name!r}: the server at {self.where} refused key {self.config.key_file} for user "
                f"{self.config.username}; add the public key to that user's ~/.ssh/authorized_keys on the server"
            )
        if isinstance(exc, (ssh.KeyExchangeFailed, ssh.ProtocolNotSupported, ssh.IllegalUserName)):
            return PermanentError(f"{where} failed: {exc.reason}; check host, port and username")
        if isinstance(exc, ssh.SFTPPermissionDenied):
            return PermanentError(
                f"{where} was denied ({exc.reason}); give {self.config.username} write access to {self.config.path}"
            )
        if isinstance(exc, ssh.SFTPOpUnsupported):
            return PermanentError(f"{where} is not supported by the server ({exc.reason})")
        if isinstance(exc, (ssh.SFTPError, ssh.DisconnectError)):
            return TransientError(f"{where} failed: {exc.reason}; retrying")
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return TransientError(f"{where} timed out; retrying")
        if isinstance(exc, OSError):
            return TransientError(f"{where} failed: {os_reason(exc)}; retrying")
        if isinstance(exc, ssh.ChannelOpenError):
            return TransientError(f"{where} failed: {exc.reason}; retrying")
        return TransientError(f"{where} failed: {type(exc).__name__}: {exc}")


def os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running on that port?)"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or str(exc)
