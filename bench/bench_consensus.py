"""Consensus figure (issue 16): three models of different latency asked at once vs the slowest alone.

    python -m bench.bench_consensus [--quick] [--latencies-ms 200,400,600] [--repeats 5]

Both sides go over real HTTP on loopback (``tests/fake_openai.py``: ``slow-<s>`` models answer after
``s`` seconds) through litellm and the router. The value is one ``swarm/consensus`` job through
``Runtime.run`` (dispatcher, consensus graph with SQLite checkpoints in a temporary ``SWARM_HOME``,
budget meter, the three calls, then a zero-latency synthesizer); the anchor is one call to the slowest
model alone through the same runtime's router. Goal <= 1.2x: a sequential consensus (PAL's) would be
the sum of the latencies. The two are measured interleaved; each reports its median.
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

from bench.common import emit, figure, median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
COMMAND = "python -m bench.bench_consensus"
KEY_ENV = "SWARM_BENCH_CONSENSUS_KEY"
NAMES = ("fast", "medium", "slow")
NAME = "consensus of 3 models of different latency (200/400/600 ms) + synthesis"
ANCHOR = "the slowest model called alone"


def _config_file(folder: str, base: str, latencies_s: list[float]) -> str:
    """The shipped config plus three loopback models of the given latencies and a zero-latency synthesizer."""
    import yaml

    from core.config import DEFAULT_CONFIG_PATH

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))

    def spec(alias: str, family: str) -> dict[str, Any]:
        return {"family": family, "litellm_model": f"openai/{alias}", "api_base": f"{base}/v1",
                "api_key_env": KEY_ENV, "timeout_s": 30}

    raw["models"].update({name: spec(f"slow-{delay:g}", f"family-{name}") for name, delay in zip(NAMES, latencies_s, strict=True)})
    raw["models"]["synth"] = spec("synth", "family-synth")
    raw["routing"]["consensus"] = {"models": list(NAMES), "synthesizer": "synth"}
    raw["checkpointer"] = {"kind": "sqlite", "path": os.path.join(folder, "checkpoints.sqlite")}
    path = os.path.join(folder, "config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    return path


async def measure(latencies_s: list[float], repeats: int) -> dict[str, Any]:
    from fake_openai import FakeOpenAI

    from providers.base import LLMConfig, Message
    from swarm.runtime import Runtime

    os.environ[KEY_ENV] = "sk-bench-consensus"
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI() as server:
        os.environ["SWARM_HOME"] = folder
        runtime = Runtime(_config_file(folder, server.url, latencies_s))
        job = {"project": "swarm", "action": "consensus", "input": {"question": "Ship on Friday?"}}
        slowest = NAMES[max(range(len(NAMES)), key=lambda i: latencies_s[i])]
        single = LLMConfig(prefer=slowest, step="single")
        ours: list[float] = []
        anchor: list[float] = []
        try:
            for round_ in range(repeats + 1):  # round 0 warms both paths (imports, connections) and is dropped
                started = time.perf_counter()
                result = await runtime.run(job)
                elapsed = (time.perf_counter() - started) * 1000
                if result["status"] != "COMPLETED" or len(result["output"]["positions"]) != len(NAMES):
                    raise RuntimeError(f"consensus job failed: {result.get('error')}")
                started = time.perf_counter()
                await runtime.providers().llm.complete([Message(role="user", content="Ship on Friday?")], single)
                single_ms = (time.perf_counter() - started) * 1000
                if round_:
                    ours.append(elapsed)
                    anchor.append(single_ms)
        finally:
            await runtime.aclose()
    return {"ours": ours, "anchor": anchor, "sum_ms": sum(latencies_s) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short latencies, one round")
    parser.add_argument("--latencies-ms", default="200,400,600", help="the three models' latencies")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    latencies = [float(v) / 1000 for v in ("50,100,150" if args.quick else args.latencies_ms).split(",")]
    if len(latencies) != len(NAMES):
        parser.error(f"--latencies-ms takes {len(NAMES)} values")
    data = asyncio.run(measure(latencies, 1 if args.quick else args.repeats))
    value, anchor = median(data["ours"]), median(data["anchor"])
    ratio = value / anchor
    emit([figure(
        NAME, value, "ms", ANCHOR, anchor, "<= 1.2x", ratio <= 1.2,
        COMMAND + (" --quick" if args.quick else ""), samples_ms=data["ours"], anchor_samples_ms=data["anchor"],
        latencies_ms=[v * 1000 for v in latencies], sequential_sum_ms=data["sum_ms"],
    )])


if __name__ == "__main__":
    main()
