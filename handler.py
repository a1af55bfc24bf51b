"""The RunPod door: validate the job, call the dispatcher, return result + trace.

RunPod delivers ``{"id": ..., "input": {"project", "action", "input"}}``. The handler is
async so RunPod's per-job cancel works. Errors come back as ``error``, the JSON string of
``{"type", "message"}`` (RunPod takes strings only), beside the envelope, with no traceback and
no secret (the SDK would otherwise put the exception text and traceback into the job result). ``runpod.serverless.start`` runs only under ``__main__``, after the warm-up
of ``worker.warm``: the LLM servers before the worker loop starts, the image models beside it
(``warm_in_background``), so no job waits on a model it does not use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from core.credentials import CREDENTIALS_FIELD
from core.redact import redact
from core.rules import valid_job_id
from graphs.progress import listen_to_steps
from swarm import worker_warm
from swarm.envelope import for_runpod
from swarm.executors.runpod_progress import steps_update

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
    """Run one RunPod job through the dispatcher and return its envelope, shaped for RunPod.

    A body that is not an object gets the dispatcher's FAILED envelope too (job id, trace).
    The provider keys its client forwarded (``core.credentials.CREDENTIALS_FIELD``) leave the
    SDK's own copy of the input first, before anything validates, stores, logs or traces it;
    the dispatcher checks them and runs this job alone with them. Each progress update carries
    the trace steps the job has finished so far (``_FinishedSteps``), for a client polling it.
    """
    body = job.get("input")
    forwarded = body.pop(CREDENTIALS_FIELD, None) if isinstance(body, dict) else None
    finished = _FinishedSteps()
    if _close_at_loop_end:
        _close_with_loop()

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        if not _listened(job):
            return  # nobody reads an update here: nor its steps
        update = {"stage": stage, "message": message, "fraction": fraction}
        try:
            steps = finished.update(stage)
        except Exception as exc:  # progress is best effort: the update goes without its steps
            log.warning("job %s: its finished steps were left out of a progress update: %s", job.get("id"),
                        redact(repr(exc)))
            steps = {}
        _progress_update(job, {**update, **steps})

    worker_warm.activity.started()
    try:
        await _import_off_the_loop(body)
        if isinstance(body, dict):
            body = _inline_on_local_disk(dict(body))
            body.setdefault("job_id", _job_id(job))
        with listen_to_steps(finished.seen):
            envelope = await runtime().run(body, progress, credentials={} if forwarded is None else forwarded)
        if isinstance(body, dict):
            await _send_stranded_images(body, envelope)
        if not isinstance(body, dict) and _job_id(job):
            envelope["job_id"] = _job_id(job)
    except Exception as exc:  # never hand the SDK a traceback: it would land in the job result
        log.error("job %s crashed: %s", job.get("id"), redact(repr(exc)))
        envelope = {"job_id": _job_id(job), "status": "FAILED", "output": None, "trace": [],
                    "error": {"type": "InternalError", "message": "internal error; see the worker log"}}
    finally:
        worker_warm.activity.ended()
        if _ordered is not None and _listened(job):  # no update of this job may land after its result
            await asyncio.to_thread(_ordered.flush, str(job.get("id")), PROGRESS_FLUSH_S)
        if _one_job:  # --test_input: the SDK ends its loop next; the savers close on it first, not
            await _close_runtime()  # in its shutdown, which logged an ERROR traceback every run
    return for_runpod(envelope)


#: what a job imports at its first run (the default checkpoint saver, the image retention it starts),
#: beside its action's own module (``graphs.actions``)
JOB_MODULES = ("swarm.dispatcher", "graphs.sqlite_saver", "graphs.image.retention")


async def _import_off_the_loop(body: Any) -> None:
    """Import what this job runs (the dispatcher, its action's graph, the checkpoint saver) in a
    thread, not on the SDK's event loop: an image job's first run imported langgraph, langchain and
    the graph for seconds of CPU on the loop, and on a loaded machine (2 cores at load 15) the
    worker could not re-open its job-stop poll for over 10 s, so an endpoint that knows a worker by
    its polls took it for lost and failed the job while it ran. Once imported, this costs nothing.
    A module that fails to import is left to the job, which reports it as it would have."""
    from graphs.actions import action_module

    names = list(JOB_MODULES)
    with contextlib.suppress(KeyError, TypeError, AttributeError):  # an unknown action: the dispatcher names it
        names.append(action_module(body.get("project"), body.get("action")))
    if missing := [name for name in names if name not in sys.modules]:
        await asyncio.to_thread(_import_quietly, missing)


def _import_quietly(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.debug("importing %s ahead of the job failed: %s", name, redact(repr(exc)))


#: set by ``main`` for ``--test_input``: the SDK runs one job, then closes its event loop
_one_job = False


#: set by ``main``: the runtime closes on the SDK's loop when that loop ends (``_close_with_loop``)
_close_at_loop_end = False
_closer: asyncio.Task[None] | None = None


def _close_with_loop() -> None:
    """The runtime's checkpoint savers open on the SDK's loop, at a job: they close on it too, as
    it ends (``asyncio.run`` cancels this task before it finalizes open async generators, which
    logged "an error occurred during closing of asynchronous generator <... _open>")."""
    global _closer
    if _closer is None or _closer.done():
        _closer = asyncio.get_running_loop().create_task(_close_when_cancelled())


async def _close_when_cancelled() -> None:
    try:
        await asyncio.get_running_loop().create_future()  # until the loop's end cancels it
    finally:
        await _close_runtime()


async def _close_runtime() -> None:
    global _runtime
    if _runtime is not None:
        closing, _runtime = _runtime, None
        await closing.aclose()


def _inline_on_local_disk(body: dict[str, Any]) -> dict[str, Any]:
    """An image job that does not say ``inline`` gets its result inline when this worker stores
    artifacts on its own disk: a ``file://`` URL there reaches no client."""
    inp = body.get("input")
    if body.get("project") != "image_tools" or not isinstance(inp, dict) or "inline" in inp:
        return body
    if runtime().config.providers.storage.default != "local":
        return body
    return {**body, "input": {**inp, "inline": True}}


async def _send_stranded_images(body: dict[str, Any], envelope: dict[str, Any]) -> None:
    """Images of an image job that this worker's storage chain had to keep on its own disk (the
    shared store failed: a ``file://`` URL) go back inline, so the client can store them on its
    side (``RunPodExecutor.adopt_images``); a job that said ``inline: false`` is left as it asked."""
    output = envelope.get("output")
    inp = body.get("input")
    if body.get("project") != "image_tools" or not isinstance(output, dict) or not isinstance(inp, dict) \
            or inp.get("inline") is False:
        return
    from graphs.image.inputs import INLINE_MAX_BYTES

    results = output.get("results")
    entries = [e for e in (results if isinstance(results, list) else [output])
               if isinstance(e, dict) and e.get("image_key") and "image_b64" not in e
               and str(e.get("url") or "").startswith("file:")]
    total = 0
    storage = runtime().providers().storage
    for entry in entries:
        total += int(entry.get("bytes") or 0)
        if total > INLINE_MAX_BYTES:
            entry["inline_omitted"] = f"stored on this worker's disk; outputs pass {INLINE_MAX_BYTES} bytes in all"
            continue
        try:
            entry["image_b64"] = base64.b64encode(await storage.get(str(entry["image_key"]))).decode()
        except Exception as exc:  # the result stands; the client is told where the image is
            log.warning("image %s not sent inline: %s", entry["image_key"], redact(repr(exc)))
            entry["inline_omitted"] = f"stored on this worker's disk; it could not be read back ({type(exc).__name__})"




#: the id RunPod's SDK gives a ``--test_input`` job that names none (``rp_local``)
SDK_TEST_ID = "local_test"


def _job_id(job: dict[str, Any]) -> str | None:
    """The job's RunPod id as ours, or None (a new one is made): the SDK's ``local_test`` is no id
    of the person's (every ``--test_input`` run had it, so the second run found the first's
    result, or was refused as another input under a used id)."""
    given = str(job.get("id") or "")
    return None if given == SDK_TEST_ID else valid_job_id(given)


def _listened(job: dict[str, Any]) -> bool:
    """Whether a progress update of ``job`` reaches anyone: not without a job-done URL
    (``--rp_serve_api``, ``--test_input``), where the SDK would log an error per update."""
    return bool(job.get("id")) and job.get("id") != SDK_TEST_ID and bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))


class _FinishedSteps:
    """The trace steps one job has finished, for its progress updates, so that a client polling
    the job while it runs shows them as it shows a local job's: the graph hands its state's trace
    after every step (``graphs.progress.listen_to_steps``: nothing is read, no I/O on the job's
    loop), and an update that reaches someone carries them, bounded and redacted
    (``runpod_progress.steps_update``, built once per new trace). The last update ("done") carries
    none: the result that follows has them all."""

    def __init__(self) -> None:
        self._trace: list[dict[str, Any]] = []
        self._shown: dict[str, Any] | None = {}

    def seen(self, trace: list[dict[str, Any]]) -> None:
        if trace is not self._trace:
            self._trace, self._shown = trace, None

    def update(self, stage: str) -> dict[str, Any]:
        """``{trace, trace_total}`` for an update of ``stage`` (``{}`` before any step, and for "done")."""
        if stage == "done" or not self._trace:
            return {}
        if self._shown is None:
            self._shown = steps_update(self._trace)
        return self._shown


def _progress_update(job: dict[str, Any], data: dict[str, Any]) -> None:
    """Queue ``data`` for the job's endpoint: sent in order, the newest winning (``OrderedProgress``)."""
    if not _listened(job):
        return
    try:
        _updates().send(job, data)
    except Exception as exc:  # progress is best effort; the job itself goes on
        log.warning("progress update failed: %s", redact(str(exc)))


_ordered: Any = None
#: how long a finished job waits for its last progress updates to be sent, before its result
PROGRESS_FLUSH_S = 2.0


def _updates() -> Any:
    """The worker's one ``OrderedProgress`` (made on first use)."""
    global _ordered
    if _ordered is None:
        from swarm.executors.ordered_progress import OrderedProgress

        _ordered = OrderedProgress()
    return _ordered


def start_warm_up() -> threading.Thread | None:
    """The worker's warm-up (``swarm.worker_warm.start_warm_up``) of this worker's runtime."""
    return worker_warm.start_warm_up(runtime())


def warm_in_background(kinds: Sequence[str]) -> threading.Thread | None:
    """``swarm.worker_warm.warm_in_background`` of this worker's runtime."""
    return worker_warm.warm_in_background(runtime(), kinds)


async def warm_up(kinds: Sequence[str] | None = None) -> None:
    """``swarm.worker_warm.warm_up`` of this worker's runtime."""
    await worker_warm.warm_up(runtime(), kinds)


def concurrency_modifier(current: int) -> int:
    """RunPod asks how many jobs this worker may run at once; config answers (hot-swappable)."""
    return runtime().config.worker.concurrency


def configure_worker_logging() -> None:
    """The worker's logs: JSON lines with the job id, level from config, secrets redacted.

    The SDK's own logger prints each job's input and whole output at its default level (DEBUG):
    inputs may hold signed URLs, outputs whole reports and images, and ``print`` bypasses
    redaction. It gets INFO unless ``RUNPOD_LOG_LEVEL`` says otherwise. The SDK's import also
    installs a root handler (``logging.basicConfig`` in ``rp_upload``) that would write every
    line a second time, unredacted and without the job id: it is removed.
    """
    if not (os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")):
        os.environ["RUNPOD_LOG_LEVEL"] = "INFO"
    import runpod  # noqa: F401  (its import installs the handler removed below)

    from core.redact import install_log_redaction
    from swarm.logs import configure_logging

    root = logging.getLogger()
    for extra in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(extra)
    configure_logging(runtime().config)
    install_log_redaction()


def _test_input_problem(argv: Sequence[str]) -> str | None:
    """Why ``--test_input`` (``--test_input X`` or ``--test_input=X``) is no JSON object, or None."""
    import json

    for i, arg in enumerate(argv):
        if arg == "--test_input" or arg.startswith("--test_input="):
            text = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                return f"not valid JSON ({exc}); give the job as RunPod sends it: '{{\"input\": {{...}}}}'"
            return None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object: '{{\"input\": {{...}}}}'"
    return None


def main() -> None:
    """Start RunPod's worker loop with this handler. A stop (SIGTERM: ``docker stop``, RunPod
    scaling down, ``swarm endpoint serve`` stopping; or Ctrl-C) is orderly at any moment: before
    the SDK's loop takes the signal, the warm-up unwinds as on Ctrl-C; after, the SDK ends its
    loop; either way the background warm-up is stopped and waited for, and the worker exits 0."""
    import sys

    signal.signal(signal.SIGTERM, _stop_signal)
    try:
        _start(sys.argv)
    except KeyboardInterrupt:
        log.info("worker stopped during its start (warm-up)")
    finally:
        if not worker_warm.stop_background_warm_up():
            log.warning("the background warm-up did not stop within %g s (a run in native code): the worker"
                        " exits without waiting for it; what it left undecided is measured at the next start",
                        worker_warm.WARM_STOP_S)
            _exit_now()


_MAIN_PID = os.getpid()


def _stop_signal(signum: int, frame: Any) -> None:
    """SIGTERM until the SDK's loop takes it: a Ctrl-C (the warm-up unwinds, ``main`` ends it). A
    process forked meanwhile (the SDK's ping process) ends as SIGTERM ends it by default."""
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


def _exit_now(code: int = 0) -> None:
    """Exit at once, as a thread stuck in native code allows: what an exit runs (the local model
    servers this worker started stop), the logs flushed, no interpreter teardown under that thread."""
    import atexit

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _start(argv: list[str]) -> None:
    from core.errors import ConfigError

    try:
        configure_worker_logging()  # before the SDK's loggers read their level
    except ConfigError as exc:  # no job can run: say why in one message, as the CLI does, not a traceback
        print(f"error: {exc.to_dict()['message']}", file=sys.stderr)
        raise SystemExit(2) from None
    import runpod

    from core.heap import settle
    from swarm.endpoint.workers import exit_with_endpoint

    exit_with_endpoint()  # a worker of `swarm endpoint serve` stops with it; RunPod's own: nothing
    global _one_job, _close_at_loop_end
    _one_job = any(arg.startswith("--test_input") for arg in argv)
    if _one_job and (problem := _test_input_problem(argv)):  # the SDK's own json.loads printed a traceback
        print(f"error: --test_input: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if not _one_job:
        start_warm_up()
    settle()  # start-up's objects leave the collector's walk (core/heap.py)
    _close_at_loop_end = True
    runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency_modifier})

if __name__ == "__main__":
    main()
