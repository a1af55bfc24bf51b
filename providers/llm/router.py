"""The LLM router: tiers, preference, fallback chain, circuit breakers, short 429 retries.

The chain for one call (which models, in order) is ``providers.llm.chain``'s: ``prefer``, then the
tier's models, then ``providers.llm.fallback_chain``.

Walking it: a model whose key variable is unset, or whose circuit is open, is skipped at once
(a ``skipped`` trace step with the reason, and its kind: ``TraceStep.skip``); so is one that
timed out earlier in the same job (``providers.attempts.job_memory``) while a later model of the
chain can still be asked, and one that the job's budget refuses before it is asked
(``providers.attempts.preflight``, with the ``max_tokens`` that model really sends and its price:
``over_budget``), the chain going on to its next model. A call either answers (``ok``) or fails
(``error``); only a 429 whose Retry-After is at most ``retry.max_retry_after_s`` is retried on
the same model, at most ``retry.max_retries`` times; every other ``ProviderError`` falls over to
the next model immediately (a ``ModelNotServed``, a name the provider does not serve, also opens
the model's circuit at once, for long: ``providers.circuit.NOT_SERVED_HOLD_S``). Anything that is not a ``ProviderError`` propagates. The answer
carries every step taken; when the chain runs dry, ``AllProvidersFailed`` lists them all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from core.credentials import credential_holder
from core.errors import (
    AllProvidersFailed,
    ModelNotServed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
)
from core.redact import redact
from providers.base import (
    LLMConfig,
    LLMProvider,
    LLMResponse,
    Message,
    PlannedAttempt,
    PlansAttempts,
    SkipKind,
    TraceStep,
    notify_attempt,
    preflight,
    preflight_active,
    remember_timeout,
    timed_out_in_job,
)
from providers.llm.chain import resolve_chain
from providers.llm.model_access import missing_key_reason

if TYPE_CHECKING:
    from core.config import LLMSection, ModelSpec
    from providers.circuit import CircuitBoard
    from providers.llm.local_server import LocalServerManager

#: the longest detail one trace step carries: a local server's crash report (log lines of any
#: length) or an upstream's error page is said in full nowhere a person or a model reads
DETAIL_MAX_CHARS = 300
#: what stands for the cut-out middle of a detail too long to keep whole
_CUT = " ... "

log = logging.getLogger("swarm.llm")


def _log_fall_over(name: str, config: LLMConfig, attempts: list[TraceStep]) -> None:
    """A WARNING for the operator's log (and an MCP client that asked for its records): ``name``
    failed at this step, as its last attempt says (its detail is capped and redacted)."""
    last = attempts[-1] if attempts else None
    log.warning("%s failed at %s (%s: %s); the chain goes on to its next model, if it has one", name,
                config.step or "a call", last.error_class if last else "error", last.detail if last else "")


def capped_detail(text: str | None) -> str | None:
    """``text`` redacted, then cut to ``DETAIL_MAX_CHARS``: redacted first, so a cut never leaves
    half a key where the whole one would have been masked. A cut keeps the start and the end, and
    drops the middle: a detail says what happened first and ends with how it ended (a crash, its
    log lines, "started it again and asked once more: HTTP 500 ...")."""
    if not text:
        return text
    shown = redact(text)
    if len(shown) <= DETAIL_MAX_CHARS:
        return shown
    head = (DETAIL_MAX_CHARS - len(_CUT)) // 2
    tail = DETAIL_MAX_CHARS - len(_CUT) - head
    return f"{shown[:head]}{_CUT}{shown[-tail:]}"


class Skip(NamedTuple):
    """A model a call passes over without asking it: why, as a caller reads it (``kind``, the trace
    step's ``skip``) and as a person does (``reason``, its ``detail``)."""

    model: str
    kind: SkipKind
    reason: str


class LLMRouter:
    """An ``LLMProvider`` over every model of one config version.

    Args:
        section: ``providers.llm``: default, tiers, fallback chain, retry and circuit settings.
        specs: the ``models`` table (name -> ``ModelSpec``): families, keys, order.
        models: model name -> provider (``LiteLLMModel`` in production, fakes in tests).
        circuits: the board that outlives config reloads.
    """

    def __init__(
        self,
        section: LLMSection,
        specs: Mapping[str, ModelSpec],
        models: Mapping[str, LLMProvider],
        circuits: CircuitBoard,
    ) -> None:
        self.section = section
        self.specs = dict(specs)
        self.models = dict(models)
        self.circuits = circuits
        circuits.configure(section.circuit)

    # --- chain -----------------------------------------------------------------------------

    def resolve_chain(self, llm_config: LLMConfig) -> list[str]:
        """The model names one call will try, in order (``providers.llm.chain``)."""
        return resolve_chain(self.section, self.specs, llm_config)

    def preflights_attempts(self) -> bool:
        """It asks the job's preflight before each model it calls (``PreflightsAttempts``)."""
        return True

    def _stops_at(self, model: str, llm_config: LLMConfig) -> bool:
        """Whether a call with ``llm_config`` ends its chain before ``model`` (``stop_before``)."""
        return llm_config.stop_before is not None and self.family_of(model) == llm_config.stop_before[0]

    def family_of(self, model: str) -> str | None:
        """The family of ``model`` (a name of ``models``), or ``None`` for a name it does not know."""
        spec = self.specs.get(model)
        return spec.family if spec is not None else None

    def first_callable(self, llm_config: LLMConfig) -> str | None:
        """The model a call with ``llm_config`` would try first now (no key missing, circuit not
        open), or ``None``: a prediction (that model may still fail and the call fall over), for
        a caller that would not ask one model the same thing twice (consensus)."""
        return self._first_callable(llm_config)[0]

    def passed_over(self, llm_config: LLMConfig) -> list[str]:
        """Why the models ahead of ``first_callable``'s would not be tried now, one ``"model:
        reason"`` each (a key unset, an open circuit): what a caller says of a model it did not ask."""
        return [f"{skip.model}: {skip.reason}" for skip in self.skips_ahead(llm_config)]

    def skips_ahead(self, llm_config: LLMConfig) -> list[Skip]:
        """``passed_over`` with each model's ``SkipKind``: for a caller that tells the setup (a key
        unset) from a failure (an open circuit) by it, not by the reason's wording."""
        return self._first_callable(llm_config)[1]

    def _first_callable(self, llm_config: LLMConfig) -> tuple[str | None, list[Skip]]:
        passed: list[Skip] = []
        chain = self.resolve_chain(llm_config)
        for n, name in enumerate(chain):
            if self._stops_at(name, llm_config):
                break
            skip = self._setup_skip(name) or self._timed_out_skip(name, chain[n + 1:])
            if skip is not None:
                passed.append(skip)
                continue
            state = self.circuits.state(self._circuit(name))
            if state == "closed":
                return name, passed
            if state == "half_open":  # one probe at a time may be let through: no safe prediction
                return None, passed
            passed.append(Skip(name, "circuit_open", "its circuit is open"))
        return None, passed

    # --- calls -----------------------------------------------------------------------------

    def _setup_skip(self, name: str) -> Skip | None:
        """Why the setup leaves ``name`` out of every call now: its key unset, no provider built."""
        spec = self.specs.get(name)
        if spec is not None and (reason := missing_key_reason(spec)):
            return Skip(name, "key_unset", reason)
        if name not in self.models:
            return Skip(name, "not_built", "no provider was built for this model")
        return None

    def _skip_reason(self, name: str) -> str | None:
        skip = self._setup_skip(name)
        return skip.reason if skip is not None else None

    def _skip_now(self, name: str, later: list[str], deferred: list[str]) -> Skip | None:
        """Why a call passes ``name`` over now (``None``: its circuit is acquired, ask it); one
        that only timed out earlier in the job goes to ``deferred``, the chain's last hope."""
        skip = self._setup_skip(name)
        if skip is None and (skip := self._timed_out_skip(name, later)) is not None:
            deferred.append(name)
        if skip is None and (reason := self.circuits.acquire(self._circuit(name))):
            skip = Skip(name, "circuit_open", reason)
        return skip

    def _timed_out_skip(self, name: str, later: list[str]) -> Skip | None:
        """``name`` passed over in this call: it timed out earlier in the job and a model ``later``
        in the chain can still be asked; ``None`` for a model that is the chain's last hope."""
        reason = timed_out_in_job(name)
        if reason is None:
            return None
        askable = any(self._skip_reason(m) is None and self.circuits.state(self._circuit(m)) != "open" for m in later)
        return Skip(name, "timed_out", reason) if askable else None

    def _circuit(self, name: str) -> str:
        """The circuit of ``name`` for this call: the model's, or, when the running job uses a key
        its client forwarded, the model's with that key (``core.credentials.credential_holder``)."""
        spec = self.specs.get(name)
        holder = credential_holder(spec.api_key_env if spec else None)
        return name if holder is None else f"{name} ({holder})"

    def _step(self, name: str, config: LLMConfig, **fields: Any) -> TraceStep:
        spec = self.specs.get(name)
        if fields.get("detail"):
            fields["detail"] = capped_detail(fields["detail"])
        return TraceStep(step=config.step, kind="llm", provider=spec.family if spec else "", model=name, **fields)

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        """Answer from the first model of the chain that can; see the module docstring."""
        attempts: list[TraceStep] = []
        chain = self.resolve_chain(config)
        deferred: list[str] = []  # passed over for a timeout earlier in the job, while later ones could answer
        refused: list[LLMResponse] = []  # answers ``config.accept`` refused, first first
        for n, name in enumerate(chain):
            if self._stops_at(name, config):
                assert config.stop_before is not None
                attempts.append(self._step(name, config, outcome="skipped", skip="stopped",
                                           detail=f"not asked: {config.stop_before[1]}"))
                break
            if (skip := self._skip_now(name, chain[n + 1:], deferred)) is not None:
                attempts.append(self._step(name, config, outcome="skipped", skip=skip.kind, detail=skip.reason))
                continue
            if (response := await self._ask(name, messages, config, attempts, refused)) is not None:
                return response
        # every later model failed: one that only timed out earlier is the last hope, not a lost step
        for name in deferred:
            if reason := self.circuits.acquire(self._circuit(name)):
                attempts.append(self._step(name, config, outcome="skipped", skip="circuit_open", detail=reason))
            elif (response := await self._ask(name, messages, config, attempts, refused)) is not None:
                return response
        if refused:  # nobody did better: the first answer, unusable as it is, with every attempt
            return refused[0].model_copy(update={"attempts": tuple(attempts)})
        raise AllProvidersFailed("llm", attempts)

    async def _ask(self, name: str, messages: list[Message], config: LLMConfig, attempts: list[TraceStep],
                   refused: list[LLMResponse] | None = None) -> LLMResponse | None:
        """``name``'s answer with every attempt of the call before it, or ``None`` (fall over). An
        answer ``config.accept`` refuses goes to ``refused``, its attempt an error (billed)."""
        try:  # the job's budget: this model's cap and price, and what the call's attempts were billed
            over = preflight(self._plan(name, messages, config), attempts) if preflight_active() else None
        except BaseException:
            self.circuits.release(self._circuit(name))
            raise
        if over is not None:  # a later, cheaper model may still fit: the chain goes on
            self.circuits.release(self._circuit(name))
            attempts.append(self._step(name, config, outcome="skipped", skip="over_budget", detail=over))
            return None
        skipped = [a.model or "" for a in attempts if a.outcome == "skipped"]
        notify_attempt("calling", name, f"skipped: {', '.join(skipped)}" if skipped else "")
        response = await self._call_with_retries(name, messages, config, attempts)
        if response is None:
            _log_fall_over(name, config, attempts)
            return None
        why = config.accept(response.text) if config.accept is not None else None
        if why is not None:  # it answered (no circuit failure), but nothing the caller can use
            *before, last = response.attempts or (self._step(name, config),)
            attempts += [*before, last.model_copy(update={"outcome": "error", "error_class": "UnusableAnswer",
                                                          "detail": capped_detail(why)})]
            notify_attempt("failed", name, "UnusableAnswer")
            _log_fall_over(name, config, attempts)
            if refused is not None:
                refused.append(response)
            return None
        return response.model_copy(update={"attempts": (*attempts, *response.attempts)})

    def _plan(self, name: str, messages: list[Message], config: LLMConfig) -> PlannedAttempt:
        """What asking ``name`` will send (``PlansAttempts``); for a model that cannot say (a test
        double), the caller's ``max_tokens`` over the messages, at no known price."""
        model = self.models[name]
        if isinstance(model, PlansAttempts):
            return model.plan_attempt(messages, config)
        tokens = math.ceil(sum(len(m.content) for m in messages) / 4)
        return PlannedAttempt(model=name, input_tokens=tokens, max_tokens=config.max_tokens or 0)

    async def _call_with_retries(
        self, name: str, messages: list[Message], config: LLMConfig, attempts: list[TraceStep]
    ) -> LLMResponse | None:
        """Call one model (its circuit already acquired); ``None`` means fall over."""
        retry = self.section.retry
        circuit = self._circuit(name)
        attempt = 1
        while True:
            started = time.perf_counter()
            try:
                response = await self.models[name].complete(messages, config)
            except ProviderError as exc:
                # the backend's own measure leaves out a one-off import (litellm's, on a first call)
                latency = exc.latency_ms if exc.latency_ms is not None else (time.perf_counter() - started) * 1000
                # the step names the provider and the model: its detail is what happened, without them
                detail = capped_detail(exc.message) or ""
                self.circuits.record_failure(circuit, detail, lasting=isinstance(exc, ModelNotServed))
                if isinstance(exc, ProviderTimeout):
                    remember_timeout(name, f"{detail} at {config.step} earlier in this job: not waited for again in it")
                attempts.append(  # with what an unusable answer was billed: totals and the budget count it
                    self._step(name, config, attempt=attempt, latency_ms=latency, outcome="error",
                               error_class=type(exc).__name__, detail=detail, input_tokens=exc.input_tokens,
                               output_tokens=exc.output_tokens, cost_usd=exc.cost_usd)
                )
                wait = _short_retry_after(exc, retry.max_retry_after_s)
                if wait is None or attempt > retry.max_retries:
                    notify_attempt("failed", name, type(exc).__name__)
                    return None
                if self.circuits.acquire(circuit) is not None:
                    return None  # this failure opened the circuit: do not hammer it
                await asyncio.sleep(wait)
                attempt += 1
                continue
            except BaseException:
                self.circuits.release(circuit)
                raise
            self.circuits.record_success(circuit)
            # The trace names the model as config does, and counts this model's attempts; a
            # backend's detail (a restarted local server's crash report) is capped like a failure's.
            steps = tuple(s.model_copy(update={"model": name, "attempt": attempt, "detail": capped_detail(s.detail)})
                          for s in response.attempts)
            return response.model_copy(update={"attempts": steps})

    # --- health ----------------------------------------------------------------------------

    async def health_check(self) -> bool:
        """True when at least one model answers its own health check."""
        results = await asyncio.gather(
            *(self._healthy(name) for name in self.models), return_exceptions=False
        )
        return any(results)

    async def _healthy(self, name: str) -> bool:
        if self._skip_reason(name):
            return False
        return bool(await self.models[name].health_check())

    async def health(self) -> dict[str, dict[str, Any]]:
        """Per model: ``available`` (would be called now), ``reason`` if not, circuit state."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.specs:
            circuit = self.circuits.describe(name)
            reason = self._skip_reason(name)
            if reason is None and circuit["state"] == "open":
                reason = f"circuit open for another {circuit['open_for_s']} s"
            out[name] = {"available": reason is None, "reason": reason, "circuit": circuit}
        return out


def _short_retry_after(exc: ProviderError, limit_s: float) -> float | None:
    """Seconds to wait before retrying the same model, or ``None`` to fall over."""
    if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None and exc.retry_after <= limit_s:
        return exc.retry_after
    return None


def build_llm_router(
    section: LLMSection,
    specs: Mapping[str, ModelSpec],
    *,
    circuits: CircuitBoard,
    local_servers: LocalServerManager | None = None,
) -> LLMRouter:
    """A router over ``providers.llm`` (``section``) with one model per entry of ``specs``
    (the ``models`` table), each built by the registry's ``litellm`` backend.

    ``local_servers`` defaults to the process-wide manager, so a router rebuilt after a
    config reload reuses the local server already running.
    """
    from providers.llm.local_server import default_local_servers
    from providers.registry import backend_class

    servers = local_servers if local_servers is not None else default_local_servers()
    backend = backend_class("llm", "litellm")
    models = {name: backend.from_config(name, spec, local_servers=servers) for name, spec in specs.items()}
    return LLMRouter(section, specs, models, circuits)
