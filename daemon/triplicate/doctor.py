"""`triplicate doctor`: a checklist of everything the daemon depends on, with a
fix for each failure.

Per destination: reachable with the configured credentials (its own `open`),
a probe object written, read back and deleted, free space for local paths (set
against the backlog waiting for it), and the clock for S3 and Azure, whose
request signatures fail when the clocks differ by more than 15 minutes. Per
watch folder: exists, readable, its file system, and whether file events work
there. And the journal: it opens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from . import mounts
from .config import Config, WatchConfig
from .destinations import registry
from .errors import ConfigError, JournalError, TriplicateError
from .fields import format_size

STEP_TIMEOUT = 30.0
SKEW_WARN, SKEW_FAIL = 60.0, 600.0  # seconds; S3 and Azure refuse signatures beyond 15 min
FREE_WARN = 10 * 1024**3


@dataclass
class Check:
    ok: bool | None  # None: a warning
    what: str
    fix: str = ""


@dataclass
class Section:
    title: str
    checks: list[Check] = field(default_factory=list)

    def add(self, ok: bool | None, what: str, fix: str = "") -> bool:
        self.checks.append(Check(ok, what, fix))
        return ok is not False


def run_doctor(config: Config, only: str | None = None) -> int:
    if only and only not in {d.name for d in config.destination}:
        raise ConfigError([f"no destination named {only!r} in {config.source_file}"])
    sections = [_journal(config)] if not only else []
    if not only:
        sections += [_watch(config, w) for w in config.watch]
    backlog = _backlogs(config)
    for dest in config.destination:
        if only is None or dest.name == only:
            sections.append(asyncio.run(_destination(dest, backlog.get(dest.name, 0))))
    return _print(config, sections)


def _print(config: Config, sections: list[Section]) -> int:
    tty = sys.stdout.isatty()
    marks = {True: "\033[32m ok \033[0m" if tty else " ok ", None: "\033[33mwarn\033[0m" if tty else "warn",
             False: "\033[31mFAIL\033[0m" if tty else "FAIL"}
    print(f"triplicate doctor — {config.source_file}")
    for s in sections:
        print(f"\n{s.title}")
        for c in s.checks:
            print(f"  [{marks[c.ok]}] {c.what}")
            if c.fix and c.ok is not True:
                print(f"         fix: {c.fix}")
    checks = [c for s in sections for c in s.checks]
    failed = sum(1 for c in checks if c.ok is False)
    warned = sum(1 for c in checks if c.ok is None)
    print(f"\n{len(checks)} checks: {failed} failed, {warned} warning(s)")
    return 1 if failed else 0


# ---- journal ------------------------------------------------------------------------


def _journal(config: Config) -> Section:
    from .journal import Journal

    path = config.daemon.journal_path()
    s = Section(f"journal {path}")
    try:
        journal = Journal(path)
    except JournalError as exc:
        s.add(False, str(exc), "see the sentence above")
        return s
    try:
        files = journal.db.execute("SELECT COUNT(*) FROM files WHERE current = 1").fetchone()[0]
        s.add(True, f"opens ({files} files known)")
    finally:
        journal.close()
    free = shutil.disk_usage(path.parent).free
    s.add(free > 1024**3 or None, f"free space beside it: {format_size(free)}",
          "free space on that disk: a full disk stops the journal and with it every copy")
    return s


def _backlogs(config: Config) -> dict[str, int]:
    from .journal import Journal

    try:
        journal = Journal(config.daemon.journal_path())
    except JournalError:
        return {}
    try:
        rows = journal.db.execute(
            "SELECT c.destination, COALESCE(SUM(f.size), 0) FROM copies c JOIN files f ON f.id = c.file_id "
            "WHERE f.current = 1 AND c.state IN ('pending', 'transferring') GROUP BY c.destination")
        return {r[0]: r[1] for r in rows}
    finally:
        journal.close()


# ---- watch folders --------------------------------------------------------------------


def _watch(config: Config, watch: WatchConfig) -> Section:
    s = Section(f"watch {watch.path}")
    path = watch.path
    if not path.is_dir():
        s.add(False, "does not exist or is not a folder", f"create it (mkdir -p {path}) or mount the volume")
        return s
    try:
        entries = sum(1 for _ in os.scandir(path))
    except PermissionError:
        s.add(False, "is not readable by this user", f"give {_user()} read and search rights (chmod/chown/ACL, or a group)")
        return s
    s.add(True, f"exists and is readable ({entries} entries)")
    fs = mounts.filesystem_type(path) or "unknown"
    network = mounts.is_network(fs)
    s.add(None if network else True, f"file system: {fs}" + (" (network)" if network else ""),
          f"files written by other machines raise no events on {fs}: the watcher polls it (see [[watch]].polling) "
          f"and rescans every {config.daemon.rescan_seconds:g} s")
    s.add(*_events_work(path))
    return s


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "this user"


def _events_work(path: Path) -> tuple[bool | None, str, str]:
    """Start a recursive watchdog observer on the folder, as the daemon does."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    observer = Observer()
    try:
        # the base handler does nothing with an event: only starting the watch matters here
        observer.schedule(FileSystemEventHandler(), str(path), recursive=True)
        observer.start()
    except OSError as exc:
        return (False, f"file events cannot be watched here: {exc.strerror or exc}",
                "on Linux raise the inotify limits: sysctl fs.inotify.max_user_watches=1048576 "
                "fs.inotify.max_user_instances=1024 (and persist them in /etc/sysctl.d/)")
    finally:
        if observer.is_alive():
            observer.stop()
            observer.join(timeout=5)
    return True, f"file events: {type(observer).__name__} works", ""


# ---- destinations ---------------------------------------------------------------------


async def _destination(dest_config: Any, backlog: int) -> Section:
    from .report import location

    s = Section(f"destination {dest_config.name} ({dest_config.type}: {location(dest_config)})")
    dest = registry.create(dest_config)
    try:
        if not await _step(s, dest.open(), "reachable; credentials and target accepted"):
            return s
        await _probe(s, dest)
    finally:
        try:
            await asyncio.wait_for(dest.close(), STEP_TIMEOUT)
        except (TriplicateError, OSError, TimeoutError):
            pass
    if dest_config.type == "local":
        _free_space(s, dest_config.path, backlog)
    if dest_config.type in ("s3", "azure"):
        s.add(*await _clock(dest_config))
    return s


async def _step(s: Section, coro: Any, ok_text: str) -> bool:
    try:
        await asyncio.wait_for(coro, STEP_TIMEOUT)
    except TimeoutError:
        return s.add(False, f"no answer within {STEP_TIMEOUT:g} s", "check the network path (firewall, VPN, DNS) to it")
    except TriplicateError as exc:
        return s.add(False, str(exc), _fix_for(str(exc)))
    except OSError as exc:
        return s.add(False, f"{exc.strerror or exc}", "check that the path or host is right and reachable")
    return s.add(True, ok_text)


def _fix_for(message: str) -> str:
    """The destinations' sentences already say what to do after a ';'."""
    return message.split("; ", 1)[1] if "; " in message else "see the sentence above"


async def _probe(s: Section, dest: Any) -> None:
    key = f".triplicate-doctor-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
    data = os.urandom(1024)
    if not await _step(s, dest.write_bytes(key, data), "a probe object can be written"):
        return
    try:
        got = await asyncio.wait_for(dest.read_bytes(key), STEP_TIMEOUT)
        s.add(got == data, "the probe object reads back identical" if got == data else
              "the probe object read back differs from what was written",
              "the storage returns other bytes than it stored: check the device or the service")
    except (TriplicateError, OSError, TimeoutError) as exc:
        s.add(False, f"the probe object cannot be read back: {exc}", "grant read access as well as write")
    if await _step(s, dest.delete(key), "the probe object can be deleted"):
        gone = await asyncio.wait_for(dest.stat(key), STEP_TIMEOUT)
        if gone is not None:
            s.add(False, "the probe object is still there after delete", "check retention or object-lock settings")


def _free_space(s: Section, path: Path, backlog: int) -> None:
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        s.add(False, f"free space unknown: {exc.strerror}", "check that the volume is mounted")
        return
    text = f"free space {format_size(free)}, backlog waiting for it {format_size(backlog)}"
    if free < backlog:
        s.add(False, text, "free space or add a disk: the backlog does not fit")
    elif free < FREE_WARN:
        s.add(None, text, "less than 10 GiB left: one more card may not fit")
    else:
        s.add(True, text)


async def _clock(dest_config: Any) -> tuple[bool | None, str, str]:
    import aiohttp

    url = _service_url(dest_config)
    if url is None:
        return None, "clock not checked (no endpoint URL to ask)", "set account_url to check the clock"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.head(url, timeout=aiohttp.ClientTimeout(total=10), allow_redirects=False) as resp:
                date = resp.headers.get("Date")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return None, f"clock not checked: {url} did not answer ({type(exc).__name__})", "check the network path"
    if not date:
        return None, f"clock not checked: {url} sent no Date header", ""
    skew = time.time() - parsedate_to_datetime(date).timestamp()
    text = f"clock differs from {url}'s by {abs(skew):.0f} s"
    fix = "set the time with NTP (timedatectl set-ntp true, or System Settings > Date & Time)"
    if abs(skew) > SKEW_FAIL:
        return False, text + " (signatures are refused beyond 15 min)", fix
    return (None if abs(skew) > SKEW_WARN else True), text, fix


def _service_url(dest_config: Any) -> str | None:
    if dest_config.type == "s3":
        return dest_config.endpoint_url or f"https://s3.{dest_config.region or 'us-east-1'}.amazonaws.com"
    return getattr(dest_config, "account_url", None)
