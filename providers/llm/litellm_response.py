"""One answer read into an ``LLMResponse``: streamed (ended where it loops or runs past its cap)
or whole, with its tokens and cost; an answer with nothing in it raises a ``ProviderError`` that
carries what the call was billed.

Tokens are the server's own count where it sends one: a whole answer's ``usage``, a streamed
one's last usage chunk (asked for with ``stream_options.include_usage``). Its input counts what
the provider's cache served (DeepSeek's ``prompt_cache_hit_tokens``, OpenAI's
``prompt_tokens_details.cached_tokens``, Anthropic's cache reads and writes, which litellm adds to
``prompt_tokens``), its output the reasoning (Gemini's thoughts, which litellm adds to
``completion_tokens``, DeepSeek's and OpenAI's reasoning tokens, Claude's thinking). The input
the cache served or stored is charged at the price's ``cached_input_per_mtok`` and
``cache_write_per_mtok`` where they are written, else at the input rate, and the step's detail
says which. A stream with no usage is counted here and said to be an estimate; a model with no
``price`` in config costs an unknown amount (``None``), never $0.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ProviderError
from providers.base import LLMConfig, LLMResponse, TraceStep
from providers.llm import litellm_loader
from providers.llm.litellm_request import CHARS_PER_TOKEN_CAP, answer_cap
from providers.llm.loop_guard import LoopGuard

if TYPE_CHECKING:
    from core.config import ModelSpec
    from core.config_prices import Rates

#: the detail of a streamed answer whose server sent no usage (or that was ended here before it did)
ESTIMATED = "tokens estimated (the server sent no usage): the prompt by litellm's tokenizer, the answer a token a piece"


@dataclass(frozen=True, slots=True)
class Streamed:
    """How one streamed answer ended: ``finish``, the server's reason (``None``: it hung up before
    saying one; ``loop`` or ``overlong``: ended here); the ``pieces`` of answer text and the
    ``thought`` pieces of reasoning received; ``usage``, what the server itself said the call used
    (``None``: it sent none, or the stream was ended here before its end)."""

    finish: str | None
    pieces: int
    thought: int = 0
    usage: Any = None


async def stream_answer(litellm: Any, params: dict[str, Any], guard: LoopGuard) -> Streamed:
    """Stream one answer into ``guard`` until it ends, loops (``loop``) or runs past
    ``answer_cap`` (``overlong``).

    Closing the stream early hangs up on the server, which stops generating (llama.cpp's does).
    """
    finish: str | None = None
    pieces = thought = 0
    received, cap = 0, answer_cap(params)
    # the usage at the stream's end, where the server sends one (DeepSeek's and OpenAI's APIs, asked;
    # litellm asks Anthropic's and Gemini's its own way; llama-cpp-python's server sends none)
    stream = await litellm.acompletion(**{**params, "stream": True, "stream_options": {"include_usage": True}})
    try:
        async for chunk in stream:
            choices = getattr(chunk, "choices", None) or []
            if not choices:
                continue
            finish = getattr(choices[0], "finish_reason", None) or finish
            delta = getattr(choices[0], "delta", None)
            if getattr(delta, "reasoning_content", None):  # billed as output, never part of the answer
                thought += 1
            piece = getattr(delta, "content", None)
            if piece:
                pieces += 1
                received += len(piece)
                if guard.feed(piece):
                    return Streamed("loop", pieces, thought)
                if cap and received > cap:
                    return Streamed("overlong", pieces, thought)
    finally:
        await stream.aclose()
    # litellm closes every stream with a "stop"; what the server itself sent (None: it hung up
    # before saying why) is kept apart
    return Streamed(getattr(stream, "received_finish_reason", finish), pieces, thought, _server_usage(stream))


def _server_usage(stream: Any) -> Any:
    """The last usage among the chunks the server sent (litellm keeps them in ``chunks``; the last
    holds the totals), or ``None``: never the usage litellm makes up with its own tokenizer for a
    stream that carried none, which is all a caller reading the chunks gets with include_usage."""
    kept = getattr(stream, "chunks", None) or []
    return next((usage for chunk in reversed(kept) if (usage := getattr(chunk, "usage", None)) is not None), None)


def usage_tokens(usage: Any) -> tuple[int, int]:
    """(input, output) tokens of a usage object as litellm gives it (none: 0, 0)."""
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


@dataclass(frozen=True, slots=True)
class CacheUse:
    """The input tokens of one call that the provider's cache served (``read``) or stored
    (``written``): part of its input tokens, each charged at its own rate where the price has one."""

    read: int = 0
    written: int = 0

    def within(self, input_tokens: int) -> CacheUse:
        """These counts, never more than ``input_tokens`` together (a usage that says otherwise)."""
        read = max(0, min(self.read, input_tokens))
        return CacheUse(read, max(0, min(self.written, input_tokens - read)))


NO_CACHE = CacheUse()


def cache_use(usage: Any) -> CacheUse:
    """What a usage says the provider's cache served (DeepSeek's ``prompt_cache_hit_tokens``,
    OpenAI's and Gemini's ``prompt_tokens_details.cached_tokens``, Anthropic's cache reads) and
    stored (Anthropic's ``cache_creation_input_tokens``)."""
    details = getattr(usage, "prompt_tokens_details", None)
    read = getattr(details, "cached_tokens", None) or getattr(usage, "prompt_cache_hit_tokens", None) or 0
    written = getattr(details, "cache_creation_tokens", None) or getattr(usage, "cache_creation_input_tokens", None) or 0
    return CacheUse(int(read), int(written))


def _rate(value: float | None, key: str) -> str:
    return f"{key} (${value:g} per million)" if value is not None else f"the input rate (the price sets no {key})"


def utc_now() -> datetime.datetime:
    """The time a call's answer is priced at (a test sets it)."""
    return datetime.datetime.now(datetime.UTC)


def rates_now(spec: ModelSpec) -> tuple[Rates, str | None]:
    """The rates ``spec``'s price charges now (its peak hours' where it has them), and a note when
    those are the peak rates."""
    return spec.price.at(utc_now())


def cache_note(spec: ModelSpec, input_tokens: int, cache: CacheUse) -> str | None:
    """How the call's input was priced: at peak-hour rates (where the price has them and it is one of
    those hours), what the provider's cache served (read) or stored (written) of it, and the rate each
    part was charged at (``call_cost``). ``None`` where neither applies."""
    peak = rates_now(spec)[1] if priced(spec) else None
    return "; ".join(filter(None, [peak, _cache_part(spec, input_tokens, cache)])) or None


def _cache_part(spec: ModelSpec, input_tokens: int, cache: CacheUse) -> str | None:
    cache = cache.within(input_tokens)
    parts = [f"{cache.read} read from" if cache.read else "", f"{cache.written} written to" if cache.written else ""]
    said = " and ".join(p for p in parts if p)
    if not said:
        return None
    head = f"input tokens: {said} the provider's cache"
    if not priced(spec):
        return head
    price, _ = rates_now(spec)
    used = [(n, what, value, key) for n, what, value, key in (
        (cache.read, "read from the provider's cache", price.cached_input_per_mtok, "cached_input_per_mtok"),
        (cache.written, "written to it", price.cache_write_per_mtok, "cache_write_per_mtok")) if n]
    if all(value is None for _, _, value, _ in used):
        keys = " or ".join(key for *_, key in used)
        return f"{head}, priced at the input rate (the price sets no {keys})"
    charged = ", ".join(f"{n} {what}, charged at {_rate(value, key)}" for n, what, value, key in used)
    rest = input_tokens - cache.read - cache.written
    return f"input tokens: {charged}; the other {rest} at the input rate (${price.input_per_mtok:g} per million)"


def _prompt_tokens(model: str, chat: list[dict[str, Any]]) -> int:
    try:
        return int(litellm_loader.load_litellm().token_counter(model=model, messages=chat))
    except Exception:  # a tokenizer that cannot load: about four characters a token
        return sum(len(str(m.get("content", ""))) for m in chat) // 4


def priced(spec: ModelSpec) -> bool:
    """Whether config gives ``spec`` a price: both rates written (``0`` for a free model); an
    unwritten one read 0, and a paid call was said to cost $0."""
    return "price" in spec.model_fields_set and {"input_per_mtok", "output_per_mtok"} <= spec.price.model_fields_set


def call_cost(spec: ModelSpec, input_tokens: int, output_tokens: int, cache: CacheUse = NO_CACHE) -> float | None:
    """What ``spec``'s price table charges for these tokens, in USD; ``None``: it has no price.
    ``cache``: the part of the input the provider's cache served or stored, charged at the price's
    ``cached_input_per_mtok`` and ``cache_write_per_mtok`` (unset: the input rate)."""
    if not priced(spec):
        return None
    (price, _), cache = rates_now(spec), cache.within(input_tokens)
    read_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    write_rate = price.input_per_mtok if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    plain = input_tokens - cache.read - cache.written
    return (plain * price.input_per_mtok + cache.read * read_rate + cache.written * write_rate
            + output_tokens * price.output_per_mtok) / 1e6


def billed(spec: ModelSpec, error: ProviderError, input_tokens: int, output_tokens: int,
           cache: CacheUse = NO_CACHE) -> ProviderError:
    """``error`` of a call that answered unusably, carrying what it was billed (unknown: none)."""
    error.input_tokens, error.output_tokens = input_tokens, output_tokens
    error.cost_usd = call_cost(spec, input_tokens, output_tokens, cache) if input_tokens or output_tokens else None
    return error


def billed_stream(spec: ModelSpec, error: ProviderError, guard: LoopGuard | None,
                  params: dict[str, Any]) -> ProviderError:
    """``error`` of a streamed call that failed after pieces of its answer came (a timeout midway),
    carrying what it was billed, estimated as a stream with no usage is: its step read 0 tokens and
    an unknown cost, and the job's totals and budget left it out."""
    if guard is not None and guard.pieces and not (error.input_tokens or error.output_tokens):
        billed(spec, error, _prompt_tokens(spec.litellm_model, params["messages"]), guard.pieces)
    return error


def plus_crashed(spec: ModelSpec, error: ProviderError, crashed: ProviderError | None) -> ProviderError:
    """``error`` of a call asked again after its local server crashed, also carrying what the
    crashed attempt was billed (``crashed``: its error, as ``billed_stream`` left it)."""
    if crashed is None or not (crashed.input_tokens or crashed.output_tokens):
        return error
    # each attempt's own cost summed: what the cache served in one is charged at its own rate
    own = error.cost_usd if error.input_tokens or error.output_tokens else 0.0
    error.input_tokens += crashed.input_tokens
    error.output_tokens += crashed.output_tokens
    error.cost_usd = None if own is None or crashed.cost_usd is None else own + crashed.cost_usd
    return error


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


def _stream_tokens(spec: ModelSpec, streamed: Streamed,
                   params: dict[str, Any]) -> tuple[int, int, CacheUse, str | None]:
    """(input, output, what the cache served, how they were counted) of a streamed answer: as the
    server reported them, else estimated (the reasoning pieces counted as output too: billed as output)."""
    if streamed.usage is not None and any(usage_tokens(streamed.usage)):
        input_tokens, output_tokens = usage_tokens(streamed.usage)
        cache = cache_use(streamed.usage)
        return input_tokens, output_tokens, cache, cache_note(spec, input_tokens, cache)
    estimated = _prompt_tokens(spec.litellm_model, params["messages"])
    return estimated, streamed.pieces + streamed.thought, NO_CACHE, ESTIMATED


def streamed_response(name: str, spec: ModelSpec, guard: LoopGuard, streamed: Streamed, params: dict[str, Any],
                      config: LLMConfig, latency: float, note: str | None = None) -> LLMResponse:
    """A streamed answer as a response, its tokens as the server reported them, else estimated
    (``_stream_tokens``); ``note``, what happened on the way (a restarted server), leads its trace detail."""
    text, finish, pieces = guard.answer.strip(), streamed.finish, streamed.pieces
    input_tokens, output_tokens, cache, how = _stream_tokens(spec, streamed, params)
    if not text:
        said = ", estimated" if how == ESTIMATED else ""
        error = ProviderError(spec.family, f"empty answer ({input_tokens} input and {output_tokens} output tokens"
                              f" billed{said})", model=name)
        raise billed(spec, error, input_tokens, output_tokens, cache)
    detail = "streamed"
    if finish == "overlong":
        cap = answer_cap(params)
        detail = (f"streamed; the server sent more than max_tokens={params['max_tokens']} allows: cut at"
                  f" {cap} characters after {pieces} tokens")
        text, finish = text[:cap], "length"
    elif finish == "loop":
        detail = (f"streamed; stopped where the answer began to repeat itself ({guard.dropped_chars} characters"
                  f" of repeats cut after {pieces} tokens)")
    step = TraceStep(step=config.step, kind="llm", provider=spec.family, model=name, latency_ms=latency,
                     input_tokens=input_tokens, output_tokens=output_tokens,
                     cost_usd=call_cost(spec, input_tokens, output_tokens, cache),
                     detail="; ".join(filter(None, [note, detail, how])))
    return LLMResponse.from_step(text, step, finish_reason=finish)


#: the finish reason of an answer the model declined to give (Claude's stop_reason ``refusal``, Gemini's
#: ``SAFETY``: litellm says ``content_filter`` of both), what it wrote before stopping included
REFUSED = "content_filter"


def _no_answer(name: str, message: Any, choices: Any, finish: str | None, max_tokens: int, used: int) -> str:
    """Why a whole answer gives the caller nothing: refused, thought to its token limit (``used``
    output tokens of ``max_tokens``), or empty."""
    if finish == REFUSED:
        # Anthropic: a refusal may stop an answer midway; what came before it is no answer either
        return "the model declined to answer (stop_reason refusal or a content filter): what it wrote is left out"
    if (getattr(message, "reasoning_content", None) or "").strip():
        if finish == "length" and max_tokens and used >= max_tokens:  # a model that thinks on every call
            return (f"reasoning only, no answer: the thinking used all of max_tokens={max_tokens} (stop_reason max_tokens);"
                    f" raise models.{name}.max_output_tokens or lower its reasoning_effort")
        return "reasoning only, no answer"
    # no tools are offered: a model that calls one anyway (finish_reason "tool_calls") gave no answer
    if getattr(message, "tool_calls", None):
        return "tool calls only, no answer"
    return "no choices" if not choices else "empty answer"


def to_response(name: str, spec: ModelSpec, response: Any, config: LLMConfig, latency: float,
                note: str | None = None, cap: int = 0) -> LLMResponse:
    """A whole answer as a response, its tokens as the server reported them (none: unknown)."""
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    text = (getattr(message, "content", None) or "").strip()
    finish = getattr(choices[0], "finish_reason", None) if choices else None
    if cap and len(text) > cap and finish != REFUSED:  # a server that ignores max_tokens: what it may say is kept
        note = "; ".join(filter(None, [note, f"the server sent {len(text)} characters, more than max_tokens allows:"
                                             f" cut at {cap}"]))
        text, finish = text[:cap], "length"
    usage = getattr(response, "usage", None)
    input_tokens, output_tokens = usage_tokens(usage)
    cache = cache_use(usage)
    if not text or finish == REFUSED:
        what = _no_answer(name, message, choices, finish, cap // CHARS_PER_TOKEN_CAP, output_tokens)
        tokens = f" ({input_tokens} input and {output_tokens} output tokens billed)" if input_tokens or output_tokens else ""
        raise billed(spec, ProviderError(spec.family, f"{what}{tokens}", model=name), input_tokens, output_tokens, cache)
    # no usage reported: the tokens and the cost are unknown, not zero (a paid call read as free)
    known = usage is not None and (input_tokens or output_tokens)
    how = cache_note(spec, input_tokens, cache) if known else "the server reported no token usage: tokens and cost unknown"
    step = TraceStep(
        step=config.step,
        kind="llm",
        provider=spec.family,
        model=name,
        latency_ms=latency,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=call_cost(spec, input_tokens, output_tokens, cache) if known else None,
        detail="; ".join(filter(None, [note, how])) or None,
    )
    return LLMResponse.from_step(text, step, finish_reason=finish)
