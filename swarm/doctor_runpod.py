"""``swarm doctor``'s check of the RunPod endpoint: its /health asked when jobs go there, and
when it cannot be reached, why and the ways out; INFO when it is set but the runner in effect is
local, or on a RunPod worker (its jobs come from the queue and run there); a FAIL saying that
jobs cannot run when ``runner.kind`` is runpod without an endpoint or a key (every job is
refused), or when the endpoint id holds a character no endpoint id has (a CRLF .env file's '\\r':
httpx refuses the URL). Each fix names the change that works for this config file (``ConfigSources``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from swarm.doctor_finding import TO_USE_IT, Finding
from swarm.doctor_reach import CHECK_NETWORK, no_connection
from swarm.doctor_sources import ConfigSources
from swarm.executors import runner_in_effect, runpod_worker
from swarm.executors.runpod_unreachable import bad_endpoint_id, endpoint_id_kept, stray_character, whole_url

if TYPE_CHECKING:
    from core.config import SwarmConfig

RUNPOD_TIMEOUT_S = 5.0
ENDPOINT, BASE_URL, KIND = "runner.runpod.endpoint_id", "runner.runpod.base_url", "runner.kind"


def _health_summary(reply: Any) -> str:
    try:
        workers, jobs = reply.json().get("workers", {}), reply.json().get("jobs", {})
        return (
            f"workers {workers.get('idle', 0)} idle, {workers.get('running', 0)} running;"
            f" jobs {jobs.get('inQueue', 0)} queued, {jobs.get('inProgress', 0)} in progress"
        )
    except (ValueError, AttributeError):
        return "answered /health (not JSON)"


async def check_runpod(config: SwarmConfig, sources: ConfigSources | None = None) -> Finding:
    """The endpoint's line: where jobs run (``runner_in_effect``) and, when it is there, its /health."""
    sources = sources or ConfigSources()
    spec, runner = config.runner.runpod, runner_in_effect(config, sources.variables())
    key = os.environ.get(spec.api_key_env, "")
    here = f"{sources.set_to(KIND, 'local')} to run them on this machine"
    if runpod_worker():  # a serverless worker: jobs come to it from its queue, it sends none
        needed = "is set, but not needed here" if key else "is not needed here, and should not be set"
        return Finding("runpod", "info", f"{runner.why.removesuffix(': jobs run here')}: jobs come from its queue and"
                                         f" run here ({spec.api_key_env} {needed})")
    if runner.kind == "refused":  # make_executor refuses every job
        set_it = (sources.set_to(ENDPOINT, "...") if runner.error is not None and runner.error.key == ENDPOINT
                  else f"export {spec.api_key_env}=...")
        return Finding("runpod", "fail", f"jobs cannot run: {runner.why}, so every job is refused", f"{set_it}, or {here}")
    if not spec.endpoint_id:
        return Finding("runpod", "info", "not configured (jobs run in-process)")
    stray = _stray_in_endpoint(config, sources)
    if stray is not None:  # RunPodExecutor refuses it (its URL is none httpx takes)
        why, fix = stray
        if runner.kind == "runpod":
            return Finding("runpod", "fail", f"jobs cannot run: every job sent to the endpoint is refused: {why}", fix)
        return Finding("runpod", "warn", f"not used now ({runner.why}), but every job sent there would be refused: {why}", fix)
    if config.runner.kind == "local":
        detail = f"endpoint {spec.endpoint_id} is set but not used: the runner is local ({runner.why}), jobs run in-process"
        return Finding("runpod", "info", detail, f"{sources.set_to(KIND, 'auto (or runpod)')} with {spec.api_key_env} set",
                       TO_USE_IT)
    if not key:
        detail = f"endpoint {spec.endpoint_id} is set but {spec.api_key_env} is not -> jobs run in-process"
        return Finding("runpod", "warn", detail, f"export {spec.api_key_env}=...")
    return await _runpod_health(config, sources, key)


def _stray_in_endpoint(config: SwarmConfig, sources: ConfigSources) -> tuple[str, str] | None:
    """(what, fix) when ``runner.runpod.endpoint_id`` holds a character no endpoint id has (shown
    as ``repr`` shows it), else ``None``."""
    endpoint_id = config.runner.runpod.endpoint_id
    why = bad_endpoint_id(endpoint_id, None)
    if why is None:
        return None
    fix = sources.set_to(ENDPOINT, endpoint_id_kept(endpoint_id) or "<the id the RunPod console shows>")
    if "\r" in endpoint_id and sources.variable(ENDPOINT):
        fix += " (and save the .env file it comes from with LF line ends)"
    return f"{sources.describe(ENDPOINT)}: {why}", fix


def _bad_base_url(config: SwarmConfig, sources: ConfigSources, runpod_api: str) -> tuple[str, str]:
    """(what, fix) for a base URL httpx refuses: no http(s):// in front, no host after it, or a
    stray character (a CRLF .env file's '\\r')."""
    base_url = config.runner.runpod.base_url
    stray = stray_character(base_url)
    wrong = f"it holds {stray!r}" if stray is not None else "its scheme (https://) is missing or wrong"
    cause = f"{sources.describe(BASE_URL)} is {base_url!r}: {wrong}"
    kept = "".join(char for char in base_url if stray_character(char) is None)
    meant = "https://" + kept.split("://", 1)[-1].lstrip("/")
    return cause, sources.set_to(BASE_URL, meant) + ("" if meant == runpod_api else f" (RunPod's own API is {runpod_api})")


async def _runpod_health(config: SwarmConfig, sources: ConfigSources, key: str) -> Finding:
    """``GET {base_url}/{endpoint}/health``: the endpoint's workers and queue, or why not."""
    import httpx

    spec = config.runner.runpod
    url = f"{spec.base_url.rstrip('/')}/{spec.endpoint_id}/health"
    try:
        async with httpx.AsyncClient(timeout=RUNPOD_TIMEOUT_S) as http:
            reply = await http.get(url, headers={"Authorization": f"Bearer {key}"})
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
        return await _runpod_unreachable(config, sources, url, exc)
    if reply.status_code != 200:
        from swarm.executors.runpod import missing_v2, shown_url

        hint = missing_v2(spec.base_url, sources.describe(BASE_URL))
        fixes = {401: f"RunPod refused the key: check {spec.api_key_env}",
                 404: (f"{sources.set_to(BASE_URL, shown_url(spec.base_url).rstrip('/') + '/v2')}: {hint}" if hint
                       else f"no such endpoint: check {sources.name(ENDPOINT)}")}
        detail = f"GET {shown_url(url)} answered HTTP {reply.status_code}"
        return Finding("runpod", "fail", detail, fixes.get(reply.status_code, "check the endpoint in the RunPod console"))
    return Finding("runpod", "ok", f"endpoint {spec.endpoint_id}: {_health_summary(reply)}")


async def _runpod_unreachable(config: SwarmConfig, sources: ConfigSources, url: str, exc: Exception) -> Finding:
    """Jobs go to the endpoint and cannot reach it: say why (``no_connection``) and the ways out."""
    import httpx

    from core.config import RunPodRunnerSpec

    spec = config.runner.runpod
    runpod_api = RunPodRunnerSpec().base_url  # RunPod's own; RUNPOD_API_BASE (config.yaml) points elsewhere
    elsewhere = spec.base_url.rstrip("/") != runpod_api.rstrip("/")
    variable = sources.variable(BASE_URL)
    base_note = (f"{BASE_URL} ({variable}: set only when the API is at another address than {runpod_api})" if variable
                 else f"{sources.describe(BASE_URL)} (RunPod's own API is {runpod_api})")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        why = await no_connection(url, spec.base_url, exc)
        cause = why.cause
        fix = f"{CHECK_NETWORK} and {sources.name(ENDPOINT)}" if why.network else why.fix
        if elsewhere:
            fix += f"; check {base_note}"
    elif isinstance(exc, httpx.TimeoutException):
        cause = f"connected, but no answer within {RUNPOD_TIMEOUT_S:g} s"
        fix = f"{CHECK_NETWORK}, and RunPod's status page"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):  # which part of the URL is at fault
        stray = _stray_in_endpoint(config, sources) if whole_url(spec.base_url) else None
        cause, fix = stray or _bad_base_url(config, sources, runpod_api)
    else:  # the connection opened, then failed: no RunPod API answers there
        cause = f"the connection opened, then failed ({type(exc).__name__}): is {spec.base_url} RunPod's API?"
        fix = f"check {base_note}, and its scheme (https://); {CHECK_NETWORK}"
    if config.runner.kind == "auto":
        here = f"{sources.unset(ENDPOINT)} (or {sources.set_to(KIND, 'local')})"
    else:
        here = sources.set_to(KIND, "local")
    shown = url if stray_character(url) is None else repr(url)  # a '\r' printed raw would overwrite the line
    detail = f"cannot reach {shown} ({type(exc).__name__}): {cause}; jobs sent there fail"
    return Finding("runpod", "fail", detail, f"{fix}; or run jobs on this machine: {here}")
