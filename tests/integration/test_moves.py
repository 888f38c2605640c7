"""Files renamed or moved inside the watch folder after they were sent: the
destinations get the new names from the copies they hold, nothing is sent
again, the journal records the move, and the ASC MHL histories stay valid.
Also: a copy inside the watch folder is new data, and a rewrite that restores
size and mtime is a new version."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import mhl_tools as t
import xxhash
from azure.storage.blob import BlobServiceClient

from tests.harness import Setup, log_events, make_setup, stop, wait_for, write_file
from tests.integration.test_daemon_cloud import _sftp_read, cloud_destinations

OLD = time.time() - 3600
MB = int(os.environ.get("TRIPLICATE_TEST_MOVE_MB", "12"))  # the clip that moves; 100 for the README figure


def copies(setup: Setup, relpath: str) -> dict[str, tuple[str, int]]:
    """destination -> (state, bytes_sent) of the current version of `relpath`."""
    if not (setup.root / "state" / "journal.db").exists():
        return {}  # the daemon is starting
    db = sqlite3.connect(setup.root / "state" / "journal.db")
    try:
        rows = db.execute(
            "SELECT c.destination, c.state, c.bytes_sent FROM copies c JOIN files f ON f.id = c.file_id "
            "WHERE f.relpath = ? AND f.current = 1", (relpath,),
        ).fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def moved_from(setup: Setup, relpath: str) -> str | None:
    db = sqlite3.connect(setup.root / "state" / "journal.db")
    try:
        row = db.execute(
            "SELECT m.relpath FROM files f JOIN files m ON m.id = f.moved_from WHERE f.relpath = ? AND f.current = 1",
            (relpath,),
        ).fetchone()
    finally:
        db.close()
    return None if row is None else row[0]


def history_verifies(folder: Path) -> None:
    """The reference tool reads the history at a destination and finds every
    file it lists with its recorded hash. (Not `-dh`: a folder that gains a
    file after a generation no longer has that generation's directory hash,
    whether the file was moved there or arrived late.)"""
    t.assert_ok(t.verify(folder))
    t.assert_ok(t.run_tool("ascmhl", "info", folder))


def all_verified(setup: Setup, *relpaths: str) -> bool:
    found = [copies(setup, r) for r in relpaths]
    return all(c and all(state == "verified" for state, _ in c.values()) for c in found)


def test_renamed_and_moved_clips_are_copied_in_place_at_every_destination_type(
    tmp_path: Path, seaweed: Any, azurite: Any, sshd: Any, monkeypatch: Any
) -> None:
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

    big, small = os.urandom(MB * 1024 * 1024 + 3), os.urandom(300_000)
    write_file(setup.watch / "A001/CLIPS/A001C001.mov", big, mtime=OLD)
    write_file(setup.watch / "A001/CLIPS/A001C002.mov", small, mtime=OLD)
    write_file(setup.watch / "A001/notes.txt", b"day 1", mtime=OLD)
    (setup.watch / "B002").mkdir()

    daemon = setup.start()
    try:
        wait_for(lambda: all_verified(setup, "A001/CLIPS/A001C001.mov", "A001/CLIPS/A001C002.mov", "A001/notes.txt"),
                 180, "the first copies")
        sent_before = {d: b for d, (_, b) in copies(setup, "A001/CLIPS/A001C001.mov").items()}
        started = time.monotonic()
        os.rename(setup.watch / "A001/CLIPS/A001C001.mov", setup.watch / "A001/CLIPS/A001C001 hero take.mov")
        os.rename(setup.watch / "A001/CLIPS/A001C002.mov", setup.watch / "B002/A001C002.mov")
        wait_for(lambda: all_verified(setup, "A001/CLIPS/A001C001 hero take.mov", "B002/A001C002.mov"),
                 180, "the moved copies")
        seconds = time.monotonic() - started
        write_file(setup.watch / "A001/notes day 2.txt", b"day 2")  # A001 gets a generation after the move
        wait_for(lambda: all_verified(setup, "A001/notes day 2.txt"), 60, "the later file")
        wait_for(lambda: all(any(b"notes day 2.txt" in m.read_bytes() for m in (root / "A001/ascmhl").glob("*.mhl"))
                             for root in (setup.destinations["nearline"], remote)), 30, "A001's generation after the move")
    finally:
        out = stop(daemon)

    renamed, moved = copies(setup, "A001/CLIPS/A001C001 hero take.mov"), copies(setup, "B002/A001C002.mov")
    print(f"{MB} MiB clip renamed: bytes sent before {sent_before}, for the new name {renamed}, in {seconds:.1f} s; "
          f"clip moved to another offload: {moved}")
    assert all(sent == 0 for _, sent in renamed.values()) and all(sent == 0 for _, sent in moved.values())
    assert all(sent >= len(big) for sent in sent_before.values())
    assert moved_from(setup, "A001/CLIPS/A001C001 hero take.mov") == "A001/CLIPS/A001C001.mov"
    assert moved_from(setup, "B002/A001C002.mov") == "A001/CLIPS/A001C002.mov"
    events = log_events(out)
    assert len([e for e in events if e["event"] == "file_moved"]) == 2
    assert {e["destination"] for e in events if e["event"] == "copy_verified" and e.get("copy_from")} == set(renamed)

    for rel, data in {"A001/CLIPS/A001C001 hero take.mov": big, "A001/CLIPS/A001C001.mov": big,
                      "B002/A001C002.mov": small, "A001/CLIPS/A001C002.mov": small}.items():
        want = xxhash.xxh64_hexdigest(data)
        assert (setup.destinations["nearline"] / rel).read_bytes() == data, rel
        got = s3.get_object(Bucket=bucket, Key=f"camera/{rel}")
        assert xxhash.xxh64_hexdigest(got["Body"].read()) == want and got["Metadata"]["xxh64"] == want, rel
        blob = blobs.get_blob_client(container, rel)
        assert xxhash.xxh64_hexdigest(blob.download_blob().readall()) == want, rel
        assert blob.get_blob_properties().metadata["xxh64"] == want, rel
        assert xxhash.xxh64_hexdigest(_sftp_read(sshd, f"{remote}/{rel}")) == want, rel
    near = setup.destinations["nearline"]
    assert (near / "A001/CLIPS/A001C001.mov").stat().st_ino == (near / "A001/CLIPS/A001C001 hero take.mov").stat().st_ino
    for root in (near, remote):  # folders the reference tool can read
        history_verifies(root / "A001")
        history_verifies(root / "B002")


def test_a_move_while_the_daemon_was_down_and_a_copy_beside_the_original(tmp_path: Path) -> None:
    """The start-up scan finds the old path gone and the new one present; a
    copy made inside the watch folder is new data."""
    setup = make_setup(tmp_path)
    clip, other = os.urandom(2_000_000), os.urandom(2_000_000)
    write_file(setup.watch / "A001/C001.mov", clip, mtime=OLD)
    write_file(setup.watch / "A001/C002.mov", other, mtime=OLD)
    assert setup.run_once().returncode == 0
    (setup.watch / "A001/renamed").mkdir()
    os.rename(setup.watch / "A001/C001.mov", setup.watch / "A001/renamed/C001.mov")  # while nothing watches
    write_file(setup.watch / "A002/C002 copy.mov", other, mtime=OLD)  # the original stays: a copy
    done = setup.run_once()
    assert done.returncode == 0, done.stderr[-3000:]
    assert moved_from(setup, "A001/renamed/C001.mov") == "A001/C001.mov"
    assert {b for _, b in copies(setup, "A001/renamed/C001.mov").values()} == {0}
    assert moved_from(setup, "A002/C002 copy.mov") is None
    assert {b for _, b in copies(setup, "A002/C002 copy.mov").values()} == {len(other)}
    for root in setup.destinations.values():
        assert (root / "A001/renamed/C001.mov").read_bytes() == clip and (root / "A001/C001.mov").read_bytes() == clip
        history_verifies(root / "A001")


def test_a_rewrite_that_restores_size_and_mtime_is_a_new_version(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    path = write_file(setup.watch / "A001/C001.mov", b"take one " * 1000, mtime=OLD)
    keep = write_file(setup.watch / "A001/C002.mov", b"untouched " * 1000, mtime=OLD)
    assert setup.run_once().returncode == 0
    path.write_bytes(b"take two " * 1000)  # same size
    os.utime(path, (OLD, OLD))  # and the old mtime: only the ctime moved
    os.chmod(keep, 0o600)  # ctime moved, bytes did not
    done = setup.run_once()
    assert done.returncode == 0, done.stderr[-3000:]
    events = log_events(done.stderr)
    assert [e["file"] for e in events if e["event"] == "file_rewritten_in_place"] == ["A001/C001.mov"]
    assert [e["file"] for e in events if e["event"] == "file_metadata_changed"] == ["A001/C002.mov"]
    for root in setup.destinations.values():
        assert (root / "A001/C001.mov").read_bytes() == b"take two " * 1000
    assert {b for _, b in copies(setup, "A001/C002.mov").values()} == {len(b"untouched " * 1000)}, "not sent again"
    third = setup.run_once()  # the new ctimes are recorded: nothing is hashed again
    assert not [e for e in log_events(third.stderr) if e["event"] in ("file_rewritten_in_place", "file_metadata_changed")]


def test_a_renamed_offload_folder_is_copied_in_place(tmp_path: Path) -> None:
    """One moved event for the folder, none per file: every file it held is a
    candidate."""
    setup = make_setup(tmp_path, settle=0.3)
    files = {f"DAY1/A001/C{n:03d}.mov": os.urandom(100_000 + n) for n in range(5)}
    for rel, data in files.items():
        write_file(setup.watch / rel, data, mtime=OLD)
    daemon = setup.start()
    try:
        wait_for(lambda: all_verified(setup, *files), 60, "the first copies")
        os.rename(setup.watch / "DAY1", setup.watch / "DAY1 – wrap")
        renamed = [rel.replace("DAY1/", "DAY1 – wrap/", 1) for rel in files]
        wait_for(lambda: all_verified(setup, *renamed), 60, "the renamed offload")
    finally:
        out = stop(daemon)
    assert len([e for e in log_events(out) if e["event"] == "file_moved"]) == len(files)
    for old, new in zip(files, renamed):
        assert moved_from(setup, new) == old
        assert {b for _, b in copies(setup, new).values()} == {0}
        for root in setup.destinations.values():
            assert (root / new).read_bytes() == files[old]
    for root in setup.destinations.values():
        history_verifies(root / "DAY1 – wrap")
        history_verifies(root / "DAY1")
