"""A local server that crashed mid-call, was started again and then failed otherwise: the crash
led the error's text, but the router's trace step (and so ``AllProvidersFailed``, which lists
every attempt) read only the second failure ("HTTP 500: ..."), the crash gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_openai import make_swarm_config
from test_llm_local_server import manager, stub_llama, stub_spec  # noqa: F401  (fixtures)

from core.errors import AllProvidersFailed
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.local_server import LocalServerManager
from providers.llm.router import build_llm_router


async def test_the_trace_of_a_failure_after_a_restart_says_the_crash_first(
    manager: LocalServerManager, stub_llama: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    monkeypatch.setenv("STUB_MODE", "segv_then_500")
    monkeypatch.setenv("STUB_CRASH_ONCE", str(tmp_path / "crashed-once"))
    spec = stub_spec(stub_llama)
    cfg = make_swarm_config({"local": spec.model_dump(exclude_none=True)})
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=manager)
    with pytest.raises(AllProvidersFailed) as raised:
        await router.complete([Message(role="user", content="What is the capital of France?")], LLMConfig())
    [attempt] = raised.value.attempts
    detail = attempt.detail or ""
    assert detail.startswith("local model server exited (SIGSEGV)"), detail
    assert "; started it again and asked once more: " in detail, detail
    assert "exited (SIGSEGV)" in str(raised.value)
