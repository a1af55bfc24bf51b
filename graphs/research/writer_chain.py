"""The writer's call in auto mode: its chain stops before a model whose report would be thrown away.

In auto mode a report the bundled local model writes is never used: the sources are quoted
instead. Yet when DeepSeek failed at the write step (its circuit still closed), the call went on
down the chain to the local model, which spent 48-65 s of a 2-core machine writing it, and the
job ran past the MCP client's wait. ``ask_writer`` asks the router to end the chain before that
family (``LLMConfig.stop_before``): the call's trace names each model that failed or was passed
over, and the one not asked, with why. A model passed over for the setup (its key unset) is told
from one passed over for a failure (its circuit open) by the router's kind of skip
(``TraceStep.skip``, ``LLMRouter.skips_ahead``), never by the wording of its reason.
"""

from __future__ import annotations

from typing import Any

from core.errors import BudgetExceeded
from graphs.research.nodes import ask
from providers.base import LLMConfig, LLMProvider, LLMResponse, Message, SkipKind

#: the kinds of skip that are no failure: the setup (a key unset, no provider built: the local
#: model is then the writer by design) and the chain's own stop before a family
NOT_FAILURES: frozenset[SkipKind] = frozenset({"key_unset", "not_built", "stopped"})


#: why the local model is not asked to write in auto mode
QUOTED = "auto mode quotes the sources instead of a local model's report"


def not_asked(model: str) -> str:
    return f"{model} not asked: {QUOTED}"


def passed_over(llm: Any, config: LLMConfig, model: str | None = None) -> list[tuple[str, SkipKind, str]]:
    """``(model, kind, reason)`` for each model the router would pass over now ahead of the first
    it would call (its key unset, its circuit open); of ``model`` alone when it is named."""
    ask_router = getattr(llm, "skips_ahead", None)
    if ask_router is None:
        return []
    skips = ask_router(config.model_copy(update={"prefer": model}) if model else config)
    return [(skip.model, skip.kind, skip.reason) for skip in skips if model is None or skip.model == model]


def failure(kind: str | None) -> bool:
    """Whether a skip of ``kind`` (``TraceStep.skip``) is a failure (an open circuit, a timeout
    earlier in the job, or a skip whose kind is not said), not the setup (a key unset, where the
    local model is the writer by design) nor the chain's stop."""
    return kind not in NOT_FAILURES


async def ask_writer(llm: LLMProvider, messages: list[Message], config: LLMConfig, stop_before: str | None
                     ) -> tuple[LLMResponse | None, list[dict[str, Any]], str, str | None]:
    """``nodes.ask``, its chain ended before the first model of the family ``stop_before``:
    (response or None, trace, error text, the model not asked or None)."""
    if stop_before:
        config = config.model_copy(update={"stop_before": (stop_before, QUOTED)})
    try:
        response, trace, error = await ask(llm, messages, config)
    except BudgetExceeded as exc:  # a writer passed over for the budget, the others failed, and the
        # chain stopped before the local model: the sources are quoted, as when the writers fail
        trace = list(getattr(exc, "billed", None) or [])
        if not any(s.get("skip") == "stopped" for s in trace):
            raise
        response, error = None, str(exc)
    stopped = None if response is not None else next(
        (str(s.get("model")) for s in trace if s.get("outcome") == "skipped" and s.get("skip") == "stopped"), None)
    if stopped is not None:
        error = unanswered(trace[:-1]) or not_asked(stopped)
    return response, trace, error, stopped


#: what a warning says of a model passed over for a failure of these kinds (else its reason)
BRIEFLY: dict[str | None, str] = {"circuit_open": "its circuit is open", "timed_out": "it timed out earlier in this job",
                                   "over_budget": "it would pass the job's budget"}


def brief(kind: str | None, reason: str) -> str:
    """A passed-over model's reason, as a warning names it."""
    return BRIEFLY.get(kind) or reason[:80]


def unanswered(steps: list[dict[str, Any]]) -> str:
    """The writers of a call's ``steps`` that failed or were passed over for a failure, briefly
    ("deepseek-v3.1-q8: ProviderUnavailable"); "" when none was (no key set is the setup)."""
    return "; ".join(f"{s.get('model')}: {s.get('error_class') or 'failed'}" if s.get("outcome") == "error"
                     else f"{s.get('model')}: {brief(s.get('skip'), str(s.get('detail')))}"
                     for s in steps if s.get("outcome") == "error"
                     or (s.get("outcome") == "skipped" and failure(s.get("skip"))))


def failed_writers(llm: Any, config: LLMConfig) -> str:
    """The writers the router passes over now for a failure, ahead of the one it would call."""
    return "; ".join(f"{model}: {brief(kind, reason)}" for model, kind, reason in passed_over(llm, config)
                     if failure(kind))
