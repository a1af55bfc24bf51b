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
        if key == "tools_list":
            # not overhead: the answer itself is ~10x larger (every tool with input and output schemas)
            out.append(record(label, row["swarm"]["median_ms"], "ms",
                              "bare MCPServer with one tool, same call (our answer lists every tool with its schemas)",
                              row["bare"]["median_ms"], "reference: answer size; cold start to tools/list is the goal row",
                              None, command))
            continue
        out.append(record(label, row["swarm"]["median_ms"], "ms", "bare MCPServer, same call",
                          row["bare"]["median_ms"], "<= 1.5x",
                          row["swarm"]["median_ms"] <= 1.5 * row["bare"]["median_ms"], command))
    for tool, row in data["http_200_concurrent"].items():
        anchor = "median single-call latency under that load"
        if row["errors"]:  # a missed goal says what failed, not only that something did
            anchor += f"; {row['errors']} of {row['calls']} calls failed, first: " + " | ".join(
                str(e)[:160] for e in row.get("first_errors", [])[:2])
        out.append(record(f"MCP over HTTP: {row['calls']} concurrent {tool} calls (wall)", row["wall_s"] * 1000, "ms",
                          anchor, row["median_ms"], "0 errors", row["errors"] == 0, command))
    return out


#: the GPU goal's row (the ``image_gpu`` suite: ``bench_image --device cuda``)
GPU_ROW = "GPU upscale fp16 (when a GPU is lent)"


def image(data: Any, command: str) -> list[dict[str, Any]]:
    """bench_image: upscale MP/s vs RealESRGANer and ncnn, ``precision: auto`` (always a row: its
    figure, or why there is none), peak RSS; on a GPU (``--device cuda``) the GPU goal's row."""
    if isinstance(data, list):
        return data
    up = data.get("upscale", {})
    chosen = data.get("upscale_auto") if isinstance(data.get("upscale_auto"), dict) else None
    auto = chosen if chosen and chosen.get("out_mp_s") else None
    if up.get("device") == "cuda":
        return [_gpu_row(up, auto, chosen, command), *_gpu_pinned_rows(up, command)]
    out = [*_upscale_speed(up, command, auto, None if auto else _auto_missing(chosen))]
    if "upscale" in data and up.get("device") != "cuda":
        out.append(_auto_vs_fp32(up, chosen, command))
    if "peak_rss_upscale" in data:  # a suite cut before this part: the harness names the row
        out += _upscale_rss(data, command)
    return out


def _gpu_pinned_rows(up: dict[str, Any], command: str) -> list[dict[str, Any]]:
    """Each precision the GPU ran, pinned, against RealESRGANer at the same precision on the same GPU."""
    rows = []
    for precision in ("fp32", "fp16", "bf16"):
        value = up.get(f"torch_{precision}_out_mp_s")
        if value is None:
            continue
        theirs = "fp32" if precision == "fp32" else "fp16"  # upstream has no bf16 path
        psnr = up.get(f"torch_{precision}_psnr_db")
        rows.append(record(f"GPU upscale {precision} (pinned), output MP/s ({up.get('input')} input)", value, "MP/s",
                           f"RealESRGANer {theirs}, same GPU", up.get(f"realesrganer_{theirs}_out_mp_s"), PINNED,
                           None, command, **({"note": f"PSNR {psnr} dB against our fp32"} if psnr else {})))
    return rows


def _gpu_row(up: dict[str, Any], auto: dict[str, Any] | None, chosen: dict[str, Any] | None,
             command: str) -> dict[str, Any]:
    """The GPU goal: the path ``precision: auto`` chose on the GPU against upstream RealESRGANer
    fp16 on the same GPU (>= 2x); without an auto figure, our fp16 carries it and the note says why."""
    value = auto.get("out_mp_s") if auto else up.get("torch_fp16_out_mp_s")
    anchor = up.get("realesrganer_fp16_out_mp_s")
    notes = [] if auto else [f"ours: torch fp16 ({_auto_missing(chosen)})"]
    if auto:
        notes.append(f"auto chose {auto.get('precision')} on {up.get('gpu', 'the GPU')}: {auto.get('why')}")
    if not anchor:
        notes.append(f"anchor RealESRGANer fp16: {up.get('realesrganer_fp16') or 'not measured'}")
    met = value >= 2 * anchor if value is not None and anchor else None
    return record(GPU_ROW, value, "MP/s", f"RealESRGANer fp16, same GPU ({up.get('input')} input)", anchor,
                  ">= 2x", met, command, note="; ".join(notes))


def _auto_missing(chosen: dict[str, Any] | None) -> str:
    """Why the ``precision: auto`` rows have no figure."""
    if chosen is None:
        return "not measured: the suite did not reach the precision auto part (cut or older run)"
    if chosen.get("error"):
        return str(chosen["error"])
    return (f"not measured: auto chose {chosen.get('precision')} ({chosen.get('why')}), a path this run "
            "did not time")


def _auto_vs_fp32(up: dict[str, Any], chosen: dict[str, Any] | None, command: str) -> dict[str, Any]:
    """``precision: auto`` against our fp32, always written: the figure, or why there is none."""
    name = (f"upscale anime-6B x4, {up.get('device', 'cpu').upper()} precision auto, output MP/s "
            f"({up.get('input')} input) vs fp32")
    if chosen and chosen.get("out_mp_s"):
        return record(name, chosen["out_mp_s"], "MP/s", f"ours fp32, same run; auto chose {chosen['precision']}: "
                      f"{chosen['why']}; {_SOURCE}", up.get("torch_fp32_out_mp_s"), "reference: auto's speed-up here",
                      None, command)
    return record(name, None, "MP/s", "ours fp32, same run", up.get("torch_fp32_out_mp_s"),
                  "reference: auto's speed-up here", None, command, note=_auto_missing(chosen))


#: where the auto rows' figure comes from: the provider is not timed end to end here
_SOURCE = ("auto's figure is the bench's interleaved timing of that path's inference (ncnn, ncnn-bf16: the "
           "provider's own ncnn code), without the provider's decode, tiling and encode")


def rembg(data: Any, command: str) -> list[dict[str, Any]]:
    """bench_rembg: our sequential and batch images/s against the rembg CLI's folder mode."""
    if isinstance(data, list):
        return data
    n, what = data.get("images"), f"{data.get('model')}, {data.get('input')}"
    cli = data.get("rembg_cli_folder")
    cli_ips = cli.get("images_per_s") if isinstance(cli, dict) else None
    anchor = f"rembg CLI folder mode (`rembg p`, whole command: start, imports, model load), same {n} images"
    note = {} if cli_ips else {"note": cli if isinstance(cli, str) else "rembg CLI not measured"}
    ratios = data.get("ratios", {})
    out = []
    auto = data.get("auto") if isinstance(data.get("auto"), dict) and data["auto"].get("images_per_s") else None
    if auto is not None:  # the default path carries the batch goal; pinned fp32 is its reference
        value = auto["images_per_s"]
        out.append(record(f"background removal images/s ({what}), batch of {n}, precision auto (chose {auto['path']})"
                          " vs rembg CLI", value, "images/s", anchor, cli_ips, ">= 2x",
                          value >= 2 * cli_ips if cli_ips else None, command, **note))
    for key, label, times in (("ours_sequential", "sequential, fp32", 1.0), ("ours_batch", f"batch of {n}, fp32", 2.0)):
        value = (data.get(key) or {}).get("images_per_s")
        goal = times == 1.0 or auto is None  # the sequential row (fp32 only) keeps its goal
        out.append(record(f"background removal images/s ({what}), {label} vs rembg CLI", value, "images/s", anchor,
                          cli_ips, f">= {times:g}x" if goal else "reference: precision fp32 (pinned); the batch goal"
                          " is on the auto row", value >= times * cli_ips if goal and value and cli_ips else None,
                          command, **note))
    door = (data.get("ours_batch_dispatch") or {}).get("images_per_s")
    if door is not None:
        out.append(record(f"background removal images/s ({what}), batch of {n} through dispatch (base64 in, stored)",
                          door, "images/s", anchor, cli_ips, "reference", None, command, **note))
    if "batch_vs_cli_marginal_image" in ratios:
        out.append(record(f"background removal, batch vs the CLI's cost of one more image ({what})",
                          ratios["batch_vs_cli_marginal_image"], "x", "rembg CLI per extra image (startup left out)",
                          1.0, "reference: where the batch ratio tends for large batches", None, command))
    library = data.get("rembg_library_in_process")
    if isinstance(library, dict) and library.get("images_per_s"):
        value = (data.get("ours_sequential") or {}).get("images_per_s")
        out.append(record(f"background removal images/s ({what}), sequential vs rembg library in-process",
                          value, "images/s", "rembg.remove() with a warm session (no startup)",
                          library["images_per_s"], "reference", None, command))
    return out + _rembg_auto(data, what, n, command)


def _rembg_auto(data: Any, what: str, n: Any, command: str) -> list[dict[str, Any]]:
    """bench_rembg's ``precision: auto`` rows: the chosen path against fp32 and the rembg library."""
    auto = data.get("auto")
    if not isinstance(auto, dict) or not auto.get("images_per_s"):
        return []
    library = data.get("rembg_library_in_process")
    lib_ips = library.get("images_per_s") if isinstance(library, dict) else None
    chose = f"auto chose {auto['path']} ({auto['why']})"  # the machine's choice: in the anchor, the name stays put
    return [
        record(f"background removal images/s ({what}), batch of {n}, precision auto vs fp32",
               auto["images_per_s"], "images/s", f"ours, onnxruntime fp32 (precision: fp32), same batch; {chose}",
               (data.get("ours_batch") or {}).get("images_per_s"), "reference: auto's speed-up here", None, command),
        record(f"background removal images/s ({what}), batch of {n}, precision auto vs rembg library in-process",
               auto["images_per_s"], "images/s", "rembg.remove() with a warm session (no startup)", lib_ips,
               ">= 2x", auto["images_per_s"] >= 2 * lib_ips if lib_ips else None, command,
               **({} if lib_ips else {"note": f"rembg library: {library or 'not measured'}"})),
    ]


_REALESRGANER = "RealESRGANer fp32 (realesrgan 0.3.0, own venv), same weights and image"


#: issue 17's goals for the path a machine runs by default (``precision: auto``)
UPSCALE_GOALS = (("RealESRGANer", 2.0), ("ncnn", 1.5))
PINNED = "reference: precision pinned; the goal is on the row of the path auto chose"


def _upscale_speed(up: dict[str, Any], command: str, auto: dict[str, Any] | None = None,
                   auto_missing: str | None = None) -> list[dict[str, Any]]:
    """Output MP/s against RealESRGANer and ncnn: the path ``precision: auto`` chose here carries the
    goals (>= 2x RealESRGANer, >= 1.5x ncnn: what a user gets by default); each pinned precision
    is a reference row beside it. Without an auto figure its rows say why (``auto_missing``) and
    the fp32 rows carry the goals."""
    out = []
    low = "fp16" if up.get("device") == "cuda" else "bf16"
    device = up.get("device", "cpu").upper()
    anchors = {"RealESRGANer": (_REALESRGANER, up.get("realesrganer_fp32_out_mp_s"), up.get("realesrganer")),
               "ncnn": ("ncnn fp32, same weights and image", up.get("ncnn_fp32_out_mp_s"), up.get("ncnn"))}

    def rows(label: str, value: float | None, goals: bool, missing: str | None = None) -> None:
        for short, times in UPSCALE_GOALS:
            anchor, anchor_value, why = anchors[short]
            note = {"note": missing} if missing else {} if anchor_value else {
                "note": f"anchor {short}: {why or 'not measured'}"}
            met = value >= times * anchor_value if goals and anchor_value and value is not None else None
            out.append(record(f"upscale anime-6B x4, {device} {label}, output MP/s ({up.get('input')} input) vs {short}",
                              value, "MP/s", anchor, anchor_value, f">= {times:g}x {short}" if goals else PINNED,
                              met, command, **note))

    if auto is not None:
        rows(f"precision auto (chose {auto['precision']})", auto["out_mp_s"], True)
    elif up and device == "CPU":  # no figure: the row is still there, saying why
        rows("precision auto", None, True, auto_missing or "not measured")
    if up.get("ncnn_bf16_out_mp_s") is not None:  # auto's other ncnn candidate, beside the ncnn anchor
        out.append(record(f"upscale anime-6B x4, {device} ncnn bf16 storage, output MP/s ({up.get('input')} input) "
                          "vs ncnn", up["ncnn_bf16_out_mp_s"], "MP/s", anchors["ncnn"][0], anchors["ncnn"][1],
                          "reference: a candidate of precision auto; the goal is on the row of the path auto chose",
                          None, command, note=f"max {up.get('ncnn_bf16_vs_torch_fp32_max_diff_levels')} levels from "
                          "our fp32"))
    for precision in ("fp32", low):
        value = up.get(f"torch_{precision}_out_mp_s")
        if value is not None:
            rows(f"{precision} (pinned)", value, auto is None and precision == "fp32")
        elif isinstance(up.get(f"torch_{precision}"), str):  # not timed here: one row says why
            out.append(record(f"upscale anime-6B x4, {device} {precision} (pinned), output MP/s ({up.get('input')} input)",
                              None, "MP/s", "ours fp32, same run", up.get("torch_fp32_out_mp_s"), PINNED, None,
                              command, note=up[f"torch_{precision}"]))
    return out


def _upscale_rss(data: dict[str, Any], command: str) -> list[dict[str, Any]]:
    """Our tiled peak RSS against RealESRGANer tile=0 (same input) and tiled; its tile=0 scaling."""
    rss = data.get("peak_rss_upscale", {})
    ref = data.get("peak_rss_realesrganer") or {}
    runs = ref.get("runs", [])
    whole = [r for r in runs if r.get("tile") == 0 and "failed" not in r and "peak_rss_mb" in r]
    if "peak_rss_mb" not in rss:
        return [record("upscale peak RSS, 2048x2048 input", None, "MB", "RealESRGANer tile=0", None, "<= 2 GB",
                       None, command, note=f"not measured: {rss.get('error')}")]
    ours, size = rss["peak_rss_mb"], rss["input"]
    same = next((r for r in runs if r.get("tile") == 0 and r.get("input") == size), None)
    if same is None or ("failed" not in same and "peak_rss_mb" not in same):
        why = (same or {}).get("error") or ref.get("error", "not measured")
        anchor, anchor_value = f"RealESRGANer tile=0, same input ({why})", None
    elif "failed" in same:
        anchor = (f"RealESRGANer tile=0, same input: fails at a {same.get('cap_gb'):g} GB address-space cap "
                  f"(anchor value = the cap, a lower bound{_fit(whole, size)})")
        anchor_value = same["cap_gb"] * 1024
    else:
        anchor, anchor_value = "RealESRGANer tile=0, same input", same["peak_rss_mb"]
    series = {"title": "Peak RSS of one x4 upscale vs input size", "x_label": "input side (px)",
              "y_label": "peak RSS (MB)", "lines": {
                  "RealESRGANer tile=0": [[int(r["input"].split("x")[0]), r["peak_rss_mb"]] for r in whole],
                  f"ours (tiled, {rss.get('precision', 'fp32')})": [[int(size.split("x")[0]), ours]]}}
    note = {} if anchor_value else {"note": f"anchor {anchor}"}
    ours_how = f"ours, tiled, {rss.get('precision', 'fp32')}"
    if "tiles_real" in rss:  # sized to the suite's budget: see bench_image.stand_in_after_largest
        ours_how += (f"; {rss['tiles_real']} of {rss['tiles_real'] + rss.get('tiles_stand_in', 0)} tiles through the "
                "network, one per tile shape, the rest a same-shape stand-in")
    out = [record(f"upscale peak RSS, {size} input x4 ({ours_how}) vs RealESRGANer tile=0", ours, "MB", anchor,
                  anchor_value, "<= 2 GB", ours <= 2048, command, series=series, **note)]
    for run in runs:
        if run.get("tile") and "peak_rss_mb" in run and run.get("input") == size:
            how = " (one full tile through the network, the rest a same-shape stand-in)" if run.get("real_tile") else ""
            out.append(record(f"upscale peak RSS, {size} input x4 ({ours_how}) vs RealESRGANer tile={run['tile']}",
                              ours, "MB", f"RealESRGANer tile={run['tile']} tile_pad=10, same input{how}",
                              run["peak_rss_mb"], "reference (<= 2 GB is the goal)", None, command))
    for run in whole:
        out.append(record(f"RealESRGANer tile=0 peak RSS, {run['input']} input x4 (reference)", run["peak_rss_mb"],
                          "MB", "the 2 GB goal", 2048.0, "reference", None, command))
    return out


def _fit(whole: list[dict[str, Any]], size: str) -> str:
    """``; ~N GB by a linear fit ...`` from two or more tile=0 runs (peak RSS is affine in pixels)."""
    if len(whole) < 2:
        return ""
    (p0, m0), (p1, m1) = [(int(r["input"].split("x")[0]) ** 2, r["peak_rss_mb"]) for r in (whole[0], whole[-1])]
    if p1 == p0:
        return ""
    pixels = int(size.split("x")[0]) ** 2
    estimate = m0 + (m1 - m0) * (pixels - p0) / (p1 - p0)
    return f"; ~{estimate / 1024:.0f} GB by a linear fit of its {whole[0]['input']} and {whole[-1]['input']} runs"
