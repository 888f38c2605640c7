"""7. The link: goodput of one offload to S3 and to SFTP through a loopback
shaped to 200 Mbit/s, as a fraction of what that link carries, beside rclone's
(copy + check) through the same link.

The bench's main thread moves into a private network namespace (unshare, then
setns back to the host's at the end), so the servers, the boto3 calls that
make buckets and every contender it starts afterwards live there without any
change to the server classes: a socket, and a forked process, belong to the
namespace of the thread that made them. Nothing is left behind: the namespace
goes away with the last process and file descriptor in it, and the servers
die with the bench (pdeathsig).

Only the traffic to and from the servers' client ports (S3's, sshd's, and the
raw probe's) goes through the token bucket: an htb root sends those packets to
a class whose qdisc is the tbf, everything else to an unshaped class.
SeaweedFS's gateway passes every object on to its volume server over the same
loopback; shaping that hop too would halve the link for S3 alone, where a real
provider does that inside its data centre.

On `lo` both directions share one token bucket: data, ACKs and any read-back
all leave through the same device, so the link is half-duplex, unlike an
uplink. The tbf's byte counter, read before and after each contender, says
how many bytes the method put on the link per byte of data (about 2 when it
reads its copies back over the link)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from bench.context import CaseUnavailable, Context
from bench.data import camera_offload, tree_bytes
from bench.measure import Measured, check, drop_caches, in_sequence, run_measured
from bench.report import Row
from bench.servers import Servers
from bench.tools import (
    RCLONE,
    TRIPLICATE,
    rclone_env,
    s3_dest,
    sftp_dest,
    triplicate_env,
    write_config,
)

CASE = "7 link"
CARD = "L001_CARD"
RATE = "200mbit"
NOMINAL = 200e6 / 8  # bytes/s
# burst: a packet larger than the bucket never leaves (lo's MTU is 64 KiB, so a
# 64 KiB burst stalls TCP outright), and the bucket must hold at least what
# the rate earns in one timer tick (25 MB/s / HZ 100 = 250 kB) or the qdisc
# wakes too late to keep the rate. 256 KiB holds four full lo packets.
# latency: 50 ms of queue (1.25 MB) absorbs a TCP window's bursts instead of
# dropping them, as an uplink's buffer would, while keeping the added RTT to
# a few tens of ms; drops would measure TCP's recovery rather than the client.
TBF = ["tbf", "rate", RATE, "burst", "256kb", "latency", "50ms"]
GOAL = 0.9
# the unshaped class's rate only has to be far above the link's (10 Gbit/s)
_FAST = ["htb", "rate", "10gbit", "burst", "4mb", "cburst", "4mb", "quantum", "65536"]
_SHAPER = [
    ["qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "20"],
    ["class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", *_FAST],
    ["class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", *_FAST],
    ["qdisc", "add", "dev", "lo", "parent", "1:10", "handle", "10:", *TBF],
]
_CLONE_NEWNET = 0x40000000


def preflight() -> None:
    """Raise with one sentence when the link cannot be built here."""
    if os.geteuid() != 0:
        raise CaseUnavailable("case 7 (link) needs root: it makes a network namespace and shapes its loopback with tc")
    for tool in ("tc", "ip"):
        if shutil.which(tool) is None:
            raise CaseUnavailable(f"case 7 (link) needs `{tool}` (Debian: apt-get install iproute2)")


def _netns_call(name: str, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


@contextlib.contextmanager
def shaped_namespace() -> Iterator[None]:
    """Run the body in a fresh network namespace whose lo is up and shaped."""
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _netns_call("unshare", _CLONE_NEWNET)
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30)
            for command in _SHAPER:
                _tc(*command)
            yield
        finally:
            _netns_call("setns", host, _CLONE_NEWNET)
    finally:
        os.close(host)


def _tc(*args: str) -> str:
    done = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def shape_port(port: int) -> None:
    """Send the TCP traffic of 127.0.0.1:port, both ways, through the tbf."""
    for side in ("dport", "sport"):
        _tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", side, str(port), "0xffff", "flowid", "1:10")


def link_bytes() -> int:
    """Bytes the shaped qdisc has sent so far (both directions, headers included)."""
    out = _tc("-s", "-j", "qdisc", "show", "dev", "lo")
    return sum(q["bytes"] for q in json.loads(out) if q.get("kind") == "tbf")


def raw_rate(size: int) -> float:
    """Bytes/s of one plain TCP stream across the link, first send to last byte received."""
    listener = socket.create_server(("127.0.0.1", 0))
    shape_port(listener.getsockname()[1])
    arrived: list[float] = []

    def receive() -> None:
        conn, _ = listener.accept()
        with conn:
            got = 0
            while got < size and (chunk := conn.recv(1 << 20)):
                got += len(chunk)
        arrived.append(time.perf_counter() if got == size else float("nan"))

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    block = bytes(1 << 20)
    with listener, socket.create_connection(listener.getsockname(), timeout=120) as sender:
        began = time.perf_counter()
        for offset in range(0, size, len(block)):
            sender.sendall(block[:min(len(block), size - offset)])
        receiver.join(timeout=120)
    if not arrived or math.isnan(arrived[0]):
        raise RuntimeError("the raw TCP stream across the shaped link did not arrive whole")
    return size / (arrived[0] - began)


@dataclass
class Run:
    measured: Measured
    on_link: int  # bytes through the tbf during the run
    first_mib: float  # s from launch until the link had carried 1 MiB
    idle: float  # s of the run during which the link carried < 10 % of its nominal rate


class LinkSampler:
    """The tbf's byte counter every 0.1 s while a contender runs, to see when
    the link sat idle (start-up, hashing, per-file round trips, checks)."""

    PERIOD = 0.1

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        # threads start in their creator's network namespace: this one reads the shaped lo
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), link_bytes()))
            if self._stop.wait(self.PERIOD):
                self.samples.append((time.perf_counter(), link_bytes()))
                return

    def __enter__(self) -> Self:
        self.samples.append((time.perf_counter(), link_bytes()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> tuple[int, float, float]:
        """(bytes, s to the first MiB, idle s)."""
        (t0, b0), first, idle = self.samples[0], float("nan"), 0.0
        for (ta, ba), (tb, bb) in zip(self.samples, self.samples[1:]):
            if math.isnan(first) and bb - b0 >= 2**20:
                first = tb - t0
            if bb - ba < 0.1 * NOMINAL * (tb - ta):
                idle += tb - ta
        return self.samples[-1][1] - b0, first, idle


def _on_link(fn: Callable[[], Measured]) -> Run:
    drop_caches()
    with LinkSampler() as sampler:
        m = fn()
    return Run(m, *sampler.summary())


@dataclass
class Target:
    """One fresh bucket or folder, as each contender is pointed at it."""

    destination: list[str]  # triplicate's [[destination]] lines
    triplicate_env: dict[str, str]
    rclone_env: dict[str, str]
    rclone_dst: str
    copy_flags: list[str]
    check_flags: list[str]
    remove: Callable[[], None]


def new_target(servers: Servers, kind: str) -> Target:
    if kind == "s3":
        s3 = servers.new_bucket("link")
        return Target(s3_dest(s3, "camera/"), triplicate_env(s3), rclone_env(s3=s3), f"bs3:{s3.bucket}/camera/{CARD}",
                      [], [], lambda: servers.delete_bucket(s3))
    # as case 3: no per-file remote md5sum while copying, then `check --download` (reads every byte back)
    sftp = servers.new_sftp_folder("link")
    return Target(sftp_dest(sftp), triplicate_env(), rclone_env(sftp=sftp), f"bsftp:{sftp.path}/{CARD}",
                  ["--sftp-disable-hashcheck"], ["--download"], lambda: shutil.rmtree(sftp.path, ignore_errors=True))


def run_triplicate(ctx: Context, watch: Path, target: Target, kind: str) -> Measured:
    config = write_config(ctx.case_dir(f"link/triplicate-{kind}"), watch, {"offsite": target.destination})
    return check(run_measured([TRIPLICATE, "--config", str(config), "run", "--once"], env=target.triplicate_env),
                 f"triplicate run --once ({kind})")


def run_rclone(ctx: Context, watch: Path, target: Target, kind: str) -> Measured:
    card, env = str(watch / CARD), target.rclone_env
    copy = check(run_measured([RCLONE, "copy", *target.copy_flags, card, target.rclone_dst], env=env),
                 f"rclone copy ({kind})")
    verify = check(run_measured([RCLONE, "check", *target.check_flags, card, target.rclone_dst], env=env),
                   f"rclone check ({kind})")
    return in_sequence(copy, verify)


def measure(ctx: Context, servers: Servers, watch: Path,
            contender: Callable[[Context, Path, Target, str], Measured], kind: str) -> Run:
    target = new_target(servers, kind)
    try:
        return _on_link(lambda: contender(ctx, watch, target, kind))
    finally:
        target.remove()


def _offload(ctx: Context) -> tuple[Path, int]:
    s = ctx.scale
    watch = ctx.case_dir("link") / "watch"
    camera_offload(watch, CARD, s.link_clips, s.link_clip_bytes, s.link_small_files, seed=7)
    return watch, tree_bytes(watch / CARD)[1]


def run(ctx: Context) -> list[Row]:
    preflight()
    watch, size = _offload(ctx)
    results: dict[str, list[Run]] = {}
    with shaped_namespace():
        servers = Servers()
        try:
            shape_port(servers.seaweed.port)
            shape_port(servers.sshd.port)
            reference = raw_rate(ctx.scale.link_probe_bytes)
            for _ in range(ctx.repeat):
                for kind in ("s3", "sftp"):
                    for name, contender in (("triplicate", run_triplicate), ("rclone", run_rclone)):
                        results.setdefault(f"{name} {kind}", []).append(measure(ctx, servers, watch, contender, kind))
        finally:
            servers.close()
    shutil.rmtree(ctx.workdir / "link", ignore_errors=True)
    return _report(ctx, size, reference, results)


def _report(ctx: Context, size: int, reference: float, results: dict[str, list[Run]]) -> list[Row]:
    best = {name: min(runs, key=lambda r: r.measured.seconds) for name, runs in results.items()}
    ctx.note(CASE, f"link: tc {' '.join(TBF)} on lo of a private network namespace, for the servers' client "
                   f"ports only; nominal {NOMINAL / 1e6:.1f} MB/s, "
                   f"one TCP stream measured {reference / 1e6:.2f} MB/s ({reference / NOMINAL:.3f} of nominal), "
                   "the reference for every fraction below")
    ctx.note(CASE, f"offload: {ctx.scale.link_clips} clips + {ctx.scale.link_small_files} small files, "
                   f"{size / 2**20:.0f} MiB; wall s: "
                   + ", ".join(f"{n} {[round(r.measured.seconds, 1) for r in runs]}" for n, runs in results.items()))
    ctx.note(CASE, "bytes on the link per byte of data (qdisc counter, both directions; ~2 = copies read back over "
                   "the link): " + ", ".join(f"{n} {r.on_link / size:.2f}" for n, r in best.items())
             + "; link busy (bytes on the link / wall / reference): "
             + ", ".join(f"{n} {r.on_link / r.measured.seconds / reference:.2f}" for n, r in best.items())
             + "; s to the link's first MiB: " + ", ".join(f"{n} {r.first_mib:.1f}" for n, r in best.items())
             + "; s the link sat idle (< 10 % of its rate, sampled every 0.1 s): "
             + ", ".join(f"{n} {r.idle:.1f}" for n, r in best.items())
             + "; CPU s: " + ", ".join(f"{n} {r.measured.cpu_seconds:.0f}" for n, r in best.items()))
    rows = []
    for kind, label in (("s3", "S3 (SeaweedFS)"), ("sftp", "SFTP (sshd)")):
        ours = size / best[f"triplicate {kind}"].measured.seconds / reference
        theirs = size / best[f"rclone {kind}"].measured.seconds / reference
        peer = "rclone copy + check" + (" --download" if kind == "sftp" else "")
        rows.append(Row(CASE, f"goodput to {label}, {size / 2**30:.2f} GiB, copy + verify", ours, peer, theirs,
                        "× link", "higher", goal=f"≥ {GOAL} of the link", goal_met=ours >= GOAL,
                        note="data bytes / wall time / raw TCP rate of the link"))
    return rows
