"""The `triplicate` command line.

Exit codes: 0 all good; 1 something is not verified (run --once) or a check
failed; 2 the configuration, the journal or the command line is unusable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

from . import __version__
from .errors import ConfigError, JournalError

if TYPE_CHECKING:  # config.py imports every destination's SDK (~0.4 s): `hash` needs none
    from .config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def default_config() -> Path:
    env = os.environ.get("TRIPLICATE_CONFIG")
    if env:
        return Path(env)
    import platformdirs  # 18 ms of every start otherwise, `hash` included

    return Path(platformdirs.user_config_dir("triplicate")) / "triplicate.toml"


def _fail(lines: list[str], code: int = EXIT_USAGE) -> NoReturn:
    for line in lines:
        print(f"triplicate: {line}", file=sys.stderr)
    raise SystemExit(code)


def _load(args: argparse.Namespace) -> Config:
    from .config import load_config

    path = getattr(args, "file", None) or args.config or default_config()
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(exc.problems)


# ---- commands -------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .journal_file import IntegrityCheck
    from .libc import limit_arenas

    limit_arenas()  # before any thread starts

    config = _load(args)
    check = IntegrityCheck.begin(config.daemon.journal_path())  # reads the whole journal while the daemon loads
    from .daemon import preflight, run_daemon
    from .logs import configure

    configure(config.daemon.log_format, config.daemon.log_level)
    problems = preflight(config)
    if problems:
        _fail(problems)
    import asyncio  # here: `hash` and the other quick commands start faster without it

    return asyncio.run(run_daemon(config, once=args.once, check=check))


def cmd_status(args: argparse.Namespace) -> int:
    from .status_view import fetch, plain, rich_view, watch

    config = _load(args)
    if args.json:
        print(fetch(config).model_dump_json(indent=2))
        return EXIT_OK
    if not sys.stdout.isatty():  # a pipe, a file, a test: plain text, no escape codes
        print(plain(fetch(config)))
        while args.watch:
            time.sleep(args.interval)
            print("\n" + plain(fetch(config)), flush=True)
        return EXIT_OK
    from rich.console import Console

    console = Console()
    if args.watch:
        watch(lambda: fetch(config), args.interval, console)
    else:
        console.print(rich_view(fetch(config)))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .journal import Journal
    from .report import RENDERERS, ReportError, build_report, find_offload

    config = _load(args)
    journal = Journal(config.daemon.journal_path())
    try:
        offload_id = find_offload(journal, args.offload, str(args.watch.resolve()) if args.watch else None)
        text = RENDERERS[args.format](build_report(config, journal, offload_id))
    except ReportError as exc:
        _fail([str(exc)], EXIT_FAILED)
    finally:
        journal.close()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail([f"cannot write the report to {args.output}: {exc.strerror}"], EXIT_FAILED)
    print(f"{args.output}: {args.format} report of {args.offload}", file=sys.stderr)
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    import signal

    from .daemon import preflight
    from .pidfile import path_for, running_pid

    config = _load(args)
    problems = preflight(config)
    if problems:
        _fail(problems + ["the running daemon keeps its current config"])
    journal = config.daemon.journal_path()
    pid = running_pid(journal)
    if pid is None:
        _fail([f"no running daemon uses the journal {journal} (no live process in {path_for(journal)}); "
               "start it with `triplicate run`"], EXIT_FAILED)
    try:
        os.kill(pid, signal.SIGHUP)
    except PermissionError:
        _fail([f"not allowed to signal the daemon (pid {pid}); run this as its user or root"], EXIT_FAILED)
    print(f"reload requested (pid {pid}); the daemon logs config_reloaded, or config_reload_rejected with the problems")
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    config = _load(args)
    if config.http is None:
        _fail([f"{config.source_file}: no [http] section, so there is no endpoint to check; add [http]"], EXIT_FAILED)
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    url = f"http://{host}:{config.http.port}/{'readyz' if args.ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            print(f"{url}: {resp.status} {resp.read().decode(errors='replace').strip()}")
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        _fail([f"{url}: {exc.code} {exc.read().decode(errors='replace').strip()}"], EXIT_FAILED)
    except (OSError, ValueError) as exc:
        _fail([f"{url}: no answer ({getattr(exc, 'reason', exc)}); is the daemon running?"], EXIT_FAILED)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(_load(args), only=args.destination)


def cmd_init(args: argparse.Namespace) -> int:
    from .init_wizard import run_init

    return run_init(args)


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
    _wake_daemon(config.daemon.journal_path())
    return EXIT_OK


def _wake_daemon(journal: Path) -> None:
    """A running daemon sleeps through a destination's slow-schedule pause
    unless told (SIGUSR1); without one, the next `run` picks the rows up."""
    import signal

    from .pidfile import running_pid

    pid = running_pid(journal)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGUSR1)
    except PermissionError:
        print(f"triplicate: not allowed to signal the running daemon (pid {pid}); it retries them on its "
              "own schedule — run this as its user or root to make it retry now", file=sys.stderr)
        return
    print(f"the running daemon (pid {pid}) tries them now")


def cmd_accept(args: argparse.Namespace) -> int:
    from . import offload_checks
    from .journal import Journal

    config = _load(args)
    journal = Journal(config.daemon.journal_path())
    try:
        if not offload_checks.offload_exists(journal, args.offload):
            _fail([f"no offload named {args.offload!r} in the journal {journal.path}; `triplicate status` lists them"])
        accepted = offload_checks.accept(journal, args.offload)
    finally:
        journal.close()
    if not accepted:
        print(f"{args.offload}: no file waits for a decision")
        return EXIT_OK
    print(f"{args.offload}: {len(accepted)} file(s) accepted as they are, recorded as such in the journal:")
    print("\n".join(offload_checks.accepted_lines(accepted)))
    print("A running daemon sends them within seconds; otherwise the next `triplicate run` does.")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncio

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
    status = add("status", cmd_status, "show each offload's copies, the 3-2-1 verdict and whether the card is safe to format")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", "-w", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch (default 2)")
    report = add("report", cmd_report, "the chain-of-custody report of one offload (every file, hash and verified copy)")
    report.add_argument("offload", help="offload name (the folder in the watch folder)")
    report.add_argument("--format", "-f", choices=["html", "json", "csv"], default="html")
    report.add_argument("--output", "-o", type=Path, help="write to this file (default: standard output)")
    report.add_argument("--watch", type=Path, help="the watch folder, when two hold an offload of that name")
    add("reload", cmd_reload, "make the running daemon re-read its config file (as SIGHUP)")
    health = add("healthcheck", cmd_healthcheck, "ask the running daemon's [http] endpoint whether it is alive (exit 0) or not (1)")
    health.add_argument("--ready", action="store_true", help="ask /readyz (journal open, watchers running) instead of /healthz")
    health.add_argument("--timeout", type=float, default=5.0)
    doctor = add("doctor", cmd_doctor, "check every destination and watch folder, and say how to fix what fails")
    doctor.add_argument("--destination", help="only this destination")
    _init_arguments(add("init", cmd_init, "write a commented starter config by asking a few questions (or from flags)"))
    check = add("check-config", cmd_check_config, "validate a config file (exit 0, or 2 with one sentence per problem)")
    check.add_argument("file", nargs="?", type=Path, help="config file (default: --config)")
    hsh = add("hash", cmd_hash, "print file hashes like xxhsum: <hex>  <path>")
    hsh.add_argument("--algorithm", "-a", default="xxh64", choices=["xxh64", "xxh3", "xxh128", "md5", "sha1"])
    hsh.add_argument("files", nargs="+")
    retry = add("retry", cmd_retry, "queue failed and waiting copies to be tried again now")
    retry.add_argument("--destination", help="only this destination")
    retry.add_argument("--offload", help="only this offload")
    accept = add("accept", cmd_accept, "send an offload's files that do not match its ASC MHL history as they are (recorded as accepted)")
    accept.add_argument("offload", help="the offload's name, as `status` shows it")
    verify = add("verify", cmd_verify, "re-read verified copies at the destinations; bad ones are queued to be sent again")
    verify.add_argument("--destination", help="only this destination")
    verify.add_argument("--offload", help="only this offload")
    verify.add_argument("--sample", type=int, help="check this many copies chosen at random, not all")
    return parser


def _init_arguments(p: argparse.ArgumentParser) -> None:
    """`init`'s flags, here so that parsing another command never loads the wizard."""
    p.add_argument("--output", "-o", type=Path, help="where to write the config (default: --config, then the user config folder)")
    p.add_argument("--watch-folder", help="folder where the offload tool puts verified card copies")
    p.add_argument("--source-media", default=None, help="media kind of the watch folder (ssd, raid, ...)")
    p.add_argument("--nearline", help="nearline copy: a mounted folder (RAID, NAS, second disk)")
    p.add_argument("--nearline-media", default=None, help="media kind of the nearline copy (raid, nas, disk, ...)")
    p.add_argument("--offsite", help="off-site copy: s3://BUCKET/PREFIX, azure://CONTAINER/PREFIX or sftp://USER@HOST[:PORT]/PATH")
    p.add_argument("--s3-region", help="region of the S3 bucket")
    p.add_argument("--s3-endpoint", help="URL of an S3-compatible service (Wasabi, B2, MinIO); leave out for AWS")
    p.add_argument("--azure-account-url", help="https://ACCOUNT.blob.core.windows.net")
    p.add_argument("--sftp-key", help="private key for the SFTP login (default ~/.ssh/id_ed25519)")
    p.add_argument("--journal", help="journal file (default: the platform's state folder)")
    p.add_argument("--http-port", type=int, help="serve /healthz, /metrics and /api/status on 127.0.0.1:PORT")
    p.add_argument("--webhook-env", help="NAME of an environment variable holding a Slack (or other) webhook URL")
    p.add_argument("--non-interactive", "-y", action="store_true", help="never ask; use flags and defaults")
    p.add_argument("--force", action="store_true", help="replace an existing file")


def _journal_trouble(args: argparse.Namespace, exc: Exception) -> str:
    from .journal_file import damaged

    path = _load(args).daemon.journal_path()
    if "full" in str(exc):
        return f"journal {path}: {exc}; free space on its disk, then start again"
    return damaged(path, str(exc))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except JournalError as exc:
        _fail([str(exc)])
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `triplicate status | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # a journal found damaged in the middle of a command, not at opening; sqlite3 is looked
        # up, not imported: a command that never loaded it (`hash`) cannot have raised its errors
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
            raise
        _fail([_journal_trouble(args, exc)])


if __name__ == "__main__":
    sys.exit(main())
