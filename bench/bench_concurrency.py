"""Concurrency figure (issue 8): 500 delegation jobs at once vs one job, 100 ms provider.

    python -m bench.bench_concurrency [--quick] [--jobs 500] [--delay-ms 100]

Every job goes through ``Runtime.run`` (the local runner's path: dispatcher, delegation graph,
SQLite checkpoints in a temporary ``SWARM_HOME``, budget meter, redaction) with the shipped
config; only the LLM is a ``FunctionLLM`` that sleeps ``--delay-ms`` per call (draft + review
= 2 calls, so one job waits 200 ms on its provider). The figure is the wall time until all
N concurrent jobs are done against the wall time of one job alone; goal <= 2x with 0 errors.
Per-job latencies go into ``samples_ms`` for the harness's latency plot.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import statistics
import tempfile
import time
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

    from swarm.config import DEFAULT_CONFIG_PATH

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw.setdefault("checkpointer", {})["kind"] = checkpointer
    path = os.path.join(folder, "config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    return path


def _runtime(delay_s: float, config_path: str | None = None) -> Any:
    from providers.testing import FunctionLLM
    from swarm.runtime import Runtime

    async def answer(messages: Any, config: Any) -> Any:
        await asyncio.sleep(delay_s)
        return VERDICT if config.step == "review" else "a draft about rivers"

    llm = FunctionLLM(answer)

    class BenchRuntime(Runtime):
        def _factories(self, config: Any) -> dict[str, Any]:
            factories = super()._factories(config)
            factories["llm"] = lambda: llm
            return factories

    return BenchRuntime(config_path)


async def _job(runtime: Any, index: int, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    result = await runtime.run({"project": "swarm", "action": "delegate",
                                "input": {"task": f"Write two lines about river {index}."}})
    latencies.append((time.perf_counter() - started) * 1000)
    if result["status"] != "COMPLETED":
        errors.append(f"{result['error']}")


async def measure(jobs: int, delay_ms: float, single_repeat: int, checkpointer: str = "sqlite") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        os.environ["SWARM_HOME"] = home
        runtime = _runtime(delay_ms / 1000, _config_file(home, checkpointer))
        warm: list[float] = []
        errors: list[str] = []
        for i in range(2):  # imports, graph compile, SQLite open
            await _job(runtime, -i, warm, errors)
        single: list[float] = []
        for i in range(single_repeat):
            await _job(runtime, 10_000 + i, single, errors)
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(_job(runtime, i, latencies, errors) for i in range(jobs)))
        wall_ms = (time.perf_counter() - started) * 1000
        await runtime.aclose()
    one = statistics.median(single)
    shipped = checkpointer == "sqlite"
    return figure(
        f"{jobs} concurrent delegation jobs, {delay_ms:.0f} ms provider"
        f"{'' if shipped else f', {checkpointer} checkpointer (reference)'}", wall_ms, "ms",
        "one job alone (median)", one, "<= 2x, 0 errors" if shipped else "reference: cost without SQLite",
        (wall_ms <= 2 * one and not errors) if shipped else None, COMMAND,
        errors=len(errors), first_error=errors[0] if errors else None, jobs=jobs,
        job_p50_ms=round(statistics.median(latencies), 1),
        job_p95_ms=round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 1),
        samples_ms=[round(v, 2) for v in latencies], anchor_samples_ms=[round(v, 2) for v in single],
    )


async def bare_langgraph(jobs: int, delay_ms: float) -> dict[str, Any]:
    """The floor: a bare 3-node LangGraph (2 sleeping nodes, no checkpointer), N at once vs one."""
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
    started = time.perf_counter()
    await asyncio.gather(*(compiled.ainvoke({"text": ""}) for _ in range(jobs)))
    wall_ms = (time.perf_counter() - started) * 1000
    one = statistics.median(single)
    return figure(f"{jobs} concurrent bare 3-node LangGraph runs, {delay_ms:.0f} ms nodes (reference)", wall_ms,
                  "ms", "one run alone (median)", one, "reference: the floor of any LangGraph job here",
                  None, COMMAND, jobs=jobs)


async def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 jobs: checks the harness, not speed")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    jobs = args.jobs or (50 if args.quick else 500)
    repeat = 3 if args.quick else 10
    records = [await measure(jobs, args.delay_ms, repeat)]
    if not args.quick:
        records.append(await measure(jobs, args.delay_ms, repeat, checkpointer="memory"))
        records.append(await bare_langgraph(jobs, args.delay_ms))
    emit(records)
    return records


if __name__ == "__main__":
    asyncio.run(main())
