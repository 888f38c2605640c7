"""A 300 MB upload to Azurite killed with SIGKILL mid-way, then resumed from
its staged blocks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import xxhash

from tests.conformance.cases.azure import fresh_container, staged_leftovers
from tests.conformance.crash import kill_and_resume, random_file

pytestmark = pytest.mark.servers

MiB = 1024 * 1024
SIZE = 300 * 1000 * 1000
BLOCK = 8 * MiB
BLOCKS_IN_FLIGHT = 4
ENV = "TRIPLICATE_TEST_AZURE_CRASH_CONNECTION"


def test_killed_upload_resumes_from_staged_blocks(azurite, request, tmp_path: Path) -> None:
    container = fresh_container(azurite, request)
    source = tmp_path / "A001C003_230101_R1AB.mov"
    expected = random_file(source, SIZE)
    destination = {
        "name": "offsite-azure", "type": "azure", "connection_string_env": ENV,
        "container": container.container_name, "prefix": "crash", "block_size": "8MiB",
        "block_concurrency": BLOCKS_IN_FLIGHT,
    }
    began = time.monotonic()
    result = kill_and_resume(tmp_path, destination, source, "A001/A001C003_230101_R1AB.mov",
                             kill_after=int(SIZE * 0.4), env={ENV: azurite.connection_string})
    seconds = time.monotonic() - began
    print(f"\nazure crash/resume: {SIZE} bytes, killed after {result.progress_at_kill} reported sent, "
          f"second run sent {result.second_run_sent}, re-sent {result.resent} bytes "
          f"(limit {BLOCKS_IN_FLIGHT * BLOCK}), {seconds:.1f} s in all")

    assert result.xxh64 == expected
    assert result.resent <= BLOCKS_IN_FLIGHT * BLOCK
    assert result.second_run_sent < SIZE - result.progress_at_kill + BLOCKS_IN_FLIGHT * BLOCK
    blob = container.get_blob_client("crash/A001/A001C003_230101_R1AB.mov")
    stored = xxhash.xxh64()
    for chunk in blob.download_blob().chunks():
        stored.update(chunk)
    assert stored.hexdigest() == expected, "stored bytes differ from the source"
    assert blob.get_blob_properties().metadata["xxh64"] == expected
    assert staged_leftovers(container) == []
    assert not (tmp_path / "resume.json").exists(), "resume state left behind after success"
