"""The chain-of-custody report read from a real journal: what each row says,
and a page whose memory does not grow with the offload's file count."""

from __future__ import annotations

import csv
import io
import json
import time
import tracemalloc
from pathlib import Path

from triplicate import report
from triplicate.config import Config, load_config
from triplicate.journal import Journal, SeenFile
from triplicate.report_html import page

DESTS = ["near", "far"]


def load(tmp_path: Path) -> Config:
    (tmp_path / "watch").mkdir(parents=True, exist_ok=True)
    text = f'[daemon]\njournal = "{tmp_path / "journal.db"}"\n'
    text += f'[[watch]]\npath = "{tmp_path / "watch"}"\ndestinations = ["near", "far"]\n'
    for name, extra in (("near", 'media = "raid"'), ("far", 'media = "cloud"\noffsite = true')):
        text += f'[[destination]]\nname = "{name}"\ntype = "local"\npath = "{tmp_path / name}"\n{extra}\n'
    path = tmp_path / "triplicate.toml"
    path.write_text(text)
    return load_config(path)


def offload(tmp_path: Path, files: int) -> tuple[Config, Journal, int]:
    """`files` frames of one offload, verified at both destinations."""
    config = load(tmp_path)
    journal = Journal(tmp_path / "journal.db")
    journal.ingest((SeenFile(str(tmp_path / "watch"), f"A001/seq/f{i:07d}.dpx", 1000 + i, 1) for i in range(files)),
                   DESTS)
    now = time.time()
    with journal._tx():
        journal.db.execute("UPDATE files SET xxh64 = printf('%016x', id)")
        journal.db.execute("UPDATE copies SET state = 'verified', verified_at = ?", (now,))
    [offload_id] = journal.offload_ids()
    return config, journal, offload_id


def test_rows_say_each_copy_state_with_its_error(tmp_path: Path) -> None:
    config, journal, offload_id = offload(tmp_path, 3)
    first, second, _ = (r[0] for r in journal.db.execute("SELECT id FROM files ORDER BY relpath"))
    with journal._tx():
        journal.db.execute("UPDATE copies SET state = 'failed', verified_at = NULL, last_error = 'permission denied' "
                           "WHERE file_id = ? AND destination = 'far'", (first,))
        journal.db.execute("DELETE FROM copies WHERE file_id = ? AND destination = 'far'", (second,))
    built = report.build_report(config, journal, offload_id)
    assert (built.file_count, built.safe_to_format, built.rule_321_met) == (3, False, False)
    assert "1 file(s) failed: their source cannot be read" in built.unsafe_reasons
    assert "2 file(s) not yet verified at far" in built.unsafe_reasons
    rows = list(csv.DictReader(io.StringIO(report.render_csv(built))))
    assert [(r["path"], r["destination"], r["state"], r["error"]) for r in rows] == [
        ("A001/seq/f0000000.dpx", "near", "verified", ""),
        ("A001/seq/f0000000.dpx", "far", "failed", "permission denied"),
        ("A001/seq/f0000001.dpx", "near", "verified", ""),
        ("A001/seq/f0000001.dpx", "far", "missing", ""),
        ("A001/seq/f0000002.dpx", "near", "verified", ""),
        ("A001/seq/f0000002.dpx", "far", "verified", ""),
    ]
    whole = json.loads(report.render_json(built))
    assert [f["size"] for f in whole["files"]] == [1000, 1001, 1002]
    assert whole["files"][0]["copies"][1] == {"destination": "far", "state": "failed", "verified_at": None,
                                              "error": "permission denied"}
    html = report.render_html(built)
    assert html.count("<tr><td class=\"path\">") == 3 and "permission denied" in html
    assert html.rstrip().endswith("</body></html>")
    journal.close()


def page_peak(tmp_path: Path, files: int) -> tuple[int, int]:
    """(tracemalloc peak while the page is made, bytes of the page), the
    pieces handed on as a writer would."""
    config, journal, offload_id = offload(tmp_path, files)
    built = report.build_report(config, journal, offload_id)
    size = 0
    tracemalloc.start()
    try:
        for piece in page(built):
            size += len(piece.encode())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        journal.close()
    return peak, size


def test_the_page_of_a_big_offload_costs_no_memory_per_file(tmp_path: Path) -> None:
    small_peak, small_size = page_peak(tmp_path / "small", 500)
    big_peak, big_size = page_peak(tmp_path / "big", 10_000)
    assert big_size > 15 * small_size  # the table is all there, row by row
    # building a model per file (as the report once did) took ~3.7 KiB a file: 35 MiB here
    assert big_peak < small_peak + 2 * 1024**2, (small_peak, big_peak)
