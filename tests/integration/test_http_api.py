"""The daemon's HTTP endpoint: health, readiness, Prometheus metrics, status JSON."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import make_setup, stop, wait_for, write_file

OLD = time.time() - 3600
TOKEN = "s3cret-token-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def with_http(setup, port: int, token_env: str | None = None) -> None:
    extra = f'\n[http]\nport = {port}\n' + (f'token_env = "{token_env}"\n' if token_env else "")
    setup.config.write_text(setup.config.read_text() + extra)


def test_endpoints_metrics_and_status_from_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = make_setup(tmp_path)
    port = free_port()
    with_http(setup, port, "TRIPLICATE_TEST_TOKEN")
    monkeypatch.setenv("TRIPLICATE_TEST_TOKEN", TOKEN)
    base = f"http://127.0.0.1:{port}"
    daemon = setup.start()
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 20, "/readyz to say ready")
        assert get(f"{base}/healthz") == (200, "ok\n")
        for i in range(3):
            write_file(setup.watch / f"A020/CLIPS/c{i}.mov", os.urandom(1_000_000), mtime=OLD)

        def safe() -> bool:
            code, body = get(f"{base}/api/status", TOKEN)
            return code == 200 and any(o["safe_to_format"] for o in json.loads(body)["offloads"])

        wait_for(safe, 30, "the offload to be safe to format")

        assert get(f"{base}/metrics")[0] == 401 and get(f"{base}/api/status", "wrong")[0] == 401
        code, text = get(f"{base}/metrics", TOKEN)
        assert code == 200
        m = samples(text)
        for dest in ("nearline", "offsite"):
            assert m[("triplicate_files", (("destination", dest), ("state", "verified")))] == 3
            assert m[("triplicate_bytes", (("destination", dest), ("state", "verified")))] == 3_000_000
            assert m[("triplicate_transferred_bytes_total", (("destination", dest),))] == 3_000_000
            assert m[("triplicate_hashed_bytes_total", (("destination", dest),))] == 3_000_000
            assert m[("triplicate_copies_verified_total", (("destination", dest),))] == 3
            assert m[("triplicate_destination_state", (("destination", dest), ("state", "up")))] == 1
            assert m[("triplicate_backlog_oldest_seconds", (("destination", dest),))] == 0
            assert m[("triplicate_queue_due", (("destination", dest),))] == 0
        assert m[("triplicate_offloads_safe_to_format", ())] == 1
        assert ("triplicate_settling_files", (("watch", str(setup.watch)),)) in m

        status = json.loads(setup.cli("status", "--json").stdout)
        assert status["source"] == "daemon", "status asks the running daemon"
        assert status["offloads"][0]["safe_to_format"] is True
        plain = setup.cli("status").stdout
        assert "live from the daemon" in plain and "SAFE TO FORMAT" in plain
        assert setup.cli("healthcheck").returncode == 0
        assert setup.cli("healthcheck", "--ready").returncode == 0
    finally:
        out = stop(daemon)
    assert TOKEN not in out, "the token never reaches a log line"
    gone = setup.cli("healthcheck")
    assert gone.returncode == 1 and "no answer" in gone.stderr
    assert setup.status()["source"] == "journal", "without a daemon, status reads the journal"


def test_missing_token_variable_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = make_setup(tmp_path)
    with_http(setup, free_port(), "TRIPLICATE_UNSET_TOKEN")
    monkeypatch.delenv("TRIPLICATE_UNSET_TOKEN", raising=False)
    done = setup.run_once()
    assert done.returncode == 2
    assert "TRIPLICATE_UNSET_TOKEN" in done.stderr and "not set" in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_is_logged_and_copying_goes_on(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with_http(setup, busy.getsockname()[1])
        write_file(setup.watch / "A021/clip.mov", b"x" * 100, mtime=OLD)
        done = setup.run_once()
    assert done.returncode == 0
    assert '"http_unavailable"' in done.stderr
    assert (setup.destinations["nearline"] / "A021/clip.mov").exists()
