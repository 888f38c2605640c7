"""What every case gets: where to put data, how big, how often, the servers."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.data import GiB
from bench.servers import Servers


class CaseUnavailable(RuntimeError):
    """This machine cannot run a case (a privilege or program missing): one
    sentence that says what, printed without a traceback."""


@dataclass(frozen=True)
class Scale:
    """Data sizes; `default` keeps a whole run near 15 minutes on 2 cores
    (5,000 small files, not the issue's 100,000: at ~180 files/s with S3 that
    case alone takes ~15 minutes with rclone's run; 0.5 GiB through the 200 Mbit/s link, not
    2 GiB: ~20 s per S3 contender, twice that with SFTP's read-back), `issue`
    is the sizes the issue names."""

    hash_bytes: int
    offload_clips: int
    offload_clip_bytes: int
    offload_small_files: int
    small_files: int
    memory_file_bytes: int
    tracked_files: int
    journal_rows: int
    journal_pending: int
    latency_files: int
    link_clips: int  # case 7: the offload sent through the shaped link
    link_clip_bytes: int
    link_small_files: int
    link_probe_bytes: int  # the plain TCP stream that measures the link itself

    @property
    def offload_label(self) -> str:
        return f"~{(self.offload_clips * self.offload_clip_bytes + self.offload_small_files * 264 * 1024) / GiB:.1f} GiB"


SCALES = {
    "default": Scale(hash_bytes=3 * GiB, offload_clips=4, offload_clip_bytes=384 * 1024**2, offload_small_files=2000,
                     small_files=5_000, memory_file_bytes=2 * GiB, tracked_files=50_000,
                     journal_rows=1_000_000, journal_pending=100_000, latency_files=5,
                     link_clips=4, link_clip_bytes=120 * 1024**2, link_small_files=100, link_probe_bytes=128 * 1024**2),
    "smoke": Scale(hash_bytes=256 * 1024**2, offload_clips=2, offload_clip_bytes=64 * 1024**2, offload_small_files=200,
                   small_files=1000, memory_file_bytes=256 * 1024**2, tracked_files=2000,
                   journal_rows=20_000, journal_pending=2000, latency_files=2,
                   link_clips=2, link_clip_bytes=16 * 1024**2, link_small_files=20, link_probe_bytes=16 * 1024**2),
    "issue": Scale(hash_bytes=3 * GiB, offload_clips=4, offload_clip_bytes=896 * 1024**2, offload_small_files=2000,
                   small_files=100_000, memory_file_bytes=4 * GiB, tracked_files=200_000,
                   journal_rows=1_000_000, journal_pending=100_000, latency_files=10,
                   link_clips=4, link_clip_bytes=500 * 1024**2, link_small_files=200, link_probe_bytes=256 * 1024**2),
}


@dataclass
class Context:
    workdir: Path
    scale: Scale
    repeat: int
    servers: Servers
    notes: dict[str, list[str]] = field(default_factory=dict)

    def case_dir(self, name: str, fresh: bool = True) -> Path:
        path = self.workdir / name
        if fresh and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def note(self, case: str, text: str) -> None:
        self.notes.setdefault(case, []).append(text)
        print(f"  · {text}", flush=True)
