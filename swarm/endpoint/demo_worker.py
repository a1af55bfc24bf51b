"""A tiny RunPod worker for tests and benchmarks of the endpoint: no models, no config.

``python -m swarm.endpoint.demo_worker`` runs the real SDK worker loop with ``handler``.
Input ``{"sleep_s": 0.1, "progress": 2, "fail": "message", "echo": ...}``: sends ``progress``
updates, sleeps, then fails with ``error`` (a string, as RunPod takes it) or answers like the swarm handler does.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from swarm.envelope import JobEnvelope, for_runpod


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Progress, sleep, then an envelope shaped like ``swarm.dispatcher.dispatch``'s."""
    import runpod

    body = job.get("input") or {}
    for step in range(int(body.get("progress", 0))):
        runpod.serverless.progress_update(job, {"stage": "demo", "message": f"step {step + 1}", "fraction": None})
        await asyncio.sleep(0.05)
    await asyncio.sleep(float(body.get("sleep_s", 0)))
    envelope = JobEnvelope.for_job(
        {"project": "demo", "action": "sleep"},
        job["id"],
        output={"echo": body.get("echo"), "worker": os.environ.get("RUNPOD_POD_ID"), "pid": os.getpid()},
    )
    if body.get("fail"):
        envelope = envelope.failed({"type": "InputError", "message": str(body["fail"])}, output=None)
    if body.get("raise"):
        raise RuntimeError(str(body["raise"]))
    return for_runpod(envelope.to_dict())


def main() -> None:
    import runpod

    from swarm.endpoint.workers import exit_with_endpoint

    exit_with_endpoint()
    concurrency = int(os.environ.get("DEMO_WORKER_CONCURRENCY", "1"))
    runpod.serverless.start({"handler": handler, "concurrency_modifier": lambda _current: concurrency})


if __name__ == "__main__":
    main()
