"""The bench's table: every suite (a module ``bench.<name>``), the figures it owns, how to run it.

A figure listed here is reported even when its suite cannot run (missing, failed, cut by the
time budget); ``bench.harness`` runs the suites and ``bench.results`` writes what they gave.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench import adapters


@dataclass(frozen=True)
class Expected:
    """A figure of the issue's table that a suite owns: reported even when the suite cannot run."""

    name: str
    unit: str
    anchor: str
    goal: str
    #: the key of the ``bench-part`` that yields this row (None: a record of this very name)
    part: str | None = None


@dataclass(frozen=True)
class Suite:
    """One bench module and how to run it."""

    name: str
    module: str
    figures: tuple[Expected, ...]
    full_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)
    full_timeout_s: float = 300.0
    quick_timeout_s: float = 120.0
    adapt: Callable[[Any, str], list[dict[str, Any]]] | None = None
    cheap: bool = False
    #: seconds of a full run this suite needs to fill its goal rows: the suites before it are
    #: given that much less (a suite that sizes itself to its deadline, like the image suite,
    #: then drops reference rows, not this suite's goal rows)
    reserve_s: float = 0.0
    #: runs only where torch sees a CUDA GPU (``bench.common.gpu_name``); elsewhere its rows say so
    needs_gpu: bool = False

    def command(self, quick: bool) -> str:
        args = (a.replace("{tmpdir}", "$TMPDIR") for a in (self.quick_args if quick else self.full_args))
        return " ".join(["python -m", self.module, *args])


SUITES: tuple[Suite, ...] = (
    Suite("foundation", "bench.bench_foundation", (
        Expected("cold start to tools/list (stdio)", "ms", "bare MCPServer with one tool", "<= 1.5x"),
        Expected("delegation job overhead (2 LLM calls, zero-latency loopback model)", "ms",
                 "2 raw litellm.acompletion + bare 3-node LangGraph", "<= 1.3x"),
    ), full_timeout_s=300),
    Suite("failover", "bench.bench_failover", (
        Expected("failover, primary refused / 500", "ms",
                 "fallback alone; litellm Router with default retries", "<= +20 ms",
                 part="failover when the primary refuses"),
    ), full_timeout_s=240),
    Suite("research", "bench.bench_research", (
        Expected("research fan-out, 8 searches x 200 ms", "ms", "one search", "<= 1.2x"),
    ), quick_args=("--latency-ms", "50", "--queries", "4", "--repeats", "1"), full_timeout_s=120,
        adapt=adapters.research, cheap=True),
    Suite("consensus", "bench.bench_consensus", (
        Expected("consensus of 3 models of different latency (200/400/600 ms) + synthesis", "ms",
                 "the slowest model called alone", "<= 1.2x"),
    ), quick_args=("--quick",), full_timeout_s=120, cheap=True),
    Suite("concurrency", "bench.bench_concurrency", (
        Expected("500 concurrent delegation jobs, 100 ms provider", "ms",
                 "500 bare 3-node LangGraph runs at once, same load (the floor)",
                 "<= 1.25x the floor, 0 errors, flat memory (<= 10 MB)"),
        Expected("500 concurrent delegation jobs, 2 worker processes (runner.local.processes: 2), jobs/s", "jobs/s",
                 "the same jobs, 1 worker process", "reference: growth from 1 to 2 processes on 2 cores"),
    ), full_timeout_s=180, cheap=True),
    Suite("endpoint", "bench.bench_endpoint", (
        Expected("local RunPod endpoint: concurrent jobs", "ms", "one job through the endpoint", "reference"),
    ), quick_args=("--jobs", "4", "--workers", "1", "--concurrency", "2", "--repeat", "3"), full_timeout_s=180,
        adapt=adapters.endpoint),
    Suite("mcp", "bench.bench_mcp", (
        Expected("MCP tools/list and tool calls, in-process and 200 concurrent over HTTP", "ms",
                 "bare MCPServer, same call", "<= 1.5x; 0 errors"),
    ), full_args=("--out", "{tmpdir}/mcp.json"), quick_args=("--iterations", "30", "--out", "{tmpdir}/mcp.json"),
        full_timeout_s=180, adapt=adapters.mcp),
    Suite("rembg", "bench.bench_rembg", (
        Expected("background removal images/s", "images/s", "rembg CLI",
                 ">= 1x (batch, precision auto: >= 2x)"),
    ), quick_args=("--quick",), full_timeout_s=300, quick_timeout_s=180, adapt=adapters.rembg),
    Suite("image", "bench.bench_image", (
        Expected("upscale anime-6B x4, CPU, output MP/s", "MP/s", "RealESRGANer (own venv); ncnn",
                 "precision auto: >= 2x, >= 1.5x", part="upscale"),
        Expected("upscale peak RSS, 2048x2048 input", "MB", "RealESRGANer tile=0", "<= 2 GB",
                 part="peak_rss_upscale"),
        Expected("RealESRGANer peak RSS (tile=0 scaling, tile=400 at 2048x2048)", "MB", "the 2 GB goal",
                 "reference", part="peak_rss_realesrganer"),
    # its goal rows need ~150 s on an idle 2-core AMD EPYC (AVX2): the speed rounds, auto's choice,
    # the 2048x2048 stand-in; with rembg before it on a loaded machine it got 117 s and lost them all
    ), full_timeout_s=840, quick_timeout_s=240, adapt=adapters.image, reserve_s=240),
    # the same suite on the GPU, where one is lent: its speed rows only (peak RSS is the CPU suite's)
    Suite("image_gpu", "bench.bench_image", (
        Expected(adapters.GPU_ROW, "MP/s", "RealESRGANer fp16, same GPU", ">= 2x", part="upscale"),
    ), full_args=("--device", "cuda", "--speed-only"), quick_args=("--quick", "--device", "cuda", "--speed-only"),
        full_timeout_s=240, quick_timeout_s=120, adapt=adapters.image, needs_gpu=True),
    # last: it measures what the time left allows (each mode's rows as soon as that mode is done)
    Suite("research_quality", "bench.bench_research_quality", (
        Expected("research quality, extractive, keyless: fact recall", "share",
                 "naive baseline: top BM25 passages pasted in order", ">= 0.7 and >= the baseline's"),
        Expected("research quality, extractive, keyless: support rate of cited sentences", "share",
                 "naive baseline: top BM25 passages pasted in order", ">= 0.95"),
        Expected("research quality, abstractive, keyless: fact recall", "share",
                 "naive baseline: top BM25 passages pasted in order", ">= 0.7 and >= the baseline's"),
    ), full_args=("--modes", "extractive,abstractive"), quick_args=("--modes", "extractive", "--questions", "2"),
        # extractive's 12 questions (~40 s on 2 cores) and abstractive's first questions (~25-30 s each)
        full_timeout_s=600, quick_timeout_s=240, reserve_s=180),
)


def select(names: Sequence[str] | None) -> list[Suite]:
    """Suites by name (``--only``); unknown names raise ``SystemExit`` listing the valid ones."""
    if not names:
        return list(SUITES)
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    by_name = {s.name: s for s in SUITES}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]
