"""Kill a `put` mid-transfer, run it again, and count the bytes sent twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CrashResult:
    size: int
    progress_at_kill: int  # bytes the first process reported sent before it died
    second_run_sent: int  # bytes the second process sent
    xxh64: str

    @property
    def resent(self) -> int:
        """Bytes sent again: what the second run sent beyond what was left."""
        return max(0, self.second_run_sent - (self.size - self.progress_at_kill))


def _spec(tmp: Path, destination: dict[str, Any], source: Path, key: str) -> Path:
    spec = tmp / "crash-spec.json"
    spec.write_text(json.dumps({
        "destination": destination, "source": str(source), "key": key, "resume": str(tmp / "resume.json"),
    }))
    return spec


def _child(spec: Path, env: dict[str, str] | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.conformance.crash_put", str(spec)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


def kill_and_resume(
    tmp: Path, destination: dict[str, Any], source: Path, key: str,
    kill_after: int, env: dict[str, str] | None = None, timeout: float = 300,
) -> CrashResult:
    """SIGKILL the first put once it reported `kill_after` bytes, then finish
    with a second put that uses the same resume state."""
    spec = _spec(tmp, destination, source, key)
    first = _child(spec, env)
    reported = 0
    deadline = time.monotonic() + timeout
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("progress "):
            reported = int(line.split()[1])
            if reported >= kill_after:
                first.send_signal(signal.SIGKILL)
                break
        if time.monotonic() > deadline:
            first.kill()
            raise AssertionError("first put never reached the kill point")
    first.wait(timeout=30)
    if reported < kill_after:
        raise AssertionError(f"first put ended before the kill point: {first.stderr.read() if first.stderr else ''}")
    second = _child(spec, env)
    out, err = second.communicate(timeout=timeout)
    if second.returncode != 0:
        raise AssertionError(f"resumed put failed ({second.returncode}): {err[-2000:]}")
    done = [line for line in out.splitlines() if line.startswith("done ")][-1].split()
    return CrashResult(source.stat().st_size, reported, int(done[1]), done[2])


def random_file(path: Path, size: int) -> str:
    """A file of `size` random bytes, written in chunks; returns its xxh64."""
    import xxhash

    digest = xxhash.xxh64()
    with open(path, "wb") as fh:
        left = size
        while left:
            data = os.urandom(min(left, 16 << 20))
            digest.update(data)
            fh.write(data)
            left -= len(data)
    return digest.hexdigest()
