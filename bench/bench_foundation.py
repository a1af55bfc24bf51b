"""Foundation figures (issue 2), each against an anchor measured in the same run.

    python -m bench.bench_foundation [--quick]

1. cold start to an answered ``tools/list`` over stdio: ``swarm-mcp`` vs a bare ``MCPServer``
   with one tool (goal <= 1.5x);
2. overhead of a delegation job (2 LLM calls: draft + review) against a zero-latency loopback
   model, with the shipped config, SQLite checkpoints and the full trace, vs two raw
   ``litellm.acompletion`` calls plus a bare 3-node LangGraph (goal <= 1.3x).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bare_three_node_graph, emit, emit_record, figure, median, timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BARE_SERVER = """
from mcp.server import MCPServer
server = MCPServer(name="bare")

@server.tool()
def echo(text: str) -> str:
    return text

server.run("stdio")
"""


async def _cold_start(args: list[str]) -> float:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=args, env=dict(os.environ), cwd=str(ROOT))
    started = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed


async def cold_start(repeat: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(BARE_SERVER)
    ours, bare = [], []
    for _ in range(repeat):  # interleaved, so drift hits both alike
        bare.append(await _cold_start([f.name]))
        ours.append(await _cold_start(["-m", "mcp_server.server"]))
    os.unlink(f.name)
    value, anchor = median(ours), median(bare)
    return figure("cold start to tools/list (stdio)", value, "ms", "bare MCPServer with one tool", anchor,
                  "<= 1.5x", value <= 1.5 * anchor, "python -m bench.bench_foundation", samples=repeat)


VERDICT = '{"approved": true, "score": 9, "issues": [], "suggestion": ""}'


async def delegation_overhead(repeat: int) -> list[dict[str, Any]]:
    import litellm
    from fake_openai import Behaviour, FakeOpenAI
    from typing_extensions import TypedDict

    from swarm.runtime import Runtime

    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as home:
        os.environ["SWARM_HOME"] = home
        os.environ["SWARM_LOCAL_LLM_PORT"] = str(server.port)
        for name in ("DEEPSEEK_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
            os.environ.pop(name, None)
        n = (repeat + 2) * 2
        server.script("smollm2-135m-instruct", *[Behaviour.answer("draft"), Behaviour.answer(VERDICT)] * n)
        server.script("raw", Behaviour.answer("ok"))
        runtime = Runtime()
        job = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi."}}

        async def ours() -> None:
            result = await runtime.run(dict(job))
            assert result["status"] == "COMPLETED", result["error"]

        class S(TypedDict, total=False):
            a: str
            b: str

        async def call(state: S) -> S:
            response = await litellm.acompletion(
                model="openai/raw", api_base=server.url + "/v1", api_key="none",
                messages=[{"role": "user", "content": "Say hi."}], num_retries=0, timeout=30,
            )
            return {"a": response.choices[0].message.content}

        async def last(state: S) -> S:
            return {"b": "done"}

        bare = bare_three_node_graph(S, call, last)

        # The job's own two requests, captured from a first job: the anchor replays exactly these
        # bodies (messages, response_format, max_tokens, ...), so what the figure counts as
        # overhead is our layers, not the size of what the job asks the model.
        captured: list[dict[str, Any]] = []
        real = litellm.acompletion

        async def spy(**params: Any) -> Any:
            captured.append(dict(params))
            return await real(**params)

        litellm.acompletion = spy
        try:
            await ours()
        finally:
            litellm.acompletion = real
        assert len(captured) == 2, f"expected the draft and the review call, saw {len(captured)}"

        def replay(params: dict[str, Any]) -> Any:
            async def node(state: S) -> S:
                response = await litellm.acompletion(**params)
                if params.get("stream"):  # the local model's free text is streamed (stop_on_loop)
                    return {"a": "".join([c.choices[0].delta.content or "" async for c in response if c.choices])}
                return {"a": response.choices[0].message.content}

            return node

        same = bare_three_node_graph(S, replay(captured[0]), last, second=replay(captured[1]))

        async def anchor() -> None:
            await same.ainvoke({})

        async def tiny() -> None:
            await bare.ainvoke({})

        ours_ms, anchor_ms, tiny_ms = [], [], []
        await anchor()
        await tiny()
        for _ in range(repeat):
            anchor_ms += await timed(anchor, 1, warmup=0)
            tiny_ms += await timed(tiny, 1, warmup=0)
            ours_ms += await timed(ours, 1, warmup=0)
        await runtime.aclose()
    value, base, small = median(ours_ms), median(anchor_ms), median(tiny_ms)
    return [
        figure("delegation job overhead (2 LLM calls, zero-latency loopback model)", value, "ms",
               "the job's 2 requests replayed with raw litellm.acompletion + bare 3-node LangGraph", base,
               "<= 1.3x", value <= 1.3 * base, "python -m bench.bench_foundation", samples=repeat),
        figure("delegation job vs 2 minimal litellm calls (reference: payload size counted as overhead)", value,
               "ms", "2 raw litellm.acompletion of one short user message + bare 3-node LangGraph", small,
               "reference", None, "python -m bench.bench_foundation", samples=repeat),
    ]


async def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few samples; checks the harness, not speed")
    parser.add_argument("--only", choices=("cold-start", "overhead"), help="measure one figure only")
    parser.add_argument("--repeat", type=int, default=None, help="samples of the overhead figure (default 30)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    records = []
    if args.only != "overhead":  # on stdout at once: a later cut keeps it
        records.append(emit_record(await cold_start(2 if args.quick else 7)))
    if args.only != "cold-start":
        repeat = args.repeat or (3 if args.quick else 30)
        records += [emit_record(r) for r in await delegation_overhead(repeat)]
    emit(records)
    return records


if __name__ == "__main__":
    asyncio.run(main())
