"""How `triplicate status` looks: plain text for pipes and logs, rich tables
with progress bars on a terminal, and `--watch`, which redraws them live.

The figures come from the running daemon when one answers on its `[http]`
endpoint (live throughput, copies in flight), otherwise from the journal.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .config import Config
from .fields import age_text, format_size
from .status import DestinationStatus, OffloadStatus, Status

STATE_STYLE = {"up": "green", "degraded": "yellow", "down": "red", "unknown": "dim"}
ERRORS_SHOWN = 10


# ---- where the figures come from ------------------------------------------------------


def from_daemon(config: Config, timeout: float = 2.0) -> Status | None:
    """The running daemon's status over HTTP, or None when none answers."""
    if config.http is None:
        return None
    host = config.http.host if config.http.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    request = urllib.request.Request(f"http://{host}:{config.http.port}/api/status")
    token = os.environ.get(config.http.token_env, "") if config.http.token_env else ""
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Status.model_validate(json.loads(resp.read()))
    except (OSError, ValueError):
        return None


def fetch(config: Config) -> Status:
    from .journal import Journal
    from .status import collect

    live = from_daemon(config)
    if live is not None:
        return live
    journal = Journal(config.daemon.journal_path())
    try:
        return collect(config, journal)
    finally:
        journal.close()


# ---- plain text ---------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "no recent transfers" if not value else f"{format_size(value)}/s"


def _eta(o: OffloadStatus) -> str:
    if o.eta_seconds is None:
        return "ETA unknown"
    return "done" if o.eta_seconds == 0 else f"ETA {age_text(o.eta_seconds)}"


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = width if total == 0 else int(width * done / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _verdict(o: OffloadStatus) -> str:
    if o.safe_to_format:
        return "SAFE TO FORMAT"
    return "NOT SAFE TO FORMAT YET: " + "; ".join(o.unsafe_reasons)


def _rule_text(o: OffloadStatus) -> str:
    head = "3-2-1 met" if o.rule_321_met else "3-2-1 NOT met, needs " + ", ".join(o.missing)
    return f"{head} (copies {o.copies}, media {o.media_types}, off-site {o.offsite_copies})"


def plain(status: Status) -> str:
    lines: list[str] = []
    for o in status.offloads:
        lines.append(f"{o.name}  {o.files} files, {format_size(o.bytes)}  {_verdict(o)}")
        lines.append(f"  {_rule_text(o)}; {_eta(o)}")
        for dest, counts in o.destinations.items():
            done = o.verified_bytes.get(dest, 0)
            parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            pct = 100 if o.bytes == 0 else int(100 * done / o.bytes)
            lines.append(f"  {dest:<16} {_bar(done, o.bytes)} {pct:>3}%  {parts}")
        lines += _source_lines(o)
        lines += [f"  ! {path} -> {dest}: {err}" for path, dest, err in _errors(status, o)]
    if not status.offloads:
        lines.append("no offloads seen yet")
    lines += ["", f"destinations ({'live from the daemon' if status.source == 'daemon' else 'from the journal'}):"]
    for d in status.destinations:
        age = "" if d.oldest_pending_seconds is None else f", oldest {age_text(d.oldest_pending_seconds)}"
        err = f" — {d.error}" if d.error and d.state != "up" else ""
        flight = f", {d.in_flight} in flight" if d.in_flight else ""
        if d.bandwidth_limit_bytes_per_s:
            flight += f", limited to {_rate(d.bandwidth_limit_bytes_per_s)}"
        lines.append(
            f"  {d.name:<16} {d.type:<6} {d.state:<8} backlog {d.backlog_files} files, {format_size(d.backlog_bytes)}"
            f"{age}; {_rate(d.throughput_bytes_per_s)}{flight}{err}"
        )
    return "\n".join(lines)


def _source_lines(o: OffloadStatus) -> list[str]:
    """What the readiness checks found at the source (readiness.py), if anything."""
    lines = []
    if o.state != "ready":
        lines.append(f"  source {o.state}" + (f": {o.state_detail}" if o.state_detail else ""))
    for p in o.problems[:ERRORS_SHOWN]:
        lines.append(f"  ? {p.path}: {p.problem} — {p.detail}" + (" (accepted)" if p.accepted else ""))
    if len(o.problems) > ERRORS_SHOWN:
        lines.append(f"  ? … and {len(o.problems) - ERRORS_SHOWN} more (status --json lists all)")
    lines += [f"  sequence {s}" for s in o.sequences]
    return lines


def _errors(status: Status, o: OffloadStatus) -> list[tuple[str, str, str]]:
    return [(f.path, dest, err) for f in status.files if f.offload == o.name for dest, err in f.errors.items()]


# ---- rich -------------------------------------------------------------------------------


def _progress_cell(o: OffloadStatus) -> RenderableType:
    grid = Table.grid(padding=(0, 1))
    for dest in o.destinations:
        done = o.verified_bytes.get(dest, 0)
        counts = o.destinations[dest]
        verified = counts.get("verified", 0)
        style = "red" if counts.get("failed") else ("green" if verified == o.files else "cyan")
        bar = ProgressBar(total=max(o.bytes, 1), completed=done if o.bytes else 1, width=18,
                          complete_style=style, finished_style="green")
        grid.add_row(Text(dest, style="bold"), bar, Text(f"{verified}/{o.files}", style=style))
    return grid


def _safety_cell(o: OffloadStatus) -> RenderableType:
    if o.safe_to_format:
        return Text("✔ SAFE TO FORMAT", style="bold green")
    return Text("✘ not yet\n" + "\n".join(o.unsafe_reasons), style="yellow")


def _rule_cell(o: OffloadStatus) -> RenderableType:
    if o.rule_321_met:
        return Text(f"met\n{o.copies} copies · {o.media_types} media · {o.offsite_copies} off-site", style="green")
    return Text("needs " + ", ".join(o.missing), style="red")


def offloads_table(status: Status) -> Table:
    table = Table(title="Offloads", title_justify="left", expand=True, show_lines=True)
    for name, kw in [("Offload", {"style": "bold"}), ("Files", {"justify": "right"}), ("Size", {"justify": "right"}),
                     ("Copies per destination", {}), ("3-2-1", {}), ("Safe to format", {}), ("ETA", {"justify": "right"})]:
        table.add_column(name, **kw)  # type: ignore[arg-type]
    for o in status.offloads:
        table.add_row(o.name, str(o.files), format_size(o.bytes), _progress_cell(o), _rule_cell(o),
                      _safety_cell(o), _eta(o).removeprefix("ETA "))
    if not status.offloads:
        table.add_row("no offloads seen yet", "", "", "", "", "", "")
    return table


def destinations_table(status: Status) -> Table:
    source = "live from the daemon" if status.source == "daemon" else "from the journal"
    table = Table(title=f"Destinations ({source})", title_justify="left", expand=True)
    for name in ("Destination", "Type", "State", "Backlog", "Oldest pending", "Throughput", "In flight", "Problem"):
        table.add_column(name, justify="right" if name in ("Backlog", "In flight", "Throughput") else "left")
    for d in status.destinations:
        table.add_row(*_destination_row(d))
    return table


def _destination_row(d: DestinationStatus) -> list[RenderableType]:
    state = Text(d.state, style=STATE_STYLE.get(d.state, ""))
    backlog = f"{d.backlog_files} files, {format_size(d.backlog_bytes)}" if d.backlog_files else "—"
    age = age_text(d.oldest_pending_seconds) if d.oldest_pending_seconds is not None else "—"
    problem = Text(d.error or "", style="red") if d.state != "up" else Text("")
    rate = _rate(d.throughput_bytes_per_s)
    if d.bandwidth_limit_bytes_per_s:
        rate += f"\n(limit {_rate(d.bandwidth_limit_bytes_per_s)})"
    return [Text(d.name, style="bold"), d.type, state, backlog, age, rate, str(d.in_flight), problem]


def errors_table(status: Status) -> Table | None:
    rows = [row for o in status.offloads for row in _errors(status, o)]
    rows += [(f"{p.path}", "source", f"{p.problem}: {p.detail}" + (" (accepted)" if p.accepted else ""))
             for o in status.offloads for p in o.problems]
    if not rows:
        return None
    table = Table(title=f"Problems ({len(rows)})", title_justify="left", expand=True, style="red")
    for name in ("File", "Destination", "Error"):
        table.add_column(name)
    for path, dest, err in rows[:ERRORS_SHOWN]:
        table.add_row(path, dest, err)
    if len(rows) > ERRORS_SHOWN:
        table.add_row(f"… and {len(rows) - ERRORS_SHOWN} more (status --json lists all)", "", "")
    return table


def rich_view(status: Status) -> RenderableType:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.generated_at))
    parts: list[RenderableType] = [offloads_table(status), destinations_table(status)]
    errors = errors_table(status)
    if errors is not None:
        parts.append(errors)
    parts.append(Text(f"as of {stamp}", style="dim"))
    return Group(*parts)


def watch(get: Callable[[], Status], interval: float, console: Console) -> None:
    """Redraw until Ctrl-C."""
    with Live(rich_view(get()), console=console, refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(rich_view(get()))
