"""The floor of case 4's nearline half on this machine: the system calls of a
nearline copy, in a bare loop without the daemon, beside rclone on the same
files. Not part of `python -m bench` (it answers one question, not a goal):

    .venv/bin/python -m bench.copy_floor [--files 5000] [--work DIR]

Variants, each in a process of its own after the page cache is emptied:
- durable: what triplicate's nearline copy does per file: read and hash the
  source, write a temporary file, set its mtime, fsync it, drop its cached
  pages and read it back from the device, rename it into place, fsync the
  folder. In 16 threads of one process, and in 4 processes of 4 threads
  (no GIL shared by all sixteen).
- plain: the same without fsync and with the read-back from the page cache,
  as rclone does it; in 16 threads, and in 1.
- rclone copy --transfers 16.

Prints files/s, CPU and kernel seconds and each variant's ratio to rclone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import xxhash

from bench.case_small_files import OFFLOAD, make_files
from bench.measure import Measured, check, drop_caches, run_measured
from bench.tools import RCLONE

VARIANTS = {  # name: (durable, processes, threads per process)
    "durable 16 threads": (True, 1, 16),
    "durable 4 processes x 4 threads": (True, 4, 4),
    "plain 16 threads": (False, 1, 16),
    "plain 1 thread": (False, 1, 1),
}


def copy_one(src: Path, final: Path, durable: bool) -> None:
    tmp = final.with_name(f".{final.name}.tmp")
    fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size + 1, 0)
        digest = xxhash.xxh64(data).hexdigest()
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(out, data)
            os.utime(out, ns=(time.time_ns(), os.fstat(fd).st_mtime_ns))
            if durable:
                os.fsync(out)
                os.posix_fadvise(out, 0, 0, os.POSIX_FADV_DONTNEED)
            if xxhash.xxh64(os.pread(out, size + 1, 0)).hexdigest() != digest:
                raise RuntimeError(f"read-back of {final} differs")
        finally:
            os.close(out)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    if durable:
        folder = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def run_variant(source: Path, target: Path, durable: bool, processes: int, threads: int) -> None:
    """The copy itself, in this process and `processes - 1` forked ones."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    for folder in {p.parent for p in files}:
        (target / folder.relative_to(source)).mkdir(parents=True, exist_ok=True)
    children = []
    for share in range(1, processes):
        pid = os.fork()
        if pid == 0:
            _copy_all(files[share::processes], source, target, durable, threads)
            os._exit(0)
        children.append(pid)
    _copy_all(files[0::processes], source, target, durable, threads)
    if any(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children):
        sys.exit(1)


def _copy_all(files: list[Path], source: Path, target: Path, durable: bool, threads: int) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: copy_one(p, target / p.relative_to(source), durable), files))


def measure(argv: list[str], target: Path) -> Measured:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    drop_caches()
    return check(run_measured(argv), argv[0])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.copy_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / ".work" / "copy_floor")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the measured child
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args.source, args.target, *VARIANTS[args.variant])
        return 0
    watch = args.work / f"source-{args.files}"
    if not (watch / OFFLOAD).is_dir():
        make_files(watch, args.files, seed=4)
    source, target = watch / OFFLOAD, args.work / "target"
    peer = measure([RCLONE, "copy", "--transfers", "16", str(source), str(target)], target)
    print(f"{'rclone copy --transfers 16':34} {args.files / peer.seconds:6.0f} files/s  CPU {peer.cpu_seconds:5.1f} s "
          f"(kernel {peer.system_seconds:4.1f})  1.00x")
    for name in VARIANTS:
        m = measure([sys.executable, "-m", "bench.copy_floor", "--variant", name, "--source", str(source),
                     "--target", str(target)], target)
        print(f"{name:34} {args.files / m.seconds:6.0f} files/s  CPU {m.cpu_seconds:5.1f} s "
              f"(kernel {m.system_seconds:4.1f})  {peer.seconds / m.seconds:.2f}x")
    shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
