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

The suites and their figures are tabled in ``bench.suites``; ``bench.results`` holds ``Run`` and
writes the files. Their names stay importable from here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import DEADLINE_ENV, PART_PREFIX, gpu_name
from bench.results import KEYS, Run, clean, write_atomic, write_markdown, write_results
from bench.suites import SUITES, Expected, Suite, select

__all__ = [
    "BENCH_DIR", "FULL_BUDGET_S", "KEYS", "NOT_REACHED", "ROOT", "SUITES", "Expected", "Run", "Suite",
    "clean", "parse_records", "run_all", "run_suite", "select", "suite_rows", "write_atomic",
    "write_markdown", "write_results",
]

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
#: The whole full run must fit in 15 minutes on the 2-core machine; suites past it are skipped.
FULL_BUDGET_S = 14 * 60


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


#: What the rows of a GPU suite say on a machine without one.
NO_GPU = "not measured: no GPU on this machine (torch sees no CUDA device)"
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
        timeout = suite.quick_timeout_s if quick else suite.full_timeout_s
        reserving = [] if quick else [later for later in suites[index + 1:] if later.reserve_s]
        reserved = sum(later.reserve_s for later in reserving)
        # what later suites reserved is not this suite's; its own reserve it gets whatever they hold
        limit = min(timeout, max(left - reserved, min(left, suite.reserve_s)))
        rest = not_reached(suites[index + 1:])
        if suite.needs_gpu and not gpu_name():
            run.records += [_placeholder(e, suite.command(quick), NO_GPU) for e in suite.figures]
            run.pending = rest
            update(False)
            continue
        if limit <= 5:
            why = ("not run: the harness's time budget was spent" if left <= 5 else
                   f"not run: the {left:.0f} s left are reserved for {', '.join(s.name for s in reserving)}")
            run.records += [_placeholder(e, suite.command(quick), why) for e in suite.figures]
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
