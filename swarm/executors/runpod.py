"""The RunPod executor: send a job to a serverless endpoint and follow it to a final state.

``RunPodExecutor.run(job)`` submits with ``/run``, follows ``/status`` (and ``/stream`` for
chunks) with a growing poll interval, forwards progress (``runpod_progress``), and turns every
final state into the same envelope the local executor returns (``runpod_envelope``). CANCELLED and
TIMED_OUT are final (the SDK's own endpoint client keeps waiting on them). When the caller is
cancelled, the RunPod job is cancelled too. The API key never appears in a log, a trace or an error.
One request, its retries and the error it ends in are ``runpod_requests``'s (``RunPodRequests``).

Each job carries this side's provider keys (``runner.runpod.forward_credentials``): the values of
the variables config names for a model or search backend (``core.credentials``), under the input's
reserved ``CREDENTIALS_FIELD``, so ``DEEPSEEK_API_KEY`` set here reaches the worker for that job.

RunPod's ``/run`` takes no idempotency key: running the same job (same id, same input) again
follows the RunPod job an earlier run submitted (``runpod_record``) instead of paying for a second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from core.credentials import CREDENTIALS_FIELD
from core.errors import SwarmError
from core.redact import redact
from core.storage_keys import public_url
from graphs.context import ProgressFn
from swarm.executors.runpod_envelope import NO_WORD_OF_THE_JOB, RunPodError, failure_envelope, final_envelope
from swarm.executors.runpod_progress import ProgressRelay
from swarm.executors.runpod_record import SubmitRecords, job_digest
from swarm.executors.runpod_requests import (  # noqa: F401 - re-exported: one request's code lives there
    RETRY_STATUSES,
    RUN_RETRY_STATUSES,
    RUNPOD_API,
    RunPodRequests,
    missing_v2,
    shown_url,
)

log = logging.getLogger("swarm.executors.runpod")
#: projects whose jobs call no model and no search backend: they carry no forwarded key
KEYLESS_PROJECTS = frozenset({"image_tools"})
#: the longest wait between two status polls of an endpoint that gives no answer
SILENT_POLL_MAX_S = 30.0
#: how often following a job whose endpoint gives no answer says so (the first time in full)
SILENT_NOTICE_S = 60.0
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RUN_LIMIT_BYTES = 10 * 1024 * 1024
#: the local endpoint's advice on a job its worker lost (``swarm.endpoint.state``), and what a
#: runner's user reads in its place
HTTP_RETRY_HINT = re.compile(r"; POST /retry/\S+ to run it again$")
RUN_AGAIN = ("; to run it again: from an MCP client, call the tool again with the same arguments (and a new"
             " idempotency_key, if it had one); from the CLI, run the same command again")


class RunPodExecutor(RunPodRequests):
    """Executes jobs on a RunPod serverless endpoint (RunPod's API, or ``swarm endpoint serve``).

    Args:
        base_url: RunPod's API root, ``https://api.runpod.ai/v2`` (or ``http://127.0.0.1:P/v2``).
        endpoint_id: the serverless endpoint: letters, digits, - and _ (else ``ConfigError``).
        api_key: sent as ``Authorization: Bearer``; never logged.
        http: an injected client (tests); otherwise one is opened per ``run``.
        poll_interval_s: the longest wait between two status polls (the first is 0.1 s).
        timeout_s: how long ``run`` follows a job when no ``wait_budget_s`` is given.
        execution_timeout_s: sent as ``policy.executionTimeout`` when set.
        max_retries: retries of one request on 429, 5xx, a refused connection, one dropped before
            the answer or a timeout (``/run``: on 429 or a refused connection only,
            ``RUN_RETRY_STATUSES``: after it was sent, RunPod may have queued the job).
        local_storage: this side's storage (a factory), when it is the local filesystem: an
            image a worker on its own disk sent inline is stored here under the same key by
            ``adopt_images`` (url, previews, resources).
        credentials: this side's provider keys to send with each job, read at each submit
            (``core.credentials.client_credentials``); none when not given.
        jobs_dir: where ``run`` records the RunPod job id of each local job id (default:
            ``<state_dir>/runpod-jobs``, found at the first job).
        api_key_env: the variable ``api_key`` was read from (``runner.runpod.api_key_env``), named
            when RunPod rejects the key.
    """

    def __init__(
        self,
        base_url: str,
        endpoint_id: str,
        api_key: str,
        http: httpx.AsyncClient | None = None,
        *,
        poll_interval_s: float = 1.0,
        timeout_s: float = 600.0,
        execution_timeout_s: float | None = None,
        max_retries: int = 5,
        follow_stream: bool = True,
        local_storage: Callable[[], Any] | None = None,
        credentials: Callable[[], Mapping[str, str]] | None = None,
        jobs_dir: Path | None = None,
        api_key_env: str = "RUNPOD_API_KEY",
    ) -> None:
        super().__init__(base_url, endpoint_id, api_key, http, max_retries=max_retries, api_key_env=api_key_env)
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.execution_timeout_s = execution_timeout_s
        self.follow_stream = follow_stream
        self._local_storage = local_storage
        self._credentials = credentials
        self._records = SubmitRecords(endpoint_id, jobs_dir)

    def __repr__(self) -> str:
        return f"RunPodExecutor(root={self.root!r})"

    # --- one request ---------------------------------------------------------------------

    # --- the public calls ------------------------------------------------------------------

    async def submit(self, job: dict[str, Any], http: httpx.AsyncClient | None = None) -> str:
        """Queue ``job`` (``{project, action, input}``) with ``/run``; returns RunPod's job id.

        The provider keys of ``credentials`` go in the request body only, never into ``job``
        (which the caller may store)."""
        # an image job calls no model and no search: no key of theirs goes into RunPod's input retention
        wants = self._credentials is not None and job.get("project") not in KEYLESS_PROJECTS
        keys = dict(self._credentials()) if wants and self._credentials is not None else {}
        body: dict[str, Any] = {"input": {**job, CREDENTIALS_FIELD: keys} if keys else job}
        if self.execution_timeout_s:
            body["policy"] = {"executionTimeout": int(self.execution_timeout_s * 1000)}
        size = len(json.dumps(body, ensure_ascii=False).encode())
        if size > RUN_LIMIT_BYTES:
            raise RunPodError(
                "InputError",
                f"the job is {size / 1048576:.1f} MB, over RunPod's 10 MB /run limit; pass images as storage keys instead of inline data",
            )
        async with self._maybe(http) as client:
            answer = await self._request(client, "POST", "/run", body)
        job_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise RunPodError("ProviderError", f"RunPod endpoint {self.endpoint_id} accepted the job but returned no job id")
        return job_id

    async def status(self, job_id: str, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        async with self._maybe(http) as client:
            return dict(await self._request(client, "GET", f"/status/{job_id}"))

    async def stream(self, job_id: str, http: httpx.AsyncClient | None = None, *, retry: bool = True) -> dict[str, Any]:
        """``{status, stream: [{output}, ...]}``; chunks are handed out once. ``retry=False``: one
        attempt (a relay's read of progress, which the next poll reads again)."""
        async with self._maybe(http) as client:
            return dict(await self._request(client, "GET", f"/stream/{job_id}", retry=retry))

    async def cancel(self, job_id: str, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        async with self._maybe(http) as client:
            return dict(await self._request(client, "POST", f"/cancel/{job_id}"))

    async def run(self, job: dict[str, Any], progress: ProgressFn | None = None, wait_budget_s: float | None = None) -> dict[str, Any]:
        """Run ``job`` on the endpoint and return its envelope (never raises for a job failure).

        Past ``wait_budget_s`` (default ``timeout_s``) the envelope says IN_PROGRESS with the
        RunPod job id, and the job keeps running there. Cancelling this coroutine cancels the
        RunPod job.
        """
        started = time.perf_counter()
        budget = wait_budget_s or self.timeout_s
        job_id: str | None = None
        relay: ProgressRelay | None = None
        record = self._records.path(job)
        async with self._client() as http:
            submitting: asyncio.Future[str] | None = None
            try:
                job_id, since = await self._records.earlier(
                    lambda earlier: self._request(http, "GET", f"/status/{earlier}"), record, job_digest(job), progress)
                if job_id is None:
                    submitting = asyncio.ensure_future(self.submit(job, http))
                    # Shielded: a caller cancelled while /run is in flight must still learn the
                    # id (a worker may already be running the job) so that it can be cancelled.
                    job_id = await asyncio.shield(submitting)
                    self._records.remember(record, job_id, job_digest(job), since)
                relay = self.relay(progress, since)
                final = await self._follow(http, job_id, relay, started + budget, progress)
            except RunPodError as exc:  # with the steps its worker had reported finished (paid for)
                steps = relay.steps if relay is not None else None
                return self.failure(job, job_id, {"type": exc.type, "message": exc.message}, started, steps)
            except asyncio.CancelledError:
                if job_id is None and submitting is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        job_id = await asyncio.wait_for(submitting, 5)
                if job_id is not None:
                    await self._cancel_quietly(http, job_id)
                raise
        return await self.adopt_images(job, self.envelope(job, job_id, final, started))

    # --- image results when this side's storage is its own disk --------------------------------

    async def adopt_images(self, job: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        """Store the images a worker on its own disk sent inline (``handler``: ``file://`` URLs
        there reach no client) in this side's storage under their keys, with this side's url;
        the base64 stays only where the job asked for it. An image that cannot be stored here
        keeps the worker's key and url, with a note; the job's result stands either way."""
        output = envelope.get("output")
        if self._local_storage is None or job.get("project") != "image_tools" or not isinstance(output, dict):
            return envelope
        asked = isinstance(job.get("input"), dict) and bool(job["input"].get("inline"))
        results = output.get("results")
        entries: list[Any] = results if isinstance(results, list) else [output]
        for entry in entries:
            if not (isinstance(entry, dict) and entry.get("image_key") and str(entry.get("url", "")).startswith("file:")):
                continue  # a store both sides reach (S3), or no image
            data = entry.get("image_b64") if asked else entry.pop("image_b64", None)
            if not isinstance(data, str):
                entry["note"] = "the image stays on the worker's disk (not sent inline: send inline, or use S3 on both sides)"
                continue
            key = str(entry["image_key"])
            try:
                storage = self._local_storage()
                await storage.put(key, base64.b64decode(data, validate=True), overwrite=True)
                entry.pop("url_note", None)
                entry.update(await public_url(storage, key))  # a presigned URL is a credential: never in a result
            except (SwarmError, OSError, ValueError) as exc:  # binascii.Error is a ValueError
                log.warning("image %s of job %s not stored here: %s", key, envelope.get("job_id"), redact(str(exc)))
                entry["note"] = f"the image could not be stored here ({type(exc).__name__}); the url is the worker's"
        return envelope

    async def _cancel_quietly(self, http: httpx.AsyncClient, job_id: str) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(self._request(http, "POST", f"/cancel/{job_id}", retry=False), 5))
        except (RunPodError, TimeoutError, asyncio.CancelledError, httpx.HTTPError) as exc:
            log.warning("could not cancel RunPod job %s: %s", job_id, redact(str(exc)))
        else:
            log.info("cancelled RunPod job %s", job_id)

    # --- following a job -------------------------------------------------------------------

    def relay(self, progress: ProgressFn | None, since: float | None = None) -> ProgressRelay:
        """What a follower of one job tells its caller from each ``/status`` answer (``since``: the
        wall-clock time the job was submitted)."""
        return ProgressRelay(self, progress, time.time() if since is None else since)

    async def _follow(self, http: httpx.AsyncClient, job_id: str, relay: ProgressRelay, deadline: float,
                      progress: ProgressFn | None = None) -> dict[str, Any]:
        """RunPod's final state of ``job_id``, or at ``deadline`` (``perf_counter``) its last known
        status marked ``_budget_exhausted``, with the steps its worker reported (``relay``). A poll
        that got no word of the job (``NO_WORD_OF_THE_JOB``: it timed out, its connection dropped)
        is asked again with the same backoff until the deadline (the job runs on, and is billed);
        the state then says so (``_unanswered``)."""
        delay = min(0.1, self.poll_interval_s)
        status: Any = None
        silent, silent_since, told_at = 0, 0.0, 0.0  # polls in a row that got no answer, since when; last said
        while True:
            asked = time.perf_counter()
            try:
                state = await self._request(http, "GET", f"/status/{job_id}", deadline=deadline)
                status = state.get("status")
                await relay.saw(job_id, state, http)
            except RunPodError as exc:
                if exc.type not in NO_WORD_OF_THE_JOB:
                    raise
                if not silent:
                    silent_since = asked
                silent += 1
                # 2, 4, 8 ... 30 s apart: an endpoint gone for minutes is asked twice a minute
                wait = min(SILENT_POLL_MAX_S, 2.0 * 2 ** (silent - 1)) * (0.75 + random.random() / 4)
                if time.perf_counter() + wait > deadline:
                    unanswered = (f"the endpoint gave no answer to its status polls for the last"
                                  f" {time.perf_counter() - silent_since:.0f} s of the wait ({exc.message})")
                    return self._still_running(job_id, status, relay, unanswered)
                if progress is not None and (silent == 1 or time.perf_counter() - told_at >= SILENT_NOTICE_S):
                    # said whole once; then a short line a minute (a 400-character line came every 11 s)
                    told_at = time.perf_counter()
                    said = exc.message if silent == 1 else (
                        f"RunPod endpoint {self.endpoint_id} still gives no answer about job {job_id}"
                        f" ({told_at - silent_since:.0f} s)")
                    left = max(0.0, deadline - told_at)
                    await progress("runpod", f"{said}; the job may still run there: asking again in {wait:.0f} s,"
                                   f" for up to {left:.0f} s more (the job's wait)", None)
                await asyncio.sleep(wait)
                continue
            silent = 0
            if status in FINAL_STATES:  # with the steps its worker reported: an end that carries no envelope keeps them
                return {**state, "_steps": relay.steps}
            if time.perf_counter() + delay > deadline:
                return self._still_running(job_id, status, relay)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.poll_interval_s)

    @staticmethod
    def _still_running(job_id: str, status: Any, relay: ProgressRelay, unanswered: str | None = None) -> dict[str, Any]:
        """The state of a job followed to the end of the wait, with the steps its worker said it had
        finished; ``unanswered``: why its status is not known of late (the endpoint stopped answering)."""
        state: dict[str, Any] = {"id": job_id, "status": status or "IN_QUEUE", "_budget_exhausted": True,
                                 "_steps": relay.steps, "_answered": status is not None}
        if unanswered is not None:
            state["_unanswered"] = unanswered
        return state

    # --- envelopes -------------------------------------------------------------------------

    def envelope(self, job: dict[str, Any], job_id: str | None, state: dict[str, Any], started: float) -> dict[str, Any]:
        """The job's envelope from the endpoint's final ``state`` (``started``: perf_counter).

        The local endpoint's error for a job whose worker was lost ends "POST /retry/<id> to run it
        again", an HTTP call with the endpoint's key that no MCP or CLI user makes: said instead is
        that the job can run again, and how from where they are."""
        if state.get("status") == "FAILED" and isinstance(error := state.get("error"), str):
            state = {**state, "error": HTTP_RETRY_HINT.sub(RUN_AGAIN, error)}
        return final_envelope(self.endpoint_id, job, job_id, state, started)

    def failure(self, job: dict[str, Any], job_id: str | None, error: dict[str, str], started: float,
                steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The FAILED envelope of a job whose request to the endpoint failed for good (``error``:
        ``{type, message}``; ``job_id``: RunPod's, ``None`` when ``/run`` never gave one), with the
        ``steps`` its worker reported finished and the runpod step last."""
        return failure_envelope(self.endpoint_id, job, job_id, error["type"], error["message"], started, steps)
