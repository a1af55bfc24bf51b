"""Turn the summary objects some bench modules print into figure records.

Each adapter takes what the module printed (parsed JSON) and the command that ran it, and
returns records with ``name, value, unit, anchor, anchor_value, ratio, goal, met, command``.
A module that already prints a list of records passes through unchanged.
"""

from __future__ import annotations

from typing import Any


def record(name: str, value: float | None, unit: str, anchor: str, anchor_value: float | None, goal: str,
           met: bool | None, command: str, **extra: Any) -> dict[str, Any]:
    ratio = round(value / anchor_value, 3) if value is not None and anchor_value else None
    return {"name": name, "value": None if value is None else round(value, 3), "unit": unit, "anchor": anchor,
            "anchor_value": None if anchor_value is None else round(anchor_value, 3), "ratio": ratio,
            "goal": goal, "met": met, "command": command, **extra}


def research(data: Any, command: str) -> list[dict[str, Any]]:
    """bench_research: one summary object (fan-out vs one query)."""
    if isinstance(data, list):
        return data
    value, anchor = float(data["fan_out_s"]) * 1000, float(data["one_query_s"]) * 1000
    return [record(f"research fan-out, {data['queries']} searches x {data['search_latency_ms']:.0f} ms", value, "ms",
                   "one search (same graph)", anchor, f"<= {data.get('goal_ratio_max', 1.2)}x",
                   bool(data["goal_met"]), command)]


def endpoint(data: Any, command: str) -> list[dict[str, Any]]:
    """bench_endpoint: forwarding cost, concurrency and cold start through the local endpoint."""
    if isinstance(data, list):
        return data
    ideal = data["jobs"] / (data["workers"] * data["concurrency_per_worker"])
    single, in_process = data["single_job_s"] * 1000, data["in_process_s"] * 1000
    return [
        record("local RunPod endpoint: one job through runner=runpod", single, "ms",
               "the same handler awaited in-process", in_process, "reference: the cost of the endpoint hop",
               None, command),
        record(f"local RunPod endpoint: {data['jobs']} concurrent jobs, {data['workers']} workers x "
               f"{data['concurrency_per_worker']}", data["concurrent_s"] * 1000, "ms", "one job through the endpoint",
               single, f"reference: ideal {ideal:.1f}x, serial {data['jobs']}x", None, command),
        record("local RunPod endpoint: cold start to first job", data["cold_start_s"] * 1000, "ms",
               "one warm job through the endpoint", single, "reference", None, command),
    ]


def mcp(data: Any, command: str) -> list[dict[str, Any]]:
    """bench_mcp: in-process swarm vs bare server; 200 concurrent calls over streamable HTTP."""
    if isinstance(data, list):
        return data
    out = []
    labels = {"tools_list": "MCP tools/list, in-process client", "trivial_call": "MCP trivial tool call, in-process"}
    for key, label in labels.items():
        row = data["in_process"][key]
        out.append(record(label, row["swarm"]["median_ms"], "ms", "bare MCPServer, same call",
                          row["bare"]["median_ms"], "<= 1.5x",
                          row["swarm"]["median_ms"] <= 1.5 * row["bare"]["median_ms"], command))
    for tool, row in data["http_200_concurrent"].items():
        out.append(record(f"MCP over HTTP: {row['calls']} concurrent {tool} calls (wall)", row["wall_s"] * 1000, "ms",
                          "median single-call latency under that load", row["median_ms"], "0 errors",
                          row["errors"] == 0, command))
    return out


def image(data: Any, command: str) -> list[dict[str, Any]]:
    """bench_image: upscale MP/s vs ncnn, peak RSS, rembg images/s; GPU row only with a GPU."""
    if isinstance(data, list):
        return data
    up = data.get("upscale", {})
    out = []
    low = "fp16" if up.get("device") == "cuda" else "bf16"
    ncnn = up.get("ncnn_fp32_out_mp_s")
    for precision in (low, "fp32"):
        value = up.get(f"torch_{precision}_out_mp_s")
        if value is None:
            continue
        out.append(record(f"upscale anime-6B x4, {up.get('device', 'cpu').upper()} {precision}, output MP/s "
                          f"({up.get('input')} input)", value, "MP/s", "ncnn fp32, same weights and image", ncnn,
                          ">= 2x ncnn (RealESRGANer >= 1.5x: needs its own venv, not measured here)",
                          bool(ncnn) and value >= 2 * ncnn, command))
    rss = data.get("peak_rss_upscale", {})
    if "peak_rss_mb" in rss:
        out.append(record(f"upscale peak RSS, {rss['input']} input x4 (tiled)", rss["peak_rss_mb"], "MB",
                          "the 2 GB goal (RealESRGANer tile=0 not measured here)", 2048.0, "<= 2 GB",
                          rss["peak_rss_mb"] <= 2048, command))
    else:
        out.append(record("upscale peak RSS, 2048x2048 input", None, "MB", "RealESRGANer tile=0", None, "<= 2 GB",
                          None, command, note=f"not measured: {rss.get('error')}"))
    rembg = data.get("rembg", {})
    if "images_per_s" in rembg:
        out.append(record(f"background removal images/s ({rembg['model']}, {rembg['input']}, sequential)",
                          rembg["images_per_s"], "images/s", "rembg CLI (not measured in this suite)", None,
                          ">= 1x (batch >= 2x)", None, command))
    if up.get("device") != "cuda":
        out.append(record("GPU upscale fp16 (when a GPU is lent)", None, "MP/s", "RealESRGANer fp16, same GPU", None,
                          ">= 2x", None, command, note="not measured: no GPU on this machine"))
    return out
