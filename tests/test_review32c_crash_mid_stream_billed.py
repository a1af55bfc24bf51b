"""Review 32c: the tokens a local llama.cpp server streamed before it crashed are billed.

A streamed answer (``stop_on_loop``) whose server crashed midway was asked once more of the
restarted server; what the crashed attempt had streamed was dropped: a call that then failed
again read 0 tokens on its trace step (for a stream cut by its timeout they were kept), and one
that then answered counted only the second attempt's tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_openai import make_swarm_config
from test_llm_local_server import manager, stub_llama, stub_spec  # noqa: F401 - fixtures

from core.errors import AllProvidersFailed
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.local_server import LocalServerManager
from providers.llm.router import build_llm_router

#: a llama.cpp server stand-in: its canary is answered; a streamed answer sends three words, then
#: the server segfaults (once, when STUB_CRASH_ONCE names a file; else every time); with
#: STUB_NO_RESTART, one started after that crash fails to load
STREAM_THEN_SEGV = r"""
import argparse, json, os, signal, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--model_alias")
parser.add_argument("--host")
parser.add_argument("--port")
args, _ = parser.parse_known_args()
print("stub llama server streaming pid", os.getpid(), flush=True)
if os.environ.get("STUB_NO_RESTART") and os.path.exists(os.environ.get("STUB_CRASH_ONCE", "")):
    print("error: cannot load model", flush=True)
    raise SystemExit(3)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": args.model_alias}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        if not request.get("stream"):  # the canary
            body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": args.model_alias,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": "hello"}}],
                               "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        once = os.environ.get("STUB_CRASH_ONCE")
        crash = not (once and os.path.exists(once))
        if once:
            open(once, "w").close()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        words = ["Paris ", "is ", "the ", "capital."] if not crash else ["Paris ", "is ", "the "]
        for word in words:
            chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": args.model_alias,
                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            time.sleep(0.05)
        if crash:
            print("ggml_compute_forward: about to fault", flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(30)
        end = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": args.model_alias,
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self._chunk(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        self._chunk(b"")

    def log_message(self, *a):
        pass

ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""
ASK = [Message(role="user", content="What is the capital of France?")]
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def _router(stub_llama: Path, manager: LocalServerManager) -> object:  # noqa: F811
    (stub_llama.parent / "stub" / "llama_cpp" / "server" / "__main__.py").write_text(STREAM_THEN_SEGV)
    spec = stub_spec(stub_llama).model_copy(update={"stop_on_loop": True})
    cfg = make_swarm_config({"local": {**spec.model_dump(exclude_none=True), "price": PRICE}})
    return build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=manager)


async def test_a_call_whose_server_crashed_mid_stream_twice_bills_both_streams(
    manager: LocalServerManager, stub_llama: Path  # noqa: F811 - fixtures
) -> None:
    router = _router(stub_llama, manager)
    with pytest.raises(AllProvidersFailed) as failed:
        await router.complete(ASK, LLMConfig())  # type: ignore[attr-defined]
    [step] = failed.value.attempts
    assert "exited (SIGSEGV)" in (step.detail or ""), step.detail
    assert step.output_tokens == 6, step  # three streamed words before each crash
    assert step.input_tokens > 0 and step.cost_usd is not None and step.cost_usd > 0, step


async def test_an_answer_after_a_crash_mid_stream_bills_the_crashed_stream_too(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    monkeypatch.setenv("STUB_CRASH_ONCE", str(tmp_path / "crashed-once"))
    router = _router(stub_llama, manager)
    answer = await router.complete(ASK, LLMConfig())  # type: ignore[attr-defined]
    assert answer.text == "Paris is the capital."
    [step] = answer.attempts
    assert "exited (SIGSEGV)" in (step.detail or ""), step.detail
    assert step.output_tokens == answer.output_tokens == 3 + 4, step  # the crashed stream's three, then four
    assert step.cost_usd == answer.cost_usd and step.cost_usd is not None, step
    assert step.cost_usd == pytest.approx((step.input_tokens * 1.0 + 7 * 2.0) / 1e6), step


async def test_a_call_whose_server_crashed_mid_stream_and_did_not_start_again_bills_the_stream(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    """Its step read 0 tokens and an unknown cost: the start's error carried nothing billed."""
    monkeypatch.setenv("STUB_CRASH_ONCE", str(tmp_path / "crashed-once"))
    monkeypatch.setenv("STUB_NO_RESTART", "1")
    router = _router(stub_llama, manager)
    with pytest.raises(AllProvidersFailed) as failed:
        await router.complete(ASK, LLMConfig())  # type: ignore[attr-defined]
    [step] = failed.value.attempts
    assert "exited (SIGSEGV)" in (step.detail or "") and "cannot load model" in (step.detail or ""), step.detail
    assert step.output_tokens == 3 and step.input_tokens > 0, step
    assert step.cost_usd is not None and step.cost_usd > 0, step
