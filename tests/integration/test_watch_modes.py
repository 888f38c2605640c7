"""Watching where events lie: polling, a real FUSE network share (sshfs over
the test sshd), inotify limits, and what scans and polls cost on big trees.
Real daemon processes throughout."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import TRIPLICATE, Setup, log_events, make_setup, wait_for, write_file

OLD = time.time() - 3600


class LogTail:
    """Reads a running daemon's JSON log lines as they come (a thread), so a
    test can wait for an event without stopping the daemon."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        found = [e for e in log_events("".join(self.lines)) if e["event"] == name]
        return [e for e in found if all(e.get(k) == v for k, v in match.items())]

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._thread.join(timeout=10)
        return "".join(self.lines)


def start(setup: Setup, *prefix: str) -> LogTail:
    proc = subprocess.Popen([*prefix, TRIPLICATE, "--config", str(setup.config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return LogTail(proc)


def copied(setup: Setup, rel: str, data: bytes) -> bool:
    return all((root / rel).is_file() and (root / rel).read_bytes() == data for root in setup.destinations.values())


def test_polling_finds_files_without_events(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, settle=0.3, extra_watch="polling = true\npoll_seconds = 0.5")
    tail = start(setup)
    try:
        wait_for(lambda: tail.events("scan_finished", reason="start-up"), 30, "the start-up scan")
        data = os.urandom(5000)
        write_file(setup.watch / "A001/CLIPS/deep/clip.mov", data)
        wait_for(lambda: copied(setup, "A001/CLIPS/deep/clip.mov", data), 30, "the copy, found by polling")
    finally:
        tail.stop()
    [started] = tail.events("watch_started")
    assert (started["mode"], started["reason"]) == ("polling", "polling = true in the config")


def test_frames_landing_in_one_folder_scan_it_once(tmp_path: Path) -> None:
    # each frame has its own event; a scan of its folder per frame (watchdog
    # adds a folder "modified" to every file's event) made a landing of N
    # frames N² stats on the event loop, and copies stalled behind it
    frames = 1500
    setup = make_setup(tmp_path, settle=0.3, destinations={"nearline": 'media = "raid"'},
                       extra_daemon='log_level = "debug"')
    tail = start(setup)
    try:
        wait_for(lambda: tail.events("scan_finished", reason="start-up"), 30, "the start-up scan")
        shot = setup.watch / "A001" / "SHOT_010"
        shot.mkdir(parents=True)
        for n in range(frames):
            (shot / f"SHOT_010.{n:07d}.dpx").write_bytes(n.to_bytes(4, "big") * 256)
        wait_for(lambda: sum(e["files"] for e in tail.events("files_ready")) >= frames, 120, "every frame ready")
    finally:
        tail.stop()
    scans = tail.events("folder_scanned")
    assert 1 <= len(scans) <= 3, f"{len(scans)} scans of arriving folders for {frames} frames"


def _sshfs(sshd: Any, share: Path, mountpoint: Path) -> None:
    mountpoint.mkdir()
    options = ",".join([
        f"port={sshd.port}", f"IdentityFile={sshd.client_key}", f"UserKnownHostsFile={sshd.known_hosts}",
        "StrictHostKeyChecking=yes", "BatchMode=yes",
        "dir_cache=no", "attr_timeout=0", "entry_timeout=0",  # see other machines' changes at once
    ])
    done = subprocess.run(["sshfs", "-o", options, f"{sshd.username}@{sshd.host}:{share}", str(mountpoint)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"sshfs could not mount the test share: {done.stderr}"


def test_auto_polls_a_network_share_and_says_so(sshd: Any, tmp_path: Path) -> None:
    """A real FUSE network file system (sshfs from the test sshd). Files land on
    the server side, as another machine would put them: the mount gets no
    inotify event for them, so only polling can find them."""
    assert shutil.which("sshfs"), "sshfs is missing: tests/setup/install-deps.sh installs it"
    share = sshd.root / f"share-{os.getpid()}-{time.monotonic_ns()}"
    share.mkdir()
    mountpoint = tmp_path / "mnt"
    _sshfs(sshd, share, mountpoint)
    try:
        setup = make_setup(tmp_path / "s", settle=0.3, extra_watch="poll_seconds = 0.5")
        setup.config.write_text(setup.config.read_text().replace('path = "watch"', f'path = "{mountpoint}"', 1))
        tail = start(setup)
        try:
            wait_for(lambda: tail.events("scan_finished", reason="start-up"), 30, "the start-up scan")
            data = os.urandom(20_000)
            write_file(share / "B001/CLIPS/B001C001.mov", data, mtime=OLD)
            wait_for(lambda: copied(setup, "B001/CLIPS/B001C001.mov", data), 30, "the copy from the share")
        finally:
            tail.stop()
        [started] = tail.events("watch_started")
        print(f"watch on {started['filesystem']}: mode {started['mode']} ({started['reason']})")
        assert started["mode"] == "polling" and started["filesystem"] == "fuse.sshfs"
        assert "network file system" in started["reason"]
    finally:
        subprocess.run(["fusermount", "-u", str(mountpoint)], capture_output=True, timeout=30, check=False)


@pytest.mark.parametrize("limit, sysctl", [
    ("max_inotify_watches", "fs.inotify.max_user_watches"),
    ("max_inotify_instances", "fs.inotify.max_user_instances"),
])
def test_inotify_limit_falls_back_to_polling_with_one_warning(tmp_path: Path, limit: str, sysctl: str) -> None:
    """The limits are lowered in a user namespace of the daemon's own (the
    rest of the machine keeps its limits): 10 watches for 40 folders, or no
    inotify instance at all."""
    setup = make_setup(tmp_path, settle=0.3, extra_watch="poll_seconds = 0.5")
    for i in range(40):
        write_file(setup.watch / f"A001/CLIP{i:02d}/frame.dpx", b"f" * 100, mtime=OLD)
    value = 10 if limit == "max_inotify_watches" else 0
    tail = start(setup, "unshare", "--user", "--map-root-user", "sh", "-c",
                 f'echo {value} > /proc/sys/user/{limit} && exec "$@"', "sh")
    try:
        wait_for(lambda: tail.events("scan_finished", reason="start-up") or tail.proc.poll() is not None, 30, "start-up")
        assert tail.proc.poll() is None, "".join(tail.lines)
        data = os.urandom(3000)
        write_file(setup.watch / "A001/CLIP39/new take.mov", data)  # a folder inotify could not watch
        wait_for(lambda: copied(setup, "A001/CLIP39/new take.mov", data), 30, "the new file, found by polling")
    finally:
        tail.stop()
    [warning] = tail.events("inotify_limit_reached")
    assert (warning["sysctl"], warning["mode"], warning["level"]) == (sysctl, "polling", "warning")
    assert sysctl in warning["fix"]


# ---- big trees -----------------------------------------------------------------


def _tree(watch: Path, files: int, per_folder: int, size: int) -> None:
    data = b"\x5a" * size
    for n in range(files):
        folder = watch / f"CARD{n // 25_000:02d}" / f"SHOT{n // per_folder:04d}"
        if n % per_folder == 0:
            folder.mkdir(parents=True)
        path = folder / f"SHOT{n // per_folder:04d}.{n % per_folder:07d}.dpx"
        path.write_bytes(data)
        os.utime(path, (OLD, OLD))


def _ingest_only(setup: Setup) -> subprocess.CompletedProcess[str]:
    """Put every file in the journal without copying it: the destination is
    not there, so `run --once` records the files and gives up on the copies.
    (Copying 50,000 files is not what these tests measure.)"""
    shutil.rmtree(setup.destinations["nearline"])
    done = setup.run_once(timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done


def _read_chars(pid: int) -> int:
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_rescan_of_50000_known_files_reads_nothing_and_takes_seconds(tmp_path: Path) -> None:
    files, size = 50_000, 16_384  # hashing them would read 800 MB
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'},
                       extra_daemon="rescan_seconds = 2")
    _tree(setup.watch, files, 500, size)
    started = time.monotonic()
    first = _ingest_only(setup)
    ingest = time.monotonic() - started
    scans = [e for e in log_events(first.stderr) if e["event"] == "scan_finished"]
    assert [e["new"] for e in scans if e["reason"] == "start-up"] == [files]

    tail = start(setup)
    try:
        wait_for(lambda: tail.events("scan_finished", reason="rescan"), 60, "the first rescan")
        chars = _read_chars(tail.proc.pid)
        wait_for(lambda: len(tail.events("scan_finished", reason="rescan")) >= 2, 60, "the second rescan")
        read = _read_chars(tail.proc.pid) - chars
    finally:
        out = tail.stop()
    scans = [e for e in log_events(out) if e["event"] == "scan_finished"]
    rescans = [e for e in scans if e["reason"] == "rescan"]
    print(f"\n{files} files: first scan + journal ingest {ingest:.1f} s; "
          f"rescan with nothing new {rescans[1]['seconds']:.2f} s wall, {rescans[1]['cpu_seconds']:.2f} s CPU; "
          f"{read / 1e6:.1f} MB read by the daemon across a rescan ({files * size / 1e6:.0f} MB of media)")
    assert all((e["files"], e["new"]) == (files, 0) for e in scans), "known files are not queued again"
    assert rescans[1]["seconds"] < 10
    assert read < files * size / 10, "a rescan reads no file content (no hashing)"
    assert not [e for e in log_events(out) if e["event"] == "files_ready"]


def test_polling_100000_files_costs(tmp_path: Path) -> None:
    files = 100_000
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'},
                       extra_watch="polling = true\npoll_seconds = 1", extra_daemon='log_level = "debug"')
    _tree(setup.watch, files, 1000, 64)
    _ingest_only(setup)
    tail = start(setup)
    try:
        wait_for(lambda: tail.events("scan_finished", reason="poll"), 120, "the first poll")
        cpu, t0 = _cpu_seconds(tail.proc.pid), time.monotonic()
        wait_for(lambda: len(tail.events("scan_finished", reason="poll")) >= 4, 120, "three more polls")
        cpu, wall = _cpu_seconds(tail.proc.pid) - cpu, time.monotonic() - t0
    finally:
        out = tail.stop()
    polls = [e for e in log_events(out) if e["event"] == "scan_finished" and e["reason"] == "poll"]
    walk_cpu = sorted(e["cpu_seconds"] for e in polls)[len(polls) // 2]
    walk_wall = sorted(e["seconds"] for e in polls)[len(polls) // 2]
    share = cpu / wall
    print(f"\npolling {files} files: one poll {walk_wall:.2f} s wall, {walk_cpu:.2f} s CPU (median of {len(polls)}); "
          f"daemon CPU {100 * share:.0f}% of a core at poll_seconds = 1, "
          f"about {100 * walk_cpu / 10:.1f}% at the default poll_seconds = 10")
    assert all((e["files"], e["new"]) == (files, 0) for e in polls)
    assert walk_cpu < 5.0
