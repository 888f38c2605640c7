"""`triplicate doctor` against real folders and a real S3 server; `triplicate init`."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.harness import TRIPLICATE, make_setup


def test_doctor_passes_a_good_local_setup(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    done = setup.cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "FAIL" not in out and "0 failed" in out
    for line in ("exists and is readable", "file system: ", "file events: ", "reachable",
                 "a probe object can be written", "the probe object reads back identical",
                 "the probe object can be deleted", "free space"):
        assert line in out, line
    assert not [p for p in setup.destinations["nearline"].iterdir()], "the probe is gone afterwards"


def test_doctor_says_how_to_fix_what_fails(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    setup.destinations["offsite"].rmdir()
    setup.destinations["nearline"].chmod(0o555)
    done = setup.cli("doctor", bound_by_permissions=True)
    assert done.returncode == 1
    out = done.stdout
    offsite = out.split("destination offsite")[1]
    assert "[FAIL]" in offsite and "does not exist" in offsite and "fix: create it or mount the volume" in offsite
    nearline = out.split("destination nearline")[1].split("destination offsite")[0]
    assert "[FAIL]" in nearline and "fix:" in nearline
    assert "2 failed" in out and "Traceback" not in done.stderr


def test_doctor_probes_s3_and_checks_the_clock(tmp_path: Path, seaweed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"doctor-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=seaweed.endpoint_url, region_name=seaweed.region,
                      aws_access_key_id=seaweed.access_key, aws_secret_access_key=seaweed.secret_key)
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("TEST_S3_KEY", seaweed.access_key)
    monkeypatch.setenv("TEST_S3_SECRET", seaweed.secret_key)
    setup = make_setup(tmp_path, destinations={"s3": "\n".join([
        'type = "s3"', f'bucket = "{bucket}"', f'endpoint_url = "{seaweed.endpoint_url}"', f'region = "{seaweed.region}"',
        'access_key_id_env = "TEST_S3_KEY"', 'secret_access_key_env = "TEST_S3_SECRET"',
    ]), "missing": "\n".join([
        'type = "s3"', 'bucket = "no-such-bucket-here"', f'endpoint_url = "{seaweed.endpoint_url}"',
        f'region = "{seaweed.region}"', 'access_key_id_env = "TEST_S3_KEY"', 'secret_access_key_env = "TEST_S3_SECRET"',
    ])})
    done = setup.cli("doctor", "--destination", "s3")
    assert done.returncode == 0, done.stdout
    assert "the probe object reads back identical" in done.stdout and "clock differs from" in done.stdout
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0, "the probe object was deleted"
    bad = setup.cli("doctor", "--destination", "missing")
    assert bad.returncode == 1 and "no-such-bucket-here" in bad.stdout and "fix:" in bad.stdout


def init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRIPLICATE, "init", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "conf/triplicate.toml"
    done = init(tmp_path, "-o", str(out), "--watch-folder", "/srv/offload", "--nearline", "/mnt/nearline",
                "--offsite", "s3://camera-archive/originals", "--s3-region", "eu-west-1", "--http-port", "9400",
                "--webhook-env", "SLACK_URL")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.count("#") > 20, "commented"
    for needed in ('path = "/srv/offload"', 'bucket = "camera-archive"', 'prefix = "originals"',
                   'region = "eu-west-1"', "port = 9400", 'url_env = "SLACK_URL"', "offsite = true"):
        assert needed in text, needed
    check = subprocess.run([TRIPLICATE, "check-config", str(out)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and "/srv/offload does not exist" in check.stderr, "loads; only the folder is missing"

    again = init(tmp_path, "-o", str(out), "--watch-folder", "w", "--nearline", "n")
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_without_answers_says_what_is_needed(tmp_path: Path) -> None:
    done = init(tmp_path, "-o", str(tmp_path / "t.toml"), "--non-interactive")
    assert done.returncode == 2 and "--watch-folder" in done.stderr and "Traceback" not in done.stderr
    done = init(tmp_path, "-o", str(tmp_path / "t.toml"), "--watch-folder", "w", "--offsite", "ftp://x/y")
    assert done.returncode == 2 and "s3://, azure:// or sftp://" in done.stderr
