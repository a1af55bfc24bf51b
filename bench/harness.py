"""The bench harness: run every figure's module, collect one record per figure, write the report.

Each suite is a module ``bench.<name>`` runnable as ``python -m bench.<name>`` that prints its
records as JSON on stdout. The harness runs each one in its own subprocess (so memory figures,
environment changes and event loops of one suite cannot touch another), with a time limit, and:

- a module missing from this checkout gives one "not available" record per figure it owns;
- a module that fails or times out gives one record per figure saying so (with its stderr tail);
- every record is reduced to exactly ``name, value, unit, anchor, anchor_value, ratio, goal, met,
  command`` (+ ``note`` when it was not measured) in ``results.json``;
- ``RESULTS.md`` holds the table, the machine and its load, and the plots in ``plots/``.

Optional plot data a module may add to a record (dropped from ``results.json``):
``samples_ms`` / ``anchor_samples_ms`` (latency distributions), and ``series``:
``{"title", "x_label", "y_label", "lines": {label: [[x, y], ...]}}`` (throughput vs image size,
memory over time, ...), each drawn as one PNG.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import adapters
from bench.common import DEADLINE_ENV, PART_PREFIX, machine

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
KEYS = ("name", "value", "unit", "anchor", "anchor_value", "ratio", "goal", "met", "command")
#: The whole full run must fit in 15 minutes on the 2-core machine; suites past it are skipped.
FULL_BUDGET_S = 14 * 60


@dataclass(frozen=True)
class Expected:
    """A figure of the issue's table that a suite owns: reported even when the suite cannot run."""

    name: str
    unit: str
    anchor: str
    goal: str
    #: the key of the ``bench-part`` that yields this row (None: a record of this very name)
    part: str | None = None


@dataclass(frozen=True)
class Suite:
    """One bench module and how to run it."""

    name: str
    module: str
    figures: tuple[Expected, ...]
    full_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)
    full_timeout_s: float = 300.0
    quick_timeout_s: float = 120.0
    adapt: Callable[[Any, str], list[dict[str, Any]]] | None = None
    cheap: bool = False

    def command(self, quick: bool) -> str:
        args = (a.replace("{tmpdir}", "$TMPDIR") for a in (self.quick_args if quick else self.full_args))
        return " ".join(["python -m", self.module, *args])


SUITES: tuple[Suite, ...] = (
    Suite("foundation", "bench.bench_foundation", (
        Expected("cold start to tools/list (stdio)", "ms", "bare MCPServer with one tool", "<= 1.5x"),
        Expected("delegation job overhead (2 LLM calls, zero-latency loopback model)", "ms",
                 "2 raw litellm.acompletion + bare 3-node LangGraph", "<= 1.3x"),
    ), full_timeout_s=300),
    Suite("failover", "bench.bench_failover", (
        Expected("failover, primary refused / 500", "ms",
                 "fallback alone; litellm Router with default retries", "<= +20 ms",
                 part="failover when the primary refuses"),
    ), full_timeout_s=240),
    Suite("research", "bench.bench_research", (
        Expected("research fan-out, 8 searches x 200 ms", "ms", "one search", "<= 1.2x"),
    ), quick_args=("--latency-ms", "50", "--queries", "4", "--repeats", "1"), full_timeout_s=120,
        adapt=adapters.research, cheap=True),
    Suite("consensus", "bench.bench_consensus", (
        Expected("consensus of 3 models of different latency (200/400/600 ms) + synthesis", "ms",
                 "the slowest model called alone", "<= 1.2x"),
    ), quick_args=("--quick",), full_timeout_s=120, cheap=True),
    Suite("concurrency", "bench.bench_concurrency", (
        Expected("500 concurrent delegation jobs, 100 ms provider", "ms",
                 "500 bare 3-node LangGraph runs at once, same load (the floor)",
                 "<= 1.25x the floor, 0 errors, flat memory (<= 10 MB)"),
        Expected("500 concurrent delegation jobs, 2 worker processes (runner.local.processes: 2), jobs/s", "jobs/s",
                 "the same jobs, 1 worker process", "reference: growth from 1 to 2 processes on 2 cores"),
    ), full_timeout_s=180, cheap=True),
    Suite("endpoint", "bench.bench_endpoint", (
        Expected("local RunPod endpoint: concurrent jobs", "ms", "one job through the endpoint", "reference"),
    ), quick_args=("--jobs", "4", "--workers", "1", "--concurrency", "2", "--repeat", "3"), full_timeout_s=180,
        adapt=adapters.endpoint),
    Suite("mcp", "bench.bench_mcp", (
        Expected("MCP tools/list and tool calls, in-process and 200 concurrent over HTTP", "ms",
                 "bare MCPServer, same call", "<= 1.5x; 0 errors"),
    ), full_args=("--out", "{tmpdir}/mcp.json"), quick_args=("--iterations", "30", "--out", "{tmpdir}/mcp.json"),
        full_timeout_s=180, adapt=adapters.mcp),
    Suite("rembg", "bench.bench_rembg", (
        Expected("background removal images/s", "images/s", "rembg CLI", ">= 1x (batch >= 2x)"),
    ), quick_args=("--quick",), full_timeout_s=300, quick_timeout_s=180, adapt=adapters.rembg),
    Suite("image", "bench.bench_image", (
        Expected("upscale anime-6B x4, CPU, output MP/s", "MP/s", "RealESRGANer (own venv); ncnn", ">= 1.5x, >= 2x",
                 part="upscale"),
        Expected("upscale peak RSS, 2048x2048 input", "MB", "RealESRGANer tile=0", "<= 2 GB",
                 part="peak_rss_upscale"),
        Expected("RealESRGANer peak RSS (tile=0 scaling, tile=400 at 2048x2048)", "MB", "the 2 GB goal",
                 "reference", part="peak_rss_realesrganer"),
        Expected("GPU upscale fp16 (when a GPU is lent)", "MP/s", "RealESRGANer fp16, same GPU", ">= 2x",
                 part="upscale"),
    ), full_timeout_s=840, quick_timeout_s=240, adapt=adapters.image),
    # last: it measures what the time left allows (each mode's rows as soon as that mode is done)
    Suite("research_quality", "bench.bench_research_quality", (
        Expected("research quality, extractive, keyless: fact recall", "share",
                 "naive baseline: top BM25 passages pasted in order", ">= 0.7 and >= the baseline's"),
        Expected("research quality, extractive, keyless: support rate of cited sentences", "share",
                 "naive baseline: top BM25 passages pasted in order", ">= 0.95"),
        Expected("research quality, abstractive, keyless: fact recall", "share",
                 "naive baseline: top BM25 passages pasted in order", ">= 0.7 and >= the baseline's"),
    ), full_args=("--modes", "extractive,abstractive"), quick_args=("--modes", "extractive", "--questions", "2"),
        full_timeout_s=600, quick_timeout_s=240),
)


def _placeholder(expected: Expected, command: str, note: str) -> dict[str, Any]:
    return {"name": expected.name, "value": None, "unit": expected.unit, "anchor": expected.anchor,
            "anchor_value": None, "ratio": None, "goal": expected.goal, "met": None, "command": command,
            "note": note}


def parse_records(stdout: str) -> Any:
    """The JSON a module printed: the whole stdout, else the last JSON document in it."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    starts = [m.start() for m in re.finditer(r"(?m)^[\[{]", text)]
    for start in reversed(starts):
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON records on stdout")


@dataclass
class _Outcome:
    """What a suite's process did: its exit status (``None``: killed at its time limit) and output."""

    returncode: int | None
    stdout: str
    stderr: str


def _stream(args: list[str], env: dict[str, str], timeout_s: float,
            on_part: Callable[[str, Any], None]) -> _Outcome:
    """Run ``args`` in its own process group, calling ``on_part`` for each ``bench-part`` line as it
    is printed; past ``timeout_s`` the whole group (the suite's own children too) is killed."""
    out_lines: list[str] = []
    err_lines: list[str] = []
    with subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                out_lines.append(line)
                if line.startswith(PART_PREFIX):
                    try:
                        part = json.loads(line[len(PART_PREFIX):])
                        key, value = str(part["key"]), part["value"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn line from a killed process: the part was not finished
                    on_part(key, value)

        def read_stderr() -> None:
            assert proc.stderr is not None
            err_lines.extend(proc.stderr)

        readers = [threading.Thread(target=fn, daemon=True) for fn in (read_stdout, read_stderr)]
        for reader in readers:
            reader.start()
        try:
            returncode: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
        for reader in readers:
            reader.join(timeout=10)
    return _Outcome(returncode, "".join(out_lines), "".join(err_lines))


def _adapted(suite: Suite, data: Any, command: str) -> list[dict[str, Any]]:
    records = suite.adapt(data, command) if suite.adapt else data
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) and "name" in r for r in records):
        raise ValueError("the suite printed something other than figure records")
    return records


def _partial(suite: Suite, parts: dict[str, Any], printed: str, command: str) -> list[dict[str, Any]]:
    """Records from the parts a suite finished (else the last record list it printed), or none."""
    try:
        if parts:
            return _adapted(suite, dict(parts) if suite.adapt else list(parts.values()), command)
        data = parse_records(printed) if printed.strip() else None
        return _adapted(suite, data, command) if isinstance(data, list) and data else []
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _finished(expected: Expected, parts: dict[str, Any], records: list[dict[str, Any]]) -> bool:
    return expected.part in parts if expected.part else any(r.get("name") == expected.name for r in records)


def suite_rows(suite: Suite, command: str, parts: dict[str, Any], printed: str, why: str) -> list[dict[str, Any]]:
    """A suite that did not finish: the rows it finished, then each unfinished row named with ``why``."""
    kept = _partial(suite, parts, printed, command)
    for record in kept:
        record["command"] = command
    unfinished = [_placeholder(e, command, why) for e in suite.figures if not _finished(e, parts, kept)]
    if kept and not unfinished:  # every expected row came, but the suite did not: say so
        unfinished = [_placeholder(Expected(f"{suite.name}: the rest of the suite", "", "", ""), command, why)]
    return [*kept, *unfinished]


def run_suite(suite: Suite, quick: bool, timeout_s: float,
              on_progress: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Run one suite in a subprocess; always returns at least one record per expected figure.

    ``on_progress`` gets the suite's rows so far each time it finishes a part (finished rows, then
    the rows still being measured), so the caller can write them to disk at once.
    """
    command = suite.command(quick)
    if importlib.util.find_spec(suite.module) is None:
        return [_placeholder(e, command, f"not available: {suite.module} is not in this checkout")
                for e in suite.figures]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1",
           DEADLINE_ENV: f"{time.time() + timeout_s:.3f}"}
    parts: dict[str, Any] = {}

    def on_part(key: str, value: Any) -> None:
        parts[key] = value
        if on_progress is not None:
            on_progress(suite_rows(suite, command, parts, "", "measuring: this row is not finished yet"))

    with tempfile.TemporaryDirectory(prefix="bench-") as tmpdir:  # side files a module writes
        args = [sys.executable, "-m", suite.module,
                *(a.replace("{tmpdir}", tmpdir) for a in (suite.quick_args if quick else suite.full_args))]
        done = _stream(args, env, timeout_s, on_part)
    tail = " | ".join(done.stderr.strip().splitlines()[-3:])[-400:]
    if done.returncode is None:
        why = f"not measured: {suite.module} ran past {timeout_s:.0f} s (its share of the time budget)"
        return suite_rows(suite, command, parts, done.stdout, why)
    if done.returncode != 0:
        return suite_rows(suite, command, parts, "", f"failed: exit {done.returncode}: {tail}")
    try:
        records = _adapted(suite, parse_records(done.stdout), command)
    except (ValueError, KeyError, TypeError) as exc:
        if parts:
            return suite_rows(suite, command, parts, "", f"failed: unreadable output ({exc}): {tail}")
        return [_placeholder(e, command, f"failed: unreadable output ({exc}): {tail}") for e in suite.figures]
    for record in records:
        record["command"] = command if quick else (record.get("command") or command)
    return records


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """Exactly the published keys (+ note when the figure was not measured)."""
    out = {key: record.get(key) for key in KEYS}
    if record.get("note"):
        out["note"] = record["note"]
    return out


@dataclass
class Run:
    """One harness run: its records (with plot data) and its circumstances.

    ``records`` are final; ``pending`` are the rows still to come while the run goes on (the running
    suite's unfinished rows, then every suite not reached yet), so a file written mid-run names them.
    """

    quick: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    load_before: tuple[float, ...] = field(default_factory=lambda: os.getloadavg())
    load_after: tuple[float, ...] = ()
    elapsed_s: float = 0.0
    suite_seconds: dict[str, float] = field(default_factory=dict)
    finished: bool = False

    def rows(self) -> list[dict[str, Any]]:
        """Every row of the report: the final ones, then those still to come."""
        return [*self.records, *self.pending]


#: What a row still to come says if the run stops before it (the harness killed, the machine gone).
NOT_REACHED = "not measured: the run had not reached this suite when this file was written"


def run_all(suites: Sequence[Suite], quick: bool, budget_s: float | None = None,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
            on_update: Callable[[Run, bool], None] | None = None) -> Run:
    """Run ``suites`` in order within ``budget_s``; suites past the budget are reported, not run.

    ``on_update(run, suite_done)`` is called before the first suite, each time a suite finishes a
    part, and after each suite, so every figure reaches disk the moment it is measured.
    """
    run = Run(quick=quick)
    started = time.perf_counter()
    budget_s = budget_s if budget_s is not None else (FULL_BUDGET_S if not quick else 10 * 60)

    def not_reached(rest: Sequence[Suite]) -> list[dict[str, Any]]:
        return [_placeholder(e, s.command(quick), NOT_REACHED) for s in rest for e in s.figures]

    def update(suite_done: bool) -> None:
        run.elapsed_s = round(time.perf_counter() - started, 1)
        if on_update is not None:
            on_update(run, suite_done)

    run.pending = not_reached(suites)
    update(False)
    for index, suite in enumerate(suites):
        left = budget_s - (time.perf_counter() - started)
        limit = min(suite.quick_timeout_s if quick else suite.full_timeout_s, left)
        rest = not_reached(suites[index + 1:])
        if limit <= 5:
            run.records += [_placeholder(e, suite.command(quick), "not run: the harness's time budget was spent")
                            for e in suite.figures]
            run.pending = rest
            update(False)
            continue
        log(f"bench: {suite.name} ({suite.command(quick)}), limit {limit:.0f} s")
        suite_started = time.perf_counter()

        def progress(rows: list[dict[str, Any]], rest: list[dict[str, Any]] = rest) -> None:
            run.pending = [*rows, *rest]
            update(False)

        run.records += run_suite(suite, quick, limit, on_progress=progress)
        run.pending = rest
        run.suite_seconds[suite.name] = round(time.perf_counter() - suite_started, 1)
        log(f"bench: {suite.name} done in {run.suite_seconds[suite.name]} s")
        update(True)
    run.load_after = os.getloadavg()
    run.finished = True
    update(False)
    return run


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def write_markdown(run: Run, path: Path, plots: list[Path]) -> None:
    """RESULTS.md: every row of ``run`` (the final ones and those still to come), written atomically."""
    load = ", ".join(f"{v:.2f}" for v in run.load_before)
    load_after = ", ".join(f"{v:.2f}" for v in run.load_after or os.getloadavg())
    state = (f"{run.elapsed_s:.0f} s in all" if run.finished else
             f"**in progress** after {run.elapsed_s:.0f} s: {len(run.pending)} rows still to come, each "
             "saying why it has no figure yet")
    lines = [
        "# Bench results",
        "",
        f"Generated by `python -m bench{' --quick' if run.quick else ''}` on {run.started} "
        f"({'quick mode: tiny sizes, the numbers mean nothing' if run.quick else 'full run'}); {state}.",
        "",
        f"Machine: {machine()}, no GPU, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}. Load average (1, 5, 15 min) {load} before and "
        f"{load_after} {'after' if run.finished else 'now'}: other processes shared these cores during the run, "
        "so absolute times are noisy; each ratio's anchor was measured in the same run, interleaved where the "
        "suite does so.",
        "",
        "| figure | value | anchor | anchor value | ratio | goal | met | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = run.rows()
    for r in rows:
        value = f"{_cell(r.get('value'))} {r.get('unit') or ''}".strip() if r.get("value") is not None else "-"
        anchor_value = f"{_cell(r.get('anchor_value'))} {r.get('unit') or ''}".strip() \
            if r.get("anchor_value") is not None else "-"
        met = _cell(r.get("met")) if r.get("met") is not None else "n/a"
        lines.append(f"| {_cell(r.get('name'))} | {value} | {_cell(r.get('anchor'))} | {anchor_value} | "
                     f"{_cell(r.get('ratio'))} | {_cell(r.get('goal'))} | {met} | `{r.get('command')}` |")
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "## Not measured", ""]
        lines += [f"- **{r['name']}**: {r['note']}" for r in notes]
    if run.suite_seconds:
        lines += ["", "Seconds per suite: " + ", ".join(f"{k} {v}" for k, v in run.suite_seconds.items()) + "."]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    lines += ["", "What each figure measures, and why a missed goal is missed: bench/README.md.", ""]
    write_atomic(path, "\n".join(lines))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader (or a crash) never sees half a file."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def write_results(run: Run, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write results.json, RESULTS.md and plots/*.png under ``out_dir`` (each file atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.json"
    write_atomic(results, json.dumps([clean(r) for r in run.rows()], indent=2) + "\n")
    drawn: list[Path] = []
    if plots:
        from bench.plotting import draw_all

        drawn = draw_all(run.records, out_dir / "plots", machine=machine())
    markdown = out_dir / "RESULTS.md"
    write_markdown(run, markdown, drawn)
    return {"results": results, "markdown": markdown, **{p.stem: p for p in drawn}}


def select(names: Sequence[str] | None) -> list[Suite]:
    """Suites by name (``--only``); unknown names raise ``SystemExit`` listing the valid ones."""
    if not names:
        return list(SUITES)
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    by_name = {s.name: s for s in SUITES}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]
