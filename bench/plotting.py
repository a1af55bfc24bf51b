"""PNG plots of a bench run (matplotlib, imported only here, with the Agg backend).

- ``ratios.png``: every measured figure as value / anchor, coloured by whether its goal was met;
- ``latency_<figure>.png``: a record's ``samples_ms`` against its ``anchor_samples_ms``;
- ``<figure>.png``: a record's ``series`` (throughput vs image size, memory over time, ...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "figure"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_ratios(records: list[dict[str, Any]], path: Path) -> Path | None:
    measured = [r for r in records if isinstance(r.get("ratio"), int | float)]
    if not measured:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(measured) + 1.5))
    labels = [r["name"][:70] for r in measured]
    colours = ["#9e9e9e" if r.get("met") is None else "#2e7d32" if r["met"] else "#c62828" for r in measured]
    ax.barh(range(len(measured)), [r["ratio"] for r in measured], color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(measured)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("value / anchor (log scale; green: goal met, red: missed, grey: reference only)")
    ax.set_title("Every figure against its anchor, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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


def draw_all(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Every plot the records have data for; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = [p for p in [draw_ratios(records, out_dir / "ratios.png")] if p]
    for record in records:
        if record.get("samples_ms"):
            drawn.append(draw_latency(record, out_dir / f"latency_{_slug(record['name'])}.png"))
        if isinstance(record.get("series"), dict) and record["series"].get("lines"):
            drawn.append(draw_series(record, out_dir / f"{_slug(record['name'])}.png"))
    return drawn
