"""Fan-out benchmark: the research graph with 8 sub-queries vs 1, against a search server
that takes 200 ms per query. Goal: 8 queries take <= 1.2x the time of one (they run in
parallel through LangGraph's Send fan-out).

    python -m bench.bench_research [--latency-ms 200] [--queries 8] [--repeats 3]

Prints one JSON object. The LLM is a FunctionLLM fake (instant), the search server is a real
SearXNG-format HTTP server on 127.0.0.1, so the graph, the chain and httpx are all measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def _serve(latency_s: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(latency_s)
            query = parse_qs(urlparse(self.path).query).get("q", [""])[0]
            body = json.dumps({"results": [
                {"url": f"file:///bench/{abs(hash(query)) % 10_000}/{i}", "title": f"{query} {i}", "content": "text"}
                for i in range(5)
            ]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default backlog of 5 drops parallel connects (1 s SYN retry)

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def _run_once(url: str, n_queries: int) -> float:
    from graphs.research import nodes
    from graphs.research.graph import build_graph
    from providers.base import LLMConfig, Message
    from providers.search.chain import SearchChain
    from providers.search.searxng import SearxngSearch
    from providers.testing import FunctionLLM

    nodes.DEPTH["bench"] = {"queries": n_queries - 1, "read": 0, "budget": 1000}

    def brain(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            return {"queries": [f"checkpoint durability aspect {i}" for i in range(n_queries - 1)]} if n_queries > 1 else "no plan"
        return "A finding [1]."

    chain = SearchChain([("searxng", SearxngSearch(url, timeout_s=10))])
    graph = build_graph(FunctionLLM(brain), chain, fetch=None)  # type: ignore[arg-type]
    state = {"question": "bench question", "depth": "bench", "max_sources": 8, "primary": None,
             "reviewer": None, "max_revisions": 0, "revisions": 0, "trace": []}
    started = time.perf_counter()
    final = await graph.ainvoke(state)
    elapsed = time.perf_counter() - started
    searched = sum(1 for s in final["trace"] if s["kind"] == "search" and s["outcome"] == "ok")
    if searched != n_queries:
        raise SystemExit(f"expected {n_queries} searches, the trace shows {searched}")
    return elapsed


async def main_async(latency_ms: float, n_queries: int, repeats: int) -> dict[str, Any]:
    server, url = _serve(latency_ms / 1000)
    try:
        await _run_once(url, 1)  # warm-up: imports, first connection
        one = [await _run_once(url, 1) for _ in range(repeats)]
        many = [await _run_once(url, n_queries) for _ in range(repeats)]
    finally:
        server.shutdown()
        server.server_close()
    one_s, many_s = statistics.median(one), statistics.median(many)
    ratio = many_s / one_s
    return {
        "benchmark": "research search fan-out",
        "search_latency_ms": latency_ms,
        "queries": n_queries,
        "repeats": repeats,
        "one_query_s": round(one_s, 4),
        "fan_out_s": round(many_s, 4),
        "sequential_estimate_s": round(n_queries * latency_ms / 1000, 3),
        "ratio": round(ratio, 3),
        "goal_ratio_max": 1.2,
        "goal_met": ratio <= 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.latency_ms, args.queries, args.repeats)), indent=2))


if __name__ == "__main__":
    main()
