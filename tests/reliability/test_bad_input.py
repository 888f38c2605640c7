"""Bad input: a broken config is one sentence and exit 2 from the real CLI
(`check-config` and `run --once` alike), never a traceback; links in the watch
folder are not followed out of it, and a name that could escape a destination
root is refused for that file alone while the others are copied."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import make_setup, tree_files, write_file
from tests.reliability.figures import FIGURES
from tests.reliability.procs import DaemonProcess, journal_states, wait_until

OLD = 1_700_000_000.0


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


BROKEN: dict[str, tuple[Callable[[str], str], str]] = {
    "malformed TOML": (_replace("[[watch]]", "[[watch]\n"), "not valid TOML"),
    "unknown key": (_replace('type = "local"', 'type = "local"\nspeed = "fast"'), "speed is not a known setting"),
    "wrong type": (_replace("settle_seconds = 0.5", 'settle_seconds = "soon"'), "watch[0].settle_seconds"),
    "undefined destination": (_replace('["nearline", "offsite"]', '["nearline", "cloud"]'),
                              "names 'cloud', which no [[destination]] defines"),
    "duplicate name": (lambda text: text + '[[destination]]\nname = "nearline"\ntype = "local"\npath = "nearline2"\n',
                       "'nearline' is used twice"),
    "watch inside a destination": (_replace('path = "watch"', 'path = "nearline/incoming"'), "overlap"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_config_is_one_sentence_and_exit_2(case: str, tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    (setup.destinations["nearline"] / "incoming").mkdir()
    edit, expected = BROKEN[case]
    setup.config.write_text(edit(setup.config.read_text()))
    results = {"check-config": setup.cli("check-config"), "run --once": setup.run_once(timeout=60)}
    for command, done in results.items():
        lines = done.stderr.splitlines()
        assert done.returncode == 2, f"{command}: {done.returncode} {done.stderr}"
        assert len(lines) == 1 and lines[0].startswith("triplicate: "), f"{command}: {done.stderr}"
        assert str(setup.config) in lines[0] and expected in lines[0], f"{command}: {lines[0]}"
        assert "Traceback" not in done.stdout + done.stderr
    assert not (setup.root / "state/journal.db").exists(), "nothing started"


def test_links_are_not_followed_out_of_the_watch_folder(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    outside = tmp_path / "outside"
    write_file(outside / "payroll.xlsx", b"secret figures", mtime=OLD)
    write_file(outside / "folder/inner.mov", b"not part of any card", mtime=OLD)
    card = setup.watch / "L001"
    write_file(card / "CLIPS/L001C001.mov", b"a real clip", mtime=OLD)
    (card / "CLIPS/absolute.mov").symlink_to(outside / "payroll.xlsx")
    (card / "CLIPS/relative.mov").symlink_to(Path("../../../outside/payroll.xlsx"))
    (card / "linked_folder").symlink_to(outside / "folder", target_is_directory=True)
    (setup.watch / "L002").symlink_to(outside / "folder", target_is_directory=True)  # an "offload" that is a link
    done = setup.run_once()
    held = {name: tree_files(root) for name, root in setup.destinations.items()}
    listed = sorted(f["path"] for f in setup.status()["files"])
    FIGURES.scenario("links", f"4 links out of the watch folder: destinations hold {sorted(held['nearline'])}, "
                     f"status lists {listed}")

    assert done.returncode == 0, done.stderr[-2000:]
    for name, files in held.items():
        assert files == {"L001/CLIPS/L001C001.mov": b"a real clip"}, name
    assert listed == ["L001/CLIPS/L001C001.mov"]


def test_a_name_that_could_escape_is_refused_alone(tmp_path: Path) -> None:
    """A backslash is a folder separator on a Windows share or an SMB-mounted
    NAS: `..\\..\\x` would climb out of the destination root there. The
    running daemon refuses that file, and only that file: with the slow pace
    of errors that need a person (10 minutes here) the others must not wait."""
    setup = make_setup(tmp_path, destinations={"nearline": 'media = "raid"'})
    setup.config.write_text(setup.config.read_text().replace("permanent_delay = 1", "permanent_delay = 600"))
    write_file(setup.watch / "M001/..\\..\\escape.mov", b"climb", mtime=OLD)
    others = [f"M001/CLIPS/M001C00{i}.mov" for i in range(5)]
    for rel in others:
        write_file(setup.watch / rel, os.urandom(2000), mtime=OLD)
    journal = setup.root / "state/journal.db"
    daemon = DaemonProcess(setup)
    try:
        wait_until(lambda: daemon.events("copy_failed_will_retry"), 30, "the refusal", daemon)
        wait_until(lambda: all(journal_states(journal).get(rel, {}).get("nearline") == "verified" for rel in others),
                   30, "the other files, without waiting for the slow pace", daemon)
    finally:
        output = daemon.stop()
    rows = {f["path"]: f for f in setup.status()["files"]}
    bad = rows["M001/..\\..\\escape.mov"]
    FIGURES.scenario("escaping-name", f"refused: {bad['errors'].get('nearline', '')[:80]}; the 5 other files "
                     f"{sorted({rows[rel]['destinations']['nearline'] for rel in others})}")

    assert bad["destinations"]["nearline"] != "verified" and "refusing key" in bad["errors"]["nearline"]
    assert not any("escape" in p.name for p in tmp_path.rglob("*") if setup.watch not in p.parents)
    assert "Traceback" not in output
