"""Per-job token and cost budgets, enforced around the job's LLM provider.

``Providers`` wraps its LLM provider once in ``BudgetedLLM``; ``dispatch`` opens a
``job_scope`` per job, which puts a ``JobMeter`` in a context variable (LangGraph's node tasks
inherit it). Before each call (each model a chain asks) the meter says whether it could pass the
budget of the job's tier (``budgets`` in config); a call it refuses raises ``BudgetExceeded``
carrying the partial result and the attempts so far. After each call it adds the tokens and cost
the call reported, a failed one's too (an empty answer is billed all the same). Outside a job
scope the wrapper only passes calls through.

The estimate is made before each model a call asks (``providers.attempts.preflight``: only the
router knows which model it calls): that model's input tokens ~ characters / 4, plus, where the
call bounds its answer (``max_tokens``), the ``max_tokens`` the model really gets (a model that
always thinks gets its own cap, 16,384 tokens for Opus 5.5, not the caller's 300; a thinking
budget comes on top), with what the call's earlier attempts were billed; the cost at that
model's price in config, else at the job's observed cost per token. A model that could pass the
budget is passed over (``TraceStep.skip`` "over_budget") and the chain goes on to a cheaper one;
when the chain runs dry with one passed over, the call raises ``BudgetExceeded``. An LLM provider
that is no such chain (a test double) is checked once per call, with the caller's
``max_tokens``. Calls that run in parallel are each checked against the totals known when they
start, so a fan-out can overshoot by what its parallel calls use.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import AllProvidersFailed, BudgetExceeded, InputError
from providers.base import (
    Billed,
    LLMConfig,
    LLMResponse,
    Message,
    PlannedAttempt,
    PreflightsAttempts,
    TraceStep,
    job_memory,
    preflight_attempts,
)

if TYPE_CHECKING:
    from core.config import SwarmConfig

#: Key of the job's meter in ``JobContext.extras``.
METER_KEY = "job_meter"


def unknown_cost(step: Mapping[str, Any]) -> bool:
    """Whether ``step`` (a trace step's dict) is a model call that was billed (it answered, or was
    billed for an unusable answer) at a cost nobody knows: a model with no price, a server that
    reported no usage. A sum that leaves it out is no job's cost."""
    tokens = int(step.get("input_tokens") or 0) + int(step.get("output_tokens") or 0)
    billed = step.get("outcome") == "ok" or tokens > 0
    return step.get("kind", "llm") == "llm" and billed and step.get("cost_usd") is None


@dataclass
class JobMeter:
    """What one job's LLM calls used so far, and the limits they must stay within."""

    config: SwarmConfig
    tier: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: a billed call's cost was unknown: ``cost_usd`` is less than the job's, and ``used`` says unknown
    cost_unknown: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: the latest free-text answer (not a structured verdict or plan): the job's partial output
    last_text: str | None = None
    last_step: str | None = None
    #: (step, at) of the answering attempt -> GenAI input/output messages, when capture is on
    content: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def limits(self, tier: str | None) -> tuple[str, int | None, float | None]:
        chosen = tier or self.tier
        spec = self.config.budgets.get(chosen)  # type: ignore[call-overload]
        return chosen, (spec.max_tokens if spec else None), (spec.max_cost_usd if spec else None)

    def reasons(self, llm_config: LLMConfig, estimate: int, cost_usd: float | None = None,
                pending: Sequence[Billed] = ()) -> tuple[str, list[str]]:
        """``(tier, why a call of ~estimate tokens would pass its budget)``; ``cost_usd``: the call
        at its model's price (``None``: at the job's observed cost per token). ``pending``: the
        call's earlier attempts, billed and not counted yet (an empty answer billed 120 tokens)."""
        tier, max_tokens, max_cost = self.limits(llm_config.tier)
        tokens = self.tokens + sum(a.input_tokens + a.output_tokens for a in pending)
        spent = self.cost_usd + sum(a.cost_usd or 0.0 for a in pending)
        reasons = []
        if max_tokens is not None and tokens + estimate > max_tokens:
            reasons.append(f"{tokens} tokens used + ~{estimate} for this call > max_tokens {max_tokens}")
        if max_cost is not None:
            per_token = spent / tokens if tokens else 0.0
            projected = spent + (cost_usd if cost_usd is not None else estimate * per_token)
            if spent >= max_cost or projected > max_cost:
                reasons.append(f"${spent:.4f} spent, ~${projected:.4f} after this call > max_cost_usd {max_cost}")
        return tier, reasons

    def check(self, messages: list[Message], llm_config: LLMConfig) -> None:
        """Raise ``BudgetExceeded`` when this call, with the caller's ``max_tokens``, could take the
        job past its budget (a provider that does not check each model it asks)."""
        estimate = math.ceil(sum(len(m.content) for m in messages) / 4) + (llm_config.max_tokens or 0)
        tier, reasons = self.reasons(llm_config, estimate)
        if reasons:
            raise self.exceeded(llm_config.step, tier, "; ".join(reasons))

    def refuses(self, llm_config: LLMConfig, plan: PlannedAttempt, pending: Sequence[Billed]) -> str | None:
        """Why asking ``plan.model`` could take the job past its budget, or ``None``. A call that
        bounds its answer (``max_tokens``) is held to the cap the model really gets (its own, for a
        model that always thinks; with a thinking budget on top); one that does not is held to its
        input, as before the call (``past_budget`` says what its answer took past the limit)."""
        reserved = plan.max_tokens if llm_config.max_tokens is not None else 0
        cost = None
        if plan.input_cost_usd is not None:
            cost = plan.input_cost_usd + ((plan.output_cost_usd or 0.0) if reserved else 0.0)
        _, reasons = self.reasons(llm_config, plan.input_tokens + reserved, cost, pending)
        return "; ".join(reasons) or None

    def refused_models(self, llm_config: LLMConfig, attempts: Sequence[TraceStep],
                       refused: Mapping[str, str]) -> BudgetExceeded:
        """The error of a call whose chain ran dry after passing models over for the budget
        (``refused``: model -> why): its attempts are counted (billed failures included) and go to
        the job's trace (``add_refused_call``), the passed-over ones with them."""
        self.count([a for a in attempts if a.skip != "over_budget"])
        first = next((n for n, a in enumerate(attempts) if a.skip == "over_budget"), len(attempts))
        target = next((a.model for a in attempts[first:] if a.skip == "over_budget"), None)
        asked = any(a.outcome == "error" for a in attempts[:first])
        what = f"the {llm_config.step!r} call" + (f"'s fallback to {target}" if asked and target else "")
        by_reason: dict[str, list[str]] = {}
        for model, why in refused.items():
            by_reason.setdefault(why, []).append(model)
        said = [why if len(refused) == 1 else f"{', '.join(models)}: {why}" for why, models in by_reason.items()]
        error = self.exceeded(llm_config.step, self.limits(llm_config.tier)[0], "; ".join(said), what)
        # the call's own attempts are in no node's trace (the node never returned): the job's
        # trace gets them from here (``add_refused_call``), before the refused call
        error.billed = [a.model_dump() for a in attempts]  # type: ignore[attr-defined]
        return error

    def past_budget(self) -> str | None:
        """What a finished job says when it used more than its budget: each call is let through on
        an estimate (its input, and the output it asks for; a fallback, with what the attempts
        before it were billed), and what a call writes can take the job past the limit; said,
        never silent."""
        tier, max_tokens, max_cost = self.limits(None)
        over = []
        if max_tokens is not None and self.tokens > max_tokens:
            over.append(f"{self.tokens:,} tokens, over max_tokens {max_tokens:,}")
        if max_cost is not None and self.cost_usd > max_cost:
            over.append(f"${self.cost_usd:.4f}, over max_cost_usd {max_cost}")
        if not over:
            return None
        return (f"the job used {' and '.join(over)} of budgets.{tier}: its last call's answer passed the"
                " limit the estimate before it allowed")

    def exceeded(self, step: str, tier: str, reason: str, what: str | None = None) -> BudgetExceeded:
        message = (
            f"stopped before {what or f'the {step!r} call'}: the {tier} budget would be passed ({reason});"
            f" raise budgets.{tier} in config or use a smaller task"
        )
        error = BudgetExceeded(message, tier=tier, partial=self.partial(step))
        refused = TraceStep(step=step, kind="llm", provider="budget", outcome="skipped",
                            error_class="BudgetExceeded", detail=reason)
        error.refused = refused.model_dump()  # type: ignore[attr-defined]
        error.trace = list(self.attempts)  # type: ignore[attr-defined]
        return error

    def partial(self, stopped_at: str) -> dict[str, Any]:
        return {
            "partial": True,
            "stopped_at": stopped_at,
            "text": self.last_text,
            "text_from": self.last_step,
            "used": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                     "cost_usd": None if self.cost_unknown else round(self.cost_usd, 6)},
        }

    def count(self, attempts: list[TraceStep]) -> None:
        """Add the attempts, failed ones too: an unusable answer's tokens were billed all the same."""
        for attempt in attempts:
            self.input_tokens += attempt.input_tokens
            self.output_tokens += attempt.output_tokens
            self.cost_usd += attempt.cost_usd or 0.0
            self.attempts.append(attempt.model_dump())
            self.cost_unknown = self.cost_unknown or unknown_cost(self.attempts[-1])

    def carry(self, steps: list[dict[str, Any]]) -> None:
        """Count what the steps of an earlier run of this job used (a resumed job's checkpointed
        trace): the budget is the job's, not each run's. A job stopped by its budget and run again
        with the same id finished at twice its limit, and one that kept crashing had none."""
        for step in steps:
            self.input_tokens += int(step.get("input_tokens") or 0)
            self.output_tokens += int(step.get("output_tokens") or 0)
            self.cost_usd += float(step.get("cost_usd") or 0.0)
            self.cost_unknown = self.cost_unknown or unknown_cost(step)

    def record(self, messages: list[Message], llm_config: LLMConfig, response: LLMResponse) -> None:
        attempts = list(response.attempts) or [
            TraceStep(step=llm_config.step, provider=response.provider, model=response.model,
                      input_tokens=response.input_tokens, output_tokens=response.output_tokens,
                      cost_usd=response.cost_usd)
        ]
        self.count(attempts)
        if llm_config.json_schema is None and response.text.strip():
            self.last_text, self.last_step = response.text.strip(), llm_config.step
        if self.config.observability.capture_content:
            answered = attempts[-1]
            self.content[(answered.step, answered.at)] = {
                "input": [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in messages],
                "output": [{"role": "assistant", "parts": [{"type": "text", "content": response.text}]}],
            }


current_meter: contextvars.ContextVar[JobMeter | None] = contextvars.ContextVar("swarm_job_meter", default=None)


def job_tier(config: SwarmConfig, job_input: dict[str, Any] | None) -> str:
    """The job's tier: its input's ``tier``, else the tier that holds ``providers.llm.default``."""
    tier = (job_input or {}).get("tier")
    if isinstance(tier, str) and tier:
        if tier not in config.providers.llm.tiers:  # it ran on the fallback chain's models, said nowhere
            configured = ", ".join(config.providers.llm.tiers)
            raise InputError(f"tier {tier!r} has no models in this config (providers.llm.tiers has {configured});"
                             " give one of those, or add it to config.yaml", field="tier")
        return tier
    llm = config.providers.llm
    return next((name for name, models in llm.tiers.items() if llm.default in models), "balanced")


@contextlib.contextmanager
def job_scope(
    config: SwarmConfig, extras: dict[str, Any], job_input: dict[str, Any] | None = None
) -> Iterator[JobMeter]:
    """Meter every LLM call of the job run inside this block (kept in the job's ``extras``)."""
    meter = JobMeter(config=config, tier=job_tier(config, job_input))
    extras[METER_KEY] = meter
    token = current_meter.set(meter)
    try:
        with job_memory():  # a model that times out is not waited for again in this job
            yield meter
    finally:
        current_meter.reset(token)


def add_refused_call(result: dict[str, Any], exc: Exception) -> None:
    """For a ``BudgetExceeded`` job: the refused call at the end of the trace (its partial output is
    the error's ``partial``, which the dispatcher takes from any error)."""
    if not isinstance(exc, BudgetExceeded):
        return
    result["trace"].extend(getattr(exc, "billed", None) or [])
    refused = getattr(exc, "refused", None)
    if refused:
        result["trace"].append(refused)


class BudgetedLLM:
    """An ``LLMProvider`` that enforces the current job's budget around ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        meter = current_meter.get()
        if meter is None:
            return await self.inner.complete(messages, config)
        if not isinstance(self.inner, PreflightsAttempts):  # a chain checks each model it asks instead
            meter.check(messages, config)
        refused: dict[str, str] = {}  # model -> why the budget passed it over, in this call

        def preflight(plan: PlannedAttempt, attempts: Sequence[Billed]) -> str | None:
            why = meter.refuses(config, plan, attempts)
            if why is None:
                return None
            refused[plan.model] = why
            cap = f"; it is asked for up to {plan.max_tokens} output tokens" if config.max_tokens is not None else ""
            priced = ", at its price" if plan.input_cost_usd is not None else ""
            return f"the {meter.limits(config.tier)[0]} budget would be passed: {why}{cap}{priced}"

        try:
            with preflight_attempts(preflight):
                response = await self.inner.complete(messages, config)
        except AllProvidersFailed as exc:  # what the failed attempts were billed counts against the budget
            attempts = [a if isinstance(a, TraceStep) else TraceStep.model_validate(a) for a in exc.attempts]
            if refused:  # the budget, not the models, ended the call: asked with more, one could answer
                raise meter.refused_models(config, attempts, refused) from exc
            meter.count(attempts)
            raise
        meter.record(messages, config, response)
        return response

    async def health_check(self) -> bool:
        return bool(await self.inner.health_check())

    def __getattr__(self, name: str) -> Any:  # router extras (health, models, ...) stay reachable
        return getattr(self.inner, name)


def budgeted(llm: Any) -> Any:
    """``llm`` wrapped once in ``BudgetedLLM``."""
    return llm if isinstance(llm, BudgetedLLM) else BudgetedLLM(llm)
