"""Where a delegation job's CPU goes over bare LangGraph's, layer by layer (issue 17, item 4).

    python -m bench.concurrency_breakdown [--jobs 200] [--reps 7]

The 500-job figure (``bench_concurrency``) is wall time with 100 ms sleeps and the collector on,
which this machine's speed drift makes noisy. Here the same jobs run without the sleeps (the
provider answers at once) and with the collector off during each burst, ``--jobs`` at once,
every variant ``--reps`` times interleaved, and each variant's best burst is its CPU per job (the
drift only ever slows a burst). Variants, each adding one layer to the one before:

- ``bare``: the bench's 3-node LangGraph, no checkpointer (the floor);
- ``none``: our job (dispatcher, validation, budget meter, trace, redaction, delegation graph), no saver;
- ``noop``: the same with a saver that stores nothing (LangGraph's own checkpoint path alone);
- ``memory``: LangGraph's ``InMemorySaver``;
- ``sqlite``: the shipped ``LoopSqliteSaver``.

Each row is a reference (no goal): CPU per job against the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from typing import Any

from bench.bench_concurrency import State, _config_file, _job, _sleeping_llm
from bench.common import emit, emit_record, figure

COMMAND = "python -m bench.concurrency_breakdown"
LAYERS = {
    "none": "our job, no checkpointer",
    "noop": "our job, a saver that stores nothing (LangGraph's checkpoint path alone)",
    "memory": "our job, LangGraph InMemorySaver",
    "sqlite": "our job, LoopSqliteSaver (shipped)",
}


def _noop_saver() -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    class NoopSaver(InMemorySaver):
        """Answers every write at once and every read with nothing."""

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            return {"configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]}}

        async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            return None

        async def aget_tuple(self, config: Any) -> None:
            return None

    return NoopSaver()


async def _executor(layer: str, home: str) -> tuple[Any, Any]:
    from swarm.executors.local import LocalExecutor
    from swarm.runtime import Runtime

    noop = _noop_saver() if layer == "noop" else None

    class LayerRuntime(Runtime):
        async def checkpointer(self, config: Any) -> Any:
            if layer == "none":
                return None
            return noop if noop is not None else await super().checkpointer(config)

    runtime = LayerRuntime(_config_file(home, "memory" if layer == "memory" else "sqlite"),
                           providers={"llm": _sleeping_llm(0.0)})
    executor = LocalExecutor(runtime)
    for i in range(3):  # imports, graph compile, saver open
        await _job(executor, -i, [], [])
    return runtime, executor


async def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from bench.common import bare_three_node_graph

    async def call(state: State) -> State:
        await asyncio.sleep(0)
        return {"text": "x", "trace": [{"step": "call"}]}

    async def last(state: State) -> State:
        return {"text": "done"}

    bare = bare_three_node_graph(State, call, last)
    await bare.ainvoke({"text": ""})
    cpu: dict[str, list[float]] = {layer: [] for layer in ["bare", *LAYERS]}
    with tempfile.TemporaryDirectory() as home:
        os.environ["SWARM_HOME"] = home
        opened = {layer: await _executor(layer, home) for layer in LAYERS}
        try:
            for rep in range(args.reps):
                for layer in cpu:
                    errors: list[str] = []
                    gc.collect()
                    gc.disable()
                    started = time.process_time()
                    try:
                        if layer == "bare":
                            await asyncio.gather(*(bare.ainvoke({"text": ""}) for _ in range(args.jobs)))
                        else:
                            executor = opened[layer][1]
                            await asyncio.gather(*(_job(executor, rep * 100_000 + i, [], errors) for i in range(args.jobs)))
                    finally:
                        gc.enable()
                    if errors:
                        raise SystemExit(f"{layer}: {errors[0]}")
                    cpu[layer].append((time.process_time() - started) * 1000 / args.jobs)
        finally:
            for runtime, _ in opened.values():
                await runtime.aclose()
    floor = min(cpu["bare"])
    records = [emit_record(figure(
        f"CPU per delegation job, {args.jobs} at once, no sleeps, collector off: {text}", min(cpu[layer]), "ms",
        "bare 3-node LangGraph run, same conditions (best burst)", floor, "reference: one layer more than the row above",
        None, COMMAND, reps=args.reps, samples_ms=[round(v, 3) for v in cpu[layer]],
        floor_samples_ms=[round(v, 3) for v in cpu["bare"]],
    )) for layer, text in LAYERS.items()]
    emit(records)
    return records


if __name__ == "__main__":
    asyncio.run(main())
