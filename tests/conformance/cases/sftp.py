"""SFTP against OpenSSH's sshd on 127.0.0.1 (the `sshd` session fixture).

The server's files live on this machine (`sshd.root`), so the independent
reads, the corruption and the leftover check go to the file system directly,
around SFTP altogether.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncssh

from triplicate.destinations.sftp import SftpConfig, SftpDestination

from .base import Case, Context, FolderProbes

CHUNK = 1024 * 1024  # small, so "3parts+7" crosses chunk boundaries without a big upload


def config(sshd, folder: str, **overrides: object) -> SftpConfig:  # type: ignore[no-untyped-def]
    """A destination config for the fixture's server, writing under `folder`."""
    values: dict[str, object] = dict(
        name="facility-b", type="sftp", host=sshd.host, port=sshd.port, username=sshd.username,
        key_file=sshd.client_key, known_hosts=sshd.known_hosts, path=folder, chunk_size=CHUNK,
        offsite=True, media="nas",
    )
    values.update(overrides)
    return SftpConfig.model_validate(values)


def fresh_folder(sshd) -> Path:  # type: ignore[no-untyped-def]
    folder = Path(sshd.root) / f"t-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    return folder


def unauthorized_key(tmp: Path, passphrase: str | None = None) -> Path:
    """A fresh key pair the server has never seen."""
    path = tmp / "stranger_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(
        path, passphrase=passphrase, rounds=16, ignore_few_rounds=True)  # few bcrypt rounds: fast tests
    return path


# "sftp": every copy is checked by xxhsum on the server (the test sshd runs
# commands), even the small ones; "sftp-readback": every copy is read back.
VERIFY = {
    "sftp": dict(verify="remote-hash", remote_hash_min_size=0),
    "sftp-readback": dict(verify="read-back"),
}


async def make(ctx: Context) -> Case:
    sshd = ctx.request.getfixturevalue("sshd")
    root = fresh_folder(sshd)

    probes = FolderProbes(root)

    return Case(
        dest=SftpDestination(config(sshd, str(root), **VERIFY[ctx.variant])),
        read=probes.read,
        corrupt=probes.corrupt,
        missing_target=lambda: SftpDestination(config(sshd, str(root / "never-created"))),
        bad_credentials=lambda: SftpDestination(config(sshd, str(root), key_file=unauthorized_key(ctx.tmp_path))),
        part_size=CHUNK,
        leftovers=probes.leftovers,
    )
