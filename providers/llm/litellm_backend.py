"""One model of the ``models`` table, reached through ``litellm.acompletion``.

The boundary where litellm's exceptions are translated, once, into the error tree:
429 -> ``ProviderRateLimited`` (with Retry-After), timeouts -> ``ProviderTimeout``, refused
connections and 5xx -> ``ProviderUnavailable``, anything else (401, 400, ...) ->
``ProviderError``. Every message is redacted. litellm is imported on first call, with its own
retries off (``num_retries=0``, ``max_retries=0``) and an explicit timeout, so the router, not
litellm, decides what happens after a failure, and with its own logging off (see
``_litellm_logging_off``), as the router traces every attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.credentials import credential, missing_credential
from core.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from core.redact import redact
from providers.base import LLMConfig, LLMResponse, Message, TraceStep
from providers.llm.loop_guard import LoopGuard

if TYPE_CHECKING:
    from core.config import ModelSpec
    from providers.llm.local_server import LocalServerManager

log = logging.getLogger("swarm.llm")

_HEALTH_TIMEOUT_S = 3.0
#: an answer longer than ``max_tokens`` x this many characters is cut there: no tokenizer makes
#: tokens that long on average (English runs ~4), so only a server that ignores ``max_tokens``
#: sends more (a 5 MB answer went whole into the research check, the trace and the result)
CHARS_PER_TOKEN_CAP = 16
#: litellm model prefixes whose api_base answers ``GET /models`` (OpenAI-compatible)
_PROBED_PREFIXES = ("openai/", "deepseek/")
_litellm: Any = None
_warmed = False  # warm_litellm has run in this process
#: litellm's own "this is one of my sub-calls" flag: while it is set, litellm's wrapper skips its
#: success and failure logging for the call (``None`` where this litellm has no such flag).
_litellm_internal_call: ContextVar[bool] | None = None


def load_litellm() -> Any:
    """Import litellm once, offline and quiet (no price-table download, no debug banners)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        # litellm's own log handler writes records below WARNING to *stdout*, from the import on
        # (at DEBUG unless LITELLM_LOG says otherwise): `swarm --json` and the stdio MCP server
        # own stdout. Our records of litellm's calls are the trace and our own loggers.
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)
        import litellm

        litellm.suppress_debug_info = True
        litellm.turn_off_message_logging = True
        litellm.telemetry = False
        # litellm hooks callbacks through CustomLogger methods whose parameters must be named
        # exactly (kwargs, response_obj, start_time, end_time) or events drop silently; we use
        # none: every attempt is traced by the router instead.
        _load_internal_call_flag()
        _litellm = litellm
    return _litellm


def warm_litellm() -> None:
    """Import litellm and what its first call and first failure would import: the OpenAI SDK's
    resources (~450 modules, ~0.7 s on a process's first call to an OpenAI-compatible server) and
    ``fastapi.exceptions`` (litellm maps every error through a guardrail check that imports it:
    ~0.6 s on a process's first failover). For a worker's warm-up, never the MCP server's start."""
    global _warmed
    load_litellm()
    if _warmed:
        return
    for module in ("openai.resources", "fastapi.exceptions"):
        with suppress(ImportError):
            importlib.import_module(module)
    _warmed = True


def _load_internal_call_flag() -> None:
    global _litellm_internal_call
    try:
        from litellm._internal_context import is_internal_call
    except ImportError:
        log.warning(
            "this litellm has no litellm._internal_context.is_internal_call: its failure logging"
            " stays on, and each failed call costs ~10 ms more (failover is slower)"
        )
        return
    _litellm_internal_call = is_internal_call


@contextmanager
def _litellm_logging_off() -> Iterator[None]:
    """Run one litellm call as litellm runs its own sub-calls: without its logging.

    Why: before a failed call's exception reaches us, litellm's wrapper builds its standard
    logging payload and regex-redacts the whole formatted traceback (4-10 KB, ~1 us a
    character) synchronously, on the event loop: 5-11 ms a failure on a 2-core Xeon, most of
    what failing over to the next model cost. We register no litellm callbacks and never read
    that payload (the router traces every attempt, and our errors are redacted by ``redact``),
    so it is pure cost. The flag is reset when the call ends: other litellm users in the
    process keep their logging.
    """
    flag = _litellm_internal_call
    if flag is None:
        yield
        return
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def missing_key_reason(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be called right now, judged without a network call: its key is set
    neither here nor, in a RunPod job, by the job's client (``core.credentials``)."""
    return missing_credential(spec.api_key_env) if spec.api_key_env else None


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Answer with one JSON object and nothing else (no prose, no code fences). "
        f"It must match this JSON Schema:\n{json.dumps(schema, separators=(',', ':'))}"
    )


def with_schema_prompt(messages: list[dict[str, str]], schema: dict[str, Any]) -> list[dict[str, str]]:
    """Add the schema instruction to the system message (or prepend one)."""
    instruction = schema_instruction(schema)
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def structured_params(
    mode: str, messages: list[dict[str, str]], schema: dict[str, Any]
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Messages and extra params that ask for JSON matching ``schema`` in the model's way."""
    if mode == "json_schema":
        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        return messages, {"response_format": fmt}
    if mode == "json_object_schema":
        # llama.cpp's server turns this into a grammar: valid JSON even from a tiny model. Its
        # default repeat_penalty (1.1) breaks the grammar in llama-cpp-python 0.3.36 (checked:
        # unterminated strings and prose after the object), so turn the penalty off here.
        fmt = {"type": "json_object", "schema": schema}
        return messages, {"response_format": fmt, "extra_body": {"repeat_penalty": 1.0}}
    if mode == "json_object":
        return with_schema_prompt(messages, schema), {"response_format": {"type": "json_object"}}
    return with_schema_prompt(messages, schema), {}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _retry_after_of(exc: BaseException) -> float | None:
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if headers:
            found = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            if found is not None:
                return found
    return None


#: litellm reports some connection failures as HTTP 500 (aiohttp's, for Anthropic): their text says so
_NO_CONNECTION = re.compile(
    r"cannot connect to host|connection refused|name or service not known|domain name not found|"
    r"temporary failure in name resolution|nodename nor servname|getaddrinfo failed|"
    r"^(?:\w+: )*(?:\w+Exception - )?connection error\.?$", re.IGNORECASE)
#: "AuthenticationError: AuthenticationError: ..." (litellm's class name, then the same again)
_REPEATED_HEAD = re.compile(r"^(\w+): \1: ")
#: " Handle with `InternalServerError`." and the like: advice to litellm's own callers
_HANDLE_WITH = re.compile(r"\s*Handle with `\w+`\.?")
#: " at 0x7fd3..." in a repr (aiohttp's ``ssl:<ssl.SSLContext object at 0x...>``): noise that differs per run
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def translate_error(exc: BaseException, provider: str, model: str, timeout_s: float,
                    key_env: str | None = None) -> ProviderError:
    """Map one litellm/openai/httpx exception to the error tree, with a secret-free message;
    ``key_env`` (the variable the key came from) is named when the provider refuses the key."""
    import httpx
    import openai

    status = getattr(exc, "status_code", None)
    text = redact(str(exc)).replace("litellm.", "").strip() or type(exc).__name__
    text = _ADDRESS.sub("", _HANDLE_WITH.sub("", _REPEATED_HEAD.sub(r"\1: ", text)))
    if len(text) > 300:
        text = text[:300] + "..."
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        return ProviderTimeout(provider, f"no answer within {timeout_s:g} s", model=model)
    if status == 429 or isinstance(exc, openai.RateLimitError):
        retry_after = _retry_after_of(exc)
        hint = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        return ProviderRateLimited(provider, f"rate limited{hint}: {text}", model=model, retry_after=retry_after)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError) or _NO_CONNECTION.search(text):
        return ProviderUnavailable(provider, f"cannot connect: {text}", model=model)
    if isinstance(status, int) and status >= 500:
        return ProviderUnavailable(provider, f"HTTP {status}: {text}", model=model)
    if isinstance(status, int) and 200 <= status < 300:  # a success status with a body that is no answer
        return ProviderUnavailable(provider, f"unreadable answer (HTTP {status}): {text}", model=model)
    if status in (401, 403) and key_env:
        return ProviderError(provider, f"HTTP {status}: the key in ${key_env} was refused: {text}", model=model)
    prefix = f"HTTP {status}: " if isinstance(status, int) else ""
    return ProviderError(provider, f"{prefix}{text}", model=model)


#: the thinking budget litellm gives each ``reasoning_effort`` (its DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET)
_EFFORT_BUDGETS = {"none": 0, "disable": 0, "minimal": 1024, "low": 1024, "medium": 2048, "high": 4096,
                   "xhigh": 8192, "max": 16384}


def _thinking_budget(extra_params: dict[str, Any]) -> int:
    """The thinking tokens a model's ``extra_params`` give it: Anthropic's (and Gemini's through
    litellm) ``thinking.budget_tokens``, else what litellm turns ``reasoning_effort`` into (an
    effort it does not know counts as the largest, so the answer is never starved)."""
    thinking = extra_params.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and budget > 0:
        return budget
    effort = extra_params.get("reasoning_effort")
    if isinstance(effort, dict):  # the Responses API's {"effort": "high", ...}
        effort = effort.get("effort")
    if effort is None or effort is False or effort == "":  # unset, or YAML's `off`
        return 0
    return _EFFORT_BUDGETS.get(str(effort).lower(), max(_EFFORT_BUDGETS.values()))


def answer_cap(params: dict[str, Any]) -> int:
    """The most characters of answer a call keeps (``CHARS_PER_TOKEN_CAP`` per ``max_tokens``)."""
    return int(params.get("max_tokens") or 0) * CHARS_PER_TOKEN_CAP


async def _stream(litellm: Any, params: dict[str, Any], guard: LoopGuard) -> tuple[str | None, int]:
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
        return int(load_litellm().token_counter(model=model, messages=chat))
    except Exception:  # a tokenizer that cannot load: about four characters a token
        return sum(len(str(m.get("content", ""))) for m in chat) // 4


class LiteLLMModel:
    """An ``LLMProvider`` for one entry of the ``models`` table.

    Args:
        name: the model's name in config (``deepseek-v3.1-q8``, ``local``, ...).
        spec: its ``ModelSpec``.
        local_servers: starts the loopback server of a ``local_server`` model before its first
            call; without one such a model is called as if its server were already running.
    """

    def __init__(self, name: str, spec: ModelSpec, *, local_servers: LocalServerManager | None = None) -> None:
        self.name = name
        self.spec = spec
        self.local_servers = local_servers

    @classmethod
    def from_config(
        cls, name: str, spec: ModelSpec, *, local_servers: LocalServerManager | None = None
    ) -> LiteLLMModel:
        """Registry entry point: ``name`` is a key of the ``models`` table, ``spec`` its entry."""
        return cls(name, spec, local_servers=local_servers)

    @property
    def provider(self) -> str:
        return self.spec.family

    def unavailable_reason(self) -> str | None:
        """A reason to skip this model without calling it (its key variable is unset)."""
        return missing_key_reason(self.spec)

    def _api_key(self) -> str | None:
        reason = missing_key_reason(self.spec)
        if reason:
            raise ProviderUnavailable(self.provider, reason, model=self.name)
        if self.spec.api_key_env:
            return credential(self.spec.api_key_env)
        # A keyless OpenAI-compatible server (the local one) still needs a placeholder.
        return "none" if self.spec.api_base else None

    def _params(self, messages: list[Message], config: LLMConfig, api_key: str | None) -> dict[str, Any]:
        spec = self.spec
        chat = [{"role": m.role, "content": m.content} for m in messages]
        extra: dict[str, Any] = {}
        if config.json_schema is not None:
            chat, extra = structured_params(spec.structured_output, chat, config.json_schema)
        max_tokens = spec.max_output_tokens
        if config.max_tokens is not None:
            # the caller limits the answer; a model that thinks first gets its budget on top
            max_tokens = min(config.max_tokens + _thinking_budget(spec.extra_params), max_tokens)
        params: dict[str, Any] = {
            "model": spec.litellm_model,
            "messages": chat,
            "temperature": config.temperature,
            "max_tokens": max_tokens,
            "timeout": spec.timeout_s,
            "num_retries": 0,
            "max_retries": 0,
            **extra,
        }
        if spec.api_base:
            params["api_base"] = spec.api_base
        if api_key is not None:
            params["api_key"] = api_key
        # free text gets its own decoding settings (penalties against loops); the JSON calls keep
        # theirs, as a penalty breaks llama.cpp's grammar (see structured_params)
        overrides = [spec.extra_params] + ([spec.free_text_params] if config.json_schema is None else [])
        for override in overrides:
            extra_body = {**params.get("extra_body", {}), **override.get("extra_body", {})}
            params.update(override)
            if extra_body:
                params["extra_body"] = extra_body
        return params

    def _cost(self, input_tokens: int, output_tokens: int) -> float:
        price = self.spec.price
        return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6

    def _billed(self, error: ProviderError, input_tokens: int, output_tokens: int) -> ProviderError:
        """``error`` of a call that answered unusably, carrying what it was billed (unknown: none)."""
        error.input_tokens, error.output_tokens = input_tokens, output_tokens
        error.cost_usd = self._cost(input_tokens, output_tokens) if input_tokens or output_tokens else None
        return error

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        """One call, no retries; failures raise a ``ProviderError`` subclass."""
        api_key = self._api_key()
        warm_litellm()  # the process's one-off imports (~2 s with the first failure's) are no provider's latency
        litellm = load_litellm()
        started = time.perf_counter()
        if self.local_servers is not None and self.spec.local_server is not None:
            await self.local_servers.ensure(self.name, self.spec)
        params = self._params(messages, config, api_key)
        guard = LoopGuard() if self.spec.stop_on_loop and config.json_schema is None else None
        note = None
        try:
            # each request whole, not only the gap between bytes: a server that keeps a request alive
            # with a blank line a second (DeepSeek's API while it queues) held it 10 s past timeout_s
            limit = self.spec.timeout_s
            with _litellm_logging_off():
                if guard is not None:
                    async with asyncio.timeout(limit):
                        finish, pieces = await _stream(litellm, params, guard)
                    if finish is None:  # ended with no reason: a server that cut it short to
                        # serve another request (llama.cpp's interrupt_requests) - ask again, whole,
                        # with a timeout of its own (it comes when the server is busiest)
                        log.info("%s: streamed answer ended early (%d tokens); asked again without streaming",
                                 self.name, pieces)
                        guard = None
                        note = f"the streamed answer ended early ({pieces} tokens); asked again without streaming"
                        async with asyncio.timeout(limit):
                            response = await litellm.acompletion(**params)
                else:
                    async with asyncio.timeout(limit):
                        response = await litellm.acompletion(**params)
        except Exception as exc:  # translated once, here; the router decides what follows
            error = translate_error(exc, self.provider, self.name, self.spec.timeout_s, self.spec.api_key_env)
            if isinstance(error, ProviderUnavailable | ProviderTimeout) and self.local_servers is not None:
                # A local server that died shows up here as a bare connection error: say what
                # happened to it instead (signal, uptime, last log lines, log path).
                crash = await self.local_servers.crash_report(self.name)
                if crash is not None:
                    error = ProviderUnavailable(self.provider, crash, model=self.name)
            error.latency_ms = (time.perf_counter() - started) * 1000  # the router's clock holds the import
            raise error from None
        latency = (time.perf_counter() - started) * 1000
        try:
            if guard is not None:
                return self._streamed_response(guard, finish, pieces, params, config, latency)
            return self._to_response(response, config, latency, note, answer_cap(params))
        except ProviderError as error:  # an answer with nothing in it: its time is the call's
            error.latency_ms = latency
            raise

    def _streamed_response(self, guard: LoopGuard, finish: str | None, pieces: int, params: dict[str, Any],
                           config: LLMConfig, latency: float) -> LLMResponse:
        """A streamed answer as a response: its tokens counted from the stream (one piece per token
        from a llama.cpp server; the prompt counted by litellm's tokenizer, as the stream does not)."""
        text = guard.answer.strip()
        input_tokens = _prompt_tokens(self.spec.litellm_model, params["messages"])
        if not text:
            error = ProviderError(self.provider, f"empty answer ({input_tokens} input and {pieces} output tokens,"
                                  " counted from the stream)", model=self.name)
            raise self._billed(error, input_tokens, pieces)
        detail = "streamed; tokens counted from the stream"
        if finish == "overlong":
            cap = answer_cap(params)
            detail = (f"streamed; the server sent more than max_tokens={params['max_tokens']} allows: cut at"
                      f" {cap} characters after {pieces} tokens; tokens counted from the stream")
            text, finish = text[:cap], "length"
        elif finish == "loop":
            detail = (f"streamed; stopped where the answer began to repeat itself ({guard.dropped_chars} characters"
                      f" of repeats cut after {pieces} tokens); tokens counted from the stream")
        step = TraceStep(step=config.step, kind="llm", provider=self.provider, model=self.name, latency_ms=latency,
                         input_tokens=input_tokens, output_tokens=pieces, cost_usd=self._cost(input_tokens, pieces),
                         detail=detail)
        return LLMResponse.from_step(text, step, finish_reason=finish)

    def _to_response(self, response: Any, config: LLMConfig, latency: float, note: str | None = None,
                     cap: int = 0) -> LLMResponse:
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
            what = ("reasoning only, no answer" if (getattr(message, "reasoning_content", None) or "").strip()
                    else "no choices" if not choices else "empty answer")
            billed = f" ({input_tokens} input and {output_tokens} output tokens billed)" if input_tokens or output_tokens else ""
            raise self._billed(ProviderError(self.provider, f"{what}{billed}", model=self.name), input_tokens, output_tokens)
        # no usage reported: the tokens and the cost are unknown, not zero (a paid call read as free)
        known = usage is not None and (input_tokens or output_tokens)
        cost = self._cost(input_tokens, output_tokens) if known else None
        step = TraceStep(
            step=config.step,
            kind="llm",
            provider=self.provider,
            model=self.name,
            latency_ms=latency,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            detail="; ".join(filter(None, [note, None if known else "the server reported no token usage: tokens and cost unknown"])) or None,
        )
        return LLMResponse.from_step(text, step, finish_reason=finish)

    @property
    def probes_network(self) -> bool:
        """Whether ``health_check`` sends a request (an OpenAI-compatible ``api_base``: ``openai/``
        models, and DeepSeek's API, which has ``GET /models`` too) rather than only looking at the key."""
        return bool(self.spec.api_base) and self.spec.litellm_model.startswith(_PROBED_PREFIXES)

    async def health_check(self) -> bool:
        """A cheap real probe: GET ``{api_base}/models`` where the base is OpenAI-compatible,
        else whether the key is set. Never raises."""
        if missing_key_reason(self.spec):
            return False
        if not self.probes_network or not self.spec.api_base:
            return True
        import httpx

        headers = {}
        if self.spec.api_key_env:
            headers["Authorization"] = f"Bearer {credential(self.spec.api_key_env)}"
        try:
            async with httpx.AsyncClient(timeout=_HEALTH_TIMEOUT_S) as client:
                reply = await client.get(self.spec.api_base.rstrip("/") + "/models", headers=headers)
        except httpx.HTTPError as exc:
            log.info("health check of %s failed: %s", self.name, redact(type(exc).__name__))
            return False
        return reply.status_code < 400
