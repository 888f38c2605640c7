"""Nearline + S3 (SeaweedFS) + SFTP (sshd) for the real daemon, and the
independent view of what each destination holds.

Off-site traffic can go through a FaultProxy: the S3 endpoint becomes the
proxy's URL, the SFTP port the proxy's port (with a known_hosts entry for it).
The independent reads never go through the proxy or triplicate's code: boto3
for the bucket, the file system for nearline and for the sshd's folder (the
server runs on this machine).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import xxhash
from botocore.config import Config

from tests.harness import Setup, make_setup

OLD = 1_700_000_000.0  # an mtime long past: files are ready at once
S3_KEY_ENV, S3_SECRET_ENV = "RELIABILITY_S3_KEY", "RELIABILITY_S3_SECRET"
PREFIX = "camera/"
TEMP_MARK = ".triplicate-"


def xxh(data: bytes) -> str:
    return xxhash.xxh64_hexdigest(data)


def s3_client(seaweed: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=seaweed.endpoint_url, region_name=seaweed.region,
        aws_access_key_id=seaweed.access_key, aws_secret_access_key=seaweed.secret_key,
        config=Config(retries={"max_attempts": 3}, s3={"addressing_style": "path"}),
    )


@dataclass
class Offsite:
    """Where one test's off-site copies live."""

    seaweed: Any
    sshd: Any
    bucket: str
    remote: Path  # the SFTP folder, on this machine's disk
    s3: Any = field(repr=False, default=None)

    @classmethod
    def fresh(cls, seaweed: Any, sshd: Any) -> Offsite:
        s3 = s3_client(seaweed)
        bucket = f"rel-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=bucket)
        remote = Path(sshd.root) / f"rel-{uuid.uuid4().hex[:12]}"
        remote.mkdir()
        return cls(seaweed, sshd, bucket, remote, s3)

    def env(self) -> dict[str, str]:
        return {S3_KEY_ENV: self.seaweed.access_key, S3_SECRET_ENV: self.seaweed.secret_key}

    # ---- what the destinations hold -------------------------------------------

    def s3_objects(self) -> dict[str, bytes]:
        """Every object under the prefix, by key relative to it."""
        found: dict[str, bytes] = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=PREFIX)
        for page in pages:
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(PREFIX):]] = body
        return found

    def s3_metadata(self, rel: str) -> dict[str, str]:
        return self.s3.head_object(Bucket=self.bucket, Key=PREFIX + rel)["Metadata"]

    def open_uploads(self) -> list[str]:
        answer = self.s3.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in answer.get("Uploads", [])]


def destinations(offsite: Offsite, s3_endpoint: str | None = None, sftp_port: int | None = None,
                 known_hosts: Path | None = None, s3_options: str = "", sftp_options: str = "",
                 nearline_options: str = "", part_concurrency: int = 2) -> dict[str, str]:
    """TOML of nearline (local), s3 and sftp: small parts and chunks so a few
    MB cross several of them."""
    sshd = offsite.sshd
    return {
        "nearline": 'media = "raid"\n' + nearline_options,
        "s3": "\n".join([
            'type = "s3"', f'bucket = "{offsite.bucket}"', f'prefix = "{PREFIX}"',
            f'endpoint_url = "{s3_endpoint or offsite.seaweed.endpoint_url}"', f'region = "{offsite.seaweed.region}"',
            f'access_key_id_env = "{S3_KEY_ENV}"', f'secret_access_key_env = "{S3_SECRET_ENV}"',
            'part_size = "5MiB"', f"part_concurrency = {part_concurrency}", 'media = "cloud"', "offsite = true",
            s3_options,
        ]),
        "sftp": "\n".join([
            'type = "sftp"', f'host = "{sshd.host}"', f"port = {sftp_port or sshd.port}",
            f'username = "{sshd.username}"', f'key_file = "{sshd.client_key}"',
            f'known_hosts = "{known_hosts or sshd.known_hosts}"', f'path = "{offsite.remote}"',
            'chunk_size = "256KiB"', 'media = "nas"', "offsite = true", sftp_options,
        ]),
    }


def known_hosts_for(sshd: Any, port: int, folder: Path) -> Path:
    """A known_hosts file naming the server's key at another port (a proxy's)."""
    path = folder / f"known_hosts_{port}"
    path.write_text(f"[{sshd.host}]:{port} {sshd.host_public_key}\n")
    return path


def cloud_setup(tmp_path: Path, dests: dict[str, str], settle: float = 0.3, extra_daemon: str = "") -> Setup:
    return make_setup(tmp_path, destinations=dests, settle=settle, extra_daemon=extra_daemon)


def write_sources(setup: Setup, content: dict[str, bytes]) -> None:
    for rel, data in content.items():
        path = setup.watch / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (OLD, OLD))


def media_files(found: dict[str, bytes]) -> dict[str, bytes]:
    """What a destination holds under final names: the MHL history and the
    chain-of-custody report apart, temporary names apart."""
    return {
        rel: data for rel, data in found.items()
        if "ascmhl" not in rel.split("/") and not rel.endswith("triplicate-report.html")
        and TEMP_MARK not in rel.rsplit("/", 1)[-1]
    }


def temp_names(found: dict[str, bytes]) -> list[str]:
    return sorted(rel for rel in found if TEMP_MARK in rel.rsplit("/", 1)[-1])


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def torn(found: dict[str, bytes], expected: dict[str, str]) -> list[str]:
    """Files under a final name that are not exactly a source file's bytes."""
    return sorted(f"{rel} ({len(data)} bytes, xxh64 {xxh(data)})" for rel, data in media_files(found).items()
                  if expected.get(rel) != xxh(data))


def missing(found: dict[str, bytes], expected: dict[str, str]) -> list[str]:
    held = media_files(found)
    return sorted(rel for rel, digest in expected.items() if rel not in held or xxh(held[rel]) != digest)
