"""Concurrency figures (issue 17, item 4): 500 delegation jobs at once against the framework's floor.

    python -m bench.bench_concurrency [--quick] [--jobs 500] [--delay-ms 100] [--rounds 5] [--no-processes] [--no-settle]

Every job goes through the local executor (``LocalExecutor.run`` -> ``Runtime.run``: dispatcher,
delegation graph, SQLite checkpoints in a temporary ``SWARM_HOME``, budget meter, redaction) with
the shipped config; only the LLM is a ``FunctionLLM`` that sleeps ``--delay-ms`` per call (draft +
review = 2 calls, so one job waits 200 ms on its provider). The headline row is the wall time
until all N concurrent jobs are done against the wall time of N bare 3-node LangGraph runs (two
nodes sleeping ``--delay-ms``, no checkpointer, no dispatcher) under the same load: the floor of
any LangGraph job in one Python process here; goal <= 1.25x with 0 errors and flat memory
(``rss_growth_mb``: peak RSS during the burst over RSS before it; ``rss_before_by_round_mb``
shows whether the baseline creeps from round to round). ``cpu_ms_per_job`` is the process CPU
time of a burst over N, which load from other processes disturbs far less than the wall time.

The bench process first settles as every door does once started (``core.heap.settle``: start-up's
heap frozen, the collector's young threshold raised; ``--no-settle`` runs with Python's defaults):
the jobs and the floor alike run in the process configuration the product ships.

Reference rows: the same jobs on upstream's ``AsyncSqliteSaver``, on the memory checkpointer and
with no checkpointer at all (against the same floor), the bench's bare graph itself with
LangGraph's ``InMemorySaver`` and every step durable (what LangGraph adds for durable steps, with
no code of ours), the floor against one bare run, and the throughput of N jobs through
``ProcessExecutor`` (``runner.local.processes``) with 2 worker processes against 1. Variants run
interleaved for ``--rounds`` rounds (the reference variants in the first ``REFERENCE_ROUNDS`` only:
the headline's ratio moves by +-0.3 from pair to pair here, so it gets the most pairs), each burst
paired with a floor run right beside it (the floor first in odd rounds); each row reports its
median pair and every pair's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import operator
import os
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from bench.common import emit, emit_record, figure, seconds_left

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


def _sleeping_llm(delay_s: float) -> Any:
    from providers.testing import FunctionLLM

    async def answer(messages: Any, config: Any) -> Any:
        await asyncio.sleep(delay_s)
        return VERDICT if config.step == "review" else "a draft about rivers"

    return FunctionLLM(answer)


def sleeping_llm_worker() -> None:
    """``ProcessExecutor`` initializer: every runtime of this worker gets the sleeping LLM."""
    from types import MappingProxyType

    from swarm.runtime import Runtime

    delay_s = float(os.environ.get("BENCH_PROVIDER_DELAY_MS", "100")) / 1000
    Runtime.provider_overrides = MappingProxyType({"llm": _sleeping_llm(delay_s)})


def _runtime(delay_s: float, config_path: str | None = None, upstream: contextlib.AsyncExitStack | None = None,
             *, checkpoints: bool = True) -> Any:
    from swarm.runtime import Runtime

    opened: list[Any] = []

    class BenchRuntime(Runtime):
        async def checkpointer(self, config: Any) -> Any:
            if not checkpoints:  # reference only: no saver, so no durability
                return None
            if upstream is None:
                return await super().checkpointer(config)
            if not opened:  # jobs start one by one before the concurrent burst: no race here
                path = os.path.expanduser(config.checkpointer.path)
                opened.append(await upstream.enter_async_context(_upstream_sqlite(path)))
            return opened[0]

    return BenchRuntime(config_path, providers={"llm": _sleeping_llm(delay_s)})


async def _job(executor: Any, index: int, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    result = await executor.run({"project": "swarm", "action": "delegate",
                                 "input": {"task": f"Write two lines about river {index}."}})
    latencies.append((time.perf_counter() - started) * 1000)
    if result["status"] != "COMPLETED":
        errors.append(f"{result['error']}")


class _PeakRss:
    """Samples this process's resident set every 5 ms on a thread: RSS before a burst and its peak."""

    def __init__(self) -> None:
        self.before_mb = self.peak_mb = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


class _GcTime:
    """Time the cyclic collector spends (every generation) while the block runs."""

    def __init__(self) -> None:
        self.ms = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._started) * 1000

    def __enter__(self) -> _GcTime:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Run:
    """One burst of N concurrent jobs and its anchor (one job alone, median), same runtime."""

    wall_ms: float
    cpu_ms: float
    one_ms: float
    latencies: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    gc_ms: float = 0.0  # the cyclic collector's time during the burst

    @property
    def ratio(self) -> float:
        return self.wall_ms / self.one_ms


async def _burst(variant: str, jobs: int, delay_ms: float, single_repeat: int) -> Run:
    """``variant``: sqlite (shipped: LoopSqliteSaver), upstream (AsyncSqliteSaver), memory or none."""
    from swarm.executors.local import LocalExecutor

    with tempfile.TemporaryDirectory() as home:
        os.environ["SWARM_HOME"] = home
        async with contextlib.AsyncExitStack() as upstream:
            runtime = _runtime(delay_ms / 1000, _config_file(home, "memory" if variant == "memory" else "sqlite"),
                               upstream if variant == "upstream" else None, checkpoints=variant != "none")
            executor = LocalExecutor(runtime)
            warm: list[float] = []
            errors: list[str] = []
            for i in range(2):  # imports, graph compile, SQLite open
                await _job(executor, -i, warm, errors)
            single: list[float] = []
            for i in range(single_repeat):
                await _job(executor, 10_000 + i, single, errors)
            latencies: list[float] = []
            gc.collect()  # every burst (and the floor's) starts from the same collector state
            with _PeakRss() as rss, _GcTime() as collector:
                cpu = time.process_time()
                started = time.perf_counter()
                await asyncio.gather(*(_job(executor, i, latencies, errors) for i in range(jobs)))
                wall_ms = (time.perf_counter() - started) * 1000
                cpu_ms = (time.process_time() - cpu) * 1000
            await runtime.aclose()
    return Run(wall_ms, cpu_ms, statistics.median(single), latencies, single, errors, rss.before_mb, rss.peak_mb,
               collector.ms)


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.ratio)[len(runs) // 2]


NAMES = {
    "upstream": (", langgraph AsyncSqliteSaver (reference: the saver before)", "reference: upstream aiosqlite saver"),
    "memory": (", memory checkpointer (reference)", "reference: cost without SQLite"),
    "none": (", no checkpointer (reference: not durable)", "reference: cost without any checkpoint"),
    "bare-durable": ("", "reference: what LangGraph itself adds for a checkpoint at every step"),
}
DURABLE_FLOOR = "{jobs} concurrent bare 3-node LangGraph runs, {delay_ms:.0f} ms nodes, InMemorySaver, every step durable"
#: rounds that run the reference variants too (later rounds add pairs to the headline only)
REFERENCE_ROUNDS = 3
#: seconds one round of the worker-process row may take here (spawns, imports, 2 x N jobs)
PROCESSES_RESERVE_S = 40
#: a burst (after the first) or the baseline from round to round may grow RSS by this much
RSS_FLAT_MB = 10
FLOOR = "500 bare 3-node LangGraph runs at once, same load (the floor)"


def _against_floor(variant: str, runs: list[Run], floor: list[Run], jobs: int, delay_ms: float) -> dict[str, Any]:
    """N jobs at once vs N bare LangGraph runs at once, round by round (interleaved)."""
    ratios = [r.wall_ms / f.wall_ms for r, f in zip(runs, floor, strict=True)]
    # the upper median where the rounds are even (a cut run): lower is better, so it errs against us
    middle = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    run, base = runs[middle], floor[middle]
    errors = [e for r in runs for e in r.errors]
    # The first burst also pays the process's one-off growth (imports, arenas): memory is judged
    # on the later ones. Flat: no burst grows RSS by more than RSS_FLAT_MB, nor the baseline.
    later = runs[1:] or runs
    growth = max(r.rss_peak_mb - r.rss_before_mb for r in later)
    creep = later[-1].rss_before_mb - later[0].rss_before_mb
    shipped = variant == "sqlite"
    suffix, goal = ("", f"<= 1.25x the floor, 0 errors, flat memory (<= {RSS_FLAT_MB} MB)") if shipped else NAMES[variant]
    met = run.wall_ms <= 1.25 * base.wall_ms and not errors and max(growth, creep) <= RSS_FLAT_MB
    title = (DURABLE_FLOOR.format(jobs=jobs, delay_ms=delay_ms) if variant == "bare-durable"
             else f"{jobs} concurrent delegation jobs, {delay_ms:.0f} ms provider{suffix}")
    return figure(
        title, run.wall_ms, "ms",
        FLOOR.replace("500", str(jobs)), base.wall_ms, goal, met if shipped else None, COMMAND,
        errors=len(errors), first_error=errors[0] if errors else None, jobs=jobs, rounds=len(runs),
        round_ratios=[round(r, 2) for r in ratios],
        vs_one_job=round(run.ratio, 2), floor_vs_one_run=round(base.ratio, 2), one_job_ms=round(run.one_ms, 1),
        cpu_ms_per_job=round(run.cpu_ms / jobs, 3), floor_cpu_ms_per_job=round(base.cpu_ms / jobs, 3),
        gc_ms=round(run.gc_ms, 1), floor_gc_ms=round(base.gc_ms, 1),
        collector={"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()},
        rss_growth_mb=round(growth, 1), rss_creep_mb=round(creep, 1),
        rss_before_by_round_mb=[round(r.rss_before_mb, 1) for r in runs],
        rss_peak_by_round_mb=[round(r.rss_peak_mb, 1) for r in runs],
        job_p50_ms=round(statistics.median(run.latencies), 1),
        job_p95_ms=round(sorted(run.latencies)[int(0.95 * (len(run.latencies) - 1))], 1),
        samples_ms=[round(v, 2) for v in run.latencies], anchor_samples_ms=[round(v, 2) for v in run.single],
    )


async def _bare_once(jobs: int, delay_ms: float, *, durable: bool = False) -> Run:
    """N bare 3-node runs at once; ``durable``: with LangGraph's ``InMemorySaver``, every step durable."""
    from bench.common import bare_three_node_graph

    async def call(state: State) -> State:
        await asyncio.sleep(delay_ms / 1000)
        return {"text": "x", "trace": [{"step": "call"}]}

    async def last(state: State) -> State:
        return {"text": "done"}

    saver = None
    if durable:
        from langgraph.checkpoint.memory import InMemorySaver

        saver = InMemorySaver()
    compiled = bare_three_node_graph(State, call, last, checkpointer=saver)
    runs = itertools.count()

    def invoke() -> Any:
        if saver is None:
            return compiled.ainvoke({"text": ""})
        return compiled.ainvoke({"text": ""}, {"configurable": {"thread_id": f"bare-{next(runs)}"}}, durability="sync")

    await invoke()
    single = []
    for _ in range(5):
        started = time.perf_counter()
        await invoke()
        single.append((time.perf_counter() - started) * 1000)
    latencies: list[float] = []

    async def timed() -> None:
        begun = time.perf_counter()
        await invoke()
        latencies.append((time.perf_counter() - begun) * 1000)

    gc.collect()
    with _PeakRss() as rss, _GcTime() as collector:
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(timed() for _ in range(jobs)))
        wall_ms = (time.perf_counter() - started) * 1000
    return Run(wall_ms, (time.process_time() - cpu) * 1000, statistics.median(single), latencies, single,
               rss_before_mb=rss.before_mb, rss_peak_mb=rss.peak_mb, gc_ms=collector.ms)


def _bare_record(runs: list[Run], jobs: int, delay_ms: float) -> dict[str, Any]:
    """The floor against one bare run (what LangGraph alone does under this load)."""
    run = _median_run(runs)
    return figure(f"{jobs} concurrent bare 3-node LangGraph runs, {delay_ms:.0f} ms nodes (reference)", run.wall_ms,
                  "ms", "one run alone (median)", run.one_ms, "reference: the floor of any LangGraph job here",
                  None, COMMAND, jobs=jobs, rounds=len(runs), round_ratios=[round(r.ratio, 2) for r in runs],
                  cpu_ms_per_job=round(run.cpu_ms / jobs, 3))


async def _pool_throughput(processes: int, jobs: int, config_path: str) -> tuple[float, list[str]]:
    """Jobs per second of ``jobs`` concurrent jobs through a started ``ProcessExecutor``."""
    from swarm.executors.processes import ProcessExecutor

    pool = ProcessExecutor(processes, config_path, initializer="bench.bench_concurrency:sleeping_llm_worker")
    errors: list[str] = []
    try:
        pool.start()
        warm: list[float] = []
        await asyncio.gather(*(_job(pool, -i, warm, errors) for i in range(2 * processes)))  # imports, compile
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(_job(pool, i, latencies, errors) for i in range(jobs)))
        return jobs / (time.perf_counter() - started), errors
    finally:
        await pool.aclose()


async def processes_figure(jobs: int, delay_ms: float, rounds: int) -> dict[str, Any]:
    """Throughput of N concurrent jobs with 2 worker processes vs 1 (``runner.local.processes``)."""
    os.environ["BENCH_PROVIDER_DELAY_MS"] = str(delay_ms)  # the workers inherit it
    one: list[float] = []
    two: list[float] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["SWARM_HOME"] = home
        config_path = _config_file(home, "sqlite")
        for _ in range(rounds):  # interleaved
            for processes, into in ((1, one), (2, two)):
                rate, failed = await _pool_throughput(processes, jobs, config_path)
                into.append(rate)
                errors += failed
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    middle = sorted(range(rounds), key=ratios.__getitem__)[(rounds - 1) // 2]  # the lower median
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return figure(
        f"{jobs} concurrent delegation jobs, 2 worker processes (runner.local.processes: 2), jobs/s", two[middle],
        "jobs/s", "the same jobs, 1 worker process", one[middle], f"reference: growth from 1 to 2 processes on {cores} cores",
        None, COMMAND, higher_is_better=True, errors=len(errors), first_error=errors[0] if errors else None,
        jobs=jobs, rounds=rounds, round_ratios=[round(r, 2) for r in ratios],
        jobs_per_s_1=[round(v, 1) for v in one], jobs_per_s_2=[round(v, 1) for v in two],
    )


async def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 jobs, one round, no references: checks the harness")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds; the median round is reported")
    parser.add_argument("--no-processes", action="store_true", help="leave out the worker-process throughput row")
    parser.add_argument("--no-settle", action="store_true",
                        help="leave the collector as Python starts it; by default the bench process settles as the"
                             " doors do (core.heap.settle: start-up heap frozen, young threshold raised), every"
                             " variant and the floor alike")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if not args.no_settle:
        import graphs.delegation.graph  # noqa: F401  # what the jobs import, frozen with the rest
        import swarm.executors.local  # noqa: F401
        from core.heap import settle

        settle()
    jobs = args.jobs or (50 if args.quick else 500)
    rounds = args.rounds or (1 if args.quick else 5)
    repeat = 3 if args.quick else 5  # one job alone: only the vs_one_job column uses it
    variants = ["sqlite"] if args.quick else ["sqlite", "upstream", "memory", "none", "bare-durable"]
    runs: dict[str, list[Run]] = {v: [] for v in variants}
    # each variant's burst has its own floor run right beside it (before it in odd rounds): the
    # speed of this machine drifts by tens of percent within seconds, and a floor measured several
    # bursts away moved every ratio by that much
    floors: dict[str, list[Run]] = {v: [] for v in variants}
    records: list[dict[str, Any]] = []
    for number in range(rounds):  # interleaved, so a burst of load elsewhere hits every variant alike
        started = time.monotonic()
        for variant in variants if number < REFERENCE_ROUNDS else variants[:1]:
            ours = (_bare_once(jobs, args.delay_ms, durable=True) if variant == "bare-durable"
                    else _burst(variant, jobs, args.delay_ms, repeat))
            pair = [ours, _bare_once(jobs, args.delay_ms)]
            for index in ((1, 0) if number % 2 else (0, 1)):
                (runs[variant] if index == 0 else floors[variant]).append(await pair[index])
        # every finished round re-emits the rows, so a harness that cuts the suite keeps them
        records = [emit_record(_against_floor(v, r, floors[v], jobs, args.delay_ms)) for v, r in runs.items()]
        records.append(emit_record(_bare_record(floors["sqlite"], jobs, args.delay_ms)))
        reserve = 0 if args.no_processes else PROCESSES_RESERVE_S
        if number + 1 < rounds and seconds_left() < 1.3 * (time.monotonic() - started) + reserve:
            break  # the harness's budget would not hold another round
    if not args.no_processes and seconds_left() > PROCESSES_RESERVE_S:
        process_rounds = 1 if args.quick or seconds_left() < 2 * PROCESSES_RESERVE_S else 2
        records.append(emit_record(await processes_figure(jobs, args.delay_ms, process_rounds)))
    emit(records)
    return records


if __name__ == "__main__":
    asyncio.run(main())
