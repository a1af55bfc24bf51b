"""``swarm doctor`` checks of where jobs live and run: storage (a probe written and deleted), the
checkpointer (opened; warned when a RunPod worker keeps it on local disk) and the RunPod endpoint
(its /health asked when jobs go there, and when it cannot be reached, why and the ways out; INFO
when it is set but the runner in effect is local)."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SwarmError
from swarm.doctor_finding import CHECK_NETWORK, TO_USE_IT, Finding, Status, error_message, no_connection
from swarm.executors import runner_in_effect, runpod_worker

if TYPE_CHECKING:
    from core.config import SwarmConfig

RUNPOD_TIMEOUT_S = 5.0
_STORAGE_FIX = {
    "local": "make that folder writable, or set providers.storage.backends.local.root (or SWARM_HOME)",
    "s3": "check SWARM_S3_BUCKET, SWARM_S3_ENDPOINT_URL and the AWS credentials",
}
_CHECKPOINT_FIX = {
    "sqlite": "make the folder of checkpointer.path writable (or set SWARM_HOME)",
    "postgres": "check that PostgreSQL runs and checkpointer.dsn",
    "memory": "",
}
_RUNPOD_FIX = {401: "RunPod refused the key: check {env}", 404: "no such endpoint: check RUNPOD_ENDPOINT_ID"}


async def check_storage(config: SwarmConfig) -> Finding:
    from core.config import state_dir
    from providers.registry import backend_class

    section = config.providers.storage
    name, settings = section.default, dict(section.backends.get(section.default, {}))
    where = f"{name} {settings.get('root') or settings.get('bucket') or ''}".strip()
    key = f"doctor-probe-{secrets.token_hex(4)}.txt"
    try:
        storage = backend_class("storage", name).from_config(name, settings, state_dir=state_dir())
        await storage.put(key, b"swarm doctor probe\n")
        await storage.delete(key)
    except (SwarmError, OSError) as exc:
        return Finding("storage", "fail", f"{where}: cannot write ({error_message(exc)})", _STORAGE_FIX.get(name, ""))
    return Finding("storage", "ok", f"{where}: wrote and deleted a probe object")


async def check_checkpointer(config: SwarmConfig) -> Finding:
    from graphs.checkpoint import open_checkpointer

    section = config.checkpointer
    try:
        async with open_checkpointer(config, prune=False):
            pass
    except (SwarmError, OSError, sqlite3.Error) as exc:
        return Finding("checkpointer", "fail", f"{section.kind}: {error_message(exc)}", _CHECKPOINT_FIX[section.kind])
    if section.kind == "memory":
        return Finding("checkpointer", "info", "memory: nothing survives a restart (jobs cannot resume)")
    where = Path(section.path).expanduser() if section.kind == "sqlite" else "(checkpointer.dsn)"
    if section.kind == "sqlite" and runpod_worker() and not str(where).startswith(NETWORK_VOLUME):
        return Finding(
            "checkpointer", "warn",
            f"sqlite {where}: opened, but inside this worker: a job resumes only on the worker that ran it",
            f"set SWARM_CHECKPOINTER_DSN (PostgreSQL) or SWARM_HOME={NETWORK_VOLUME}/swarm (a network volume)",
        )
    return Finding("checkpointer", "ok", f"{section.kind} {where}: opened")


#: Where RunPod mounts an endpoint's network volume.
NETWORK_VOLUME = "/runpod-volume"


def _health_summary(reply: Any) -> str:
    try:
        workers, jobs = reply.json().get("workers", {}), reply.json().get("jobs", {})
        return (
            f"workers {workers.get('idle', 0)} idle, {workers.get('running', 0)} running;"
            f" jobs {jobs.get('inQueue', 0)} queued, {jobs.get('inProgress', 0)} in progress"
        )
    except (ValueError, AttributeError):
        return "answered /health (not JSON)"


async def check_runpod(config: SwarmConfig) -> Finding:
    spec, runner = config.runner.runpod, runner_in_effect(config)
    if not spec.endpoint_id:
        if config.runner.kind == "runpod":  # make_executor refuses every job
            return Finding("runpod", "fail", f"{runner.why} but no endpoint is set: jobs cannot run",
                           "export RUNPOD_ENDPOINT_ID=..., or SWARM_RUNNER=local to run them on this machine")
        return Finding("runpod", "info", "not configured (jobs run in-process)")
    key = os.environ.get(spec.api_key_env, "")
    if not key and runpod_worker():
        # RunPod sets RUNPOD_ENDPOINT_ID on its own workers; jobs come to them, they send none
        return Finding("runpod", "info", f"this is a RunPod worker of endpoint {spec.endpoint_id}: jobs come from "
                                         f"its queue ({spec.api_key_env} is not needed here, and should not be set)")
    if config.runner.kind == "local":
        detail = f"endpoint {spec.endpoint_id} is set but not used: the runner is local ({runner.why}), jobs run in-process"
        return Finding("runpod", "info", detail, f"export SWARM_RUNNER=auto (or runpod) with {spec.api_key_env} set", TO_USE_IT)
    if not key:
        status: Status = "fail" if config.runner.kind == "runpod" else "warn"
        detail = f"endpoint {spec.endpoint_id} is set but {spec.api_key_env} is not -> jobs run in-process"
        return Finding("runpod", status, detail, f"export {spec.api_key_env}=...")
    return await _runpod_health(config, key)


async def _runpod_health(config: SwarmConfig, key: str) -> Finding:
    """``GET {base_url}/{endpoint}/health``: the endpoint's workers and queue, or why not."""
    import httpx

    spec = config.runner.runpod
    url = f"{spec.base_url.rstrip('/')}/{spec.endpoint_id}/health"
    try:
        async with httpx.AsyncClient(timeout=RUNPOD_TIMEOUT_S) as http:
            reply = await http.get(url, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        return await _runpod_unreachable(config, url, exc)
    if reply.status_code != 200:
        fix = _RUNPOD_FIX.get(reply.status_code, "check the endpoint in the RunPod console")
        detail = f"GET {url} answered HTTP {reply.status_code}"
        return Finding("runpod", "fail", detail, fix.format(env=spec.api_key_env))
    return Finding("runpod", "ok", f"endpoint {spec.endpoint_id}: {_health_summary(reply)}")


async def _runpod_unreachable(config: SwarmConfig, url: str, exc: Exception) -> Finding:
    """Jobs go to the endpoint and cannot reach it: say why (``no_connection``) and the ways out."""
    import httpx

    from core.config import RunPodRunnerSpec

    spec = config.runner.runpod
    runpod_api = RunPodRunnerSpec().base_url  # RunPod's own; RUNPOD_API_BASE (config.yaml) points elsewhere
    elsewhere = spec.base_url.rstrip("/") != runpod_api.rstrip("/")
    base_note = f"runner.runpod.base_url (RUNPOD_API_BASE: set only when the API is at another address than {runpod_api})"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        why = await no_connection(url, spec.base_url)
        cause = why.cause
        fix = f"{CHECK_NETWORK} and RUNPOD_ENDPOINT_ID" if why.network else why.fix
        if elsewhere:
            fix += f"; check {base_note}"
    elif isinstance(exc, httpx.TimeoutException):
        cause = f"connected, but no answer within {RUNPOD_TIMEOUT_S:g} s"
        fix = f"{CHECK_NETWORK}, and RunPod's status page"
    else:
        cause, fix = type(exc).__name__, CHECK_NETWORK
    here = "unset RUNPOD_ENDPOINT_ID (or export SWARM_RUNNER=local)" if config.runner.kind == "auto" else "export SWARM_RUNNER=local"
    detail = f"cannot reach {url} ({type(exc).__name__}): {cause}; jobs sent there fail"
    return Finding("runpod", "fail", detail, f"{fix}; or run jobs on this machine: {here}")
