"""Measuring one process: wall time, peak RSS, bytes read, CPU.

The child is waited for with WNOWAIT first, so its /proc/<pid>/io can still be
read while it is a zombie (the kernel keeps the counters until it is reaped);
then wait4 reaps it and gives its rusage (peak RSS, CPU)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Measured:
    argv: list[str]
    seconds: float
    returncode: int
    max_rss_bytes: int  # peak RSS: VmHWM of the process plus those of its descendants (sampled every ~20 ms)
    read_bytes: int  # from the device (/proc/<pid>/io read_bytes)
    rchar: int  # every byte read() returned: files, sockets, pipes
    cpu_seconds: float
    system_seconds: float = 0.0  # the part of cpu_seconds spent in the kernel
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _proc_io(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def _peak_rss(pid: int) -> int:
    """VmHWM: the high-water mark of the process's own memory since its exec.
    (rusage's ru_maxrss would also count the forked bench process before exec.)"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _tree_peak_rss(pid: int, peaks: dict[int, int]) -> int:
    """Each process's own high-water mark, summed over the tree (a destination
    in a process of its own holds its buffers there). The peaks may fall at
    different moments, so the sum is an upper bound."""
    for p in (pid, *_descendants(pid)):
        peaks[p] = max(peaks.get(p, 0), _peak_rss(p))
    return sum(peaks.values())


def run_measured(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
) -> Measured:
    """Run argv to completion; stdout/stderr go to temp files (no pipe stalls)."""
    out_path = Path(f"/tmp/bench-{os.getpid()}-{time.monotonic_ns()}")
    with open(f"{out_path}.out", "w+") as out, open(f"{out_path}.err", "w+") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        if on_start is not None:
            on_start(proc)
        deadline = began + timeout
        peak, polls, peaks = 0, 0, {}
        while True:  # WNOWAIT: exited but not reaped, /proc/<pid>/io still there
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            if info is not None:
                break
            if polls % 10 == 0:
                peak = max(peak, _tree_peak_rss(proc.pid, peaks))
            polls += 1
            if time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.002)
        seconds = time.perf_counter() - began
        io = _proc_io(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    return Measured(
        argv=list(argv), seconds=seconds, returncode=proc.returncode,
        max_rss_bytes=peak or usage.ru_maxrss * 1024,
        read_bytes=io.get("read_bytes", usage.ru_inblock * 512), rchar=io.get("rchar", 0),
        cpu_seconds=usage.ru_utime + usage.ru_stime, system_seconds=usage.ru_stime, stdout=stdout, stderr=stderr,
    )


def check(m: Measured, what: str) -> Measured:
    if m.returncode != 0:
        raise RuntimeError(f"{what} exited with {m.returncode}: {' '.join(m.argv)}\n"
                           f"{m.stderr[-3000:]}\n{m.stdout[-2000:]}")
    return m


def in_sequence(*runs: Measured) -> Measured:
    """Processes run one after the other (copy then check) as one measurement."""
    first = runs[0]
    return Measured(argv=[a for r in runs for a in r.argv], seconds=sum(r.seconds for r in runs), returncode=0,
                    max_rss_bytes=max(r.max_rss_bytes for r in runs), read_bytes=sum(r.read_bytes for r in runs),
                    rchar=sum(r.rchar for r in runs), cpu_seconds=sum(r.cpu_seconds for r in runs),
                    system_seconds=sum(r.system_seconds for r in runs), stdout=first.stdout, stderr=first.stderr)


def drop_caches() -> bool:
    """Flush dirty pages and empty the page cache (root only); False if not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Run each measurement `repeat` times, alternating between them so drift
    of a shared (virtual) machine hits every contender alike."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            results[name].append(fn())
    return results
