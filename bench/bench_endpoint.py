"""Local RunPod endpoint: cold start, forwarding overhead and concurrency, as ratios.

``python -m bench.bench_endpoint [--jobs 20] [--workers 2] [--concurrency 4] [--sleep-s 0.1]``

Real ``runpod`` worker processes (``swarm.endpoint.demo_worker``: a handler that sleeps
``--sleep-s``) behind the local endpoint; jobs go through ``RunPodExecutor``. Prints one JSON
object:

- ``cold_start_s``: worker process start -> first job completed.
- ``single_job_s`` / ``in_process_s`` -> ``forwarding_ratio``: one job through the endpoint
  versus the same handler awaited in-process (the cost of runner=runpod over runner=local).
- ``concurrent_s`` for ``--jobs`` at once -> ``concurrency_ratio`` = concurrent_s / single_job_s
  (``--jobs`` would be the ratio if jobs ran one after another; the ideal is about
  jobs / (workers x concurrency)).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from typing import Any

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor

DEMO = [sys.executable, "-u", "-m", "swarm.endpoint.demo_worker"]


async def _timed(runner: RunPodExecutor, job_input: dict[str, Any]) -> float:
    started = time.perf_counter()
    envelope = await runner.run(job_input)
    if envelope["status"] != "COMPLETED":
        raise RuntimeError(f"bench job failed: {envelope['error']}")
    return time.perf_counter() - started


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from swarm.endpoint import demo_worker

    job = {"sleep_s": args.sleep_s}
    in_process = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        await demo_worker.handler({"id": "local_test", "input": job})
        in_process.append(time.perf_counter() - started)
    logging.getLogger().setLevel(logging.WARNING)  # importing runpod turned the root logger up

    with tempfile.TemporaryDirectory() as logs:
        server = EndpointServer(
            Settings(endpoint_id="bench", take_hold_s=5, stop_hold_s=5),
            workers=args.workers,
            worker_command=DEMO,
            log_dir=logs,
            worker_env_extra={"DEMO_WORKER_CONCURRENCY": str(args.concurrency), "RUNPOD_LOG_LEVEL": "WARN"},
        )
        started = time.perf_counter()
        with server:
            runner = RunPodExecutor(server.api_base, "bench", server.settings.api_key, poll_interval_s=args.poll_s)
            await _timed(runner, job)
            cold_start = time.perf_counter() - started
            await asyncio.sleep(1.5)  # let every worker attach before timing steady state
            single = [await _timed(runner, job) for _ in range(args.repeat)]
            started = time.perf_counter()
            await asyncio.gather(*(_timed(runner, job) for _ in range(args.jobs)))
            concurrent = time.perf_counter() - started

    single_s = statistics.median(single)
    in_process_s = statistics.median(in_process)
    return {
        "jobs": args.jobs,
        "workers": args.workers,
        "concurrency_per_worker": args.concurrency,
        "handler_sleep_s": args.sleep_s,
        "cold_start_s": round(cold_start, 3),
        "in_process_s": round(in_process_s, 4),
        "single_job_s": round(single_s, 4),
        "forwarding_ratio": round(single_s / in_process_s, 2),
        "concurrent_s": round(concurrent, 3),
        "concurrency_ratio": round(concurrent / single_s, 2),
        "serial_ratio_would_be": args.jobs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_endpoint", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs each worker runs at once (concurrency_modifier)")
    parser.add_argument("--sleep-s", type=float, default=0.1, help="what one job costs in the handler")
    parser.add_argument("--repeat", type=int, default=5, help="single-job samples (median reported)")
    parser.add_argument("--poll-s", type=float, default=0.2, help="RunPodExecutor's longest poll interval")
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(measure(parser.parse_args(argv)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
