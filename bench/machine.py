"""What the figures were measured on: cores, memory, disk, Python, peer versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.tools import RCLONE, XXHSUM


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (out.stdout or out.stderr).strip().splitlines()[0]


def _disk(path: Path) -> dict[str, str]:
    """The block device and file system that hold `path` (from /proc/self/mounts)."""
    best = ("", "", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mnt, fstype = line.split()[:3]
        if str(path.resolve()).startswith(mnt) and len(mnt) >= len(best[1]):
            best = (dev, mnt, fstype)
    dev_name = Path(best[0]).name
    rotational = Path(f"/sys/block/{dev_name}/queue/rotational")
    kind = {"0": "non-rotational", "1": "rotational"}.get(
        rotational.read_text().strip() if rotational.exists() else "", "unknown")
    size = Path(f"/sys/block/{dev_name}/size")
    gib = int(size.read_text()) * 512 / 2**30 if size.exists() else 0
    return {"device": best[0], "mount": best[1], "filesystem": best[2], "kind": kind,
            "size": f"{gib:.0f} GiB"}


def describe(workdir: Path) -> dict[str, Any]:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": f"{int(mem.split()[1]) / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "disk": _disk(workdir),
        "python": sys.version.split()[0],
        # the machine may be shared (other people's test runs): figures are
        # ratios against peers run alternately, in the same minutes
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "peers": {"xxhsum": _first_line([XXHSUM, "--version"]), "rclone": _first_line([RCLONE, "version"]),
                  "cp": _first_line(["cp", "--version"])},
    }
