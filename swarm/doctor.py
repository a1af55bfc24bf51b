"""``swarm doctor``: check this machine and this config, one line per finding with its fix.

The CPU, secrets too short to be masked, the local model's canary completion, every configured model (key set? health check),
the search backends, the image weights, storage (a probe written and deleted), the
checkpointer, the RunPod endpoint when configured, free disk. Checks run concurrently, each
under its own timeout, so doctor never hangs; a check that raises is a FAIL carrying its
(redacted) error. A fresh machine without keys ends OK: an optional backend left unconfigured
(a key or URL unset, a fallback's weights not pulled) is INFO naming the variable or the pull,
while its chain still has a member that runs here (the local model ends every LLM chain, the
local index the search chain); it is a WARN when it leaves its chain with none. A model that
does not answer from here is a WARN naming the model its chain falls back on, a FAIL only when
nothing in the chain answers, and decides nothing when jobs run on a RunPod endpoint (its worker
calls the models). No key's value is ever printed. Exit status 1 when any check FAILs, else 0.

This module plans and runs the checks and holds the machine's own (CPU, free disk); the others
live by area in ``doctor_models`` (models, image weights), ``doctor_search`` and
``doctor_services`` (storage, checkpointer), ``doctor_runpod`` (the endpoint, where jobs run);
``doctor_reach`` says why an address cannot be reached, ``doctor_sources`` where a setting comes
from; ``doctor_report`` prints the findings.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SwarmError
from providers.image.rembg_paths import available_paths
from swarm.doctor_finding import CHECK_TIMEOUT_S, Check, Finding, error_message
from swarm.doctor_models import (
    ModelStates,
    canary_timeout_s,
    check_local,
    check_model,
    check_precision,
    check_weights,
    image_models,
)
from swarm.doctor_retirement import CHECK as RETIREMENT_CHECK
from swarm.doctor_retirement import check_retirements
from swarm.doctor_runpod import RUNPOD_TIMEOUT_S, check_runpod
from swarm.doctor_search import check_search
from swarm.doctor_services import check_checkpointer, check_storage
from swarm.doctor_sources import ConfigSources
from swarm.executors import runner_in_effect

if TYPE_CHECKING:
    from core.config import SwarmConfig
    from swarm.runtime import Runtime

GB = 1024**3
DISK_WARN_BYTES = 2 * GB
DISK_FAIL_BYTES = 200 * 1024**2
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")


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


async def check_llama_cpu() -> Finding:
    """Which llama.cpp CPU module the local model server loads on this CPU (llama_launch.py)."""
    from providers.llm.llama_launch import VARIANT_ENV, VariantError, choose_cpu_variant, lib_dir

    check = "llama.cpp cpu"
    try:
        folder = lib_dir()
        variant = choose_cpu_variant(folder, os.environ.get(VARIANT_ENV) or None)
    except VariantError as exc:
        forced = os.environ.get(VARIANT_ENV)
        fix = f"unset {VARIANT_ENV} (or set one of the usable modules)" if forced else "run scripts/setup"
        return Finding(check, "fail", str(exc), fix)
    if variant is None:
        return Finding(
            check, "warn", "llama-cpp-python was built for the CPU that compiled it (-march=native): "
            "on another CPU the local model may die with SIGILL",
            "run scripts/setup: it rebuilds it with a module per CPU level, chosen at run time",
        )
    return Finding(check, "ok", f"module {variant.describe()}")


def disk_targets(config: SwarmConfig) -> list[tuple[str, Path]]:
    """(labels, nearest existing folder) of the state and models dirs, one entry per filesystem."""
    from core.config import state_dir
    from providers.image.weights import resolve_models_dir

    by_device: dict[int, tuple[list[str], Path]] = {}
    for label, path in (("state", state_dir()), ("models", resolve_models_dir(config.providers.image.models_dir))):
        folder = path.expanduser().absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        # a folder still to be made is named by where it would be made (``check_disk`` checks that)
        by_device.setdefault(folder.stat().st_dev, ([], folder))[0].append(label if folder == path.expanduser().absolute()
                                                                          else f"{label} (to be made)")
    return [("+".join(labels), folder) for labels, folder in by_device.values()]


async def check_disk(labels: str, folder: Path) -> Finding:
    check = f"disk {labels.replace(' (to be made)', '')}"
    usage = shutil.disk_usage(folder)
    # a folder to be made where nothing can be: read-only to us, or a filesystem of no size (/proc).
    # One that exists is not asked to be writable: a read-only store of pulled weights is fine
    if "(to be made)" in labels and (usage.total == 0 or not os.access(folder, os.W_OK | os.X_OK)):
        return Finding(check, "fail", f"nothing can be written under {folder}: the {check.removeprefix('disk ')}"
                       " folder cannot be made there", "set SWARM_HOME (or SWARM_MODELS_DIR) to a folder you can write")
    free = usage.free
    detail = f"{free / GB:.1f} GB free at {folder}"
    fix = "free space there, or point SWARM_HOME / SWARM_MODELS_DIR at a bigger disk"
    if free < DISK_FAIL_BYTES:
        return Finding(check, "fail", f"{detail}: checkpoints and weights cannot be written", fix)
    if free < DISK_WARN_BYTES:
        return Finding(check, "warn", f"{detail}: under {DISK_WARN_BYTES / GB:g} GB", fix)
    return Finding(check, "ok", detail)


def secrets_set(data: Any, where: str = "") -> list[str]:
    """Where a secret is set in the config ``data`` (a ``model_dump``): entries named like a
    secret (by their key path) and the variables that a ``*_env`` key of such a name points at
    (by name, ``$DEEPSEEK_API_KEY``), each once; what ``short_secrets`` looks through."""
    from core.redact_config import SECRET_KEY_NAME, is_secret_entry

    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            named_env = isinstance(value, str) and str(key).endswith("_env") and SECRET_KEY_NAME.search(str(key)[:-4])
            if named_env and os.environ.get(value, "").strip():
                found.append(f"${value}")
            elif is_secret_entry(key, value, where):
                found.append(path)
            elif not named_env:
                found += secrets_set(value, path)
    elif isinstance(data, list | tuple):
        for n, value in enumerate(data):
            found += secrets_set(value, f"{where}[{n}]")
    return list(dict.fromkeys(found))


async def check_secrets(config: SwarmConfig) -> Finding:
    """A secret under ``MIN_SECRET_CHARS`` is never masked (it would mask ordinary words): say where."""
    from core.redact import MIN_SECRET_CHARS
    from core.redact_config import short_secrets

    data = config.model_dump(mode="python")
    short = short_secrets(data)
    if not short:
        names = secrets_set(data)
        if not names:
            return Finding("secrets", "ok", "no secrets set (no key, token or password in the config or the variables it names)")
        masked = f"every secret set ({', '.join(names)}) is {MIN_SECRET_CHARS}+ characters"
        return Finding("secrets", "ok", f"{masked}: masked in logs, traces and results")
    return Finding(
        "secrets", "warn",
        f"{', '.join(short)}: under {MIN_SECRET_CHARS} characters, so never masked in logs, traces, errors or results",
        "set the real value (no provider's key or token is that short) or unset it",
    )


# --- running ------------------------------------------------------------------------------------


def plan(config: SwarmConfig, models: ModelStates, *, canary: bool = True, sources: ConfigSources | None = None) -> list[Check]:
    """Every check for ``config``, in the order they are reported; ``models`` finds each model's
    state once for every line that needs it (``ModelStates``); ``sources``: where the config
    file's settings come from (a fix says ``export SWARM_RUNNER=...`` or what to set in the file)."""
    sources = sources or ConfigSources()
    checks = [Check("cpu", check_cpu), Check("secrets", partial(check_secrets, config)),
              Check(RETIREMENT_CHECK, partial(check_retirements, config))]
    servers = [spec.local_server for spec in config.models.values() if spec.local_server is not None]
    if servers:
        checks.append(Check("llama.cpp cpu", check_llama_cpu))
    # a model's line waits on the states of its chains' members, the local model's canary among them
    waits_s = max([canary_timeout_s(s) for s in servers] if canary else [], default=0.0)
    runner = runner_in_effect(config, sources.variables())
    for name, spec in config.models.items():
        if spec.local_server is None:
            run = partial(check_model, name, models, runner)
            checks.append(Check(f"model {name}", run, max(CHECK_TIMEOUT_S, waits_s + 5)))
        else:
            timeout_s = canary_timeout_s(spec.local_server) + 5 if canary else CHECK_TIMEOUT_S
            checks.append(Check(f"canary {name}", partial(check_local, name, models), timeout_s))
    checks += [Check(f"search {n}", partial(check_search, n, config)) for n in config.providers.search.backends]
    models_dir = config.providers.image.models_dir
    for name, role, chain in image_models(config):
        checks.append(Check(f"image {name}", partial(check_weights, name, role, chain, models_dir)))
    image = config.providers.image
    if image.upscale.device != "cuda":  # a GPU's decisions are its own (its trace step names them)
        checks.append(Check("precision upscale", partial(asyncio.to_thread, check_precision, "upscale",
                                                         [image.upscale.model], image.upscale.precision,
                                                         "providers.image.upscale.precision")))
    rembg = next(chain for _, role, chain in image_models(config) if role == "remove_background")
    checks.append(Check("precision remove_background", partial(asyncio.to_thread, check_precision, "remove_background",
                                                               rembg, image.rembg.precision,
                                                               "providers.image.rembg.precision", available_paths())))
    checks += [
        Check("storage", partial(check_storage, config)),
        Check("checkpointer", partial(check_checkpointer, config)),
        Check("runpod", partial(check_runpod, config, sources), RUNPOD_TIMEOUT_S + 15),
    ]
    disks = [Check(f"disk {labels.replace(' (to be made)', '')}", partial(check_disk, labels, path))
             for labels, path in disk_targets(config)]
    return checks + disks


async def guarded(check: Check) -> Finding:
    """``check``'s finding; a timeout or an exception becomes a FAIL instead of a hang or a crash."""
    try:
        return await asyncio.wait_for(check.run(), check.timeout_s)
    except TimeoutError:
        return Finding(check.name, "fail", f"no answer within {check.timeout_s:g} s")
    except Exception as exc:  # a broken check is reported as a FAIL with its error, never hidden
        return Finding(check.name, "fail", error_message(exc))


async def run_doctor(config: SwarmConfig, *, runtime: Runtime | None = None, canary: bool = True,
                     config_file: Path | None = None) -> list[Finding]:
    """Every check's finding, in report order. Local servers started here are stopped before
    returning; with a ``runtime``, its ``aclose()`` stops them. ``config_file`` (default: the
    runtime's) is read again for where its settings come from (``ConfigSources``)."""
    from providers.llm.local_server import LocalServerManager

    local_servers = runtime.local_servers if runtime is not None else LocalServerManager()
    models = ModelStates(config, local_servers, canary=canary)
    sources = ConfigSources.read(config_file or (runtime.store.path if runtime is not None else None))
    try:
        return list(await asyncio.gather(*(guarded(c) for c in plan(config, models, canary=canary, sources=sources))))
    finally:
        await models.aclose()
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
        return [Finding("config", "fail", error_message(exc), "correct the keys named; `swarm config check` re-validates")]
    try:
        findings = await run_doctor(runtime.config, runtime=runtime, canary=canary, config_file=path)
    finally:
        await runtime.aclose()
    return [Finding("config", "ok", f"{path}: valid"), *findings]
