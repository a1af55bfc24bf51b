"""The RunPod door: validate the job, call the dispatcher, return result + trace.

RunPod delivers ``{"id": ..., "input": {"project", "action", "input"}}``. The handler is
async so RunPod's per-job cancel works. Errors come back as ``{"error": {"type", "message"}}``
with no traceback and no secret (the SDK would otherwise put the exception text and traceback
into the job result). ``runpod.serverless.start`` runs only under ``__main__``.
"""

from __future__ import annotations

import logging
from typing import Any

from core.redact import redact
from core.rules import valid_job_id

log = logging.getLogger("swarm.handler")
_runtime: Any = None


def runtime() -> Any:
    """The worker's process-wide runtime (config store, circuits, local model servers)."""
    global _runtime
    if _runtime is None:
        from swarm.runtime import Runtime

        _runtime = Runtime()
    return _runtime


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Run one RunPod job through the dispatcher and return its envelope."""
    body = job.get("input")
    if not isinstance(body, dict):
        return {"status": "FAILED", "error": {"type": "InputError", "message": "input: must be an object with project, action, input"}}
    body = dict(body)
    body.setdefault("job_id", _job_id(job))

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        _progress_update(job, {"stage": stage, "message": message, "fraction": fraction})

    try:
        return await runtime().run(body, progress)
    except Exception as exc:  # never hand the SDK a traceback: it would land in the job result
        log.error("job %s crashed: %s", job.get("id"), redact(repr(exc)))
        return {"status": "FAILED", "error": {"type": "InternalError", "message": "internal error; see the worker log"}}


def _job_id(job: dict[str, Any]) -> str | None:
    return valid_job_id(str(job.get("id") or ""))


def _progress_update(job: dict[str, Any], data: dict[str, Any]) -> None:
    if not job.get("id") or job.get("id") == "local_test":
        return
    import runpod

    try:
        runpod.serverless.progress_update(job, data)
    except Exception as exc:  # progress is best effort; the job itself goes on
        log.warning("progress update failed: %s", redact(str(exc)))


async def warm_up() -> None:
    """Load once, at worker start, what config lists in ``worker.warm`` (never in the MCP server)."""
    rt = runtime()
    config = rt.config
    for kind in config.worker.warm:
        if kind == "llm":
            for name, spec in config.models.items():
                if spec.local_server is not None and spec.local_server.autostart:
                    await rt.local_servers.ensure(name, spec)
            continue
        provider = rt.providers(config).get(kind)
        warm = getattr(provider, "warm", None)
        if warm is not None:
            await warm()
    log.info("worker warmed: %s", ", ".join(config.worker.warm) or "nothing")


def concurrency_modifier(current: int) -> int:
    """RunPod asks how many jobs this worker may run at once; config answers (hot-swappable)."""
    return runtime().config.worker.concurrency


def main() -> None:
    """Start RunPod's worker loop with this handler."""
    import asyncio
    import sys

    import runpod

    from core.redact import install_log_redaction
    from swarm.logs import configure_logging

    configure_logging(runtime().config)  # JSON lines with the job id, level from config
    install_log_redaction()
    if not any(arg.startswith("--test_input") for arg in sys.argv):
        try:
            asyncio.run(warm_up())
        except Exception as exc:  # a cold worker still serves; the first job pays the load
            log.error("warm-up failed: %s", redact(str(exc)))
    runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency_modifier})


if __name__ == "__main__":
    main()
