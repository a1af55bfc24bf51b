"""A loopback OpenAI-compatible chat server that can answer, fail, throttle or hang on cue.

Tests and ``bench/`` point litellm at it (``openai/<model>`` with ``api_base=server.url + "/v1"``)
to exercise the real HTTP path. What a request gets is chosen by its model name:

- scripted with ``server.script(model, Behaviour...)`` (played in order, the last repeats), or
- by the name itself: ``status-503``, ``ratelimit-1.5`` (429, Retry-After 1.5), ``ratelimit``
  (429 without Retry-After), ``hang``, ``malformed``, ``empty``, ``echo``, ``slow-0.5`` (answers
  ``"ok from slow-0.5"`` after 0.5 s); anything else answers ``"ok from <model>"``.

Every request is recorded in ``server.requests`` so a test can assert what was sent, with the
moments (``time.monotonic()``) it arrived and was answered: ``started``, ``finished``. The local
model manager's canary completion (sent before it adopts a server on its port) is answered
aside, like a healthy llama server would, and counted in ``server.canaries`` instead: it does
not consume a scripted behaviour. Set ``server.canary_ok = False`` to make it fail (HTTP 500).
``RefusedPort`` gives a port that refuses connections (bound, never listening).

Set ``server.context_tokens`` to refuse, as llama.cpp's server does, a chat request whose prompt
has that many tokens or more (counted as ``prompt_tokens``: ``chars_per_token`` characters a token
plus ``MESSAGE_TOKENS`` a message): HTTP 400 with llama-cpp-python's "maximum context length" error,
or, asked to stream, a stream that breaks before its first chunk (llama-cpp-python 0.3.36 raises
inside its event stream: the client reads a dropped connection, never why).
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

#: the tokens ``FakeOpenAI.prompt_tokens`` counts for each message's chat template
MESSAGE_TOKENS = 5

Kind = Literal["answer", "echo", "status", "rate_limit", "hang", "malformed", "empty", "keepalive"]


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request."""

    kind: Kind = "answer"
    text: str = "ok"
    status: int = 500
    retry_after: float | None = None
    hang_s: float = 30.0
    delay_s: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    #: a streamed answer (``"stream": true``) sends one word per chunk, this long apart
    token_delay_s: float = 0.0
    #: a streamed answer ends after this many words with no finish reason, as llama.cpp's server
    #: ends one it interrupts for another request
    stream_cut_after: int | None = None
    #: the completion carries a ``usage`` object (some OpenAI-compatible servers send none)
    usage: bool = True

    @classmethod
    def answer(cls, text: str = "ok", **kw: Any) -> Behaviour:
        return cls("answer", text=text, **kw)

    @classmethod
    def echo(cls) -> Behaviour:
        """Answer with the last user message."""
        return cls("echo")

    @classmethod
    def fail(cls, status: int = 500) -> Behaviour:
        return cls("status", status=status)

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> Behaviour:
        return cls("rate_limit", status=429, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Behaviour:
        """Accept the request and say nothing for ``seconds`` (past any sane client timeout)."""
        return cls("hang", hang_s=seconds)

    @classmethod
    def malformed(cls) -> Behaviour:
        """HTTP 200 with a body that is not JSON."""
        return cls("malformed")

    @classmethod
    def keepalive(cls, seconds: float, text: str = "late answer") -> Behaviour:
        """HTTP 200 at once, then a blank line every 0.25 s for ``seconds`` (what DeepSeek's API
        sends while a request waits in its queue), then the answer: no read ever waits long."""
        return cls("keepalive", text=text, hang_s=seconds)

    @classmethod
    def empty(cls) -> Behaviour:
        """A well-formed completion whose content is empty."""
        return cls("empty", text="")


def behaviour_for_name(model: str) -> Behaviour:
    """The behaviour a model name selects when nothing was scripted for it."""
    head, _, arg = model.partition("-")
    if head == "status" and arg.isdigit():
        return Behaviour.fail(int(arg))
    if head == "ratelimit":
        return Behaviour.rate_limited(float(arg) if arg else None)
    if head == "slow" and arg.replace(".", "", 1).isdigit():
        return Behaviour.answer(f"ok from {model}", delay_s=float(arg))
    table: dict[str, Behaviour] = {
        "hang": Behaviour.hang(),
        "malformed": Behaviour.malformed(),
        "empty": Behaviour.empty(),
        "echo": Behaviour.echo(),
    }
    return table.get(model, Behaviour.answer(f"ok from {model}"))


@dataclass
class RecordedRequest:
    method: str
    path: str
    model: str | None
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    #: a streamed answer: chunks sent, whether the stream has ended, and whether the client hung
    #: up before the last chunk
    chunks_sent: int = 0
    stream_ended: bool = False
    hung_up: bool = False


class FakeOpenAI:
    """The server; use as a context manager or call ``start()``/``stop()``.

    Attributes:
        url: ``http://127.0.0.1:<port>`` (append ``/v1`` for an OpenAI ``api_base``).
        requests: every request received, in order.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.canaries = 0
        self.canary_ok = True
        self.models_key: str | None = None  # set: GET /models refuses (401) any other bearer key
        #: model -> the bearer keys its chat completions accept (another key: 401); models not named accept any
        self.chat_keys: dict[str, set[str]] = {}
        #: set: a prompt of this many tokens or more is refused (HTTP 400), as llama.cpp refuses one past n_ctx
        self.context_tokens: int | None = None
        self.chars_per_token = 4.0
        self._scripts: dict[str, list[Behaviour]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- control ---------------------------------------------------------------------------

    def script(self, model: str, *behaviours: Behaviour) -> None:
        """Play ``behaviours`` for ``model`` in order; the last one repeats."""
        with self._lock:
            self._scripts[model] = list(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """The tokens a request's messages count (``chars_per_token`` a token, ``MESSAGE_TOKENS`` a message)."""
        chat = body.get("messages") or []
        chars = sum(len(str(m.get("content") or "")) for m in chat)
        return math.ceil(chars / self.chars_per_token) + MESSAGE_TOKENS * len(chat)

    def _next_behaviour(self, model: str) -> Behaviour:
        with self._lock:
            queue = self._scripts.get(model)
            if not queue:
                return behaviour_for_name(model)
            return queue.pop(0) if len(queue) > 1 else queue[0]

    # --- HTTP ------------------------------------------------------------------------------

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def models(request: Request) -> Response:
            self.requests.append(RecordedRequest("GET", request.url.path, None, {}, dict(request.headers)))
            if self.models_key and request.headers.get("authorization") != f"Bearer {self.models_key}":
                return JSONResponse({"error": {"message": "Authentication Fails", "type": "authentication_error"}}, 401)
            return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

        async def chat(request: Request) -> Response:
            body = await request.json()
            model = str(body.get("model", ""))
            if _is_canary(body):
                self.canaries += 1
                how = Behaviour.answer("hello") if self.canary_ok else Behaviour.fail(500)
                return await self._respond(how, model, body)
            recorded = RecordedRequest("POST", request.url.path, model, body, dict(request.headers))
            self.requests.append(recorded)
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            try:
                if model in self.chat_keys and key not in self.chat_keys[model]:
                    recorded.finished = time.monotonic()
                    return JSONResponse({"error": {"message": "Authentication Fails", "type": "authentication_error"}}, 401)
                if self.context_tokens is not None and (used := self.prompt_tokens(body)) >= self.context_tokens:
                    if body.get("stream"):
                        return _broken_stream(used, self.context_tokens)
                    return JSONResponse(_context_exceeded(self.context_tokens, used, body.get("max_tokens")), 400)
                return await self._respond(self._next_behaviour(model), model, body, key, recorded)
            finally:
                recorded.finished = time.monotonic()

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/models", models),
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/chat/completions", chat, methods=["POST"]),
            ]
        )

    async def _respond(
        self, how: Behaviour, model: str, body: dict[str, Any], request_key: str = "", recorded: RecordedRequest | None = None
    ) -> Any:
        from starlette.responses import JSONResponse, Response

        if how.delay_s:
            await asyncio.sleep(how.delay_s)
        if how.kind == "hang":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), how.hang_s)
            except TimeoutError:
                pass
            return JSONResponse({"error": {"message": "hung"}}, status_code=504)
        if how.kind == "status":
            message = f"fake upstream error {how.status}"
            if how.status == 401:  # like OpenAI, echo the key that was refused
                message = f"Incorrect API key provided: {request_key}"
            return JSONResponse({"error": {"message": message, "type": "server_error"}}, status_code=how.status)
        if how.kind == "rate_limit":
            headers = {} if how.retry_after is None else {"retry-after": f"{how.retry_after:g}"}
            return JSONResponse(
                {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                status_code=429,
                headers=headers,
            )
        if how.kind == "malformed":
            return Response(b"{this is not json", media_type="application/json")
        if how.kind == "keepalive":
            return _kept_alive(model, how)
        text = how.text
        if how.kind == "echo":
            users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
            text = str(users[-1]) if users else ""
        if body.get("stream"):
            return _streamed(model, text, how, recorded or RecordedRequest("POST", "", model, body))
        return JSONResponse(_completion(model, text, how))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(), log_level="error", access_log=False, lifespan="off", timeout_graceful_shutdown=1, http="h11"
        )
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            ready.set()
            await self._server.serve(sockets=[self._sock])

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True, name="fake-openai")
        self._thread.start()
        ready.wait(5)
        deadline = time.monotonic() + 5
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self._server.started:
            raise RuntimeError("fake OpenAI server did not start within 5 s")
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._server.should_exit = True
        if self._thread:
            self._thread.join(5)
        if self._sock:
            self._sock.close()
        self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(model: str, text: str, how: Behaviour) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        **({"usage": {
            "prompt_tokens": how.prompt_tokens,
            "completion_tokens": how.completion_tokens if text else 0,
            "total_tokens": how.prompt_tokens + (how.completion_tokens if text else 0),
        }} if how.usage else {}),
    }


def _context_exceeded(window: int, prompt_tokens: int, max_tokens: int | None) -> dict[str, Any]:
    """llama-cpp-python's error body for a prompt past its context window (its server's errors.py)."""
    message = (f"This model's maximum context length is {window} tokens. However, you requested"
               f" {prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the messages, {max_tokens} in the"
               " completion). Please reduce the length of the messages or completion.")
    return {"error": {"message": message, "type": "invalid_request_error", "param": "messages",
                      "code": "context_length_exceeded"}}


def _broken_stream(prompt_tokens: int, window: int) -> Any:
    """A streamed answer that fails before its first chunk, as llama-cpp-python's does for a prompt past its window."""
    from starlette.responses import StreamingResponse

    async def events() -> Any:
        raise RuntimeError(f"Requested tokens ({prompt_tokens}) exceed context window of {window}")
        yield ""  # an async generator

    return StreamingResponse(events(), media_type="text/event-stream")


def _kept_alive(model: str, how: Behaviour) -> Any:
    import json

    from starlette.responses import StreamingResponse

    async def body() -> Any:
        ends = time.monotonic() + how.hang_s
        while time.monotonic() < ends:
            yield b"\n"
            await asyncio.sleep(0.25)
        yield json.dumps(_completion(model, how.text, how)).encode()

    return StreamingResponse(body(), media_type="application/json")


def _streamed(model: str, text: str, how: Behaviour, recorded: RecordedRequest) -> Any:
    """Server-sent events as llama.cpp's server sends them: one piece of text per chunk, no usage."""
    import json
    import re

    from starlette.responses import StreamingResponse

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(data)}\n\n"

    async def events() -> Any:
        pieces = re.findall(r"\S+\s*|\s+", text)
        try:
            yield chunk({"role": "assistant", "content": ""})
            for piece in pieces[: how.stream_cut_after]:
                if how.token_delay_s:
                    await asyncio.sleep(how.token_delay_s)
                yield chunk({"content": piece})
                recorded.chunks_sent += 1
            if how.stream_cut_after is None:
                yield chunk({}, "stop")
            yield "data: [DONE]\n\n"
        finally:
            recorded.hung_up = recorded.chunks_sent < len(pieces[: how.stream_cut_after])
            recorded.stream_ended = True

    return StreamingResponse(events(), media_type="text/event-stream")


class RefusedPort:
    """A loopback port that refuses connections: bound but never listening, so no race."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RefusedPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_canary(body: dict[str, Any]) -> bool:
    from providers.llm.local_server import CANARY_PROMPT

    messages = body.get("messages") or [{}]
    return isinstance(messages, list) and messages[-1].get("content") == CANARY_PROMPT


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that bind by number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_swarm_config(
    models: dict[str, dict[str, Any]],
    *,
    default: str | None = None,
    tiers: dict[str, list[str]] | None = None,
    fallback_chain: list[str] | None = None,
    circuit: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
) -> Any:
    """A validated ``SwarmConfig`` holding just an LLM section and the given ``models`` table."""
    from core.config import SwarmConfig

    first = next(iter(models))
    llm: dict[str, Any] = {
        "default": default or first,
        "tiers": tiers or {"fast": [first], "balanced": [first], "premium": [first]},
        "fallback_chain": fallback_chain or [],
    }
    if circuit:
        llm["circuit"] = circuit
    if retry:
        llm["retry"] = retry
    return SwarmConfig.model_validate(
        {
            "providers": {"llm": llm},
            "models": models,
            "routing": {"delegation": {"critical": {"primary": first, "reviewer": None}}},
        }
    )
