"""The HTML page of a chain-of-custody report (report.py builds its content).

One self-contained file (no scripts, no fonts or images to fetch) that reads
on a screen and prints on A4 or Letter: the verdict first, then 3-2-1, the
destinations, the ASC MHL generations and the file table, whose header repeats
on every printed page.
"""

from __future__ import annotations

from collections.abc import Iterator

from .fields import format_size
from .report import Report, ReportCopy, ReportDestination, escape, utc_text

CSS = """
@page { size: A4 portrait; margin: 14mm 12mm 16mm 12mm; }
* { box-sizing: border-box; }
body { font: 10.5pt/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1f24;
       margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 20pt; margin: 0 0 2px; }
h2 { font-size: 12.5pt; margin: 22px 0 6px; border-bottom: 1px solid #c9ced6; padding-bottom: 3px; }
.sub { color: #57606a; margin: 0 0 14px; }
.verdict { border: 2px solid; border-radius: 6px; padding: 10px 14px; margin: 10px 0 6px; }
.verdict b { font-size: 15pt; letter-spacing: .02em; }
.verdict.safe { border-color: #1a7f37; background: #e9f7ee; color: #0f5323; }
.verdict.unsafe { border-color: #b42318; background: #fdecea; color: #7a1a12; }
.verdict ul { margin: 4px 0 0 18px; padding: 0; }
.rule { display: flex; gap: 10px; margin: 8px 0; }
.rule > div { flex: 1; border: 1px solid #c9ced6; border-radius: 6px; padding: 6px 10px; }
.rule .n { font-size: 16pt; font-weight: 600; }
.ok { color: #1a7f37; } .no { color: #b42318; } .wait { color: #9a6700; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; break-inside: avoid; }
td.num, th.num { text-align: right; white-space: nowrap; }
.mono { font-family: "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 9pt; }
.path { overflow-wrap: anywhere; min-width: 16em; }
td.mono { white-space: nowrap; }
.small { font-size: 8.5pt; color: #57606a; }
footer { margin-top: 18px; color: #57606a; font-size: 8.5pt; border-top: 1px solid #c9ced6; padding-top: 6px; }
@media print {
  body { padding: 0; max-width: none; font-size: 9.5pt; }
  .verdict, .rule > div, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
}
"""


def page(r: Report) -> Iterator[str]:
    """The page in pieces, the file table one row per piece (writers encode
    as they go; a 100,000-file table is never one string)."""
    title = f"Chain of custody — {r.offload}"
    yield "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{r.file_count} files, {escape(format_size(r.total_bytes))} ({r.total_bytes:,} bytes) '
        f"· source: <span class=\"mono\">{escape(r.watch)}</span> ({escape(r.source_media)})</p>",
        _verdict(r), _rule(r),
        "<h2>Destinations</h2>", _destinations(r),
        "<h2>ASC MHL generations</h2>", _generations(r),
        f"<h2>Files ({r.file_count})</h2>", "",
    ])
    yield from _files(r)
    yield "\n" + "\n".join([
        f"<footer>Generated {escape(utc_text(r.generated_at))} by {escape(r.generated_by)}. "
        "Hashes are xxHash64 (ASC MHL <span class=\"mono\">xxh64</span>) of the bytes read from the source; "
        "a copy is verified when the bytes stored at the destination were checked against that hash.</footer>",
        "</body></html>",
    ]) + "\n"


def _verdict(r: Report) -> str:
    if r.safe_to_format:
        return (f'<div class="verdict safe"><b>SAFE TO FORMAT</b> — every file is verified at every destination '
                f"and 3-2-1 is met (since {escape(utc_text(r.safe_since))}).</div>")
    items = "".join(f"<li>{escape(reason)}</li>" for reason in r.unsafe_reasons)
    return f'<div class="verdict unsafe"><b>NOT SAFE TO FORMAT YET</b><ul>{items}</ul></div>'


def _rule(r: Report) -> str:
    def box(label: str, n: int, need: int, what: str) -> str:
        cls, word = ("ok", "met") if n >= need else ("no", f"needs {need - n} more")
        return f'<div><div class="n {cls}">{n}</div>{escape(label)} <span class="{cls}">({word})</span>' \
               f'<div class="small">{escape(what)}</div></div>'

    verdict = '<span class="ok">met</span>' if r.rule_321_met else '<span class="no">not met</span>'
    return (f"<h2>3-2-1 rule: {verdict}</h2><div class=\"rule\">"
            + box("copies", r.copies, 3, "the source plus each destination holding every file verified")
            + box("kinds of media", r.media_types, 2, "counting the source's")
            + box("off-site", r.offsite_copies, 1, "destinations in another building")
            + "</div>")


def _destinations(r: Report) -> str:
    rows = "".join(_destination_row(d, r.file_count) for d in r.destinations)
    return ("<table><thead><tr><th>Destination</th><th>Type</th><th>Media</th><th>Off-site</th>"
            f"<th>Location</th><th class=\"num\">Verified</th></tr></thead><tbody>{rows}</tbody></table>")


def _destination_row(d: ReportDestination, files: int) -> str:
    cls = "ok" if d.complete else "wait"
    return (f"<tr><td><b>{escape(d.name)}</b></td><td>{escape(d.type)}</td><td>{escape(d.media)}</td>"
            f"<td>{'yes' if d.offsite else 'no'}</td><td class=\"mono path\">{escape(d.location)}</td>"
            f'<td class="num {cls}">{d.verified_files} / {files}</td></tr>')


def _generations(r: Report) -> str:
    if not r.generations:
        return ('<p class="small">None yet: a generation is written at a destination once every file of the '
                "offload is verified there (a loose file has no folder to hold one).</p>")
    rows = "".join(
        f"<tr><td>{escape(g.destination)}</td><td class=\"num\">{g.number}</td>"
        f"<td class=\"mono path\">{escape(r.offload)}/ascmhl/{escape(g.filename)}</td>"
        f"<td>{escape(utc_text(g.created_at))}</td></tr>"
        for g in r.generations
    )
    return ("<table><thead><tr><th>Destination</th><th class=\"num\">Generation</th><th>Manifest</th>"
            f"<th>Written</th></tr></thead><tbody>{rows}</tbody></table>")


def _files(r: Report) -> Iterator[str]:
    heads = "".join(f"<th>{escape(d.name)}</th>" for d in r.destinations)
    yield f"<table><thead><tr><th>File</th><th class=\"num\">Bytes</th><th>xxh64</th>{heads}</tr></thead><tbody>"
    for f in r.files():
        yield (f"<tr><td class=\"path\">{escape(f.path)}</td><td class=\"num\">{f.size:,}</td>"
               f"<td class=\"mono\">{f.xxh64 or '—'}</td>{''.join(map(_cell, f.copies))}</tr>")  # hex: no escaping
    yield "</tbody></table>"


def _cell(c: ReportCopy) -> str:
    if c.state == "verified":
        return f'<td class="small"><span class="ok">✓ verified</span><br>{utc_text(c.verified_at)}</td>'
    cls = "no" if c.state in ("failed", "missing") else "wait"
    error = f"<br>{escape(c.error[:160])}" if c.error else ""  # printed, not only a tooltip
    return f'<td class="small"><span class="{cls}">{escape(c.state)}</span>{error}</td>'
