"""The real servers of the test suite (tests/servers.py), reused as they are:
SeaweedFS for S3 (moto is too slow to measure a client against) and OpenSSH's
sshd for SFTP. Started once per bench run, when a case first needs them."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from bench.tools import REPO, S3Target, SftpTarget

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class Servers:
    def __init__(self) -> None:
        self._seaweed: Any = None
        self._sshd: Any = None

    @property
    def seaweed(self) -> Any:
        if self._seaweed is None:
            from tests.servers import SeaweedS3

            self._seaweed = SeaweedS3()
            self._seaweed.start()
        return self._seaweed

    @property
    def sshd(self) -> Any:
        if self._sshd is None:
            from tests.servers import Sshd

            self._sshd = Sshd()
            self._sshd.start()
        return self._sshd

    def new_bucket(self, label: str) -> S3Target:
        import boto3

        weed = self.seaweed
        bucket = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        client = boto3.client("s3", endpoint_url=weed.endpoint_url, region_name=weed.region,
                              aws_access_key_id=weed.access_key, aws_secret_access_key=weed.secret_key)
        client.create_bucket(Bucket=bucket)
        return S3Target(weed.endpoint_url, bucket, weed.access_key, weed.secret_key, weed.region)

    def new_sftp_folder(self, label: str) -> SftpTarget:
        sshd = self.sshd
        remote = Path(sshd.root) / f"{label}-{uuid.uuid4().hex[:8]}"
        remote.mkdir(parents=True)
        return SftpTarget(sshd.host, sshd.port, sshd.username, Path(sshd.client_key), Path(sshd.known_hosts),
                          str(remote))

    def delete_bucket(self, target: S3Target) -> None:
        """Empty and remove a bucket so SeaweedFS's disk use stays bounded."""
        import boto3

        client = boto3.client("s3", endpoint_url=target.endpoint_url, region_name=target.region,
                              aws_access_key_id=target.access_key, aws_secret_access_key=target.secret_key)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                client.delete_objects(Bucket=target.bucket, Delete={"Objects": keys[i:i + 1000]})
        client.delete_bucket(Bucket=target.bucket)

    def close(self) -> None:
        for server in (self._seaweed, self._sshd):
            if server is not None:
                server.close()
