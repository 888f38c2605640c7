"""Re-reading the config file in a running daemon (SIGHUP, `triplicate reload`,
POST /api/reload).

An invalid new config is rejected with its problems, one log line each
(`config_reload_rejected`), and the old one keeps running. A valid one is
applied as a difference:

- a new destination starts; a removed one stops taking work and finishes the
  copies in progress; a changed one does both (the new settings take over when
  the old runner has finished its copies in progress);
- a new watch folder is scanned and watched; a removed one is no longer
  watched (files it already handed on still get their copies); a changed one
  is watched again with its new settings;
- `[daemon]` settings other than the journal take effect where they are read
  (retry pacing of new runners, rescans); the journal cannot change while the
  daemon runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from .config import Config, load_config
from .destinations import registry
from .errors import ConfigError
from .shared_read import SHARES

if TYPE_CHECKING:
    from .daemon import Daemon

log = structlog.get_logger("triplicate.reload")


def _problems(daemon: "Daemon") -> tuple[Config | None, list[str]]:
    from .daemon import preflight

    path = daemon.config.source_file
    if path is None:
        return None, ["the daemon was not started from a config file, so there is nothing to re-read"]
    try:
        new = load_config(path)
    except ConfigError as exc:
        return None, exc.problems
    problems = preflight(new)
    if new.daemon.journal_path() != daemon.config.daemon.journal_path():
        problems.append(f"{path}: [daemon].journal cannot change while the daemon runs; restart it to use another journal")
    return new, problems


async def reload(daemon: "Daemon") -> Config | None:
    """Apply the config file as it is now; returns the old config, or None if rejected."""
    new, problems = _problems(daemon)
    if new is None or problems:
        for problem in problems:
            log.error("config_reload_rejected", problem=problem, fix="correct the file; the running config stays")
        return None
    old = daemon.config
    changes = _destinations(daemon, old, new)
    # retired destinations may still be reading: no fewer sharers than before
    SHARES.readers_here = max(SHARES.readers_here, registry.readers_in_daemon(new.destination))
    changes.update(await _watches(daemon, old, new))
    daemon.config = new
    log.info("config_reloaded", **{k: v for k, v in changes.items() if v})
    return old


def _by_name(config: Config) -> dict[str, Any]:
    return {d.name: d for d in config.destination}


def _destinations(daemon: "Daemon", old: Config, new: Config) -> dict[str, list[str]]:
    before, after = _by_name(old), _by_name(new)
    removed = sorted(set(before) - set(after))
    added = sorted(set(after) - set(before))
    changed = sorted(n for n in set(before) & set(after) if before[n].model_dump() != after[n].model_dump())
    for name in removed + changed:
        _retire(daemon, name)
    for name in added + changed:
        _start_after_retired(daemon, after[name])
    return {"destinations_added": added, "destinations_removed": removed, "destinations_changed": changed}


def _retire(daemon: "Daemon", name: str) -> None:
    """Stop taking work; the runner's task ends once its copies in progress end."""
    runner = daemon.runners.pop(name)
    runner.stop()
    log.info("destination_stopping", destination=name, in_flight=runner.in_flight)


def _start_after_retired(daemon: "Daemon", dest_config: Any) -> None:
    name = dest_config.name
    previous = [t for t in daemon._tasks if t.get_name() == f"runner-{name}" and not t.done()]

    async def start() -> None:
        await asyncio.gather(*previous, return_exceptions=True)
        dest = registry.create_for_daemon(dest_config)
        daemon.destinations[name] = dest
        daemon.manifests.track(name)
        runner = daemon._runner(dest)
        daemon.runners[name] = runner
        await runner.run()

    for task in previous:
        task.set_name(f"runner-{name}-retired")
    daemon._tasks.append(asyncio.create_task(start(), name=f"runner-{name}"))


async def _watches(daemon: "Daemon", old: Config, new: Config) -> dict[str, list[str]]:
    before = {str(w.path): w for w in old.watch}
    after = {str(w.path): w for w in new.watch}
    removed = sorted(set(before) - set(after))
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in set(before) & set(after) if before[p].model_dump() != after[p].model_dump())
    for path in removed + changed:
        watcher = daemon._watcher_of(path)
        if watcher is None:
            continue
        watcher.stop()
        daemon.watchers.remove(watcher)
        for task in daemon._tasks:
            if task.get_name() == f"watch-{watcher.root}":
                task.cancel()
    for path in added + changed:
        watcher = daemon._watcher(after[path])
        daemon.watchers.append(watcher)
        watcher.start_events()
        daemon._tasks.append(asyncio.create_task(watcher.run(), name=f"watch-{watcher.root}"))
        await watcher.full_scan("reload")
    return {"watches_added": added, "watches_removed": removed, "watches_changed": changed}
