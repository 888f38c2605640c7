"""The `triplicate` command line.

Exit codes: 0 all good; 1 something is not verified (run --once) or a check
failed; 2 the configuration, the journal or the command line is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

import platformdirs

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, JournalError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def default_config() -> Path:
    env = os.environ.get("TRIPLICATE_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("triplicate")) / "triplicate.toml"


def _fail(lines: list[str], code: int = EXIT_USAGE) -> NoReturn:
    for line in lines:
        print(f"triplicate: {line}", file=sys.stderr)
    raise SystemExit(code)


def _load(args: argparse.Namespace) -> Config:
    path = getattr(args, "file", None) or args.config or default_config()
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(exc.problems)


# ---- commands -------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import preflight, run_daemon
    from .logs import configure

    config = _load(args)
    configure(config.daemon.log_format, config.daemon.log_level)
    problems = preflight(config)
    if problems:
        _fail(problems)
    return asyncio.run(run_daemon(config, once=args.once))


def cmd_status(args: argparse.Namespace) -> int:
    from .journal import Journal
    from .status import collect, render_text

    config = _load(args)
    journal = Journal(config.daemon.journal_path())
    try:
        status = collect(config, journal)
    finally:
        journal.close()
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        print(render_text(status))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from .daemon import preflight

    config = _load(args)
    problems = preflight(config)
    if problems:
        _fail(problems)
    print(f"{config.source_file}: ok — {len(config.watch)} watch folder(s), {len(config.destination)} destination(s)")
    return EXIT_OK


def cmd_hash(args: argparse.Namespace) -> int:
    from .hashing import hash_file

    code = EXIT_OK
    for name in args.files:
        try:
            digest, _ = hash_file(name, args.algorithm)
        except OSError as exc:
            print(f"triplicate: {name}: {exc.strerror}", file=sys.stderr)
            code = EXIT_FAILED
            continue
        print(f"{digest}  {name}")
    return code


def cmd_retry(args: argparse.Namespace) -> int:
    from .journal import Journal

    config = _load(args)
    if args.destination and args.destination not in {d.name for d in config.destination}:
        _fail([f"no destination named {args.destination!r} in {config.source_file}"])
    journal = Journal(config.daemon.journal_path())
    try:
        count = journal.retry(args.destination, args.offload)
    finally:
        journal.close()
    print(f"{count} cop{'y' if count == 1 else 'ies'} queued to retry now")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .audit import audit
    from .destinations import registry
    from .journal import Journal
    from .logs import configure

    config = _load(args)
    configure(config.daemon.log_format, config.daemon.log_level)
    names = [d.name for d in config.destination]
    if args.destination and args.destination not in names:
        _fail([f"no destination named {args.destination!r} in {config.source_file}; defined: {', '.join(names)}"])
    journal = Journal(config.daemon.journal_path())
    code = EXIT_OK
    try:
        for dest_config in config.destination:
            if args.destination and dest_config.name != args.destination:
                continue
            result = asyncio.run(audit(journal, registry.create(dest_config), args.sample, args.offload))
            print(f"{result.destination}: {result.checked} copies match, {len(result.bad)} bad (queued to be sent again), "
                  f"{len(result.unreachable)} unreachable")
            if result.bad or result.unreachable:
                code = EXIT_FAILED
    finally:
        journal.close()
    return code


# ---- parser -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triplicate",
        description="Watch folders and make verified 3-2-1 copies of every camera file.",
    )
    parser.add_argument("--version", action="version", version=f"triplicate {__version__}")
    parser.add_argument("--config", "-c", type=Path, help="config file (default: $TRIPLICATE_CONFIG or the user config folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    run = add("run", cmd_run, "run the daemon in the foreground until SIGTERM/SIGINT")
    run.add_argument("--once", action="store_true", help="copy everything present and ready, then exit (0: all verified)")
    status = add("status", cmd_status, "show each offload's copies and the 3-2-1 verdict")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    check = add("check-config", cmd_check_config, "validate a config file (exit 0, or 2 with one sentence per problem)")
    check.add_argument("file", nargs="?", type=Path, help="config file (default: --config)")
    hsh = add("hash", cmd_hash, "print file hashes like xxhsum: <hex>  <path>")
    hsh.add_argument("--algorithm", "-a", default="xxh64", choices=["xxh64", "xxh3", "xxh128", "md5", "sha1"])
    hsh.add_argument("files", nargs="+")
    retry = add("retry", cmd_retry, "queue failed and waiting copies to be tried again now")
    retry.add_argument("--destination", help="only this destination")
    retry.add_argument("--offload", help="only this offload")
    verify = add("verify", cmd_verify, "re-read verified copies at the destinations; bad ones are queued to be sent again")
    verify.add_argument("--destination", help="only this destination")
    verify.add_argument("--offload", help="only this offload")
    verify.add_argument("--sample", type=int, help="check this many copies chosen at random, not all")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except JournalError as exc:
        _fail([str(exc)])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
