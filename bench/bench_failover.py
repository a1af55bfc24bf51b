"""Failover figures (issue 2), each against an anchor measured in the same run.

    python -m bench.bench_failover [--quick]

All over real HTTP on loopback (``tests/fake_openai.py``) through litellm:

1. primary refuses connections -> fallback answers: our router vs the fallback model called on
   its own (goal: <= the fallback's own latency + 20 ms);
2. primary returns HTTP 500 -> fallback answers: same goal;
3. the anchor the goal is about: litellm's own ``Router`` with its default retries, same two
   deployments, same failures (a few runs only: it costs seconds each);
4. once the primary's circuit is open: the extra cost of skipping it, against the fallback
   alone, both with a zero-latency in-process model so HTTP noise does not hide it (goal < 1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import emit, emit_record, figure, median, timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
COMMAND = "python -m bench.bench_failover"


def _spec(upstream: str, base: str, family: str) -> dict[str, Any]:
    return {"family": family, "litellm_model": f"openai/{upstream}", "api_base": f"{base}/v1", "timeout_s": 10}


def _router(primary_base: str, primary_upstream: str, server_url: str) -> Any:
    from fake_openai import make_swarm_config

    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router

    cfg = make_swarm_config(
        {"primary": _spec(primary_upstream, primary_base, "first"), "backup": _spec("good", server_url, "second")},
        fallback_chain=["backup"],
        # The circuit must stay closed here: this measures failing over, not skipping.
        circuit={"failure_threshold": 1_000_000, "cooldown_s": 30},
    )
    return build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())


async def failover(repeat: int, anchor_repeat: int) -> list[dict[str, Any]]:
    from fake_openai import FakeOpenAI, RefusedPort

    from providers.base import LLMConfig, Message
    from providers.llm.litellm_backend import LiteLLMModel
    from providers.llm.litellm_loader import load_litellm

    litellm = load_litellm()
    ask = [Message(role="user", content="hi")]
    records = []
    with FakeOpenAI() as server, RefusedPort() as refused:
        cases = {"refused": (refused.url, "good"), "HTTP 500": (server.url, "status-500")}
        for label, (base, upstream) in cases.items():
            router = _router(base, upstream, server.url)
            backup = router.models["backup"]
            assert isinstance(backup, LiteLLMModel)
            primary = router.models["primary"]
            ours, alone, failing = [], [], []
            await router.complete(ask, LLMConfig())  # warm both paths
            await backup.complete(ask, LLMConfig())
            for _ in range(repeat):  # interleaved, so drift hits both alike
                alone += await timed(lambda b=backup: b.complete(ask, LLMConfig()), 1, warmup=0)
                ours += await timed(lambda r=router: r.complete(ask, LLMConfig()), 1, warmup=0)
                failing += await timed(lambda p=primary: _fails(p, ask), 1, warmup=0)
            answer = await router.complete(ask, LLMConfig())
            assert [s.outcome for s in answer.attempts] == ["error", "ok"], answer.attempts
            value, anchor = median(ours), median(alone)
            records.append(figure(
                f"failover when the primary {'refuses' if label == 'refused' else 'returns HTTP 500'}",
                value, "ms", "the fallback model called alone", anchor, "<= anchor + 20 ms",
                value <= anchor + 20, COMMAND, delta_ms=round(value - anchor, 3),
                # What the delta is made of: the failed litellm call itself (its round trip plus
                # litellm's own synchronous failure logging), the rest is the router.
                failed_call_alone_ms=round(median(failing), 3), samples=repeat,
            ))
            records.append(await _litellm_router_anchor(litellm, label, base, upstream, server.url,
                                                        anchor_repeat, value))
    return records


async def _fails(model: Any, ask: list[Any]) -> None:
    from core.errors import ProviderError
    from providers.base import LLMConfig

    try:
        await model.complete(ask, LLMConfig())
    except ProviderError:
        return
    raise AssertionError("the primary was expected to fail")


async def _litellm_router_anchor(
    litellm: Any, label: str, base: str, upstream: str, server_url: str, repeat: int, ours: float
) -> dict[str, Any]:
    """litellm.Router with its defaults (num_retries from litellm, backoff) and a fallback."""
    router = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {"model": f"openai/{upstream}", "api_base": f"{base}/v1",
                                                         "api_key": "none"}},
            {"model_name": "backup", "litellm_params": {"model": "openai/good", "api_base": f"{server_url}/v1",
                                                        "api_key": "none"}},
        ],
        fallbacks=[{"primary": ["backup"]}],
    )
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await router.acompletion(model="primary", messages=[{"role": "user", "content": "hi"}])
        samples.append((time.perf_counter() - started) * 1000)
    anchor = median(samples)
    return figure(
        f"litellm Router (default retries), primary {label}", anchor, "ms", "our router, same failure", ours,
        "reference only: what the failover goal avoids", None, COMMAND, samples=repeat,
    )


async def circuit_skip(repeat: int) -> list[dict[str, Any]]:
    from fake_openai import make_swarm_config

    from providers.base import LLMConfig, Message
    from providers.circuit import CircuitBoard
    from providers.llm.router import LLMRouter
    from providers.testing import DownLLM, FakeLLM

    cfg = make_swarm_config(
        {"primary": {"family": "first", "litellm_model": "openai/x"},
         "backup": {"family": "second", "litellm_model": "openai/y"}},
        fallback_chain=["backup"],
        circuit={"failure_threshold": 1, "cooldown_s": 3600},
    )
    backup = FakeLLM(["ok"])
    ask = [Message(role="user", content="hi")]
    open_router = LLMRouter(cfg.providers.llm, cfg.models, {"primary": DownLLM(), "backup": backup}, CircuitBoard())
    await open_router.complete(ask, LLMConfig())  # the one failure that opens the circuit
    answer = await open_router.complete(ask, LLMConfig())
    assert answer.attempts[0].outcome == "skipped", answer.attempts
    alone_cfg = make_swarm_config({"backup": {"family": "second", "litellm_model": "openai/y"}})
    alone_router = LLMRouter(alone_cfg.providers.llm, alone_cfg.models, {"backup": backup}, CircuitBoard())
    skip, alone = [], []
    for _ in range(repeat):
        alone += await timed(lambda: alone_router.complete(ask, LLMConfig()), 1, warmup=0)
        skip += await timed(lambda: open_router.complete(ask, LLMConfig()), 1, warmup=0)
    value, anchor = median(skip), median(alone)
    return [figure(
        "router call with the primary's circuit open", value, "ms",
        "same router call straight to the fallback (zero-latency model)", anchor, "skip cost < 1 ms",
        value - anchor < 1.0, COMMAND, skip_cost_ms=round(value - anchor, 4), samples=repeat,
    )]


async def main(quick: bool) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    records = [emit_record(r) for r in await failover(repeat=10 if quick else 40, anchor_repeat=1 if quick else 3)]
    records += [emit_record(r) for r in await circuit_skip(repeat=200 if quick else 2000)]
    emit(records)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (for CI smoke runs)")
    asyncio.run(main(parser.parse_args().quick))
