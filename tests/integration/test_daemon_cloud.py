"""One offload routed to nearline + S3 + Azure + SFTP by the real daemon;
every copy checked afterwards with the services' own SDKs, not our code."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import paramiko
import xxhash
from azure.storage.blob import BlobServiceClient

from tests.harness import Setup, make_setup, write_file

OLD = time.time() - 3600


def cloud_destinations(seaweed: Any, azurite: Any, sshd: Any, bucket: str, container: str, remote: str) -> dict[str, str]:
    return {
        "nearline": 'media = "raid"',
        "s3": "\n".join([
            'type = "s3"', f'bucket = "{bucket}"', 'prefix = "camera/"', f'endpoint_url = "{seaweed.endpoint_url}"',
            f'region = "{seaweed.region}"', 'access_key_id_env = "TEST_S3_KEY"', 'secret_access_key_env = "TEST_S3_SECRET"',
            'part_size = "5MiB"', 'media = "cloud"', "offsite = true",
        ]),
        "azure": "\n".join([
            'type = "azure"', 'connection_string_env = "TEST_AZURE_CONNECTION"', f'container = "{container}"',
            'block_size = "4MiB"', 'media = "cloud"', "offsite = true",
        ]),
        "sftp": "\n".join([
            'type = "sftp"', f'host = "{sshd.host}"', f"port = {sshd.port}", f'username = "{sshd.username}"',
            f'key_file = "{sshd.client_key}"', f'known_hosts = "{sshd.known_hosts}"', f'path = "{remote}"',
            'media = "disk"', "offsite = true",
        ]),
    }


@dataclass
class CloudWorld:
    """Fresh places at every service, the credentials in the environment, and a
    daemon setup routing one watch folder to nearline + S3 + Azure + SFTP."""

    bucket: str
    container: str
    remote: Path
    s3: Any  # boto3 client, to check copies with the service's own SDK
    blobs: BlobServiceClient
    setup: Setup


def cloud_world(tmp_path: Path, seaweed: Any, azurite: Any, sshd: Any, monkeypatch: Any) -> CloudWorld:
    bucket, container = f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=seaweed.endpoint_url, region_name=seaweed.region,
                      aws_access_key_id=seaweed.access_key, aws_secret_access_key=seaweed.secret_key)
    s3.create_bucket(Bucket=bucket)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container(container)
    remote = Path(sshd.root) / f"facility-{uuid.uuid4().hex[:8]}"
    remote.mkdir(parents=True)
    monkeypatch.setenv("TEST_S3_KEY", seaweed.access_key)
    monkeypatch.setenv("TEST_S3_SECRET", seaweed.secret_key)
    monkeypatch.setenv("TEST_AZURE_CONNECTION", azurite.connection_string)
    setup = make_setup(tmp_path, destinations=cloud_destinations(seaweed, azurite, sshd, bucket, container, str(remote)))
    return CloudWorld(bucket, container, remote, s3, blobs, setup)


def test_one_offload_to_every_destination_type(tmp_path: Path, seaweed: Any, azurite: Any, sshd: Any, monkeypatch: Any) -> None:
    world = cloud_world(tmp_path, seaweed, azurite, sshd, monkeypatch)
    bucket, container, remote, s3, blobs, setup = (world.bucket, world.container, world.remote, world.s3,
                                                   world.blobs, world.setup)

    content = {
        "A010_CARD/CLIPS/A010C001.mov": os.urandom(12 * 1024 * 1024 + 3),  # several parts/blocks
        "A010_CARD/CLIPS/Señor café 🎬.mov": os.urandom(2000),
        "A010_CARD/empty.bin": b"",
    }
    for rel, data in content.items():
        write_file(setup.watch / rel, data, mtime=OLD)

    done = setup.run_once(timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    for rel, data in content.items():
        want = xxhash.xxh64_hexdigest(data)
        assert (setup.destinations["nearline"] / rel).read_bytes() == data
        got = s3.get_object(Bucket=bucket, Key=f"camera/{rel}")
        assert xxhash.xxh64_hexdigest(got["Body"].read()) == want, f"s3 copy of {rel}"
        assert got["Metadata"].get("xxh64") == want
        blob = blobs.get_blob_client(container, rel)
        assert xxhash.xxh64_hexdigest(blob.download_blob().readall()) == want, f"azure copy of {rel}"
        assert blob.get_blob_properties().metadata.get("xxh64") == want
        assert xxhash.xxh64_hexdigest(_sftp_read(sshd, f"{remote}/{rel}")) == want, f"sftp copy of {rel}"

    # every destination also holds the offload's ASC MHL history
    assert s3.list_objects_v2(Bucket=bucket, Prefix="camera/A010_CARD/ascmhl/")["KeyCount"] == 2
    assert len(list(blobs.get_container_client(container).list_blobs(name_starts_with="A010_CARD/ascmhl/"))) == 2
    assert len(list((remote / "A010_CARD/ascmhl").iterdir())) == 2

    [card] = setup.status()["offloads"]
    assert (card["copies"], card["offsite_copies"], card["rule_321_met"]) == (5, 3, True)


def _sftp_read(sshd: Any, path: str) -> bytes:
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(sshd.host, port=sshd.port, username=sshd.username, key_filename=str(sshd.client_key),
                   look_for_keys=False, allow_agent=False)
    try:
        with client.open_sftp() as sftp, sftp.open(path, "rb") as fh:
            return fh.read()
    finally:
        client.close()
