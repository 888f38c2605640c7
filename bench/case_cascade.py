"""3. Cascade: the offload of case 2 to nearline + S3 (SeaweedFS) + SFTP (sshd)
at once, against the same three copies made by rclone (copy + check each) in
three parallel processes and in sequence. Also how many bytes each read per
byte of data, with the page cache dropped before every contender."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from bench.context import Context
from bench.measure import Measured, check, drop_caches, run_measured
from bench.offload import CARD, SharedOffload, shared_offload
from bench.report import Row
from bench.tools import (
    RCLONE,
    TRIPLICATE,
    S3Target,
    SftpTarget,
    local_dest,
    rclone_env,
    s3_dest,
    sftp_dest,
    triplicate_env,
    write_config,
)

CASE = "3 cascade"


def _targets(ctx: Context, label: str) -> tuple[Path, S3Target, SftpTarget]:
    local = ctx.workdir / "cascade" / f"{label}-nearline"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    return local, ctx.servers.new_bucket(label), ctx.servers.new_sftp_folder(label)


def _cleanup(ctx: Context, local: Path, s3: S3Target, sftp: SftpTarget) -> None:
    shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(sftp.path, ignore_errors=True)
    ctx.servers.delete_bucket(s3)


def run_triplicate(ctx: Context, off: SharedOffload) -> Measured:
    local, s3, sftp = _targets(ctx, "trip")
    root = ctx.case_dir("cascade/triplicate")
    config = write_config(root, off.watch, {"nearline": local_dest(local), "s3": s3_dest(s3, "camera/"),
                                            "sftp": sftp_dest(sftp)})
    drop_caches()
    m = check(run_measured([TRIPLICATE, "--config", str(config), "run", "--once"], env=triplicate_env(s3)),
              "triplicate run --once (cascade)")
    _cleanup(ctx, local, s3, sftp)
    return m


def _rclone_chains(off: SharedOffload, local: Path, s3: S3Target, sftp: SftpTarget) -> list[str]:
    """copy then check per destination. SFTP: rclone's default hash check runs
    `md5sum` over ssh for every file (~0.1 s a file here, 30x slower than the
    transfer), so the peer uses its faster equivalent: no per-file hash check
    while copying, then `check --download`, which reads every byte back."""
    src, r = shlex.quote(str(off.card)), shlex.quote(RCLONE)
    chains = []
    for dst, copy_flags, check_flags in (
        (str(local / CARD), "", ""),
        (f"bs3:{s3.bucket}/camera/{CARD}", "", ""),
        (f"bsftp:{sftp.path}/{CARD}", " --sftp-disable-hashcheck", " --download"),
    ):
        d = shlex.quote(dst)
        chains.append(f"{r} copy{copy_flags} {src} {d} && {r} check{check_flags} {src} {d}")
    return chains


def run_rclone(ctx: Context, off: SharedOffload, parallel: bool) -> Measured:
    label = "rpar" if parallel else "rseq"
    local, s3, sftp = _targets(ctx, label)
    chains = _rclone_chains(off, local, s3, sftp)
    if parallel:
        script = "set -e; " + " ".join(f"( {c} ) & p{i}=$!;" for i, c in enumerate(chains))
        script += " " + " && ".join(f"wait $p{i}" for i in range(len(chains)))
    else:
        script = "set -e; " + " && ".join(chains)
    drop_caches()
    m = check(run_measured(["bash", "-c", script], env=rclone_env(s3, sftp)), f"rclone ({label})")
    _cleanup(ctx, local, s3, sftp)
    return m


def run(ctx: Context) -> list[Row]:
    off = shared_offload(ctx)
    results: dict[str, list[Measured]] = {"triplicate": [], "parallel": [], "sequence": []}
    for _ in range(ctx.repeat):
        results["triplicate"].append(run_triplicate(ctx, off))
        results["parallel"].append(run_rclone(ctx, off, parallel=True))
        results["sequence"].append(run_rclone(ctx, off, parallel=False))
    best = {name: min(runs, key=lambda m: m.seconds) for name, runs in results.items()}
    mb = off.bytes / 1e6
    ctx.note(CASE, f"offload: {off.files} files, {off.bytes / 2**30:.2f} GiB to nearline + S3 (SeaweedFS) + SFTP "
                   f"(sshd), all on this machine; wall s: "
                   + ", ".join(f"{n} {[round(m.seconds, 1) for m in r]}" for n, r in results.items()))
    ctx.note(CASE, "device bytes read per byte of data (/proc/<pid>/io read_bytes, page cache dropped first): "
             + ", ".join(f"{n} {m.read_bytes / off.bytes:.2f}" for n, m in best.items())
             + "; all bytes read() per byte of data (rchar: files, sockets, pipes): "
             + ", ".join(f"{n} {m.rchar / off.bytes:.2f}" for n, m in best.items())
             + "; CPU s: " + ", ".join(f"{n} {m.cpu_seconds:.0f}" for n, m in best.items()))
    ours = mb / best["triplicate"].seconds
    rows = []
    for key, label in (("parallel", "rclone ×3 in parallel"), ("sequence", "rclone ×3 in sequence")):
        theirs = mb / best[key].seconds
        rows.append(Row(CASE, "3 destinations, copy + verify", ours, label, theirs, "MB/s", "higher",
                        note="rclone: copy + check per destination (SFTP: check --download)"))
    t, p = best["triplicate"], best["parallel"]
    rows.append(Row(CASE, "device bytes read / byte of data", t.read_bytes / off.bytes, "rclone ×3 in parallel",
                    p.read_bytes / off.bytes, "B/B", "lower",
                    note="triplicate's includes the nearline read-back from the device (1.0 by design)"))
    return rows
