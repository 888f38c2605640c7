"""Corruption: a bit flipped in a stored copy after it was verified is found
by `triplicate verify` and repaired by sending the file again (S3 and SFTP);
a bit flipped on the wire is caught before the copy is called verified."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import cloud
from tests.reliability.faultproxy import FaultProxy, Faults
from tests.reliability.figures import FIGURES

pytestmark = pytest.mark.servers

MiB = 1024 * 1024


def by_path(setup: Any) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in setup.status()["files"]}


def rot_s3(offsite: cloud.Offsite, rel: str, at: int) -> None:
    """The provider's copy changes under the same key, metadata untouched."""
    key = cloud.PREFIX + rel
    head = offsite.s3.head_object(Bucket=offsite.bucket, Key=key)
    body = bytearray(offsite.s3.get_object(Bucket=offsite.bucket, Key=key)["Body"].read())
    body[at] ^= 0x01
    offsite.s3.put_object(Bucket=offsite.bucket, Key=key, Body=bytes(body), Metadata=head["Metadata"])


def rot_file(path: Path, at: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_rot_after_verification_is_found_and_repaired(tmp_path: Path, seaweed: Any, sshd: Any,
                                                      monkeypatch: Any) -> None:
    rng = random.Random(4)
    content = {"D001/CLIPS/D001C001.mov": rng.randbytes(7 * MiB), "D001/CLIPS/D001C002.mov": rng.randbytes(300_000),
               "D001/META/take.xml": rng.randbytes(2_000)}
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    for name, value in offsite.env().items():
        monkeypatch.setenv(name, value)
    setup = cloud.cloud_setup(tmp_path, cloud.destinations(offsite))
    cloud.write_sources(setup, content)
    first = setup.run_once()
    assert first.returncode == 0, first.stderr[-3000:]

    rot_s3(offsite, "D001/CLIPS/D001C001.mov", 6 * MiB + 17)  # in the second part
    rot_file(offsite.remote / "D001/CLIPS/D001C002.mov", 123_456)
    sample = setup.cli("verify", "--sample", "2", "--destination", "nearline")
    found = setup.cli("verify")
    states = by_path(setup)
    repaired = setup.run_once()
    again = setup.cli("verify")
    held = {"s3": offsite.s3_objects(), "sftp": cloud.tree(offsite.remote)}
    expected = {rel: cloud.xxh(data) for rel, data in content.items()}
    lost = sum(len(cloud.missing(h, expected)) for h in held.values())
    FIGURES.scenario("corruption-at-rest", f"2 copies rotted after verification (S3, SFTP): verify said "
                     f"{_said(found.stdout)}; repaired by one run; then {_said(again.stdout)}; {lost} lost",
                     faults=2, lost=lost)

    assert sample.returncode == 0 and "nearline: 2 copies match, 0 bad" in sample.stdout, sample.stdout
    assert found.returncode == 1
    assert "s3: 2 copies match, 1 bad" in found.stdout and "sftp: 2 copies match, 1 bad" in found.stdout
    assert "nearline: 3 copies match, 0 bad" in found.stdout
    assert states["D001/CLIPS/D001C001.mov"]["destinations"]["s3"] == "pending"
    assert states["D001/CLIPS/D001C002.mov"]["destinations"]["sftp"] == "pending"
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert again.returncode == 0 and again.stdout.count("0 bad") == 3, again.stdout
    assert lost == 0
    assert offsite.s3_metadata("D001/CLIPS/D001C001.mov")["xxh64"] == expected["D001/CLIPS/D001C001.mov"]


def _said(stdout: str) -> str:
    return "; ".join(line.split(" (")[0] for line in stdout.splitlines())


@pytest.mark.parametrize("checksum", ["none", "crc32c"])
def test_bit_flipped_on_the_wire_is_caught_before_verified(checksum: str, tmp_path: Path, seaweed: Any, sshd: Any,
                                                          monkeypatch: Any) -> None:
    """With crc32c the service refuses the part; with "none" (stores that take
    no checksum headers) only triplicate's own check of the stored object can
    see it: the MD5 ETag disagrees, the object is read back, removed, sent again."""
    rng = random.Random(5)
    content = {"E001/CLIPS/E001C001.mov": rng.randbytes(6 * MiB + 5), "E001/CLIPS/E001C002.mov": rng.randbytes(900_000)}
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    for name, value in offsite.env().items():
        monkeypatch.setenv(name, value)
    proxy = FaultProxy(seaweed.port, Faults(flip=1.0, http_bodies=True, offsets=(0, 512 * 1024), max_faults=2),
                       seed=7).start()
    try:
        dests = {"s3": cloud.destinations(offsite, s3_endpoint=proxy.url, s3_options=f'checksum = "{checksum}"')["s3"]}
        setup = cloud.cloud_setup(tmp_path, dests)
        cloud.write_sources(setup, content)
        done = setup.run_once()
    finally:
        proxy.close()
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    verified = {e["file"]: e["xxh64"] for e in events if e["event"] == "copy_verified"}
    caught = [e for e in events if e["event"] == "s3_bad_copy_removed" or "BadDigest" in e.get("error", "")]
    held = offsite.s3_objects()
    expected = {rel: cloud.xxh(data) for rel, data in content.items()}
    lost = len(cloud.missing(held, expected))
    FIGURES.scenario(f"corruption-in-transit-{checksum}", f"{len(proxy.injected)} bits flipped in request bodies, "
                     f"{len(caught)} caught ({_kinds(caught)}), {len(verified)} copies verified, all right: "
                     f"{verified == expected}; {lost} lost", faults=len(proxy.injected), lost=lost)

    assert done.returncode == 0, done.stderr[-3000:]
    assert len(proxy.injected) == 2  # fewer than a run's 3 attempts per copy
    assert verified == expected, "only the source's bytes are ever called verified"
    assert lost == 0 and cloud.torn(held, expected) == []
    assert caught, "the flips were caught: by the service (crc32c) or by triplicate's own check (none)"
    if checksum == "none":
        assert all(e["event"] == "s3_bad_copy_removed" for e in caught)


def _kinds(events: list[dict[str, Any]]) -> str:
    names = sorted({e["event"] for e in events})
    return ", ".join(names) or "none"
