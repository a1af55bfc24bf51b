"""One request to a RunPod endpoint: its client, its retries and backoff, and the ``RunPodError``
each failure ends in (``RunPodRequests``, which ``runpod.RunPodExecutor`` builds on).

``/run`` is retried only where RunPod cannot have queued the job (``RUN_RETRY_STATUSES``, a
refused connection); ``/status``, ``/stream`` and ``/cancel`` on 429, 5xx, a refused or dropped
connection and a timeout. The API key goes in the ``Authorization`` header only: an answer that
echoes it is redacted before it reaches an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.errors import ConfigError
from core.redact import redact
from swarm.executors.runpod_envelope import MAY_BE_QUEUED, RunPodError, unknown_job
from swarm.executors.runpod_unreachable import bad_endpoint_id, bad_url, cause, unreachable, where

log = logging.getLogger("swarm.executors.runpod")
#: what any other request is retried on (with a refused, dropped or timed-out connection)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: what ``/run`` is retried on: answers that say the job was not queued. A 5xx may come after
#: RunPod queued it (a gateway's timeout, say), and a second ``/run`` would then start a second,
#: paid job; a refused connection or a 429 never queued anything.
RUN_RETRY_STATUSES = frozenset({429})
#: RunPod's own API root (``runner.runpod.base_url``'s default); every API root ends in ``/v2``
RUNPOD_API = "https://api.runpod.ai/v2"


def shown_url(url: str) -> str:
    """``url`` as a message may show it: no user or password, redacted, bounded."""
    try:
        url = str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        pass
    return redact(url)[:300]


def missing_v2(base_url: str, where: str = "RUNPOD_API_BASE / runner.runpod.base_url") -> str | None:
    """Why a 404 may be the base URL's fault, not the endpoint id's: its path does not end in
    ``/v2`` (``http://127.0.0.1:8000`` for ``http://127.0.0.1:8000/v2``); None when it does.
    ``where`` names the setting (the doctor knows which variable sets it)."""
    try:
        path = httpx.URL(base_url.strip()).path.rstrip("/")
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if path.endswith("/v2"):
        return None
    return (f"the base URL {shown_url(base_url)} ({where}) may be missing its /v2: RunPod's API root ends in /v2"
            f" ({RUNPOD_API}; swarm endpoint serve: http://127.0.0.1:PORT/v2)")


class RunPodRequests:
    """Requests to one endpoint (``base_url`` + ``endpoint_id``), sent with ``api_key``, on the
    injected ``http`` client or one opened per call, retried up to ``max_retries`` times;
    ``api_key_env`` is named when RunPod rejects the key (``RunPodExecutor`` documents each)."""

    def __init__(self, base_url: str, endpoint_id: str, api_key: str, http: httpx.AsyncClient | None = None, *,
                 max_retries: int = 5, api_key_env: str = "RUNPOD_API_KEY") -> None:
        stray = bad_endpoint_id(endpoint_id)
        if stray is not None:  # httpx would refuse every URL, and the message would blame the base URL
            raise ConfigError(stray, key="runner.runpod.endpoint_id")
        self.base_url = base_url
        self.root = f"{base_url.rstrip('/')}/{endpoint_id}"
        self.endpoint_id = endpoint_id
        self._api_key = api_key
        self._http = http
        self.max_retries = max_retries
        self.api_key_env = api_key_env

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            yield client

    async def _request(self, http: httpx.AsyncClient, method: str, path: str, body: Any = None, *, retry: bool = True,
                       deadline: float | None = None) -> Any:
        """RunPod's JSON answer to one request, retried (``retry``) as ``max_retries`` says, and
        not past ``deadline`` (``perf_counter``; the wait of a job being followed): an attempt
        that fails then is the last. Raises ``RunPodError``."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        attempt = 0
        first = time.monotonic()
        while True:
            try:
                response = await http.request(method, f"{self.root}{path}", json=body, headers=headers)
            except (httpx.TransportError, httpx.InvalidURL) as exc:  # InvalidURL is no TransportError
                again = retry and (deadline is None or time.perf_counter() < deadline)
                delay, why = self._no_answer(exc, path, attempt, time.monotonic() - first, retry=again)
            else:
                again = retry and (deadline is None or time.perf_counter() < deadline)
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise RunPodError(
                            "ProviderError",
                            f"RunPod endpoint {self.endpoint_id} answered {path.split('/')[1]} with a body that is not JSON",
                        ) from None
                retried = RUN_RETRY_STATUSES if path == "/run" else RETRY_STATUSES
                if response.status_code not in retried or not again or attempt >= self.max_retries:
                    raise self._http_error(response, path)
                delay, why = self._backoff(attempt, response.headers.get("retry-after")), f"HTTP {response.status_code}"
            if deadline is not None:  # the last attempt at the deadline, not after it
                delay = min(delay, max(0.0, deadline - time.perf_counter()))
            attempt += 1
            log.info("RunPod %s %s: %s; retrying in %.2f s (attempt %d of %d)", method, path.split("/")[1], why, delay,
                     attempt + 1, self.max_retries + 1)
            await asyncio.sleep(delay)

    def _no_answer(self, exc: Exception, path: str, attempt: int, elapsed_s: float, *, retry: bool) -> tuple[float, str]:
        """(delay, why) before the next attempt of a request that got no answer (``exc``), or the
        ``RunPodError`` it ends with: after ``attempt`` of ``max_retries`` retries (the first
        without ``retry``), or at once when sending it again is no use (the URL is no URL) or
        could pay twice (a ``/run`` that went out). A ``/status``, ``/stream`` or ``/cancel``
        that timed out or whose connection dropped is asked again: it changes nothing there."""
        action = path.split("/")[1]
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):  # nothing was sent
            if not retry or attempt >= self.max_retries:
                raise RunPodError("ProviderUnavailable", unreachable(self.endpoint_id, self.root, exc, attempt + 1, elapsed_s)) from None
            return self._backoff(attempt, None), f"{where(self.root)} unreachable ({cause(exc)})"
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            raise RunPodError(*bad_url(self.base_url, self.endpoint_id, path)) from None
        if isinstance(exc, httpx.LocalProtocolError):  # this side could not write the request: again would not either
            raise RunPodError("ProviderError", f"the request to RunPod endpoint {self.endpoint_id} could not be written"
                              f" ({type(exc).__name__}: a header httpx refuses, most likely the key): check"
                              f" ${self.api_key_env} for a stray character, such as a newline") from None
        if isinstance(exc, httpx.TimeoutException):
            type_, why = "ProviderTimeout", f"{where(self.root)} did not answer {action} in time ({type(exc).__name__})"
            if path == "/run":  # a pool timeout sent nothing; any other: RunPod may have queued the job
                sent = "" if isinstance(exc, httpx.PoolTimeout) else f" (not sent again: {MAY_BE_QUEUED})"
                raise RunPodError(type_, f"RunPod endpoint {self.endpoint_id} did not answer {action} in time:"
                                  f" {type(exc).__name__}{sent}") from None
        else:  # the connection dropped after it opened (ReadError, RemoteProtocolError): a passing fault
            type_, why = "ProviderUnavailable", f"the connection to {where(self.root)} dropped before RunPod answered {action} ({cause(exc)})"
            if path == "/run":  # it went out: RunPod may have queued the job, and a second /run would pay twice
                raise RunPodError(type_, f"{why}; not sent again: {MAY_BE_QUEUED}") from None
        if not retry or attempt >= self.max_retries:
            tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
            raise RunPodError(type_, f"RunPod endpoint {self.endpoint_id}: {why}; gave up after {tries} in {elapsed_s:.1f} s") from None
        return self._backoff(attempt, None), why

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        if retry_after:
            with contextlib.suppress(ValueError):
                seconds = float(retry_after)
                if math.isfinite(seconds) and seconds >= 0:
                    return min(seconds, 30.0)
        return min(0.25 * 2**attempt, 8.0) * (0.5 + random.random() / 2)

    def _http_error(self, response: httpx.Response, path: str) -> RunPodError:
        try:
            detail = str(response.json().get("error") or response.text)
        except (ValueError, AttributeError):
            detail = response.text
        if self._api_key:  # an answer that echoes the key (redact() knows only the usual shapes)
            detail = detail.replace(self._api_key, "[REDACTED]")
        detail = redact(detail)[:300]  # redacted whole first: a key cut in two is no known shape
        code = response.status_code
        if code == 401:
            env = self.api_key_env
            return RunPodError("ConfigError", f"RunPod rejected the API key in ${env} (runner.runpod.api_key_env):"
                               f" {detail}; check the key at runpod.io (Settings, API Keys) and export a valid one as {env}")
        if code == 404 and path.startswith("/run"):  # the first request: a base URL without /v2 404s here
            if hint := missing_v2(self.base_url):
                return RunPodError("ConfigError", f"{shown_url(self.root + path)} answered HTTP 404 (not found): {hint}; {detail}")
            return RunPodError("ConfigError", f"RunPod endpoint {self.endpoint_id!r} not found (runner.runpod.endpoint_id)"
                                              f" at {shown_url(self.root + path)}: {detail}")
        if code == 404:  # /status, /stream, /cancel of a job id: RunPod answers "request does not exist"
            return RunPodError("ProviderError", unknown_job(self.endpoint_id, path.rsplit("/", 1)[-1], detail), code)
        if code in (400, 413):
            return RunPodError("InputError", detail)
        if code == 429:
            return RunPodError("ProviderRateLimited", f"RunPod kept answering 429 after {self.max_retries} retries")
        if code >= 500 and path == "/run":
            return RunPodError("ProviderUnavailable", f"RunPod answered HTTP {code} to /run: {detail} (not sent again: {MAY_BE_QUEUED})")
        return RunPodError("ProviderUnavailable" if code >= 500 else "ProviderError", f"RunPod answered HTTP {code}: {detail}", code)

    @contextlib.asynccontextmanager
    async def _maybe(self, http: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
        if http is not None:
            yield http
        else:
            async with self._client() as client:
                yield client
