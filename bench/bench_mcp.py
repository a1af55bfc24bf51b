"""MCP door benchmarks, as ratios against a baseline measured in the same run.

1. ``tools/list`` and a trivial tool call through the swarm server vs a bare ``MCPServer``
   with one trivial tool (in-process client; goal: swarm/bare <= 1.5x).
2. 200 concurrent tool calls over streamable HTTP (10 sessions x 20 calls): errors (goal 0),
   throughput and p50/p99 latency, for ``list_jobs`` (store read) and ``delegate`` (a full
   job: job store, job loop, dispatcher, graph with a checkpoint, over an instant fake LLM).

    .venv/bin/python bench/bench_mcp.py [--iterations 300] [--out bench/out/mcp.json]

Client and server share this process and its 2 cores, so HTTP numbers include the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench.common import timed  # noqa: E402  (after the path set-up above)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "n": len(ordered),
    }


def bare_server() -> Any:
    from mcp.server import MCPServer

    server = MCPServer(name="bare")

    @server.tool()
    async def ping_tool(limit: int = 20) -> dict[str, Any]:
        """A trivial tool."""
        return {"jobs": [], "limit": limit}

    return server


async def in_process(iterations: int, config: Path, trimmed: Path) -> dict[str, Any]:
    """swarm vs bare, interleaved; ``trimmed`` lists only the job tools (mcp.enabled_tools: [])."""
    from mcp import Client

    from mcp_server.server import build_server

    out: dict[str, Any] = {}
    async with Client(bare_server()) as bare, Client(build_server(str(config))) as swarm, \
            Client(build_server(str(trimmed))) as small:
        listing = (await swarm.list_tools()).model_dump_json(by_alias=True, exclude_none=True)
        small_listing = (await small.list_tools()).model_dump_json(by_alias=True, exclude_none=True)
        out["tools_list_bytes"] = {"swarm": len(listing), "swarm_job_tools_only": len(small_listing)}
        rows = {
            "tools_list": (lambda: bare.list_tools(), lambda: swarm.list_tools()),
            "tools_list_job_tools_only": (lambda: bare.list_tools(), lambda: small.list_tools()),
            "trivial_call": (lambda: bare.call_tool("ping_tool", {"limit": 20}),
                             lambda: swarm.call_tool("list_jobs", {"limit": 20})),
        }
        for name, (bare_fn, swarm_fn) in rows.items():
            # interleave to share any drift (thermal, GC) between the two
            bare_samples: list[float] = []
            swarm_samples: list[float] = []
            for _ in range(3):
                bare_samples += await timed(bare_fn, iterations // 3, warmup=10)
                swarm_samples += await timed(swarm_fn, iterations // 3, warmup=10)
            b, s = summary(bare_samples), summary(swarm_samples)
            out[name] = {"bare": b, "swarm": s, "ratio_median": round(s["median_ms"] / b["median_ms"], 2)}
    return out


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    import uvicorn
    from test_mcp_http import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


async def http_concurrency(config: Path, sessions: int = 10, per_session: int = 20) -> dict[str, Any]:
    from mcp.server.transport_security import TransportSecuritySettings

    from mcp_server.server import build_http_app

    bare_app = bare_server().streamable_http_app(transport_security=TransportSecuritySettings(
        allowed_hosts=["127.0.0.1:*"], allowed_origins=["http://127.0.0.1:*"]))
    targets = [
        (bare_app, {"bare_trivial": ("ping_tool", lambda i: {"limit": 5})}),
        (build_http_app(str(config), env={}), {
            "swarm_list_jobs": ("list_jobs", lambda i: {"limit": 5}),
            "swarm_delegate": ("delegate", lambda i: {"task": f"task {i}", "kind": "critical"}),
        }),
    ]
    results: dict[str, Any] = {}
    for app, calls in targets:
        results.update(await _concurrent_calls(app, calls, sessions, per_session))
    base = results["bare_trivial"]["calls_per_s"]
    for label in ("swarm_list_jobs", "swarm_delegate"):
        results[label]["throughput_vs_bare"] = round(results[label]["calls_per_s"] / base, 2)
    return results


async def _concurrent_calls(app: Any, calls: dict[str, Any], sessions: int, per_session: int) -> dict[str, Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    results: dict[str, Any] = {}
    async with serving(app) as url:
        for label, (tool, args) in calls.items():
            latencies: list[float] = []
            errors: list[str] = []

            async def one(client: Client, i: int, tool: str = tool, args: Any = args,
                          errors: list[str] = errors, latencies: list[float] = latencies) -> None:
                started = time.perf_counter()
                try:
                    result = await client.call_tool(tool, args(i))
                    if result.is_error:
                        errors.append(result.content[0].text[:200])
                except Exception as exc:  # counted and reported, the run goes on
                    errors.append(repr(exc)[:200])
                latencies.append((time.perf_counter() - started) * 1000)

            async def session(s: int) -> None:
                http = httpx2.AsyncClient(timeout=httpx2.Timeout(60, read=120))
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    await asyncio.gather(*(one(client, s * per_session + i) for i in range(per_session)))

            started = time.perf_counter()
            await asyncio.gather(*(session(s) for s in range(sessions)))
            wall = time.perf_counter() - started
            results[label] = {
                "calls": sessions * per_session,
                "errors": len(errors),
                "first_errors": errors[:3],
                "wall_s": round(wall, 2),
                "calls_per_s": round(sessions * per_session / wall, 1),
                **summary(latencies),
            }
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "bench/out/mcp.json"))
    args = parser.parse_args()

    import pytest
    from mcp_helpers import SlowLLM, write_config

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SWARM_HOME"] = str(Path(tmp) / "home")
        config = write_config(Path(tmp), wait_budget_s=45)
        (Path(tmp) / "small").mkdir()
        trimmed = write_config(Path(tmp) / "small", wait_budget_s=45, enabled_tools=[])
        with pytest.MonkeyPatch.context() as patch:
            from mcp_helpers import use_fake_llm

            use_fake_llm(patch, SlowLLM(text="instant"))
            report = {
                "in_process": await in_process(args.iterations, config, trimmed),
                "http_200_concurrent": await http_concurrency(config),
            }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
