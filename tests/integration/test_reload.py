"""Re-reading the config in a running daemon: SIGHUP and `triplicate reload`."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.harness import make_setup, wait_for, write_file

OLD = time.time() - 3600


class LogTail:
    """Reads the daemon's JSON log lines as they come, so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(x) for x in list(self.lines) if x.startswith("{")]
        return [e for e in found if name is None or e["event"] == name]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.thread.join(timeout=10)
        return "".join(self.lines)


def test_reload_adds_and_removes_watches_and_destinations(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    original = setup.config.read_text()
    second, watch2 = tmp_path / "second", tmp_path / "watch2"
    second.mkdir()
    watch2.mkdir()
    daemon = setup.start()
    log = LogTail(daemon)
    try:
        wait_for(lambda: (tmp_path / "state/triplicate.pid").exists(), 20, "the pid file")
        write_file(setup.watch / "R001/a.mov", b"a" * 1000, mtime=OLD)
        wait_for(lambda: (setup.destinations["nearline"] / "R001/a.mov").exists(), 20, "the first copy")

        setup.config.write_text(original.replace('destinations = ["nearline"]', 'destinations = ["nearline", "second"]') + "\n".join([
            "[[watch]]", 'path = "watch2"', "settle_seconds = 0.5", 'destinations = ["second"]',
            "[[destination]]", 'name = "second"', 'type = "local"', 'path = "second"', 'media = "nas"', "offsite = true", "",
        ]))
        done = setup.cli("reload")
        assert done.returncode == 0, done.stderr
        write_file(watch2 / "R002/b.mov", b"b" * 1000, mtime=OLD)
        wait_for(lambda: (second / "R002/b.mov").exists(), 20, "a copy from the new watch folder to the new destination")
        write_file(setup.watch / "R003/c.mov", b"c" * 1000, mtime=OLD)
        wait_for(lambda: (second / "R003/c.mov").exists() and (setup.destinations["nearline"] / "R003/c.mov").exists(),
                 20, "the changed watch folder to route to both destinations")

        setup.config.write_text(original.replace('media = "raid"', 'media = "raid"\nbogus_key = 1'))
        daemon.send_signal(signal.SIGHUP)  # an invalid file: refused, the running config stays
        wait_for(lambda: log.events("config_reload_rejected"), 20, "the daemon to refuse the file")
        rejected = setup.cli("reload")
        assert rejected.returncode == 2 and "bogus_key is not a known setting" in rejected.stderr
        write_file(watch2 / "R004/d.mov", b"d" * 1000, mtime=OLD)
        wait_for(lambda: (second / "R004/d.mov").exists(), 20, "copies going on under the old config")

        setup.config.write_text(original)  # back to one watch, one destination
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: len(log.events("config_reloaded")) == 2, 20, "the second reload")
        write_file(watch2 / "R005/e.mov", b"e" * 1000, mtime=OLD)
        write_file(setup.watch / "R006/f.mov", b"f" * 1000, mtime=OLD)
        wait_for(lambda: (setup.destinations["nearline"] / "R006/f.mov").exists(), 20, "the remaining route")
    finally:
        out = log.stop()
    events = log.events()
    reloaded = [e for e in events if e["event"] == "config_reloaded"]
    assert reloaded[0]["destinations_added"] == ["second"] and reloaded[0]["watches_added"] == [str(watch2)]
    assert reloaded[-1]["destinations_removed"] == ["second"] and reloaded[-1]["watches_removed"] == [str(watch2)]
    assert any(e["event"] == "config_reload_rejected" and "bogus_key" in e["problem"] for e in events)
    assert not (second / "R005/e.mov").exists(), "a removed watch folder is no longer watched"
    assert not (second / "R006/f.mov").exists()
    assert not (tmp_path / "state/triplicate.pid").exists(), "the pid file goes with the daemon"
    assert "Traceback" not in out


def test_reload_without_a_daemon_says_so(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    done = setup.cli("reload")
    assert done.returncode == 1 and "no running daemon" in done.stderr
