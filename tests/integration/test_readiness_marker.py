"""`ready = "marker"` and the default `ready = "stable"` with offloads made by
the reference `ascmhl create`, with the real daemon process."""

from __future__ import annotations

import time
from pathlib import Path

import mhl_tools as t
from triplicate import mhl
from triplicate.report import REPORT_FILENAME

from tests.harness import Setup, log_events, make_setup, stop, tree_files, wait_for

OLD = time.time() - 3600


def card(folder: Path, hash_format: str) -> Path:
    t.write_sample(folder)
    t.assert_ok(t.run_tool("ascmhl", "create", folder, "-h", hash_format))
    return folder


def media(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree_files(folder).items() if k != REPORT_FILENAME}


def state_of(setup: Setup, name: str) -> str:
    return next((o["state"] for o in setup.status()["offloads"] if o["name"] == name), "")


def sent(setup: Setup, name: str) -> bool:
    return any((root / name).exists() for root in setup.destinations.values())


def test_offload_waits_for_its_marker_which_is_not_sent(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, extra_watch='ready = "marker"\nmarker = "*.done"')
    source = card(setup.watch / "A001", "md5")

    early = setup.run_once()
    assert early.returncode == 0, "an offload that is not ready is not a failure"
    assert not sent(setup, "A001")
    assert state_of(setup, "A001") == "waiting"
    assert [e["marker"] for e in log_events(early.stderr) if e["event"] == "offload_waiting_for_marker"] == ["*.done"]

    (source / "A001.done").write_bytes(b"")
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    for root in setup.destinations.values():
        assert media(root / "A001") == {k: v for k, v in media(source).items() if k != "A001.done"}
        chain = mhl.parse_chain((root / "A001/ascmhl" / mhl.CHAIN_FILE).read_bytes())
        assert len(chain) == 2, "the card's own generation, then triplicate's"
        t.assert_tools_accept(root / "A001")
    assert state_of(setup, "A001") == "ready"


def test_marker_beside_the_folder_and_send_marker(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, extra_watch='ready = "marker"\nmarker = "*.done"\nsend_marker = true')
    card(setup.watch / "B002", "xxh64")
    card(setup.watch / "C003", "xxh64")  # no marker: stays
    (setup.watch / "B002.done").write_bytes(b"offload finished")
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    for root in setup.destinations.values():
        assert media(root / "B002") == media(setup.watch / "B002")
        assert (root / "B002.done").read_bytes() == b"offload finished", "send_marker copies it"
        assert not (root / "C003").exists()
        t.assert_tools_accept(root / "B002")


def test_marker_arriving_while_the_daemon_runs(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, settle=0.3, extra_watch='ready = "marker"\nmarker = "OFFLOAD_COMPLETE"')
    source = card(setup.watch / "D004", "xxh128")
    daemon = setup.start()
    failed: AssertionError | None = None
    try:
        wait_for(lambda: state_of(setup, "D004") == "waiting", 30, "the offload held")
        assert not sent(setup, "D004")
        started = time.monotonic()
        (source / "OFFLOAD_COMPLETE").write_bytes(b"")
        wait_for(lambda: all((r / "D004/ascmhl" / mhl.CHAIN_FILE).exists() for r in setup.destinations.values()),
                 30, "the offload at both destinations with its history")
        elapsed = time.monotonic() - started
    except AssertionError as exc:
        failed = exc
    finally:
        out = stop(daemon)
    if failed is not None:
        raise AssertionError(f"{failed}; the daemon said:\n{out[-6000:]}")
    print(f"marker written -> offload verified at both destinations in {elapsed:.2f} s")
    assert [e["files"] for e in log_events(out) if e["event"] == "offload_marked"] == [len(t.SAMPLE)]
    for root in setup.destinations.values():
        assert "OFFLOAD_COMPLETE" not in media(root / "D004")
        t.assert_tools_accept(root / "D004")


def test_stable_rule_carries_the_upstream_history(tmp_path: Path) -> None:
    """The default rule checks nothing against the manifest, but the card's own
    history still travels: one chain, theirs then ours, at every destination."""
    setup = make_setup(tmp_path)
    source = card(setup.watch / "E005", "c4")
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    upstream = mhl.parse_chain((source / "ascmhl" / mhl.CHAIN_FILE).read_bytes())
    for root in setup.destinations.values():
        chain = mhl.parse_chain((root / "E005/ascmhl" / mhl.CHAIN_FILE).read_bytes())
        assert chain[:1] == upstream and len(chain) == 2
        t.assert_tools_accept(root / "E005")
