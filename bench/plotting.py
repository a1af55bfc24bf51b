"""PNG plots of a bench run (matplotlib, imported only here, with the Agg backend).

- ``ratios.png``: every measured figure as a speed-up over its anchor (right is always better:
  times and memory are inverted, throughput is not), its goal as a mark, coloured by whether the
  goal was met, titled with the machine that made it;
- ``latency_<figure>.png``: a record's ``samples_ms`` against its ``anchor_samples_ms``;
- ``<figure>.png``: a record's ``series`` (throughput vs image size, memory over time, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Units where a larger number is better (throughput); every other unit (ms, MB, ...) is a cost.
HIGHER_IS_BETTER_UNITS = frozenset({"MP/s", "images/s", "jobs/s", "calls/s", "x"})
_UNIT_SCALE = {"KB": 1 / 1024, "MB": 1.0, "GB": 1024.0, "ms": 1.0, "s": 1000.0}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "figure"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Speedup:
    """One bar of the ratio chart: how many times better than the anchor (> 1: better)."""

    name: str
    speedup: float
    goal: float | None
    met: bool | None


def higher_is_better(record: dict[str, Any]) -> bool:
    """A record's own ``higher_is_better`` if it says, else by its unit (throughput vs cost)."""
    if isinstance(record.get("higher_is_better"), bool):
        return bool(record["higher_is_better"])
    unit = str(record.get("unit") or "")
    return unit in HIGHER_IS_BETTER_UNITS or unit.endswith("/s")


def goal_speedup(goal: str, record: dict[str, Any]) -> float | None:
    """The goal as a speed-up over the anchor, or None for a reference row or a goal with no ratio.

    Reads the goal strings the suites write: ``<= 1.5x`` / ``>= 2x RealESRGANer`` (a ratio bound),
    ``<= anchor + 20 ms`` / ``skip cost < 1 ms`` (an allowance over the anchor), ``<= 2 GB`` (a
    limit on the value itself).
    """
    anchor = record.get("anchor_value")
    text = goal.strip()
    if not text or text.startswith("reference"):
        return None
    if match := re.match(r"^([<>]=?)\s*([\d.]+)\s*x\b", text):
        bound = float(match.group(2))
        return bound if higher_is_better(record) else 1 / bound if bound else None
    if not isinstance(anchor, int | float) or anchor <= 0:
        return None
    if match := re.search(r"(?:anchor \+|cost <)\s*([\d.]+)\s*(ms|s)\b", text):
        allowance = float(match.group(1)) * _UNIT_SCALE[match.group(2)] / _UNIT_SCALE.get(record.get("unit") or "", 1.0)
        return anchor / (anchor + allowance)
    if match := re.match(r"^<=?\s*([\d.]+)\s*(KB|MB|GB)\b", text):
        limit = float(match.group(1)) * _UNIT_SCALE[match.group(2)] / _UNIT_SCALE.get(record.get("unit") or "", 1.0)
        return anchor / limit
    return None


def speedups(records: list[dict[str, Any]]) -> list[Speedup]:
    """Every measured record as a speed-up over its anchor (> 0; right is better), with its goal."""
    rows = []
    for record in records:
        value, anchor = record.get("value"), record.get("anchor_value")
        if not all(isinstance(v, int | float) and v > 0 for v in (value, anchor)):
            continue
        speedup = value / anchor if higher_is_better(record) else anchor / value
        rows.append(Speedup(str(record["name"]), speedup, goal_speedup(str(record.get("goal") or ""), record),
                            record.get("met")))
    return rows


def ratio_chart_title(machine: str) -> str:
    return f"Speed-up over each row's anchor, same run (right is better)\n{machine}"


def draw_ratios(records: list[dict[str, Any]], path: Path, machine: str = "") -> Path | None:
    """``ratios.png``: one bar per measured row (speed-up, log scale), its goal as a black mark."""
    rows = speedups(records)
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 2))
    colours = ["#9e9e9e" if r.met is None else "#2e7d32" if r.met else "#c62828" for r in rows]
    ax.barh(range(len(rows)), [r.speedup for r in rows], color=colours)
    goals = [(i, r.goal) for i, r in enumerate(rows) if r.goal is not None]
    if goals:
        ax.scatter([g for _, g in goals], [i for i, _ in goals], marker="|", s=260, linewidths=2.5,
                   color="black", zorder=3, label="goal (the bar should reach it)")
        ax.legend(fontsize=8, loc="lower right")
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(rows)), [r.name[:80] for r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, no empty margin
    ax.set_xscale("log")
    ax.set_xlabel("times better than the anchor (anchor time / ours for times and memory, ours / anchor for "
                  "throughput; log scale)\ngreen: goal met, red: missed, grey: reference only", fontsize=8)
    ax.set_title(ratio_chart_title(machine or "machine not recorded"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long row names stay whole
    plt.close(fig)
    return path


def draw_latency(record: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = [("ours", record["samples_ms"])]
    if record.get("anchor_samples_ms"):
        series.append((f"anchor: {record.get('anchor')}", record["anchor_samples_ms"]))
    for label, samples in series:
        ax.hist(samples, bins=min(50, max(5, len(samples) // 5)), alpha=0.6, label=f"{label} (n={len(samples)})")
    ax.set_xlabel("latency per job (ms)")
    ax.set_ylabel("jobs")
    ax.set_title(record["name"][:90], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_series(record: dict[str, Any], path: Path) -> Path:
    spec = record["series"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in spec.get("lines", {}).items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel(spec.get("x_label", "x"))
    ax.set_ylabel(spec.get("y_label", record.get("unit") or "y"))
    ax.set_title(spec.get("title") or record["name"][:90], fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(records: list[dict[str, Any]], out_dir: Path, machine: str = "") -> list[Path]:
    """Every plot the records have data for; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = [p for p in [draw_ratios(records, out_dir / "ratios.png", machine)] if p]
    for record in records:
        if record.get("samples_ms"):
            drawn.append(draw_latency(record, out_dir / f"latency_{_slug(record['name'])}.png"))
        if isinstance(record.get("series"), dict) and record["series"].get("lines"):
            drawn.append(draw_series(record, out_dir / f"{_slug(record['name'])}.png"))
    return drawn
