"""RunPod's serverless API as an ASGI app, with the worker-facing side the ``runpod`` SDK uses.

Clients see ``/v2/{endpoint_id}/run``, ``/runsync``, ``/status/{id}``, ``/stream/{id}``,
``/cancel/{id}``, ``/retry/{id}``, ``/purge-queue`` and ``/health``. Workers (``python
handler.py`` with the variables from ``workers.worker_env``) long-poll ``job-take`` and
``job-stop``, post results and progress to ``job-done``, stream chunks to ``job-stream`` and
ping. A request's ``webhook`` is POSTed the job's ``/status`` answer when it ends (``webhooks``);
its ``s3Config`` goes to the worker with the job, never back to a client. It is a development
and test tool; production uses RunPod's own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSON
from starlette.responses import Response
from starlette.routing import Route

from core.redact import redact
from swarm.endpoint.state import MB, Job, JobStore, Settings
from swarm.endpoint.webhooks import Webhooks

log = logging.getLogger("swarm.endpoint")
MAX_EXECUTION_TIMEOUT_MS = 7 * 24 * 3600 * 1000
#: RunPod's bounds of a request's policy, in ms: (minimum, maximum); ``Settings.policy_minimums``
#: False lowers each minimum to 1 ms (tests that watch a job time out)
POLICY_LIMITS = {"executionTimeout": (5_000, MAX_EXECUTION_TIMEOUT_MS), "ttl": (10_000, MAX_EXECUTION_TIMEOUT_MS)}
Handler = Callable[[Request, JobStore], Awaitable[Response]]


class Reject(Exception):
    """An HTTP error with a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class JSONResponse(_StarletteJSON):
    """Starlette's JSON response, for any content a JSON parser yields: a job's input or result may
    hold a lone UTF-16 surrogate (the JSON text ``"\\ud800"``), which is no UTF-8, so it goes back
    escaped, as it came, for the worker to refuse by name (``swarm.dispatcher``), never a crash that
    leaves the job taken and unanswered."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _authorized(request: Request, api_key: str) -> bool:
    header = request.headers.get("authorization", "")
    token = header[7:] if header[:7].lower() == "bearer " else header  # the SDK's worker sends it bare
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


def _route(store: JobStore, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Auth, endpoint id check and ``Reject`` -> JSON error, around one handler."""

    async def endpoint(request: Request) -> Response:
        settings = store.settings
        if settings.api_key and not _authorized(request, settings.api_key):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        if request.path_params["endpoint_id"] != settings.endpoint_id:
            return _error(404, f"endpoint {request.path_params['endpoint_id']!r} not found; this server serves {settings.endpoint_id!r}")
        try:
            return await fn(request, store)
        except Reject as exc:
            return _error(exc.status, exc.message)

    return endpoint


async def _read_json(request: Request, limit: int, route: str) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Reject(413, _too_large(int(declared), limit, route))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Reject(413, _too_large(len(body), limit, route))
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise Reject(400, f"{route}: the body is not valid JSON") from None


def _too_large(size: int, limit: int, route: str) -> str:
    return (
        f"request body of {size / MB:.1f} MB exceeds the {limit / MB:g} MB limit of {route}; "
        "put large data (images) in storage and send its key instead"
    )


def _job_of(request: Request, store: JobStore) -> Job:
    job_id = request.path_params["job_id"]
    job = store.get(job_id)
    if job is None and job_id in store.removed:
        raise Reject(404, f"request {job_id!r} does not exist any more: it was removed because {store.removed[job_id][1]}")
    if job is None:
        # RunPod says "request does not exist". This endpoint keeps jobs in memory, so a restart
        # forgets them too: an id it does not know may be older than it, not expired.
        s = store.settings
        since = datetime.fromtimestamp(store.started_at).astimezone().isoformat(timespec="seconds")
        raise Reject(
            404,
            f"request {job_id!r} does not exist: this endpoint keeps results {s.async_retention_s / 60:g} min after /run"
            f" and {s.sync_retention_s / 60:g} min after /runsync, in memory only, since it started at {since}",
        )
    return job


def _submission(body: Any, route: str, settings: Settings) -> tuple[Any, dict[str, Any], str | None, Any]:
    """(input, policy, webhook, s3Config) of a ``/run`` or ``/runsync`` body."""
    if not isinstance(body, dict) or "input" not in body:
        raise Reject(400, f"{route}: the body must be a JSON object with an 'input' field")
    policy = body.get("policy") or {}
    if not isinstance(policy, dict):
        raise Reject(400, f"{route}: 'policy' must be an object")
    _check_policy(policy, route, settings.policy_minimums)
    webhook = body.get("webhook")
    return body["input"], policy, webhook if isinstance(webhook, str) else None, body.get("s3Config")


def _check_policy(policy: dict[str, Any], route: str, minimums: bool) -> None:
    """Refuse, naming the field and its bounds, a ``policy`` RunPod refuses (``POLICY_LIMITS``)."""
    for key, (least, most) in POLICY_LIMITS.items():
        value = policy.get(key)
        least = least if minimums else 1
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most):
            relaxed = " (an endpoint started with --relax-policy-limits takes from 1)" if least > 1 else ""
            raise Reject(400, f"{route}: policy.{key} must be milliseconds from {least} ({least / 1000:g} s) to"
                              f" {most} ({most // 86_400_000} days){relaxed}; got {json.dumps(value)[:40]}")
    low = policy.get("lowPriority")
    if low is not None and not isinstance(low, bool):
        raise Reject(400, f"{route}: policy.lowPriority must be true or false; got {json.dumps(low)[:40]}")


# --- client API --------------------------------------------------------------------------


async def run(request: Request, store: JobStore) -> Response:
    body = await _read_json(request, store.settings.run_limit_bytes, "/run")
    job_input, policy, webhook, s3_config = _submission(body, "/run", store.settings)
    job = store.submit(job_input, sync=False, policy=policy, webhook=webhook, s3_config=s3_config)
    log.info("job %s queued", job.id)
    return JSONResponse({"id": job.id, "status": job.status})


async def runsync(request: Request, store: JobStore) -> Response:
    s = store.settings
    body = await _read_json(request, s.runsync_limit_bytes, "/runsync")
    job_input, policy, webhook, s3_config = _submission(body, "/runsync", store.settings)
    wait_s = s.runsync_wait_s
    if "wait" in request.query_params:
        raw = request.query_params["wait"]
        if not raw.isdigit():
            raise Reject(400, "/runsync: wait must be milliseconds (an integer)")
        wait_s = min(int(raw) / 1000, s.runsync_max_wait_s)
    job = store.submit(job_input, sync=True, policy=policy, webhook=webhook, s3_config=s3_config)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(job.done.wait(), wait_s)
    return JSONResponse(job.view() if job.done.is_set() else {"id": job.id, "status": job.status})


async def status(request: Request, store: JobStore) -> Response:
    return JSONResponse(_job_of(request, store).view())


async def stream(request: Request, store: JobStore) -> Response:
    job = _job_of(request, store)
    body: dict[str, Any] = {"id": job.id, "status": job.status, "stream": store.take_stream(job)}
    if job.error is not None:
        body["error"] = job.error
    return JSONResponse(body)


async def cancel(request: Request, store: JobStore) -> Response:
    job = _job_of(request, store)
    store.cancel(job)
    log.info("job %s: cancel requested, now %s", job.id, job.status)
    return JSONResponse({"id": job.id, "status": job.status})


async def retry(request: Request, store: JobStore) -> Response:
    job = _job_of(request, store)
    if not store.retry(job):
        raise Reject(400, f"only FAILED or TIMED_OUT requests can be retried; {job.id} is {job.status}")
    return JSONResponse({"id": job.id, "status": job.status})


async def purge_queue(request: Request, store: JobStore) -> Response:
    return JSONResponse({"removed": store.purge_queue(), "status": "completed"})


async def health(request: Request, store: JobStore) -> Response:
    return JSONResponse(store.health())


# --- worker API --------------------------------------------------------------------------


async def _hold(request: Request, store: JobStore, hold_s: float, ready: Callable[[], bool], wait: Callable[[float], Awaitable[Any]]) -> bool:
    """Long-poll until ``ready()``; False when the hold ran out, the server closes or the client left."""
    deadline = time.monotonic() + hold_s
    while not ready():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or store.closing.is_set():
            return False
        if await request.is_disconnected():
            request.state.left = True  # the poll's end is then no sign of life (``JobStore.poll_ended``)
            return False
        await wait(min(remaining, 0.5))
    return True


async def job_take(request: Request, store: JobStore) -> Response:
    batch = request.url.path.split("/")[3] == "job-take-batch"
    count = max(1, int(request.query_params.get("batch_size", "1") or 1)) if batch else 1
    worker = store.seen(request.path_params["worker_id"])
    worker.open_polls += 1
    try:
        if not await _hold(request, store, store.settings.take_hold_s, lambda: bool(store.queue), store.wait_for_work):
            return Response(status_code=204)
        jobs = store.take(worker.id, count)
        if not jobs:
            return Response(status_code=204)
        if await request.is_disconnected():
            store.requeue(jobs)
            return Response(status_code=204)
    finally:
        store.poll_ended(worker, left=getattr(request.state, "left", False))
    for job in jobs:
        log.info("job %s -> worker %s", job.id, worker.id)
    # RunPod hands the worker a request's s3Config with the job (the SDK passes it to the handler)
    payload = [{"id": j.id, "input": j.input, **({"s3Config": j.s3_config} if j.s3_config is not None else {})} for j in jobs]
    return JSONResponse(payload if batch else payload[0])


async def job_stop(request: Request, store: JobStore) -> Response:
    worker = store.seen(request.path_params["worker_id"])
    worker.open_polls += 1

    async def wait(timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.stop_ready.wait(), timeout)

    try:
        if not await _hold(request, store, store.settings.stop_hold_s, lambda: bool(worker.stop), wait):
            return Response(status_code=204)
    finally:
        store.poll_ended(worker, left=getattr(request.state, "left", False))
    ids, worker.stop = worker.stop, []
    worker.stop_ready.clear()
    return JSONResponse({"jobsToStop": ids})


async def _worker_post(request: Request, store: JobStore) -> tuple[Job, dict[str, Any]]:
    store.seen(request.path_params["worker_id"])
    body = await _read_json(request, store.settings.runsync_limit_bytes * 2, "job-done")
    if not isinstance(body, dict):
        raise Reject(400, "a worker result must be a JSON object")
    return _job_of(request, store), body


async def job_done(request: Request, store: JobStore) -> Response:
    job, body = await _worker_post(request, store)
    outcome = store.post_output(request.path_params["worker_id"], job, body)
    if outcome in {"COMPLETED", "FAILED"}:
        log.info("job %s %s on worker %s", job.id, outcome, job.worker_id)
    elif outcome == "ignored":
        log.info("job %s: late result from worker %s ignored (job is %s)", job.id, request.path_params["worker_id"], job.status)
    return JSONResponse({"status": outcome})


async def job_stream(request: Request, store: JobStore) -> Response:
    job, body = await _worker_post(request, store)
    return JSONResponse({"status": store.post_stream(request.path_params["worker_id"], job, body)})


async def ping(request: Request, store: JobStore) -> Response:
    # Pings come from a forked process that can outlive a killed worker, so they say nothing
    # about liveness; they do say which jobs the worker still runs (stop signals are re-sent).
    store.pinged(request.path_params["worker_id"], request.query_params.get("job_id"))
    return Response(status_code=200)


ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/run", run, ["POST"]),
    ("/runsync", runsync, ["POST"]),
    ("/status/{job_id}", status, ["GET", "POST"]),
    ("/stream/{job_id}", stream, ["GET", "POST"]),
    ("/cancel/{job_id}", cancel, ["POST"]),
    ("/retry/{job_id}", retry, ["POST"]),
    ("/purge-queue", purge_queue, ["POST"]),
    ("/health", health, ["GET"]),
    ("/job-take/{worker_id}", job_take, ["GET"]),
    ("/job-take-batch/{worker_id}", job_take, ["GET"]),
    ("/job-stop/{worker_id}", job_stop, ["GET"]),
    ("/job-done/{worker_id}/{job_id}", job_done, ["POST"]),
    ("/job-stream/{worker_id}/{job_id}", job_stream, ["POST"]),
    ("/ping/{worker_id}", ping, ["GET"]),
]


def build_app(settings: Settings) -> tuple[Starlette, JobStore]:
    """The ASGI app and its store; the reaper (timeouts, lost workers, retention) runs in its lifespan."""
    store = JobStore(settings)
    webhooks = Webhooks(settings.webhook_retry_delay_s)
    store.notify = webhooks.send

    async def reaper() -> None:
        while True:
            await asyncio.sleep(settings.reap_interval_s)
            store.reap()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            store.closing.set()
            task.cancel()
            await webhooks.close()

    routes = [
        Route(f"/v2/{{endpoint_id}}{path}", _route(store, fn), methods=methods, name=f"{fn.__name__}:{path}")
        for path, fn, methods in ROUTES
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    log.debug("endpoint app built for %s", redact(settings.endpoint_id))
    return app, store
