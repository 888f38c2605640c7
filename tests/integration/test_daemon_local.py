"""The real daemon process, local destinations, the issue's hard cases."""

from __future__ import annotations

import os
import shutil
import time
import unicodedata
from pathlib import Path

import pytest
import xxhash

from tests.harness import Setup, log_events, make_setup, stop, tree_files, wait_for, write_file
from tests.mhl_tools import assert_ok, assert_valid, verify

OLD = time.time() - 3600  # files that finished arriving an hour ago


def xxh(data: bytes) -> str:
    return xxhash.xxh64_hexdigest(data)


def assert_mhl_history_valid(card_copy: Path) -> None:
    history = card_copy / "ascmhl"
    files = sorted(history.iterdir())
    assert any(f.name == "ascmhl_chain.xml" for f in files)
    for f in files:
        assert_valid(f"{card_copy.name}/ascmhl/{f.name}", f.read_bytes())
    assert_ok(verify(card_copy))


def test_offload_reaches_every_destination_verified(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    nfc_name = unicodedata.normalize("NFC", "Café")
    nfd_name = unicodedata.normalize("NFD", "Jose\u0301 take 2")
    content = {
        "A001_CARD/CLIPS/A001C001.mov": os.urandom(3_000_000),
        "A001_CARD/CLIPS/deep/er/nested/A001C002.mov": os.urandom(70_000),
        "A001_CARD/empty.bin": b"",
        f"A001_CARD/{nfc_name} crème/clip 1.mov": os.urandom(1000),
        f"A001_CARD/{nfd_name}.mov": os.urandom(1000),
        "A001_CARD/🎬 emoji ✨.txt": b"slate",
        "loose_file.wav": os.urandom(5000),
        "A001_CARD/.DS_Store": b"finder junk",
    }
    for rel, data in content.items():
        write_file(setup.watch / rel, data, mtime=OLD)

    done = setup.run_once()
    assert done.returncode == 0, done.stderr

    expected = {unicodedata.normalize("NFC", k): v for k, v in content.items() if ".DS_Store" not in k}
    for name, root in setup.destinations.items():
        found = {unicodedata.normalize("NFC", k): v for k, v in tree_files(root).items()}
        assert found == expected, f"{name} holds other files than the source"
        clip = root / "A001_CARD/CLIPS/A001C001.mov"
        assert clip.stat().st_mtime == pytest.approx(OLD, abs=1), "mtime is preserved"
        assert_mhl_history_valid(root / "A001_CARD")

    status = setup.status()
    card = next(o for o in status["offloads"] if o["name"] == "A001_CARD")
    assert card["files"] == 6 and card["verified_files"] == 6 and card["failed_files"] == 0
    assert (card["copies"], card["media_types"], card["offsite_copies"], card["rule_321_met"]) == (3, 3, 1, True)
    by_path = {f["path"]: f for f in status["files"]}
    clip = by_path["A001_CARD/CLIPS/A001C001.mov"]
    assert clip["xxh64"] == xxh(content["A001_CARD/CLIPS/A001C001.mov"])
    assert clip["destinations"] == {"nearline": "verified", "offsite": "verified"}
    assert f"A001_CARD/{unicodedata.normalize('NFC', nfd_name)}.mov" in by_path, "keys are NFC"
    assert by_path["loose_file.wav"]["destinations"] == {"nearline": "verified", "offsite": "verified"}


def test_second_run_sends_nothing_and_adds_no_generation(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    write_file(setup.watch / "A002/clip.mov", os.urandom(10_000), mtime=OLD)
    assert setup.run_once().returncode == 0
    again = setup.run_once()
    assert again.returncode == 0
    assert not [e for e in log_events(again.stderr) if e["event"] == "copy_verified"]
    assert len(list((setup.destinations["nearline"] / "A002/ascmhl").glob("*.mhl"))) == 1


def test_a_200_mb_file(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    big = setup.watch / "A003/big.mov"
    big.parent.mkdir(parents=True)
    digest = xxhash.xxh64()
    with open(big, "wb") as fh:
        for i in range(200):
            block = os.urandom(1 << 20)
            digest.update(block)
            fh.write(block)
    os.utime(big, (OLD, OLD))
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    copy = setup.destinations["nearline"] / "A003/big.mov"
    assert xxhash.xxh64(copy.read_bytes()).hexdigest() == digest.hexdigest()
    assert setup.status()["files"][0]["xxh64"] == digest.hexdigest()


def test_growing_file_is_copied_only_when_complete(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, settle=1.5, destinations={"nearline": 'media = "raid"'})
    growing = setup.watch / "A004/growing.mov"
    growing.parent.mkdir(parents=True)
    daemon = setup.start()
    try:
        chunks = [os.urandom(100_000) for _ in range(8)]
        with open(growing, "wb") as fh:
            for chunk in chunks:  # an offload tool still writing
                fh.write(chunk)
                fh.flush()
                time.sleep(0.3)
        wait_for(lambda: (setup.destinations["nearline"] / "A004/growing.mov").exists(), 30, "the copy")
        wait_for(lambda: setup.status()["files"][0]["destinations"]["nearline"] == "verified", 15, "verified")
    finally:
        out = stop(daemon)
    assert (setup.destinations["nearline"] / "A004/growing.mov").read_bytes() == b"".join(chunks)
    verified = [e for e in log_events(out) if e["event"] == "copy_verified"]
    assert len(verified) == 1, "no partial version was ever copied"


def test_folder_dropped_into_running_daemon(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, settle=0.5)
    staging = tmp_path / "staging/B001"
    for i in range(5):
        write_file(staging / f"CLIPS/B001C00{i}.mov", os.urandom(20_000), mtime=OLD)
    daemon = setup.start()
    try:
        wait_for(lambda: (setup.root / "state/journal.db").exists(), 10, "the journal")
        started = time.monotonic()
        shutil.move(str(staging), str(setup.watch / "B001"))  # arrives whole: one event for the folder
        wait_for(lambda: all(
            (root / "B001/ascmhl/ascmhl_chain.xml").exists() for root in setup.destinations.values()
        ), 30, "both destinations to hold B001 with its history")
        elapsed = time.monotonic() - started
        wait_for(lambda: any(o["name"] == "B001" and o["safe_to_format"] for o in setup.status()["offloads"]),
                 30, "B001 to be declared safe to format")
    finally:
        out = stop(daemon)
    print(f"folder dropped -> verified at both destinations with MHL in {elapsed:.2f} s")
    assert elapsed < 10
    events = log_events(out)
    assert any(e["event"] == "daemon_stopped" for e in events), "SIGTERM stops it gracefully"
    names = [e["event"] for e in events]
    assert "offload_safe" in names, "the card is declared safe to format"
    written = [i for i, n in enumerate(names) if n == "mhl_generation_written"]
    assert len(written) == 2 and max(written) < names.index("offload_safe"), (
        "safe to format only once every destination's ASC MHL history lists the files"
    )
    for e in events:
        if e["event"] == "copy_verified":
            assert {"offload", "file", "destination"} <= set(e), "every transfer line names offload, file, destination"


def test_file_changed_after_copy_becomes_a_new_version(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    clip = write_file(setup.watch / "A005/clip.mov", b"take one" * 1000, mtime=OLD)
    assert setup.run_once().returncode == 0
    write_file(clip, b"take two, longer" * 1000, mtime=OLD + 60)
    assert setup.run_once().returncode == 0
    assert (setup.destinations["nearline"] / "A005/clip.mov").read_bytes() == b"take two, longer" * 1000
    assert setup.status()["files"][0]["xxh64"] == xxh(b"take two, longer" * 1000)
    assert len(list((setup.destinations["nearline"] / "A005/ascmhl").glob("*.mhl"))) == 2


def test_unreadable_source_fails_that_file_only(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    write_file(setup.watch / "A006/ok.mov", b"fine" * 100, mtime=OLD)
    write_file(setup.watch / "A006/locked.mov", b"locked" * 100, mtime=OLD).chmod(0)
    done = setup.run_once(bound_by_permissions=True)
    assert done.returncode == 1, "a file that could not be copied makes the run fail"
    assert (setup.destinations["nearline"] / "A006/ok.mov").read_bytes() == b"fine" * 100
    assert not (setup.destinations["nearline"] / "A006/locked.mov").exists()
    by_path = {f["path"]: f for f in setup.status()["files"]}
    assert by_path["A006/locked.mov"]["destinations"]["nearline"] == "failed"
    assert "Permission denied" in by_path["A006/locked.mov"]["errors"]["nearline"]
    assert by_path["A006/ok.mov"]["destinations"]["nearline"] == "verified"
    assert "Traceback" not in done.stderr


def test_read_only_destination_keeps_rows_pending(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    write_file(setup.watch / "A007/clip.mov", b"x" * 5000, mtime=OLD)
    locked = setup.destinations["offsite"]
    locked.chmod(0o555)
    done = setup.run_once(bound_by_permissions=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [row] = setup.status()["files"]
    assert row["destinations"] == {"nearline": "verified", "offsite": "pending"}
    assert "not writable" in row["errors"]["offsite"]
    locked.chmod(0o755)  # the operator fixes the mount
    assert setup.run_once(bound_by_permissions=True).returncode == 0
    assert (locked / "A007/clip.mov").read_bytes() == b"x" * 5000


def test_missing_watch_folder_is_exit_2(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    shutil.rmtree(setup.watch)
    done = setup.run_once()
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "watch[0].path" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    ok = setup.cli("check-config", str(setup.config))
    assert ok.returncode == 0, ok.stderr
    setup.config.write_text(setup.config.read_text().replace('type = "local"', 'type = "local"\nbogus = 1', 1))
    bad = setup.cli("check-config", str(setup.config))
    assert bad.returncode == 2
    assert "bogus is not a known setting" in bad.stderr and str(setup.config) in bad.stderr
    assert "Traceback" not in bad.stderr


def test_hash_command_matches_xxhsum_format(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    f = write_file(tmp_path / "f.bin", b"hello")
    done = setup.cli("hash", str(f))
    assert done.stdout == f"26c7827d889f6da3  {f}\n"


def test_verify_finds_a_flipped_byte_and_the_next_run_repairs_it(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    data = os.urandom(100_000)
    write_file(setup.watch / "A008/clip.mov", data, mtime=OLD)
    write_file(setup.watch / "A008/other.mov", b"fine" * 10, mtime=OLD)
    assert setup.run_once().returncode == 0
    copy = setup.destinations["offsite"] / "A008/clip.mov"
    with open(copy, "r+b") as fh:  # bit rot after verification
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 1]))
    clean = setup.cli("verify", "--destination", "nearline")
    assert clean.returncode == 0 and "2 copies match, 0 bad" in clean.stdout
    found = setup.cli("verify", "--destination", "offsite")
    assert found.returncode == 1 and "1 copies match, 1 bad" in found.stdout
    by_path = {f["path"]: f for f in setup.status()["files"]}
    assert by_path["A008/clip.mov"]["destinations"]["offsite"] == "pending"
    assert setup.run_once().returncode == 0
    assert copy.read_bytes() == data
    assert setup.cli("verify").returncode == 0


def test_failing_destination_is_degraded_once_not_per_file(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, extra_daemon="")
    setup.config.write_text(setup.config.read_text().replace("[daemon.retry]", "[daemon.retry]\ndegraded_after = 2"))
    for i in range(4):
        write_file(setup.watch / f"A009/clip{i}.mov", os.urandom(1000), mtime=OLD)
    setup.destinations["offsite"].chmod(0o555)
    done = setup.run_once(bound_by_permissions=True)
    assert done.returncode == 1
    events = [e["event"] for e in log_events(done.stderr)]
    assert events.count("destination_degraded") == 1
    assert events.count("copy_verified") == 4, "nearline goes on while offsite is broken"
    offsite = next(d for d in setup.status()["destinations"] if d["name"] == "offsite")
    assert offsite["state"] == "degraded" and "not writable" in offsite["error"]
    assert offsite["backlog_files"] == 4 and offsite["backlog_bytes"] == 4000
    setup.destinations["offsite"].chmod(0o755)
    fixed = setup.run_once(bound_by_permissions=True)
    assert fixed.returncode == 0
    assert [e["event"] for e in log_events(fixed.stderr)].count("destination_recovered") == 1
    assert next(d for d in setup.status()["destinations"] if d["name"] == "offsite")["state"] == "up"


def test_destinations_share_one_read_of_each_file(tmp_path: Path) -> None:
    """Read once, write many: three destinations that start copying an offload
    together read each source byte about once between them (shared_read.py),
    however their threads are scheduled: the front holds a file's start for
    the destinations the scheduler says are coming. (A destination busy with
    other files when one starts reads it on its own later; not tested here.)"""
    sizes = [48 * 2**20, 40 * 2**20, 3 * 2**20] + [200_000] * 20
    every_file_at_once = f"concurrency = {len(sizes)}"
    setup = make_setup(tmp_path, {name: f'media = "{name}"\n{every_file_at_once}' for name in ("raid", "nas", "lto")})
    for i, size in enumerate(sizes):
        write_file(setup.watch / f"C001/clip{i:02}.mov", os.urandom(size), mtime=OLD)
    done = setup.run_once()
    assert done.returncode == 0, done.stderr
    stopped = next(e for e in log_events(done.stderr) if e["event"] == "daemon_stopped")
    data = sum(sizes)
    assert stopped["source_served_bytes"] == 3 * data
    assert stopped["source_read_bytes"] <= 1.25 * data, stopped
    for root in setup.destinations.values():
        assert sum(p.stat().st_size for p in (root / "C001").glob("*.mov")) == data


def _history_blocked(setup: Setup, offload: str) -> Path:
    """The offsite history folder of `offload` taken away and a plain file put
    in its place: every copy lands there, its generation cannot (as when a
    stop comes between the last copy and the generation). Returns where the
    folder went."""
    history = setup.destinations["offsite"] / offload / "ascmhl"
    aside = history.with_name("ascmhl.aside")
    if history.is_dir():
        history.rename(aside)
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_bytes(b"not a folder")
    return aside


def _offsite_generation_at_start(setup: Setup, offload: str, aside: Path, generation: int) -> list[dict]:
    """The folder back (with a killed writer's temporary file in it) and the
    daemon started: the generation is written at once, long before the first
    rescan (300 s by default). Returns the generations written."""
    history = setup.destinations["offsite"] / offload / "ascmhl"
    history.unlink()
    if aside.is_dir():
        aside.rename(history)
    else:
        history.mkdir()
    stale = history / f".{generation:04d}_{offload}_2026-01-01_000000Z.mhl.triplicate-99999-0badf00d-1.tmp"
    stale.write_bytes(b"<half a manifest")
    proc = setup.start()
    try:
        wait_for(lambda: any(p.name.startswith(f"{generation:04d}_") and p.suffix == ".mhl" for p in history.iterdir()),
                 30, f"the offsite generation {generation}")
        wait_for(lambda: not stale.exists(), 10, "the stale temporary file removed")
    finally:
        output = stop(proc)
    assert_mhl_history_valid(setup.destinations["offsite"] / offload)
    return [e for e in log_events(output) if e["event"] == "mhl_generation_written"]


def test_a_generation_cut_short_by_a_stop_is_written_at_the_next_start(tmp_path: Path) -> None:
    """Every copy verified, the offload's first generation at one destination
    not written: the restarted daemon writes it at once and removes a killed
    writer's temporary file; the other destination's history is left alone."""
    setup = make_setup(tmp_path)
    aside = _history_blocked(setup, "A001_CARD")
    for i in range(3):
        write_file(setup.watch / f"A001_CARD/CLIPS/A001C00{i}.mov", os.urandom(50_000 + i), mtime=OLD)
    setup.run_once()
    assert (setup.destinations["offsite"] / "A001_CARD/CLIPS/A001C002.mov").is_file()
    nearline_before = sorted(p.name for p in (setup.destinations["nearline"] / "A001_CARD/ascmhl").iterdir())

    written = _offsite_generation_at_start(setup, "A001_CARD", aside, 1)
    assert [e["destination"] for e in written] == ["offsite"], written
    assert sorted(p.name for p in (setup.destinations["nearline"] / "A001_CARD/ascmhl").iterdir()) == nearline_before


def test_a_later_generation_cut_short_by_a_stop_is_written_at_the_next_start(tmp_path: Path) -> None:
    """A file added to an offload after its first generation, copied
    everywhere, and its second generation at one destination not written: the
    next start writes generation 2 there (not at the first rescan), and
    nothing at the destination whose history is whole."""
    setup = make_setup(tmp_path)
    write_file(setup.watch / "A001_CARD/CLIPS/A001C000.mov", os.urandom(50_000), mtime=OLD)
    assert setup.run_once().returncode == 0
    aside = _history_blocked(setup, "A001_CARD")
    write_file(setup.watch / "A001_CARD/CLIPS/A001C001.mov", os.urandom(60_000), mtime=OLD)
    setup.run_once()
    assert (setup.destinations["offsite"] / "A001_CARD/CLIPS/A001C001.mov").is_file()
    assert len(list((setup.destinations["nearline"] / "A001_CARD/ascmhl").glob("0002_*.mhl"))) == 1

    written = _offsite_generation_at_start(setup, "A001_CARD", aside, 2)
    assert [(e["destination"], e["generation"]) for e in written] == [("offsite", 2)], written
