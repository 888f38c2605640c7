"""Pure parts of watching and readiness: frame sequences, file system types,
include/exclude defaults, the [[watch]] rules in the config, reading an
upstream history and checking a file against it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import mhl_tools as t  # tests/ is on pythonpath (pyproject)
import pytest
import xxhash
from triplicate import mhl, mounts
from triplicate.config import DEFAULT_EXCLUDE, load_config
from triplicate.errors import ConfigError
from triplicate.sequences import group
from triplicate.upstream import NotReady, Reference, read_history
from triplicate.verify_source import check_file
from triplicate.watch import PathFilter


def test_a_frame_sequence_is_one_line_with_its_gaps() -> None:
    paths = [f"SHOT/A001.{n:07d}.exr" for n in range(1001, 1101) if n != 1050] + ["SHOT/A001.ale", "clip1.mov"]
    grouped = group(paths)
    [seq] = grouped.sequences
    assert seq.pattern == "SHOT/A001.[0001001-0001049,0001051-0001100].exr"
    assert len(seq.frames) == 99
    assert grouped.singles == ["SHOT/A001.ale", "clip1.mov"]
    assert group(["a.mov", "b.mov", "c.mov", "d.mov"]).lines(3) == ["a.mov", "b.mov", "... and 2 more"]
    unpadded = group([f"f{n}.dpx" for n in range(8, 12)]).sequences
    assert [s.pattern for s in unpadded] == [], "8, 9 and 10, 11 differ in width: two runs, each too short"


def test_filesystem_type_from_mountinfo() -> None:
    info = (
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "80 27 0:50 / /mnt/nas rw - nfs4 nas:/export rw,vers=4.2\n"
        "81 80 0:51 / /mnt/nas/local\\040disk rw - ext4 /dev/sdb1 rw\n"
        "82 27 0:52 / /Volumes/share rw,nosuid shared:7 - fuse.sshfs user@host:/ rw\n"
    )
    assert mounts.type_from_mountinfo(info, Path("/mnt/nas/A001")) == "nfs4"
    assert mounts.type_from_mountinfo(info, Path("/mnt/nas/local disk/x")) == "ext4"
    assert mounts.type_from_mountinfo(info, Path("/Volumes/share/in")) == "fuse.sshfs"
    assert mounts.type_from_mountinfo(info, Path("/srv/watch")) == "ext4"
    mac = "//me@nas/media on /Volumes/media (smbfs, nodev, nosuid, mounted by me)\n/dev/disk3s1 on / (apfs, local)"
    assert mounts.type_from_mount_output(mac, Path("/Volumes/media/A001")) == "smbfs"
    assert [mounts.is_network(k) for k in ("nfs4", "cifs", "smbfs", "afpfs", "fuse.rclone", "ext4", "apfs")] == [
        True, True, True, True, True, False, False]


def test_default_excludes_drop_junk_and_partial_copies() -> None:
    f = PathFilter(["*"], list(DEFAULT_EXCLUDE))
    dropped = ["A001/.DS_Store", "A001/._clip.mov", "A001/.Trashes/x", "A001/Thumbs.db", "A001/clip.mov.part",
               "A001/clip.mov.tmp", "A001/.clip.mov.Xa81Qz", "A001/clip.filepart", "A001/ascmhl/0001_A001.mhl",
               "A001/$RECYCLE.BIN/x", "A001/clip.crdownload"]
    kept = ["A001/clip.mov", "A001/CLIPS/A001C001.mxf", "A001/sub/ascmhl/x.txt", "loose.wav", "A001/.hidden"]
    assert [p for p in dropped if f.wanted(p)] == []
    assert [p for p in kept if not f.wanted(p)] == []


def _config(tmp_path: Path, watch: str) -> Path:
    (tmp_path / "w").mkdir(exist_ok=True)
    path = tmp_path / "t.toml"
    path.write_text(f'[[watch]]\npath = "w"\ndestinations = ["n"]\n{watch}\n'
                    '[[destination]]\nname = "n"\ntype = "local"\npath = "n"\n')
    return path


@pytest.mark.parametrize("watch, message", [
    ('ready = "marker"', 'ready = "marker" needs marker'),
    ('marker = "*.done"', 'marker is only used with ready = "marker"'),
    ('ready = "marker"\nmarker = "sub/x.done"', "without folders"),
    ('ready = "hash"', "watch[0].ready"),
    ("polling = 3", "watch[0].polling"),
])
def test_watch_rule_mistakes_are_sentences(tmp_path: Path, watch: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, watch))
    assert any(message in p for p in info.value.problems), info.value.problems


def test_watch_rules_load(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'ready = "mhl"\npolling = true\npoll_seconds = 3\nverify_workers = 4'))
    w = config.watch[0]
    assert (w.ready, w.polling, w.poll_seconds, w.verify_workers) == ("mhl", True, 3.0, 4)
    assert load_config(_config(tmp_path, "")).watch[0].polling == "auto"


def test_history_states(tmp_path: Path) -> None:
    card = tmp_path / "A001"
    t.write_sample(card)
    with pytest.raises(NotReady, match="no ASC MHL history"):
        read_history(card)
    t.assert_ok(t.run_tool("ascmhl", "create", card, "-h", "md5", "-h", "xxh64"))
    history = read_history(card)
    assert set(history.files) == set(t.SAMPLE) and history.ignores("x/.DS_Store")
    chain = card / "ascmhl" / mhl.CHAIN_FILE
    [generation] = (card / "ascmhl").glob("0001_*.mhl")
    whole = generation.read_bytes()
    generation.write_bytes(whole[:-100])
    with pytest.raises(NotReady, match="C4 id"):
        read_history(card)
    chain.unlink()
    with pytest.raises(NotReady, match="no ascmhl_chain.xml yet"):
        read_history(card)


@pytest.mark.parametrize("algorithm", ["xxh64", "xxh3", "xxh128", "md5", "sha1", "c4"])
def test_check_file_in_every_format(tmp_path: Path, algorithm: str) -> None:
    data = os.urandom(100_000)
    path = tmp_path / "clip.mov"
    path.write_bytes(data)
    st = path.stat()
    right = {
        "xxh64": xxhash.xxh64_hexdigest(data), "xxh3": xxhash.xxh3_64_hexdigest(data),
        "xxh128": xxhash.xxh3_128_hexdigest(data), "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(), "c4": mhl.c4id(data),
    }[algorithm]
    good = check_file(path, st.st_size, st.st_mtime_ns, Reference("clip.mov", len(data), {algorithm: right}, "0001.mhl"))
    assert good.ok and good.xxh64 == xxhash.xxh64_hexdigest(data) and good.algorithm == algorithm
    wrong = right[:-1] + ("1" if right[-1] != "1" else "2")
    bad = check_file(path, st.st_size, st.st_mtime_ns, Reference("clip.mov", len(data), {algorithm: wrong}, "0001.mhl"))
    assert not bad.ok and f"{algorithm} is {right}, but 0001.mhl records {wrong}" == bad.detail
    short = check_file(path, st.st_size, st.st_mtime_ns, Reference("clip.mov", 5, {algorithm: right}, "0001.mhl"))
    assert not short.ok and short.xxh64 is None, "a size that differs needs no read"
    moved = check_file(path, st.st_size, st.st_mtime_ns + 1, Reference("clip.mov", None, {algorithm: right}, "g"))
    assert moved.changed
