"""Executors behind the doors: ``LocalExecutor`` (in-process) and ``RunPodExecutor`` (an endpoint).

Both expose ``async run(job, progress=None, wait_budget_s=None) -> envelope`` with the same
envelope (``swarm.envelope.JobEnvelope.to_dict()``), so a tool gives the same result whichever
executor config picks (the config section keeps its name, `runner:`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from core.errors import ConfigError
from graphs.context import ProgressFn

log = logging.getLogger("swarm.executors")


@runtime_checkable
class Executor(Protocol):
    """Runs one job to its envelope, here or elsewhere."""

    async def run(
        self, job: dict[str, Any], progress: ProgressFn | None = None, wait_budget_s: float | None = None
    ) -> dict[str, Any]: ...


@runtime_checkable
class RemoteExecutor(Executor, Protocol):
    """An executor whose jobs live on an endpoint under the endpoint's own ids, so a long job can
    be submitted, polled, followed, cancelled, and re-attached after a restart."""

    follow_stream: bool
    poll_interval_s: float

    async def submit(self, job: dict[str, Any]) -> str: ...

    async def status(self, job_id: str) -> dict[str, Any]: ...

    async def stream(self, job_id: str) -> dict[str, Any]: ...

    async def cancel(self, job_id: str) -> dict[str, Any]: ...

    def envelope(self, job: dict[str, Any], job_id: str | None, state: dict[str, Any], started: float) -> dict[str, Any]:
        """The job's envelope from the endpoint's final ``state`` (``started``: perf_counter)."""
        ...

    def failure(self, job: dict[str, Any], job_id: str | None, error: dict[str, str], started: float,
                steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The FAILED envelope of a job whose request to the endpoint failed for good (``error``:
        ``{type, message}``; ``job_id``: the endpoint's, ``None`` when it was never queued), its
        trace ending with the endpoint's step, as ``run`` returns it."""
        ...


@runtime_checkable
class AdoptsImages(Protocol):
    """A remote executor that brings a worker's inline images into this side's storage."""

    async def adopt_images(self, job: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]: ...


def runpod_worker() -> bool:
    """Running as a RunPod serverless worker: it takes jobs from its endpoint's queue, at the
    address RunPod gives it in ``RUNPOD_WEBHOOK_GET_JOB`` (so does ``swarm endpoint``'s local
    one). ``RUNPOD_POD_ID`` is no sign: RunPod sets it on every pod, and a GPU pod that runs
    ``swarm`` or swarm-mcp is a client like any other machine; nor is ``RUNPOD_ENDPOINT_ID``,
    which a client sets to name its endpoint."""
    return bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB", "").strip())


#: endpoints whose missing key was already logged by this process
_warned: set[str] = set()


@dataclass(frozen=True)
class RunnerInEffect:
    """Where jobs run from this machine: ``kind`` local | runpod | refused, ``why`` (in words)
    and ``where`` ("in-process", "on RunPod endpoint abc123"). ``refused``: ``runner.kind`` is
    runpod without an endpoint or a key, so every job is refused with ``error`` (the
    ``ConfigError`` ``make_executor`` raises, naming the missing key)."""

    kind: Literal["local", "runpod", "refused"]
    why: str
    where: str = "in-process"
    error: ConfigError | None = None


def runner_in_effect(config: Any, variables: Mapping[str, str] | None = None, *, worker: bool | None = None) -> RunnerInEffect:
    """The runner ``make_executor`` picks for ``config``, and why, in words (doctor says it):
    ``runner.kind`` when set (``SWARM_RUNNER`` in the shipped config.yaml), else (``auto``) the
    RunPod endpoint when ``runner.runpod.endpoint_id`` and its key are set, else this machine.

    ``variables``: the config keys whose value the file takes from a variable (``runner.kind`` ->
    ``SWARM_RUNNER``), named in ``why``; ``None`` (not known) guesses from the environment.
    ``worker`` (default: ``runpod_worker()``): on a RunPod worker jobs come from its queue and run
    there (``handler.py``), whatever the runner section says; ``make_executor`` passes ``False``
    (a ``swarm run`` or swarm-mcp started on a worker or a pod follows the config).
    """
    section, spec = config.runner, config.runner.runpod
    if runpod_worker() if worker is None else worker:
        of = f" of endpoint {spec.endpoint_id}" if spec.endpoint_id else ""
        return RunnerInEffect("local", f"this is a RunPod worker{of}: jobs run here", "on this worker")
    endpoint = f"on RunPod endpoint {spec.endpoint_id}"
    if section.kind != "auto":
        why = f"{_named('runner.kind', 'SWARM_RUNNER', section.kind, variables)}={section.kind}"
        if section.kind == "local":
            return RunnerInEffect("local", why)
        if not spec.endpoint_id:
            error = ConfigError("runner.kind is runpod but no endpoint is set; set RUNPOD_ENDPOINT_ID", key="runner.runpod.endpoint_id")
            return RunnerInEffect("refused", f"{why} but no endpoint is set", "nowhere: every job is refused", error)
        if not os.environ.get(spec.api_key_env, ""):
            error = ConfigError(f"runner.kind is runpod but ${spec.api_key_env} is empty; export your RunPod API key",
                                key="runner.runpod.api_key_env")
            return RunnerInEffect("refused", f"{why} but {spec.api_key_env} is not set", "nowhere: every job is refused", error)
        return RunnerInEffect("runpod", why, endpoint)
    if not spec.endpoint_id:
        return RunnerInEffect("local", "no RunPod endpoint is set")
    if not os.environ.get(spec.api_key_env, ""):
        return RunnerInEffect("local", f"{spec.api_key_env} is not set")
    named = _named("runner.runpod.endpoint_id", "RUNPOD_ENDPOINT_ID", spec.endpoint_id, variables)
    return RunnerInEffect("runpod", f"{named} and {spec.api_key_env} are set", endpoint)


def _named(key: str, shipped: str, value: str, variables: Mapping[str, str] | None) -> str:
    """What sets ``key``: the variable ``variables`` names for it, else the key itself; not known
    (``None``): the shipped config.yaml's variable ``shipped`` when it holds ``value``."""
    if variables is None:
        return shipped if os.environ.get(shipped, "").strip() == value else key
    return variables.get(key, key)


def make_executor(config: Any, runtime: Any) -> Executor:
    """The executor ``config.runner.kind`` asks for.

    ``auto`` picks RunPod when ``runner.runpod.endpoint_id`` is set and the variable named by
    ``runner.runpod.api_key_env`` holds a key, else the local executor. ``runpod`` without
    them is a ``ConfigError`` naming the missing key.
    """
    section = config.runner
    spec = section.runpod
    key = os.environ.get(spec.api_key_env, "")
    runner = runner_in_effect(config, worker=False)
    if section.kind == "auto":
        if spec.endpoint_id and not key and not runpod_worker() and spec.endpoint_id not in _warned:
            _warned.add(spec.endpoint_id)  # once a process: this is asked per job
            log.warning("runner.runpod.endpoint_id is set (%s) but $%s is empty: jobs run in-process, not on the"
                        " endpoint; export %s to send them there", spec.endpoint_id, spec.api_key_env, spec.api_key_env)
    if runner.kind == "local":
        return _local(section.local.processes, runtime)
    if runner.error is not None:
        raise runner.error
    from core.credentials import client_credentials
    from swarm.executors.runpod import RunPodExecutor

    return RunPodExecutor(
        spec.base_url,
        spec.endpoint_id,
        key,
        poll_interval_s=spec.poll_interval_s,
        timeout_s=spec.timeout_s,
        api_key_env=spec.api_key_env,
        # an image the worker kept on its own disk (its storage is local, or its shared store failed
        # and the chain fell back to it) comes back inline and is stored on this side
        local_storage=lambda: runtime.providers().storage,
        # this side's provider keys go with each job (runner.runpod.forward_credentials)
        credentials=lambda: client_credentials(config, runtime.store),
    )


#: runtime -> its process executor: the MCP server asks ``make_executor`` once per job, and a
#: pool must outlive the call (re-made only when ``runner.local.processes`` changes)
_pools: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_retiring: set[Any] = set()  # close tasks of pools the config no longer asks for


def _local(processes: int, runtime: Any) -> Executor:
    """The in-process executor, or with ``processes`` > 1 the runtime's worker-process pool."""
    if processes == 1:
        from swarm.executors.local import LocalExecutor

        with contextlib.suppress(TypeError):  # a runtime that takes no weak reference has no pool
            _retire(_pools.pop(runtime, None))
        return LocalExecutor(runtime)
    pool = _pools.get(runtime)
    if pool is not None and pool.processes == processes:
        return pool  # type: ignore[no-any-return]
    from swarm.executors.processes import ProcessExecutor

    _retire(pool)
    store = runtime.store
    pool = _pools[runtime] = ProcessExecutor(processes, str(store.path), last_good=lambda: store.good_text)
    return pool  # type: ignore[no-any-return]


def _retire(pool: Any) -> None:
    """Stop a pool the config no longer asks for, once its running jobs are done."""
    if pool is None:
        return
    try:  # no job's work (the job whose call saw the config change only happened to ask)
        task = asyncio.get_running_loop().create_task(pool.aclose(), context=contextvars.Context())
    except RuntimeError:  # no loop: stop it here
        asyncio.run(pool.aclose())
        return
    _retiring.add(task)
    task.add_done_callback(_retiring.discard)


async def close_pool(runtime: Any) -> None:
    """Stop the runtime's worker-process pool, if it has one (a door's shutdown calls this on
    the loop its jobs ran on; an in-flight job stops at its last checkpoint)."""
    with contextlib.suppress(TypeError):
        pool = _pools.pop(runtime, None)
        if pool is not None:
            await pool.aclose()
