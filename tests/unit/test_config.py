from pathlib import Path

import pytest

from triplicate.config import load_config
from triplicate.errors import ConfigError
from triplicate.fields import parse_size

GOOD = """
[daemon]
journal = "state/journal.db"

[[watch]]
path = "watch"
destinations = ["nearline"]

[[destination]]
name = "nearline"
type = "local"
path = "nearline"
media = "raid"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def test_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.watch[0].path == tmp_path / "watch"
    assert config.destination[0].path == tmp_path / "nearline"
    assert config.daemon.journal_path() == tmp_path / "state" / "journal.db"
    assert ".DS_Store" in config.watch[0].exclude and "._*" in config.watch[0].exclude


def test_malformed_toml_is_one_sentence(tmp_path: Path) -> None:
    [msg] = problems(tmp_path, "[daemon\njournal = 1")
    assert "t.toml" in msg and "not valid TOML" in msg and "line" in msg


def test_unknown_key_is_named(tmp_path: Path) -> None:
    [msg] = problems(tmp_path, GOOD.replace('media = "raid"', 'media = "raid"\nspeed = 3'))
    assert "destination[0] ('nearline').speed is not a known setting" in msg


def test_missing_key_is_named(tmp_path: Path) -> None:
    [msg] = problems(tmp_path, GOOD.replace('path = "nearline"\n', ""))
    assert "destination[0] ('nearline').path is required" in msg


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    [msg] = problems(tmp_path, GOOD.replace('path = "watch"', 'path = "watch"\nsettle_seconds = "soon"'))
    assert "watch[0].settle_seconds" in msg and "'soon'" in msg


def test_unknown_destination_type(tmp_path: Path) -> None:
    [msg] = problems(tmp_path, GOOD.replace('type = "local"', 'type = "tape"'))
    assert "unknown destination type 'tape'" in msg and "'local'" in msg


def test_undefined_destination_reference(tmp_path: Path) -> None:
    [msg] = problems(tmp_path, GOOD.replace('destinations = ["nearline"]', 'destinations = ["nearline", "cloud"]'))
    assert "watch[0].destinations names 'cloud', which no [[destination]] defines" in msg


def test_duplicate_destination_names(tmp_path: Path) -> None:
    text = GOOD + '\n[[destination]]\nname = "nearline"\ntype = "local"\npath = "other"\n'
    msgs = problems(tmp_path, text)
    assert any("destination name 'nearline' is used twice" in m for m in msgs)


def test_watch_inside_destination_is_refused(tmp_path: Path) -> None:
    msgs = problems(tmp_path, GOOD.replace('path = "watch"', 'path = "nearline/incoming"'))
    assert any("overlap" in m for m in msgs)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('media = "raid"', 'media = "raid"\nspeed = 3').replace('path = "watch"', 'path = "watch"\nsettle_seconds = "x"')
    assert len(problems(tmp_path, text)) == 2


@pytest.mark.parametrize(
    "text,value",
    [(4096, 4096), ("64MiB", 64 * 1024**2), ("1.5 GB", 1_500_000_000), ("5TiB", 5 * 1024**4), ("8k", 8000)],
)
def test_sizes(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "-5", -1, "5 parsecs", True])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
