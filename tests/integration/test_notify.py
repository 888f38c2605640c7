"""Notifications from the real daemon to a local HTTP receiver and a command hook."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.harness import log_events, make_setup, write_file

OLD = time.time() - 3600


class Receiver:
    """Records POSTed JSON bodies by path; answers 500 to the first `fail` requests of a path."""

    def __init__(self, fail: dict[str, int]) -> None:
        self.fail = dict(fail)
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.attempts: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts[self.path] = receiver.attempts.get(self.path, 0) + 1
                if receiver.fail.get(self.path, 0) > 0:
                    receiver.fail[self.path] -= 1
                    self.send_response(500)
                else:
                    receiver.bodies.setdefault(self.path, []).append(body)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, path: str) -> list[str]:
        return [b.get("event", b.get("text", "")) for b in self.bodies.get(path, [])]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail={"/flaky": 2})
    yield r
    r.server.shutdown()
    r.server.server_close()


def add_notify(setup, text: str) -> None:
    setup.config.write_text(setup.config.read_text() + "\n" + text + "\n")


def test_ready_and_safe_reach_webhooks_and_a_command(tmp_path: Path, receiver: Receiver) -> None:
    setup = make_setup(tmp_path)
    hook_out = tmp_path / "hook.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys\nopen({str(hook_out)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    add_notify(setup, "\n".join([
        "[[notify]]", 'name = "flaky-json"', f'url = "{receiver.url}/flaky"',
        "[[notify]]", 'name = "slack"', f'url = "{receiver.url}/slack"', 'format = "slack"', 'events = ["offload_safe"]',
        "[[notify]]", 'name = "hook"', f"command = {json.dumps([sys.executable, str(hook)])}",
    ]))
    write_file(setup.watch / "A030/CLIPS/c1.mov", b"a" * 5000, mtime=OLD)
    write_file(setup.watch / "A030/CLIPS/c2.mov", b"b" * 5000, mtime=OLD)
    done = setup.run_once()
    assert done.returncode == 0, done.stderr

    flaky = receiver.bodies["/flaky"]
    assert [b["event"] for b in flaky] == ["offload_ready", "offload_safe"], "in order, after the retries"
    assert receiver.attempts["/flaky"] == 4, "two 500s, then both delivered"
    ready, safe = flaky
    assert (ready["offload"], ready["files"], ready["bytes"]) == ("A030", 2, 10_000)
    assert ready["destinations"] == ["nearline", "offsite"]
    assert (safe["offload"], safe["copies"], safe["offsite_copies"]) == ("A030", 3, 1)
    assert "SAFE TO FORMAT" in safe["message"] and safe["at"].endswith("Z")

    [slack] = receiver.bodies["/slack"]
    assert set(slack) == {"text"} and "A030 is SAFE TO FORMAT" in slack["text"]

    hooked = [json.loads(line) for line in hook_out.read_text().splitlines() if line.strip()]
    assert [h["event"] for h in hooked] == ["offload_ready", "offload_safe"]
    events = log_events(done.stderr)
    failed = [e for e in events if e["event"] == "notification_failed"]
    assert len(failed) == 2 and all(e["target"] == "flaky-json" and e["will_retry"] for e in failed)
    assert receiver.url not in done.stderr, "webhook URLs (secrets, for Slack) are never logged"


def test_failures_and_a_degraded_destination_are_told(tmp_path: Path, receiver: Receiver) -> None:
    setup = make_setup(tmp_path)
    setup.config.write_text(setup.config.read_text().replace("[daemon.retry]", "[daemon.retry]\ndegraded_after = 2"))
    add_notify(setup, "\n".join(["[[notify]]", f'url = "{receiver.url}/ops"',
                                 'events = ["file_failed", "destination_degraded", "destination_recovered"]']))
    for i in range(3):
        write_file(setup.watch / f"A031/clip{i}.mov", b"x" * 1000, mtime=OLD)
    write_file(setup.watch / "A031/locked.mov", b"locked", mtime=OLD).chmod(0)
    setup.destinations["offsite"].chmod(0o555)
    assert setup.run_once(bound_by_permissions=True).returncode == 1
    got = receiver.bodies["/ops"]
    assert sorted(b["event"] for b in got) == ["destination_degraded", "file_failed"]
    failed = next(b for b in got if b["event"] == "file_failed")
    assert failed["file"] == "A031/locked.mov" and "Permission denied" in failed["error"]
    degraded = next(b for b in got if b["event"] == "destination_degraded")
    assert degraded["destination"] == "offsite" and "not writable" in degraded["error"]

    setup.destinations["offsite"].chmod(0o755)
    (setup.watch / "A031/locked.mov").chmod(0o644)
    setup.run_once(bound_by_permissions=True)
    assert [b["event"] for b in receiver.bodies["/ops"]][2:] == ["destination_recovered"]


def test_notify_config_needs_one_target(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    add_notify(setup, '[[notify]]\nurl = "http://127.0.0.1:9/x"\ncommand = ["true"]')
    done = setup.cli("check-config")
    assert done.returncode == 2 and "exactly one of url, url_env or command" in done.stderr
