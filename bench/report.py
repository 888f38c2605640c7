"""Rows of the result table, the printed table, and the JSON beside it.

Every row compares triplicate with a peer measured in the same run on the same
data. `ratio` is oriented so that above 1 means triplicate did better (faster,
more throughput, less memory), whatever the unit."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass
class Row:
    case: str  # "1 hashing"
    metric: str  # what was measured, in words
    ours: float
    peer_name: str
    peer: float
    unit: str
    better: Literal["higher", "lower"]  # which raw value is better
    goal: str = ""  # the goal, in words ("" = none)
    goal_met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.ours == 0 or self.peer == 0:
            return float("nan")
        return self.ours / self.peer if self.better == "higher" else self.peer / self.ours

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 3)}


def _num(value: float) -> str:
    if math.isnan(value):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    head = ["case", "metric", "triplicate", "peer", "peer value", "unit", "×peer", "goal", "met"]
    lines = [[r.case, r.metric, _num(r.ours), r.peer_name, _num(r.peer), r.unit, f"{r.ratio:.2f}",
              r.goal, {True: "yes", False: "NO", None: ""}[r.goal_met]] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 4, 6) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), "  ".join("-" * w for w in widths)]
    out += [fmt.format(*line) for line in lines]
    out.append("×peer: triplicate's figure against the peer's, oriented so that above 1 means triplicate did better.")
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    head = "| case | metric | triplicate | peer | peer value | unit | ×peer | goal | met |"
    out = [head, "|" + "---|" * 9]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r.goal_met]
        out.append(f"| {r.case} | {r.metric} | {_num(r.ours)} | {r.peer_name} | {_num(r.peer)} | {r.unit} | "
                   f"{r.ratio:.2f} | {r.goal} | {met} |")
    return "\n".join(out)


def write_json(path: Path, machine: dict[str, Any], settings: dict[str, Any], rows: list[Row],
               notes: dict[str, list[str]], skipped: dict[str, str]) -> None:
    doc = {"machine": machine, "settings": settings, "rows": [r.to_json() for r in rows],
           "notes": notes, "skipped": skipped}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
