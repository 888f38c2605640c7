"""Smoke tests: each local server the suite uses is real and answers its protocol."""

from __future__ import annotations

import base64
import os
import socket
import struct
import uuid

import boto3
import paramiko
import pytest
from botocore.config import Config

pytestmark = pytest.mark.servers

MiB = 1024 * 1024


def _s3(server):
    return boto3.client(
        "s3", endpoint_url=server.endpoint_url, region_name=server.region,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=Config(retries={"max_attempts": 1}))


def _bucket() -> str:
    return f"smoke-{uuid.uuid4().hex[:12]}"


def _crc32c(data: bytes) -> int:
    try:
        from awscrt.checksums import crc32c
        return crc32c(data)
    except ImportError:
        pass
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def _b64_crc(value: int) -> str:
    return base64.b64encode(struct.pack(">I", value)).decode()


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_crc32c_helper():
    assert _crc32c(b"123456789") == 0xE3069283


# --- S3 -------------------------------------------------------------------


def _put_get(client) -> str:
    bucket = _bucket()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="A001/C001.mov", Body=b"frames")
    assert client.get_object(Bucket=bucket, Key="A001/C001.mov")["Body"].read() == b"frames"
    return bucket


def test_seaweed_put_get(seaweed):
    _put_get(_s3(seaweed))


def test_seaweed_multipart_crc32c(seaweed):
    client = _s3(seaweed)
    bucket = _bucket()
    client.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB)]
    upload = client.create_multipart_upload(Bucket=bucket, Key="big.bin",
                                            ChecksumAlgorithm="CRC32C")
    done = []
    for number, data in enumerate(parts, 1):
        # the checksum is given, so botocore needs no awscrt to send it
        crc = _b64_crc(_crc32c(data))
        r = client.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"],
                               PartNumber=number, Body=data, ChecksumAlgorithm="CRC32C",
                               ChecksumCRC32C=crc)
        assert r["ChecksumCRC32C"] == crc
        done.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumCRC32C": crc})
    client.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": done})

    composite = _crc32c(b"".join(base64.b64decode(p["ChecksumCRC32C"]) for p in done))
    head = client.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == 10 * MiB
    assert head["ChecksumCRC32C"] == f"{_b64_crc(composite)}-2"
    assert head["ChecksumType"] == "COMPOSITE"
    assert client.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == b"".join(parts)


def test_seaweed_rejects_wrong_checksum(seaweed):
    client = _s3(seaweed)
    bucket = _bucket()
    client.create_bucket(Bucket=bucket)
    with pytest.raises(client.exceptions.ClientError) as err:
        client.put_object(Bucket=bucket, Key="bad", Body=b"frames", ChecksumAlgorithm="CRC32C",
                          ChecksumCRC32C=_b64_crc(_crc32c(b"other")))
    assert err.value.response["Error"]["Code"] == "BadDigest"


def test_seaweed_stop_start_keeps_data(seaweed):
    client = _s3(seaweed)
    bucket = _put_get(client)
    seaweed.stop()
    try:
        assert _refused("127.0.0.1", seaweed.port)
    finally:
        seaweed.start()
    assert client.get_object(Bucket=bucket, Key="A001/C001.mov")["Body"].read() == b"frames"
    client.put_object(Bucket=bucket, Key="after", Body=b"restart")
    assert client.get_object(Bucket=bucket, Key="after")["Body"].read() == b"restart"


def test_moto_put_get_and_restart(moto):
    client = _s3(moto)
    _put_get(client)
    moto.restart()  # same port, fresh memory
    assert client.list_buckets()["Buckets"] == []
    _put_get(client)


# --- Azure Blob -----------------------------------------------------------


def test_azurite_upload_download(azurite):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert service.url.rstrip("/") == azurite.account_url
    container = service.create_container(_bucket())
    data = os.urandom(3 * MiB)
    container.upload_blob("A001/C001.mov", data)
    assert container.download_blob("A001/C001.mov").readall() == data
    assert [b.name for b in container.list_blobs()] == ["A001/C001.mov"]

    # the account key works with the account URL too
    keyed = BlobServiceClient(azurite.account_url, credential={
        "account_name": azurite.account_name, "account_key": azurite.account_key})
    blob = keyed.get_blob_client(container.container_name, "A001/C001.mov")
    assert blob.get_blob_properties().size == len(data)


# --- SFTP -----------------------------------------------------------------


def _sftp(sshd, known_hosts=None) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(known_hosts or sshd.known_hosts))
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(sshd.host, port=sshd.port, username=sshd.username,
                key_filename=str(sshd.client_key), look_for_keys=False, allow_agent=False,
                timeout=10)
    return ssh, ssh.open_sftp()


def test_sshd_sftp_put_get_rename(sshd, tmp_path):
    src = tmp_path / "C001.mov"
    src.write_bytes(os.urandom(MiB + 17))
    ssh, sftp = _sftp(sshd)
    try:
        folder = f"{sshd.root}/{uuid.uuid4().hex}"
        sftp.mkdir(folder)
        sftp.put(str(src), f"{folder}/C001.mov.tmp")
        sftp.rename(f"{folder}/C001.mov.tmp", f"{folder}/C001.mov")
        assert sftp.listdir(folder) == ["C001.mov"]
        sftp.get(f"{folder}/C001.mov", str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == src.read_bytes()
    finally:
        ssh.close()


def test_sshd_host_key_is_checked(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _sftp(sshd, known_hosts=empty)


def test_sshd_stop_start(sshd):
    ssh, sftp = _sftp(sshd)
    path = f"{sshd.root}/{uuid.uuid4().hex}"
    with sftp.open(path, "wb") as f:
        f.write(b"before")
    sshd.stop()
    try:
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            sftp.stat(path)  # live sessions die with the server
        assert _refused(sshd.host, sshd.port)
    finally:
        ssh.close()
        sshd.start()
    ssh, sftp = _sftp(sshd)
    try:
        with sftp.open(path, "rb") as f:
            assert f.read() == b"before"
    finally:
        ssh.close()
