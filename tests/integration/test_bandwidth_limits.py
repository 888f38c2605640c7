"""Bandwidth limits with the real daemon: local and S3 (multipart) destinations."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.harness import log_events, make_setup, write_file

OLD = time.time() - 3600
MB = 1_000_000


def copy_seconds(stderr: str) -> dict[str, float]:
    return {e["destination"]: e["seconds"] for e in log_events(stderr) if e["event"] == "copy_verified"}


def test_limited_destination_keeps_its_rate_the_other_does_not(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={
        "nearline": 'media = "raid"',
        "slow": 'media = "nas"\noffsite = true\nbandwidth = "32Mbit/s"',  # 4 MB/s
    })
    write_file(setup.watch / "B001/clip.mov", os.urandom(8 * MB), mtime=OLD)
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    seconds = copy_seconds(done.stderr)
    print(f"8 MB: unlimited {seconds['nearline']:.2f} s, at 4 MB/s {seconds['slow']:.2f} s")
    assert 0.9 <= seconds["slow"] <= 3.5  # 2 s at 4 MB/s, less up to 1 s of saved-up burst
    assert seconds["nearline"] < 1.0


def test_schedule_outside_its_window_is_unlimited(tmp_path: Path) -> None:
    now = time.localtime()
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(now.tm_wday + 3) % 7]  # not today, not near
    setup = make_setup(tmp_path, destinations={"nearline": "\n".join([
        'media = "raid"',
        f'bandwidth = [{{ days = "{day}", limit = "1MB/s" }}, {{ limit = "unlimited" }}]',
    ])})
    write_file(setup.watch / "B002/clip.mov", os.urandom(8 * MB), mtime=OLD)
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    assert copy_seconds(done.stderr)["nearline"] < 2.0, "8 s at 1 MB/s would mean the rule applied"


def test_bad_bandwidth_is_one_sentence(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"\nbandwidth = "fast"'})
    done = setup.cli("check-config")
    assert done.returncode == 2 and "bandwidth" in done.stderr and "200Mbit/s" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.servers
def test_s3_multipart_upload_is_limited(tmp_path: Path, seaweed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"bw-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=seaweed.endpoint_url, region_name=seaweed.region,
                 aws_access_key_id=seaweed.access_key, aws_secret_access_key=seaweed.secret_key).create_bucket(Bucket=bucket)
    monkeypatch.setenv("TEST_S3_KEY", seaweed.access_key)
    monkeypatch.setenv("TEST_S3_SECRET", seaweed.secret_key)
    setup = make_setup(tmp_path, destinations={"s3": "\n".join([
        'type = "s3"', f'bucket = "{bucket}"', f'endpoint_url = "{seaweed.endpoint_url}"', f'region = "{seaweed.region}"',
        'access_key_id_env = "TEST_S3_KEY"', 'secret_access_key_env = "TEST_S3_SECRET"', 'part_size = "5MiB"',
        'bandwidth = "8MB/s"',
    ])})
    write_file(setup.watch / "B003/clip.mov", os.urandom(24 * MB), mtime=OLD)  # 5 parts
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    seconds = copy_seconds(done.stderr)["s3"]
    print(f"24 MB multipart to S3 at 8 MB/s: {seconds:.2f} s")
    # 3 s at 8 MB/s, less the one second of burst the idle limiter saved up; the
    # hashing pass before the upload is not limited (nothing is sent then)
    assert 1.8 <= seconds <= 4.5
