"""Concurrency figure (issue 8): 500 delegation jobs at once vs one job, 100 ms provider.

    python -m bench.bench_concurrency [--quick] [--jobs 500] [--delay-ms 100] [--rounds 3]

Every job goes through ``Runtime.run`` (the local runner's path: dispatcher, delegation graph,
SQLite checkpoints in a temporary ``SWARM_HOME``, budget meter, redaction) with the shipped
config; only the LLM is a ``FunctionLLM`` that sleeps ``--delay-ms`` per call (draft + review
= 2 calls, so one job waits 200 ms on its provider). The figure is the wall time until all
N concurrent jobs are done against the wall time of one job alone, measured in the same
runtime; goal <= 2x with 0 errors. Per-job latencies go into ``samples_ms`` for the harness's
latency plot; ``cpu_ms_per_job`` is the process CPU time of the burst over N (all threads),
which load from other processes disturbs far less than the wall time.

The full run adds three reference rows, to split the cost: the same jobs on upstream's
``AsyncSqliteSaver`` (the saver before ``LoopSqliteSaver``), on the memory checkpointer, and N
bare 3-node LangGraph runs (the floor). Variants run interleaved for ``--rounds`` rounds; each
row reports its median round (by ratio) and every round's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import operator
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from bench.common import emit, figure

COMMAND = "python -m bench.bench_concurrency"
VERDICT = {"approved": True, "score": 9, "issues": [], "suggestion": ""}


class State(TypedDict, total=False):
    """State of the bare reference graph."""

    text: str
    trace: Annotated[list[dict[str, Any]], operator.add]


def _config_file(folder: str, checkpointer: str) -> str:
    """The shipped config with only ``checkpointer.kind`` changed."""
    import yaml

    from core.config import DEFAULT_CONFIG_PATH

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw.setdefault("checkpointer", {})["kind"] = checkpointer
    path = os.path.join(folder, "config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    return path


@contextlib.asynccontextmanager
async def _upstream_sqlite(path: str) -> AsyncIterator[Any]:
    """langgraph-checkpoint-sqlite's AsyncSqliteSaver, opened as the project did before LoopSqliteSaver."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        await saver.conn.execute("PRAGMA synchronous=NORMAL")
        yield saver


def _runtime(delay_s: float, config_path: str | None = None, upstream: contextlib.AsyncExitStack | None = None) -> Any:
    from providers.testing import FunctionLLM
    from swarm.runtime import Runtime

    async def answer(messages: Any, config: Any) -> Any:
        await asyncio.sleep(delay_s)
        return VERDICT if config.step == "review" else "a draft about rivers"

    llm = FunctionLLM(answer)
    opened: list[Any] = []

    class BenchRuntime(Runtime):
        async def checkpointer(self, config: Any) -> Any:
            if upstream is None:
                return await super().checkpointer(config)
            if not opened:  # jobs start one by one before the concurrent burst: no race here
                path = os.path.expanduser(config.checkpointer.path)
                opened.append(await upstream.enter_async_context(_upstream_sqlite(path)))
            return opened[0]

    return BenchRuntime(config_path, providers={"llm": llm})


async def _job(runtime: Any, index: int, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    result = await runtime.run({"project": "swarm", "action": "delegate",
                                "input": {"task": f"Write two lines about river {index}."}})
    latencies.append((time.perf_counter() - started) * 1000)
    if result["status"] != "COMPLETED":
        errors.append(f"{result['error']}")


@dataclass
class Run:
    """One burst of N concurrent jobs and its anchor (one job alone, median), same runtime."""

    wall_ms: float
    cpu_ms: float
    one_ms: float
    latencies: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.wall_ms / self.one_ms


async def _burst(variant: str, jobs: int, delay_ms: float, single_repeat: int) -> Run:
    """``variant``: sqlite (shipped: LoopSqliteSaver), upstream (AsyncSqliteSaver) or memory."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["SWARM_HOME"] = home
        async with contextlib.AsyncExitStack() as upstream:
            runtime = _runtime(delay_ms / 1000, _config_file(home, "memory" if variant == "memory" else "sqlite"),
                               upstream if variant == "upstream" else None)
            warm: list[float] = []
            errors: list[str] = []
            for i in range(2):  # imports, graph compile, SQLite open
                await _job(runtime, -i, warm, errors)
            single: list[float] = []
            for i in range(single_repeat):
                await _job(runtime, 10_000 + i, single, errors)
            latencies: list[float] = []
            cpu = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(_job(runtime, i, latencies, errors) for i in range(jobs)))
            wall_ms = (time.perf_counter() - started) * 1000
            cpu_ms = (time.process_time() - cpu) * 1000
            await runtime.aclose()
    return Run(wall_ms, cpu_ms, statistics.median(single), latencies, single, errors)


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.ratio)[len(runs) // 2]


NAMES = {
    "sqlite": ("", "<= 2x, 0 errors"),
    "upstream": (", langgraph AsyncSqliteSaver (reference: the saver before)", "reference: upstream aiosqlite saver"),
    "memory": (", memory checkpointer (reference)", "reference: cost without SQLite"),
}


def _record(variant: str, runs: list[Run], jobs: int, delay_ms: float) -> dict[str, Any]:
    run = _median_run(runs)
    suffix, goal = NAMES[variant]
    shipped = variant == "sqlite"
    errors = [e for r in runs for e in r.errors]
    return figure(
        f"{jobs} concurrent delegation jobs, {delay_ms:.0f} ms provider{suffix}", run.wall_ms, "ms",
        "one job alone (median)", run.one_ms, goal,
        (run.wall_ms <= 2 * run.one_ms and not errors) if shipped else None, COMMAND,
        errors=len(errors), first_error=errors[0] if errors else None, jobs=jobs,
        rounds=len(runs), round_ratios=[round(r.ratio, 2) for r in runs],
        cpu_ms_per_job=round(run.cpu_ms / jobs, 3),
        job_p50_ms=round(statistics.median(run.latencies), 1),
        job_p95_ms=round(sorted(run.latencies)[int(0.95 * (len(run.latencies) - 1))], 1),
        samples_ms=[round(v, 2) for v in run.latencies], anchor_samples_ms=[round(v, 2) for v in run.single],
    )


async def _bare_once(jobs: int, delay_ms: float) -> Run:
    from bench.common import bare_three_node_graph

    async def call(state: State) -> State:
        await asyncio.sleep(delay_ms / 1000)
        return {"text": "x", "trace": [{"step": "call"}]}

    async def last(state: State) -> State:
        return {"text": "done"}

    compiled = bare_three_node_graph(State, call, last)
    await compiled.ainvoke({"text": ""})
    single = []
    for _ in range(5):
        started = time.perf_counter()
        await compiled.ainvoke({"text": ""})
        single.append((time.perf_counter() - started) * 1000)
    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(compiled.ainvoke({"text": ""}) for _ in range(jobs)))
    wall_ms = (time.perf_counter() - started) * 1000
    return Run(wall_ms, (time.process_time() - cpu) * 1000, statistics.median(single), single=single)


def _bare_record(runs: list[Run], jobs: int, delay_ms: float) -> dict[str, Any]:
    """The floor: a bare 3-node LangGraph (2 sleeping nodes, no checkpointer), N at once vs one."""
    run = _median_run(runs)
    return figure(f"{jobs} concurrent bare 3-node LangGraph runs, {delay_ms:.0f} ms nodes (reference)", run.wall_ms,
                  "ms", "one run alone (median)", run.one_ms, "reference: the floor of any LangGraph job here",
                  None, COMMAND, jobs=jobs, rounds=len(runs), round_ratios=[round(r.ratio, 2) for r in runs],
                  cpu_ms_per_job=round(run.cpu_ms / jobs, 3))


async def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 jobs, one round, no references: checks the harness")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds; the median round is reported")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    jobs = args.jobs or (50 if args.quick else 500)
    rounds = args.rounds or (1 if args.quick else 3)
    repeat = 3 if args.quick else 10
    variants = ["sqlite"] if args.quick else ["sqlite", "upstream", "memory", "bare"]
    runs: dict[str, list[Run]] = {v: [] for v in variants}
    for _ in range(rounds):  # interleaved, so a burst of load elsewhere hits every variant alike
        for variant in variants:
            if variant == "bare":
                runs[variant].append(await _bare_once(jobs, args.delay_ms))
            else:
                runs[variant].append(await _burst(variant, jobs, args.delay_ms, repeat))
    records = [_bare_record(r, jobs, args.delay_ms) if v == "bare" else _record(v, r, jobs, args.delay_ms)
               for v, r in runs.items()]
    emit(records)
    return records


if __name__ == "__main__":
    asyncio.run(main())
