"""`ready = "mhl"`: offloads made by the reference `ascmhl create`, checked file
by file before anything is sent, with the real daemon process."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import mhl_tools as t
import pytest
from triplicate import mhl
from triplicate.report import REPORT_FILENAME

from tests.harness import Setup, log_events, make_setup, stop, tree_files, wait_for

OLD = time.time() - 3600
FORMATS = ["xxh64", "xxh128", "xxh3", "md5", "sha1", "c4"]


def mhl_setup(root: Path, settle: float = 0.5) -> Setup:
    return make_setup(root, settle=settle, extra_watch='ready = "mhl"')


def card(folder: Path, *formats: str, files: dict[str, bytes] = t.SAMPLE) -> Path:
    """A card offload as an offload tool leaves it: media, then `ascmhl create`."""
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (OLD, OLD))
    t.assert_ok(t.run_tool("ascmhl", "create", folder, *(a for f in formats for a in ("-h", f))))
    return folder


def tamper(path: Path) -> None:
    """One byte flipped, size and mtime kept: only a hash can tell."""
    st = path.stat()
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def media(folder: Path) -> dict[str, bytes]:
    """The files of an offload, without its history and the report written beside it."""
    return {k: v for k, v in tree_files(folder).items() if k != REPORT_FILENAME}


def offload(status: dict, name: str) -> dict:
    return next(o for o in status["offloads"] if o["name"] == name)


def state_of(setup: Setup, name: str) -> str:
    """The offload's readiness state, "" while status does not list it yet."""
    return next((o["state"] for o in setup.status()["offloads"] if o["name"] == name), "")


def events(output: str, name: str) -> list[dict]:
    return [e for e in log_events(output) if e["event"] == name]


def chain_names(folder: Path) -> list[str]:
    return [e.path for e in mhl.parse_chain((folder / "ascmhl" / mhl.CHAIN_FILE).read_bytes())]


@pytest.mark.parametrize("hash_format", FORMATS)
def test_clean_offload_is_checked_then_sent_and_the_history_continues(tmp_path: Path, hash_format: str) -> None:
    setup = mhl_setup(tmp_path)
    source = card(setup.watch / "A001", hash_format)
    upstream = chain_names(source)

    done = setup.run_once()
    assert done.returncode == 0, done.stderr

    [matched] = events(done.stderr, "offload_matches_history")
    assert matched["files"] == len(t.SAMPLE)
    for name, root in setup.destinations.items():
        copy = root / "A001"
        assert media(copy) == media(source), f"{name} holds what the card holds"
        names = chain_names(copy)
        assert names[: len(upstream)] == upstream and len(names) == len(upstream) + 1, "one history: theirs, then ours"
        assert (copy / "ascmhl" / upstream[0]).read_bytes() == (source / "ascmhl" / upstream[0]).read_bytes()
        t.assert_tools_accept(copy)  # ascmhl verify (files and directory hashes), ascmhl info, the XSDs
    card_status = offload(setup.status(), "A001")
    assert (card_status["state"], card_status["problems"]) == ("ready", [])
    assert card_status["safe_to_format"] is True


@pytest.mark.parametrize("hash_format", ["xxh64", "xxh128", "xxh3", "md5"])
def test_tampered_missing_and_extra_files_wait_for_an_operator(tmp_path: Path, hash_format: str) -> None:
    setup = mhl_setup(tmp_path)
    card(setup.watch / "A001", hash_format)
    source = card(setup.watch / "B002", hash_format)
    tamper(source / "A001C001_230101_R1AB.mov")
    (source / "nested/a/side car.xml").unlink()
    (source / "extra take.mov").write_bytes(b"not on the card")

    first = setup.run_once()
    assert first.returncode == 1, "files waiting for a decision fail a one-shot run"
    assert "Traceback" not in first.stderr
    problems = {e["file"]: e["problem"] for e in events(first.stderr, "source_file_problem")}
    assert problems == {
        "B002/A001C001_230101_R1AB.mov": "mismatch",
        "B002/nested/a/side car.xml": "missing",
        "B002/extra take.mov": "unlisted",
    }
    [summary] = events(first.stderr, "offload_source_mismatch")
    assert (summary["mismatch"], summary["missing"], summary["unlisted"]) == (1, 1, 1)
    assert "triplicate accept B002" in summary["fix"]
    for root in setup.destinations.values():
        sent = media(root / "B002")
        assert "A001C001_230101_R1AB.mov" not in sent and "extra take.mov" not in sent
        assert sent["zz last.txt"] == b"last", "the files that match go ahead"
        assert media(root / "A001") == media(setup.watch / "A001")
    status = offload(setup.status(), "B002")
    assert status["state"] == "source_mismatch" and status["safe_to_format"] is False
    by_path = {p["path"]: p for p in status["problems"]}
    assert {p: v["problem"] for p, v in by_path.items()} == problems
    assert hash_format in by_path["B002/A001C001_230101_R1AB.mov"]["detail"]
    assert not any(p["accepted"] for p in status["problems"])

    again = setup.run_once()  # a rescan: the verdicts stand, nothing is read again
    assert again.returncode == 1
    assert [e["new"] for e in events(again.stderr, "scan_finished")] == [0]
    assert not events(again.stderr, "source_file_problem")

    accepted = setup.cli("accept", "B002")
    assert accepted.returncode == 0, accepted.stderr
    assert "3 file(s) accepted" in accepted.stdout and "extra take.mov" in accepted.stdout
    last = setup.run_once()
    assert last.returncode == 0, last.stderr
    for root in setup.destinations.values():
        sent = media(root / "B002")
        assert sent["A001C001_230101_R1AB.mov"] == (source / "A001C001_230101_R1AB.mov").read_bytes(), "as it is"
        assert sent["extra take.mov"] == b"not on the card"
        # the destination's history is honest: ascmhl verify still names the
        # tampered file and the missing one, against the card's own hashes
        checked = t.verify(root / "B002")
        assert checked.returncode != 0
        assert "A001C001_230101_R1AB.mov" in checked.stdout + checked.stderr
        assert "side car.xml" in checked.stdout + checked.stderr
    status = offload(setup.status(), "B002")
    assert status["state"] == "accepted" and all(p["accepted"] for p in status["problems"])


def test_accept_reaches_a_running_daemon(tmp_path: Path) -> None:
    setup = mhl_setup(tmp_path, settle=0.3)
    source = card(setup.watch / "C003", "md5")
    tamper(source / "zz last.txt")
    daemon = setup.start()
    try:
        wait_for(lambda: state_of(setup, "C003") == "source_mismatch", 30, "the mismatch")
        started = time.monotonic()
        assert setup.cli("accept", "C003").returncode == 0
        wait_for(lambda: all((r / "C003/zz last.txt").exists() for r in setup.destinations.values()), 30, "the accepted file")
        elapsed = time.monotonic() - started
    finally:
        out = stop(daemon)
    print(f"accept -> copied at both destinations in {elapsed:.2f} s")
    assert elapsed < 10
    assert len(events(out, "source_problems_accepted")) == 1


def test_history_still_being_written_holds_the_offload(tmp_path: Path) -> None:
    setup = mhl_setup(tmp_path, settle=0.3)
    staging = card(tmp_path / "staging" / "D004", "md5")
    [generation] = (staging / "ascmhl").glob("0001_*.mhl")
    chain = (staging / "ascmhl" / mhl.CHAIN_FILE).read_bytes()
    target = setup.watch / "D004"
    shutil.copytree(staging, target, ignore=shutil.ignore_patterns("ascmhl"))
    history = target / "ascmhl"
    history.mkdir()
    whole = generation.read_bytes()
    (history / generation.name).write_bytes(whole[: len(whole) // 2])  # the tool is mid-write

    def state() -> tuple[str, str]:
        found = [o for o in setup.status()["offloads"] if o["name"] == "D004"]
        return (found[0]["state"], found[0]["state_detail"] or "") if found else ("", "")

    def nothing_sent() -> bool:
        return not any((r / "D004").exists() for r in setup.destinations.values())

    daemon = setup.start()
    try:
        wait_for(lambda: "no ascmhl_chain.xml yet" in state()[1], 30, "the offload held: manifest without chain")
        assert state()[0] == "waiting" and nothing_sent()
        (history / mhl.CHAIN_FILE).write_bytes(chain)  # the chain names a generation not yet complete
        wait_for(lambda: state()[0] == "mhl_invalid", 30, "the half-written generation refused")
        assert "C4 id" in state()[1] and nothing_sent()
        (history / generation.name).write_bytes(whole)
        wait_for(lambda: state()[0] == "ready", 30, "the finished history accepted")
        wait_for(lambda: all(media(r / "D004") == media(target) for r in setup.destinations.values()
                             if (r / "D004").exists()) and not nothing_sent(), 30, "the copies")
        wait_for(lambda: all((r / "D004/ascmhl" / mhl.CHAIN_FILE).exists() for r in setup.destinations.values()),
                 30, "the destination histories")
    finally:
        out = stop(daemon)
    assert len(events(out, "offload_history_unusable")) == 1
    for root in setup.destinations.values():
        t.assert_tools_accept(root / "D004")


def test_a_frame_sequence_is_one_offload_line_and_one_status_line(tmp_path: Path) -> None:
    setup = mhl_setup(tmp_path)
    frames = {f"SHOT_010/SHOT_010.{n:07d}.dpx": n.to_bytes(4, "big") * 64 for n in range(86400, 87000)}
    card(setup.watch / "E005", "xxh64", files={**frames, "SHOT_010.ale": b"metadata"})
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    log = log_events(done.stderr)
    readiness = [e for e in log if e["event"] in ("files_ready", "offload_matches_history", "source_file_problem")]
    assert len(readiness) <= 4, f"{len(frames)} frames became ready in {len(readiness)} lines"
    pattern = "SHOT_010/SHOT_010.[0086400-0086999].dpx (600 files)"
    assert any(pattern in e["sequences"] for e in readiness if e["event"] == "offload_matches_history")
    assert offload(setup.status(), "E005")["sequences"] == [pattern]


def test_run_once_fails_on_an_offload_whose_history_stays_invalid(tmp_path: Path) -> None:
    """No copy row exists for a held offload, so only its readiness state can
    tell `run --once` that someone has to look at it."""
    setup = mhl_setup(tmp_path, settle=0.2)
    source = card(setup.watch / "F006", "xxh64")
    [generation] = (source / "ascmhl").glob("0001_*.mhl")
    generation.write_bytes(generation.read_bytes()[:100])  # the chain's C4 id no longer matches
    os.utime(generation, (OLD, OLD))
    done = setup.run_once()
    assert state_of(setup, "F006") == "mhl_invalid"
    assert done.returncode == 1, done.stderr
    [finished] = events(done.stderr, "run_finished")
    assert finished["mhl_invalid"] == ["F006"]
    assert not any((r / "F006").exists() for r in setup.destinations.values())
