"""The writer's call in auto mode: its chain stops before a model whose report would be thrown away.

In auto mode a report the bundled local model writes is never used: the sources are quoted
instead. Yet when DeepSeek failed at the write step (its circuit still closed), the call went on
down the chain to the local model, which spent 48-65 s of a 2-core machine writing it, and the
job ran past the MCP client's wait. ``ask_writer`` asks the router to end the chain before that
family (``LLMConfig.stop_before``): the call's trace names each model that failed or was passed
over, and the one not asked, with why.
"""

from __future__ import annotations

from typing import Any

from graphs.research.nodes import ask
from providers.base import LLMConfig, LLMProvider, LLMResponse, Message

#: what a passed-over model's reason says when its absence is the setup (no key), not a failure
SETUP_REASONS = (" is not set", "no provider was built")


#: why the local model is not asked to write in auto mode
QUOTED = "auto mode quotes the sources instead of a local model's report"


def not_asked(model: str) -> str:
    return f"{model} not asked: {QUOTED}"


def passed_over(llm: Any, config: LLMConfig, model: str | None = None) -> list[tuple[str, str]]:
    """``(model, reason)`` for each model the router would pass over now ahead of the first it
    would call (its key unset, its circuit open); of ``model`` alone when it is named."""
    ask_router = getattr(llm, "passed_over", None)
    if ask_router is None:
        return []
    lines = ask_router(config.model_copy(update={"prefer": model}) if model else config)
    pairs = [(line.split(": ", 1)[0], line.split(": ", 1)[-1]) for line in lines]
    return [(name, reason) for name, reason in pairs if model is None or name == model]


def failure(reason: str) -> bool:
    """A reason to pass a model over that is a failure (an open circuit, a timeout earlier in
    the job), not the setup (a key unset, where the local model is the writer by design)."""
    return not any(setup in reason for setup in SETUP_REASONS)


async def ask_writer(llm: LLMProvider, messages: list[Message], config: LLMConfig, stop_before: str | None
                     ) -> tuple[LLMResponse | None, list[dict[str, Any]], str, str | None]:
    """``nodes.ask``, its chain ended before the first model of the family ``stop_before``:
    (response or None, trace, error text, the model not asked or None)."""
    if stop_before:
        config = config.model_copy(update={"stop_before": (stop_before, QUOTED)})
    response, trace, error = await ask(llm, messages, config)
    stopped = None if response is not None else next(
        (str(s.get("model")) for s in trace if s.get("outcome") == "skipped" and s.get("skip") == "stopped"), None)
    if stopped is not None:
        error = unanswered(trace[:-1]) or not_asked(stopped)
    return response, trace, error, stopped


def brief(reason: str) -> str:
    """A passed-over model's reason, as a warning names it."""
    if "circuit" in reason:
        return "its circuit is open"
    return "it timed out earlier in this job" if "earlier in this job" in reason else reason[:80]


def unanswered(steps: list[dict[str, Any]]) -> str:
    """The writers of a call's ``steps`` that failed or were passed over for a failure, briefly
    ("deepseek-v3.1-q8: ProviderUnavailable"); "" when none was (no key set is the setup)."""
    return "; ".join(f"{s.get('model')}: {s.get('error_class') or 'failed'}" if s.get("outcome") == "error"
                     else f"{s.get('model')}: {brief(str(s.get('detail')))}"
                     for s in steps if s.get("outcome") == "error"
                     or (s.get("outcome") == "skipped" and failure(str(s.get("detail") or ""))))


def failed_writers(llm: Any, config: LLMConfig) -> str:
    """The writers the router passes over now for a failure, ahead of the one it would call."""
    return "; ".join(f"{model}: {brief(reason)}" for model, reason in passed_over(llm, config) if failure(reason))
