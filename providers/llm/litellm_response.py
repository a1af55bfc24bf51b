"""One answer read into an ``LLMResponse``: streamed (ended where it loops or runs past its cap)
or whole, with its tokens and cost; an answer with nothing in it raises a ``ProviderError`` that
carries what the call was billed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import ProviderError
from providers.base import LLMConfig, LLMResponse, TraceStep
from providers.llm import litellm_loader
from providers.llm.litellm_request import answer_cap
from providers.llm.loop_guard import LoopGuard

if TYPE_CHECKING:
    from core.config import ModelSpec


async def stream_answer(litellm: Any, params: dict[str, Any], guard: LoopGuard) -> tuple[str | None, int]:
    """Stream one answer into ``guard`` until it ends, loops (``loop``) or runs past
    ``answer_cap`` (``overlong``): (finish reason, pieces received).

    Closing the stream early hangs up on the server, which stops generating (llama.cpp's does).
    """
    finish: str | None = None
    pieces = 0
    received, cap = 0, answer_cap(params)
    stream = await litellm.acompletion(**params, stream=True)
    try:
        async for chunk in stream:
            choices = getattr(chunk, "choices", None) or []
            if not choices:
                continue
            finish = getattr(choices[0], "finish_reason", None) or finish
            piece = getattr(getattr(choices[0], "delta", None), "content", None)
            if piece:
                pieces += 1
                received += len(piece)
                if guard.feed(piece):
                    return "loop", pieces
                if cap and received > cap:
                    return "overlong", pieces
    finally:
        await stream.aclose()
    # litellm closes every stream with a "stop"; what the server itself sent (None: it hung up
    # before saying why) is kept apart
    return getattr(stream, "received_finish_reason", finish), pieces


def _prompt_tokens(model: str, chat: list[dict[str, Any]]) -> int:
    try:
        return int(litellm_loader.load_litellm().token_counter(model=model, messages=chat))
    except Exception:  # a tokenizer that cannot load: about four characters a token
        return sum(len(str(m.get("content", ""))) for m in chat) // 4


def call_cost(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    """What ``spec``'s price table charges for these tokens, in USD."""
    price = spec.price
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6


def billed(spec: ModelSpec, error: ProviderError, input_tokens: int, output_tokens: int) -> ProviderError:
    """``error`` of a call that answered unusably, carrying what it was billed (unknown: none)."""
    error.input_tokens, error.output_tokens = input_tokens, output_tokens
    error.cost_usd = call_cost(spec, input_tokens, output_tokens) if input_tokens or output_tokens else None
    return error


def billed_stream(spec: ModelSpec, error: ProviderError, guard: LoopGuard | None,
                  params: dict[str, Any]) -> ProviderError:
    """``error`` of a streamed call that failed after pieces of its answer came (a timeout midway),
    carrying what it was billed, counted from the stream as a streamed answer's tokens are: its
    step read 0 tokens and an unknown cost, and the job's totals and budget left it out."""
    if guard is not None and guard.pieces and not (error.input_tokens or error.output_tokens):
        billed(spec, error, _prompt_tokens(spec.litellm_model, params["messages"]), guard.pieces)
    return error


def plus_crashed(spec: ModelSpec, error: ProviderError, crashed: ProviderError | None) -> ProviderError:
    """``error`` of a call asked again after its local server crashed, also carrying what the
    crashed attempt was billed (``crashed``: its error, as ``billed_stream`` left it)."""
    if crashed is None or not (crashed.input_tokens or crashed.output_tokens):
        return error
    return billed(spec, error, error.input_tokens + crashed.input_tokens, error.output_tokens + crashed.output_tokens)


def with_crashed(response: LLMResponse, crashed: ProviderError | None) -> LLMResponse:
    """``response`` of a call asked again after its local server crashed, its usage also counting
    what the crashed attempt was billed (an unknown cost stays unknown)."""
    if crashed is None or not (crashed.input_tokens or crashed.output_tokens):
        return response
    [step] = response.attempts
    cost = None if step.cost_usd is None else step.cost_usd + (crashed.cost_usd or 0.0)
    step = step.model_copy(update={"input_tokens": step.input_tokens + crashed.input_tokens,
                                   "output_tokens": step.output_tokens + crashed.output_tokens, "cost_usd": cost})
    return LLMResponse.from_step(response.text, step, finish_reason=response.finish_reason)


def streamed_response(name: str, spec: ModelSpec, guard: LoopGuard, finish: str | None, pieces: int,
                      params: dict[str, Any], config: LLMConfig, latency: float, note: str | None = None) -> LLMResponse:
    """A streamed answer as a response: its tokens counted from the stream (one piece per token
    from a llama.cpp server; the prompt counted by litellm's tokenizer, as the stream does not);
    ``note``, what happened on the way (a restarted server), leads its trace detail."""
    text = guard.answer.strip()
    input_tokens = _prompt_tokens(spec.litellm_model, params["messages"])
    if not text:
        error = ProviderError(spec.family, f"empty answer ({input_tokens} input and {pieces} output tokens,"
                              " counted from the stream)", model=name)
        raise billed(spec, error, input_tokens, pieces)
    detail = "streamed; tokens counted from the stream"
    if finish == "overlong":
        cap = answer_cap(params)
        detail = (f"streamed; the server sent more than max_tokens={params['max_tokens']} allows: cut at"
                  f" {cap} characters after {pieces} tokens; tokens counted from the stream")
        text, finish = text[:cap], "length"
    elif finish == "loop":
        detail = (f"streamed; stopped where the answer began to repeat itself ({guard.dropped_chars} characters"
                  f" of repeats cut after {pieces} tokens); tokens counted from the stream")
    step = TraceStep(step=config.step, kind="llm", provider=spec.family, model=name, latency_ms=latency,
                     input_tokens=input_tokens, output_tokens=pieces, cost_usd=call_cost(spec, input_tokens, pieces),
                     detail=f"{note}; {detail}" if note else detail)
    return LLMResponse.from_step(text, step, finish_reason=finish)


def to_response(name: str, spec: ModelSpec, response: Any, config: LLMConfig, latency: float,
                note: str | None = None, cap: int = 0) -> LLMResponse:
    """A whole answer as a response, its tokens as the server reported them (none: unknown)."""
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    text = (getattr(message, "content", None) or "").strip()
    finish = getattr(choices[0], "finish_reason", None) if choices else None
    if cap and len(text) > cap:  # a server that ignores max_tokens: what it may say is kept, no more
        note = "; ".join(filter(None, [note, f"the server sent {len(text)} characters, more than max_tokens allows:"
                                             f" cut at {cap}"]))
        text, finish = text[:cap], "length"
    usage = getattr(response, "usage", None)
    input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    if not text:
        # no tools are offered: a model that calls one anyway (finish_reason "tool_calls") gave no answer
        what = ("reasoning only, no answer" if (getattr(message, "reasoning_content", None) or "").strip()
                else "tool calls only, no answer" if getattr(message, "tool_calls", None)
                else "no choices" if not choices else "empty answer")
        tokens = f" ({input_tokens} input and {output_tokens} output tokens billed)" if input_tokens or output_tokens else ""
        raise billed(spec, ProviderError(spec.family, f"{what}{tokens}", model=name), input_tokens, output_tokens)
    # no usage reported: the tokens and the cost are unknown, not zero (a paid call read as free)
    known = usage is not None and (input_tokens or output_tokens)
    cost = call_cost(spec, input_tokens, output_tokens) if known else None
    step = TraceStep(
        step=config.step,
        kind="llm",
        provider=spec.family,
        model=name,
        latency_ms=latency,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        detail="; ".join(filter(None, [note, None if known else "the server reported no token usage: tokens and cost unknown"])) or None,
    )
    return LLMResponse.from_step(text, step, finish_reason=finish)
