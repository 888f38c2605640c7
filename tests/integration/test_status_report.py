"""Status, 'safe to format' and the chain-of-custody report, from the real daemon."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import xxhash

from tests.harness import make_setup, write_file
from tests.mhl_tools import assert_ok, verify

OLD = time.time() - 3600
REPORT = "triplicate-report.html"


def card(setup, name: str, sizes: list[int]) -> dict[str, bytes]:
    content = {f"{name}/CLIPS/{name}C{i:03d}.mov": os.urandom(n) for i, n in enumerate(sizes, 1)}
    for rel, data in content.items():
        write_file(setup.watch / rel, data, mtime=OLD)
    return content


def test_safe_offload_is_said_in_status_report_and_at_the_destinations(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    content = card(setup, "A010", [2_000_000, 30_000, 5])
    assert setup.run_once().returncode == 0

    status = setup.status()
    [o] = status["offloads"]
    assert o["safe_to_format"] is True and o["unsafe_reasons"] == []
    assert o["eta_seconds"] == 0 and o["verified_bytes"] == {"nearline": 2_030_005, "offsite": 2_030_005}
    assert status["source"] == "journal"

    plain = setup.cli("status")
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout, "no escape codes into a pipe"
    assert "A010  3 files" in plain.stdout and "SAFE TO FORMAT" in plain.stdout
    assert "[####################] 100%" in plain.stdout

    for root in setup.destinations.values():
        page = (root / "A010" / REPORT).read_text()
        assert "SAFE TO FORMAT" in page
        for rel, data in content.items():
            assert rel in page and xxhash.xxh64_hexdigest(data) in page
        assert_ok(verify(root / "A010"))  # the report is in the generations' ignore patterns


def test_report_formats(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    content = card(setup, "A011", [1000, 2000])
    assert setup.run_once().returncode == 0

    data = json.loads(setup.cli("report", "A011", "--format", "json").stdout)
    assert (data["file_count"], data["total_bytes"], data["rule_321_met"], data["safe_to_format"]) == (2, 3000, True, True)
    assert data["safe_since"] is not None
    assert {g["destination"] for g in data["generations"]} == {"nearline", "offsite"}
    assert all(g["filename"].endswith(".mhl") for g in data["generations"])
    by_path = {f["path"]: f for f in data["files"]}
    for rel, blob in content.items():
        f = by_path[rel]
        assert f["xxh64"] == xxhash.xxh64_hexdigest(blob) and f["size"] == len(blob)
        assert {c["destination"]: c["state"] for c in f["copies"]} == {"nearline": "verified", "offsite": "verified"}
        assert all(c["verified_at"] for c in f["copies"])

    rows = list(csv.DictReader(io.StringIO(setup.cli("report", "A011", "-f", "csv").stdout)))
    assert len(rows) == 4 and {r["state"] for r in rows} == {"verified"}
    assert {(r["destination"], r["offsite"]) for r in rows} == {("nearline", "no"), ("offsite", "yes")}

    out = tmp_path / "a011.html"
    done = setup.cli("report", "A011", "-o", str(out))
    assert done.returncode == 0 and out.read_text().startswith("<!DOCTYPE html>")

    missing = setup.cli("report", "NOPE")
    assert missing.returncode == 1 and "no offload named 'NOPE'" in missing.stderr and "A011" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_not_safe_while_a_destination_lags_then_safe(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    card(setup, "A012", [4000, 4000])
    setup.destinations["offsite"].chmod(0o555)
    assert setup.run_once(bound_by_permissions=True).returncode == 1

    [o] = setup.status()["offloads"]
    assert o["safe_to_format"] is False and o["rule_321_met"] is False
    assert "2 file(s) not yet verified at offsite" in o["unsafe_reasons"]
    assert o["eta_seconds"] is None, "no throughput to go by for offsite"
    assert not (setup.destinations["nearline"] / "A012" / REPORT).exists(), "no report before 3-2-1"
    plain = setup.cli("status").stdout
    assert "NOT SAFE TO FORMAT YET" in plain and "not yet verified at offsite" in plain

    setup.destinations["offsite"].chmod(0o755)
    assert setup.run_once(bound_by_permissions=True).returncode == 0
    [o] = setup.status()["offloads"]
    assert o["safe_to_format"] is True
    assert "SAFE TO FORMAT" in (setup.destinations["nearline"] / "A012" / REPORT).read_text()


def test_a_file_added_later_makes_the_offload_unsafe_until_it_is_copied(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    card(setup, "A013", [100])
    assert setup.run_once().returncode == 0
    first = (setup.destinations["nearline"] / "A013" / REPORT).read_text()
    write_file(setup.watch / "A013/CLIPS/late.mov", b"late" * 100, mtime=OLD)
    assert setup.run_once().returncode == 0
    [o] = setup.status()["offloads"]
    assert o["files"] == 2 and o["safe_to_format"] is True
    page = (setup.destinations["nearline"] / "A013" / REPORT).read_text()
    assert page != first and "A013/CLIPS/late.mov" in page, "the report is written again"
    assert_ok(verify(setup.destinations["nearline"] / "A013"))
