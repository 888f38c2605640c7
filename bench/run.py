"""`python -m bench`: run the cases in the issue's order, print the table,
write the JSON beside it (bench/results.json unless --json says otherwise)."""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench.tools import REPO, missing_tools

CASES = {  # the order
    "hash": "bench.case_hash",
    "nearline": "bench.case_nearline",
    "cascade": "bench.case_cascade",
    "small": "bench.case_small_files",
    "memory": "bench.case_memory",
    "startup": "bench.case_startup",
    "link": "bench.case_link",
    "latency": "bench.case_latency",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--scale", choices=["default", "issue", "smoke"], default="default",
                   help="default: a whole run in ~15 min on 2 cores; issue: the issue's sizes "
                        "(4 GiB offload, 100,000 small files, ...); smoke: tiny, to try the bench itself")
    p.add_argument("--only", default="", help=f"comma-separated cases among {', '.join(CASES)}")
    p.add_argument("--small-files", type=int, help="files in case 4 (overrides the scale's count)")
    p.add_argument("--memory-file-gib", type=float,
                   help="size of case 5's large file in GiB (overrides the scale's; the issue names 20)")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender in the big cases (best kept)")
    p.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work", help="data sets and server folders")
    p.add_argument("--json", type=Path, default=REPO / "bench" / "results.json", help="machine-readable results")
    p.add_argument("--keep-data", action="store_true", help="leave the generated data in --workdir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    problems = missing_tools()
    if problems:
        for line in problems:
            print(f"bench: {line}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"bench: unknown case(s) {', '.join(unknown)}; choose among {', '.join(CASES)}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    # measured as installed: a wheel's install compiles the package's bytecode, while an editable
    # checkout under PYTHONDONTWRITEBYTECODE would compile every module again in each process it starts
    compileall.compile_dir(str(REPO / "daemon" / "triplicate"), quiet=1)
    os.environ.setdefault("TRIPLICATE_SERVERS_DIR", str(args.workdir / "servers"))
    # imported after TRIPLICATE_SERVERS_DIR is set: tests/servers.py reads it
    from bench.context import SCALES, CaseUnavailable, Context
    from bench.machine import describe
    from bench.report import table, write_json
    from bench.servers import Servers

    scale = SCALES[args.scale]
    if args.small_files:
        scale = dataclasses.replace(scale, small_files=args.small_files)
    if args.memory_file_gib:
        scale = dataclasses.replace(scale, memory_file_bytes=int(args.memory_file_gib * 2**30))
    ctx = Context(args.workdir, scale, args.repeat, Servers())
    machine = describe(args.workdir)
    rows, skipped = [], {}
    began = time.monotonic()
    try:
        for name in names:
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            try:
                rows += importlib.import_module(CASES[name]).run(ctx)
            except CaseUnavailable as exc:
                print(f"   {exc}", flush=True)
                skipped[name] = f"not run: {exc}"
            except Exception as exc:  # noqa: BLE001 — one broken case must not hide the others' figures
                traceback.print_exc()
                skipped[name] = f"failed: {exc}"
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        ctx.servers.close()
        if not args.keep_data:
            import shutil

            shutil.rmtree(args.workdir, ignore_errors=True)
    print()
    print(table(rows))
    for name, why in skipped.items():
        print(f"{name}: {why}")
    settings = {"scale": args.scale, "scale_values": vars(ctx.scale), "repeat": args.repeat, "cases": names,
                "command": " ".join([Path(sys.executable).name, "-m", "bench", *(argv or sys.argv[1:])]),
                "seconds": round(time.monotonic() - began)}
    machine["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    write_json(args.json, machine, settings, rows, ctx.notes, skipped)
    print(f"\nresults: {args.json} ({settings['seconds']} s)")
    return 1 if skipped else 0
