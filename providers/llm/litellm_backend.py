"""One model of the ``models`` table, reached through ``litellm.acompletion``.

The call itself lives here; its parts around it live beside it: importing litellm and turning
its logging off (``litellm_loader``), the request (``litellm_request``), reading the answer,
streamed or whole, with its tokens and cost (``litellm_response``), translating litellm's
exceptions, once, into the error tree (``litellm_errors``), the messages fitted to the model's
context window (``context_fit``), and the key check and health probe (``model_access``). litellm is imported on first call, so the router, not litellm, decides what
happens after a failure, and every attempt is traced by the router.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from core.credentials import credential
from core.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from core.redact import redact
from providers.base import LLMConfig, LLMResponse, Message, PlannedAttempt
from providers.llm import litellm_loader
from providers.llm.context_fit import TEMPLATE_TOKENS, ContextFit, estimate_tokens
from providers.llm.litellm_errors import translate_error
from providers.llm.litellm_request import ModelTraits, answer_cap, build_params, model_traits
from providers.llm.litellm_response import (
    Streamed,
    billed_stream,
    call_cost,
    plus_crashed,
    stream_answer,
    streamed_response,
    to_response,
    with_crashed,
)
from providers.llm.loop_guard import LoopGuard
from providers.llm.model_access import missing_key_reason, probe_models, probes_network
from providers.llm.token_counts import COUNT_TIMEOUT_S, litellm_counts, server_counts

if TYPE_CHECKING:
    from core.config import ModelSpec
    from providers.llm.local_server import LocalServerManager
    from providers.llm.local_server_process import LocalServer

log = logging.getLogger("swarm.llm")
#: how a report about another process's server ends (``crash_report``): not so once started again here
NEXT_CALL_STARTS = "; the next call starts a new one"


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
        self._traits: ModelTraits | None = None

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

    def _model_traits(self) -> ModelTraits:
        """What litellm's model list says of this model (``model_traits``), read once per model."""
        if self._traits is None:
            self._traits = model_traits(litellm_loader.load_litellm(), self.spec.litellm_model)
        return self._traits

    def _params(self, messages: list[Message], config: LLMConfig, api_key: str | None) -> dict[str, Any]:
        return build_params(self.spec, messages, config, api_key, self._model_traits())

    def plan_attempt(self, messages: list[Message], config: LLMConfig) -> PlannedAttempt:
        """What a call with ``config`` will send (``PlansAttempts``): the ``max_tokens`` of its request
        (a model that always thinks asks its own cap, not the caller's: ``build_params``), its input at
        about four characters a token (a schema's instruction included), and what each costs at the
        price in config (``None``: it has none)."""
        params = self._params(messages, config, None)
        sent = math.ceil(sum(len(str(m.get("content") or "")) for m in params["messages"]) / 4)
        cap = int(params.get("max_tokens") or 0)
        return PlannedAttempt(model=self.name, input_tokens=sent, max_tokens=cap,
                              input_cost_usd=call_cost(self.spec, sent, 0), output_cost_usd=call_cost(self.spec, 0, cap))

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        """One call; failures raise a ``ProviderError`` subclass. The one retry: a local server
        that exited during the call (a crash, an OOM kill) is started again and asked once more,
        with a timeout of its own (so such a call may last up to twice ``timeout_s`` and a
        start); the crash is said in the answer's trace detail, or leads the error's message.
        Messages past the model's known context window lose their oldest conversation turns first,
        said in the trace detail too (``context_fit``, their tokens counted by the model's own
        tokenizer where it can be reached); where the server still refuses them as too long (a
        stream that broke before its first token is asked once whole to learn why), they are
        fitted again and asked once more. The counting and every request of a fitted attempt share
        one deadline, ``timeout_s`` from its start (a stream the server cut short is asked again
        whole with a timeout of its own); a restart starts a new one."""
        api_key = self._api_key()
        litellm_loader.warm_litellm()  # the process's one-off imports (~2 s with the first failure's) are no provider's latency
        litellm = litellm_loader.load_litellm()
        self._model_traits()  # read before the clock starts, as litellm's import is
        started = time.perf_counter()
        manager = self.local_servers if self.spec.local_server is not None else None
        if manager is not None:
            await manager.ensure(self.name, self.spec)
        deadline = asyncio.get_running_loop().time() + self.spec.timeout_s
        fit = await self._fitted(litellm, self._params(messages, config, api_key), deadline)
        use_guard = self.spec.stop_on_loop and config.json_schema is None
        restarted: str | None = None
        crashed: ProviderError | None = None  # the attempt whose server crashed, with what it was billed
        while True:
            guard = LoopGuard() if use_guard else None
            used = manager.serving(self.name) if manager is not None else None
            try:
                streamed, response, note = await self._fitted_exchange(litellm, fit, guard, deadline)
                break
            except Exception as exc:  # translated once, here; the router decides what follows
                error, crash = await self._failure(exc, started, used)
                billed_stream(self.spec, error, guard, fit.params)
                if restarted is not None:
                    raise self._after_restart(error, restarted, started, crashed) from None
                if manager is None or crash is None:
                    raise error from None
                crashed = error
            restarted = crash.removesuffix(NEXT_CALL_STARTS)
            log.warning("%s: %s; starting it again and asking once more", self.name, restarted)
            try:
                await manager.ensure(self.name, self.spec)
            except ProviderError as exc:
                raise self._after_restart(exc, restarted, started, crashed) from None
            deadline = asyncio.get_running_loop().time() + self.spec.timeout_s
        if response is not None:  # asked whole (a streamed answer that ended early, too)
            guard = None
        again = f"{restarted}; started it again and asked once more" if restarted is not None else None
        note = "; ".join(n for n in (fit.note, again, note) if n) or None
        latency = (time.perf_counter() - started) * 1000
        try:
            if guard is not None and streamed is not None:
                answer = streamed_response(self.name, self.spec, guard, streamed, fit.params, config, latency, note)
            else:
                answer = to_response(self.name, self.spec, response, config, latency, note, answer_cap(fit.params))
        except ProviderError as error:  # an answer with nothing in it: its time is the call's
            error.latency_ms = latency
            plus_crashed(self.spec, error, crashed)
            raise
        return with_crashed(answer, crashed)

    def _after_restart(self, error: ProviderError, crash: str, started: float,
                       crashed: ProviderError | None) -> ProviderError:
        """The error of a call whose server exited and was started again: the crash first, then
        what went wrong after it (a second crash, a timeout, a start that failed); billed for
        both attempts (``crashed``: the first one's error, with what its stream was billed)."""
        plus_crashed(self.spec, error, crashed)
        said = str(error).removeprefix(f"{error.provider} ({error.model}): " if error.model else f"{error.provider}: ")
        # the same error (its class decides what the router does next), its message with the crash
        # first: ``message`` too, which the router's trace step (and so the all-failed error) reads
        error.message = f"{crash}; started it again and asked once more: {said}"
        error.args = (f"{self.provider} ({self.name}): {error.message}",)
        error.latency_ms = (time.perf_counter() - started) * 1000
        return error

    async def _fitted(self, litellm: Any, params: dict[str, Any], deadline: float) -> ContextFit:
        """``params`` with a thread's oldest turns left out (or a prompt's one message cut) where
        they would not fit the model's window beside its answer; their tokens counted by a local
        server's own tokenizer (within ``COUNT_TIMEOUT_S``, and before ``deadline``), or by
        litellm for a hosted model; nothing counted where the window is unknown."""
        window = self.spec.context_window
        if window is None or estimate_tokens(params["messages"]) <= window - int(params.get("max_tokens") or 0) - TEMPLATE_TOKENS:
            # unknown, or it fits by the estimate (more tokens than prose has): nothing to count
            # (a busy local server counts only between two answers)
            return ContextFit(self.name, params, window)
        texts = [str(m.get("content") or "") for m in params["messages"]]
        if self.spec.local_server is not None and self.spec.api_base:
            left = deadline - asyncio.get_running_loop().time()
            weights = f"{self.spec.api_base}|{self.spec.local_server.gguf}"
            counts = await server_counts(self.spec.api_base, weights, texts, min(COUNT_TIMEOUT_S, left))
        else:
            # tiktoken over a long prompt: off the event loop, which every other job shares
            counts = await asyncio.to_thread(litellm_counts, litellm, self.spec.litellm_model, texts)
        return ContextFit(self.name, params, window, counts)

    async def _fitted_exchange(self, litellm: Any, fit: ContextFit, guard: LoopGuard | None,
                               deadline: float) -> tuple[Streamed | None, Any, str | None]:
        """``_exchange``, and where the server refuses the prompt as past its window although
        earlier turns are left to leave out, once more without them (``ContextFit.refit``); every
        request before ``deadline`` (the loop's clock)."""
        try:
            return await self._exchange(litellm, fit.params, guard, deadline)
        except Exception as exc:  # litellm's ContextWindowExceededError, an HTTP 400: read by its text
            error = exc
        if guard is not None and not guard.pieces and fit.window is not None and self._unavailable(error):
            # llama-cpp-python's server fails a streamed prompt past its window inside the stream:
            # the connection drops (or the stream breaks) with no word why; asked whole, it says so
            # (and with its count, from which ``refit`` leaves more out)
            log.info("%s: the stream failed before its first token; asked again without streaming", self.name)
            try:  # litellm's logging off, as for every call of ours (``_exchange``)
                with litellm_loader.litellm_logging_off():
                    async with asyncio.timeout_at(deadline):
                        return None, await litellm.acompletion(**fit.params), None
            except Exception as exc:
                error = exc
        if getattr(error, "status_code", None) != 400 or not fit.refit(str(error)):
            raise error
        log.info("%s: the server refused the prompt as past its %s-token window; asked again with %s",
                 self.name, fit.window, fit.note)
        return await self._exchange(litellm, fit.params, guard, deadline)

    def _unavailable(self, exc: Exception) -> bool:
        """Whether ``exc`` is a connection lost or a server error (not a timeout, not a refusal)."""
        return type(translate_error(exc, self.provider, self.name, self.spec.timeout_s)) is ProviderUnavailable

    async def _exchange(self, litellm: Any, params: dict[str, Any], guard: LoopGuard | None,
                        deadline: float) -> tuple[Streamed | None, Any, str | None]:
        """One request, answered before ``deadline``: ``(streamed, None, note)`` streamed through
        ``guard``, or ``(None, response, note)`` whole (also when a streamed answer ended early:
        asked again with ``timeout_s`` of its own)."""
        # each request whole, not only the gap between bytes: a server that keeps a request alive
        # with a blank line a second (DeepSeek's API while it queues) held it 10 s past timeout_s
        limit = self.spec.timeout_s
        with litellm_loader.litellm_logging_off():
            if guard is not None:
                async with asyncio.timeout_at(deadline):
                    streamed = await stream_answer(litellm, params, guard)
                if streamed.finish is not None:
                    return streamed, None, None
                # ended with no reason: a server that cut it short to serve another request
                # (llama.cpp's interrupt_requests) - ask again, whole, with a timeout of its own
                # (it comes when the server is busiest)
                log.info("%s: streamed answer ended early (%d tokens); asked again without streaming",
                         self.name, streamed.pieces)
                note = f"the streamed answer ended early ({streamed.pieces} tokens); asked again without streaming"
                async with asyncio.timeout(limit):
                    return None, await litellm.acompletion(**params), note
            async with asyncio.timeout_at(deadline):
                return None, await litellm.acompletion(**params), None

    async def _failure(self, exc: Exception, started: float,
                       used: LocalServer | None = None) -> tuple[ProviderError, str | None]:
        """The error a failed call raises: ``exc`` translated, or what happened to a local server
        (then also that report: the server exited and is forgotten, so ``ensure`` starts it again)."""
        error = translate_error(exc, self.provider, self.name, self.spec.timeout_s, self.spec.api_key_env,
                                self.spec.litellm_model_env)
        crash = None
        if isinstance(error, ProviderUnavailable | ProviderTimeout) and self.local_servers is not None:
            # A local server that died shows up here as a bare connection error: say what
            # happened to it instead (signal, uptime, last log lines, log path).
            crash = await self.local_servers.crash_report(self.name, used)
            if crash is not None:
                error = ProviderUnavailable(self.provider, crash, model=self.name)
        error.latency_ms = (time.perf_counter() - started) * 1000  # the router's clock holds the import
        return error, crash

    @property
    def probes_network(self) -> bool:
        """Whether ``health_check`` sends a request (an OpenAI-compatible ``api_base``: ``openai/``
        models, and DeepSeek's API, which has ``GET /models`` too) rather than only looking at the key."""
        return probes_network(self.spec)

    async def health_check(self) -> bool:
        """A cheap real probe: GET ``{api_base}/models`` where the base is OpenAI-compatible,
        else whether the key is set. Never raises."""
        if missing_key_reason(self.spec):
            return False
        if not self.probes_network or not self.spec.api_base:
            return True
        found = await probe_models(self.spec)
        if found.error_class is not None:
            log.info("health check of %s failed: %s", self.name, redact(found.error_class))
        return found.ok
