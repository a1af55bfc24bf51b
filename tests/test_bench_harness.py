"""The bench harness works end to end in quick mode: files, shapes, missing and failing suites.

Nothing here asserts speed: only that the harness runs figures and writes what it promises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import harness
from bench.__main__ import main
from bench.common import machine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_run_of_cheap_suites_writes_results_markdown_and_plots(tmp_path: Path) -> None:
    cheap = ",".join(s.name for s in harness.SUITES if s.cheap)
    assert main(["--quick", "--only", cheap, "--out", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) >= 2
    for record in records:
        assert set(record) == set(harness.KEYS), record  # exactly the published keys
        assert isinstance(record["value"], float | int) and record["value"] > 0
        if str(record["goal"]).startswith("reference"):
            assert record["met"] is None  # a reference row has no goal to meet
        else:
            assert isinstance(record["met"], bool), record
        assert record["ratio"] == pytest.approx(record["value"] / record["anchor_value"], rel=1e-2)
        assert record["command"].startswith("python -m bench.")
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| figure | value | anchor | anchor value | ratio | goal | met | command |" in markdown
    for record in records:
        assert record["name"] in markdown
    assert f"Machine: {machine()}" in markdown and " cores" in machine()  # CPU model and core count
    plots = sorted((tmp_path / "plots").glob("*.png"))
    assert {p.name for p in plots} >= {"ratios.png"}
    assert any(p.name.startswith("latency_") for p in plots)  # the concurrency suite's job latencies
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC
        assert f"plots/{plot.name}" in markdown


def test_missing_and_failing_suites_become_clear_records(tmp_path: Path) -> None:
    expected = (harness.Expected("a figure", "ms", "an anchor", "<= 2x"),)
    missing = harness.Suite("gone", "bench.bench_does_not_exist", expected)
    failing = harness.Suite("broken", "json.tool", expected, quick_args=("--no-such-flag",))
    silent = harness.Suite("silent", "bench.common", expected)
    run = harness.run_all([missing, failing, silent], quick=True, log=lambda line: None)
    notes = [r["note"] for r in run.records]
    assert notes[0].startswith("not available: bench.bench_does_not_exist")
    assert notes[1].startswith("failed: exit 2")
    assert notes[2].startswith("failed: unreadable output")
    for record in run.records:
        assert record["value"] is None and record["met"] is None and record["goal"] == "<= 2x"
    harness.write_results(run, tmp_path, plots=False)
    written = json.loads((tmp_path / "results.json").read_text())
    assert [set(r) for r in written] == [set(harness.KEYS) | {"note"}] * 3
    assert "## Not measured" in (tmp_path / "RESULTS.md").read_text()


def test_a_measured_rows_note_is_no_unmeasured_figure(tmp_path: Path) -> None:
    """RESULTS.md listed the ncnn bf16 row (0.299 MP/s, with the note "max 13 levels from our
    fp32") under "Not measured"."""
    expected = (harness.Expected("measured", "ms", "an anchor", "<= 2x"), harness.Expected("missing", "ms", "a", "g"))
    run = harness.run_all([harness.Suite("gone", "bench.bench_does_not_exist", expected)], quick=True,
                          log=lambda line: None)
    run.records[0].update(value=1.0, note="max 13 levels from our fp32")
    harness.write_results(run, tmp_path, plots=False)
    text = (tmp_path / "RESULTS.md").read_text()
    unmeasured, _, notes = text.partition("## Not measured")[2].partition("## Notes")
    assert "**missing**" in unmeasured and "**measured**" not in unmeasured
    assert "**measured**: max 13 levels from our fp32" in notes


def test_time_budget_skips_suites_and_says_so() -> None:
    suite = harness.Suite("x", "bench.bench_research", (harness.Expected("f", "ms", "a", "g"),))
    run = harness.run_all([suite], quick=True, budget_s=1, log=lambda line: None)
    assert run.records[0]["note"] == "not run: the harness's time budget was spent"


def test_parse_records_finds_the_json_after_other_output() -> None:
    assert harness.parse_records('[{"name": "a"}]') == [{"name": "a"}]
    assert harness.parse_records('warming up\n{"ratio": 1.1}\n') == {"ratio": 1.1}
    with pytest.raises(ValueError):
        harness.parse_records("no json here")


def test_only_rejects_unknown_suites() -> None:
    with pytest.raises(SystemExit, match="valid: foundation"):
        harness.select(["nope"])
    assert [s.name for s in harness.select(["research,concurrency"])] == ["research", "concurrency"]


def test_timeout_keeps_the_records_printed_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "slow_bench_for_test.py"
    module.write_text(
        "import json, sys, time\n"
        "print(json.dumps([{'name': 'fast part', 'value': 1.0, 'unit': 'ms', 'anchor': 'a', 'anchor_value': 1.0,"
        " 'ratio': 1.0, 'goal': '<= 2x', 'met': True}]), flush=True)\n"
        "time.sleep(60)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    suite = harness.Suite("slow", "slow_bench_for_test", (harness.Expected("slow part", "ms", "a", "g"),),
                          quick_timeout_s=6)
    run = harness.run_all([suite], quick=True, log=lambda line: None)
    assert [r["name"] for r in run.records] == ["fast part", "slow part"], run.records  # the unfinished row named
    assert run.records[0]["value"] == 1.0 and "note" not in run.records[0]
    assert run.records[1]["note"].startswith("not measured: slow_bench_for_test ran past 6 s")
    assert run.elapsed_s < 30  # the sleeping child was killed, not waited for


def _image_summary(realesrganer: float | None, capped: bool = True) -> dict:
    up = {"device": "cpu", "input": "192x192", "torch_fp32_out_mp_s": 0.30, "torch_bf16_out_mp_s": 0.60,
          "ncnn_fp32_out_mp_s": 0.40}
    if realesrganer is None:
        up["realesrganer"] = "not measured: the RealESRGANer venv is missing (run python -m bench.ref_realesrganer --setup)"
        return {"upscale": up, "peak_rss_upscale": {"input": "2048x2048", "peak_rss_mb": 1800.0},
                "peak_rss_realesrganer": {"error": up["realesrganer"]}}
    up["realesrganer_fp32_out_mp_s"] = realesrganer
    runs = [{"input": "256x256", "tile": 0, "peak_rss_mb": 1300.0},
            {"input": "512x512", "tile": 0, "peak_rss_mb": 3800.0},
            {"input": "2048x2048", "tile": 0, "cap_gb": 8.0, "failed": "RuntimeError: can't allocate memory",
             "peak_rss_mb": 7100.0} if capped else {"input": "2048x2048", "tile": 0, "peak_rss_mb": 9000.0},
            {"input": "2048x2048", "tile": 400, "real_tile": 420, "peak_rss_mb": 3600.0}]
    return {"upscale": up, "peak_rss_upscale": {"input": "2048x2048", "peak_rss_mb": 1800.0},
            "peak_rss_realesrganer": {"runs": runs}}


def test_image_upscale_rows_are_anchored_on_realesrganer_and_on_ncnn() -> None:
    from bench import adapters

    records = {r["name"]: r for r in adapters.image(_image_summary(0.19), "python -m bench.bench_image")}
    # no auto figure (a cut or older run): the fp32 rows carry issue 17's goals
    fp32 = records["upscale anime-6B x4, CPU fp32 (pinned), output MP/s (192x192 input) vs RealESRGANer"]
    assert fp32["anchor_value"] == 0.19 and fp32["ratio"] == pytest.approx(0.30 / 0.19, rel=1e-2)
    assert fp32["goal"] == ">= 2x RealESRGANer" and fp32["met"] is False
    bf16_ncnn = records["upscale anime-6B x4, CPU bf16 (pinned), output MP/s (192x192 input) vs ncnn"]
    assert bf16_ncnn["anchor_value"] == 0.40 and bf16_ncnn["met"] is None and bf16_ncnn["goal"].startswith("reference")
    # with one, the goals are on the path auto chose (what runs by default); pinned rows are references
    summary = {**_image_summary(0.19), "upscale_auto": {"precision": "bf16", "why": "2x fp32, PSNR 50 dB", "out_mp_s": 0.62}}
    chosen = {r["name"]: r for r in adapters.image(summary, "c")}
    auto = "upscale anime-6B x4, CPU precision auto (chose bf16), output MP/s (192x192 input) vs "
    assert (chosen[auto + "RealESRGANer"]["goal"], chosen[auto + "RealESRGANer"]["met"]) == (">= 2x RealESRGANer", True)
    assert (chosen[auto + "ncnn"]["goal"], chosen[auto + "ncnn"]["met"]) == (">= 1.5x ncnn", True)  # 0.62 / 0.40
    assert [r["met"] for n, r in chosen.items() if "(pinned)" in n] == [None] * 4
    rss = records["upscale peak RSS, 2048x2048 input x4 (ours, tiled, fp32) vs RealESRGANer tile=0"]
    assert rss["anchor_value"] == 8 * 1024 and rss["met"] is True
    assert "fails at a 8 GB address-space cap" in rss["anchor"]
    assert "~53 GB by a linear fit of its 256x256 and 512x512 runs" in rss["anchor"]  # 1300 + 2500 * 63 / 3
    tiled = records["upscale peak RSS, 2048x2048 input x4 (ours, tiled, fp32) vs RealESRGANer tile=400"]
    assert tiled["anchor_value"] == 3600.0 and "stand-in" in tiled["anchor"]
    assert "RealESRGANer tile=0 peak RSS, 512x512 input x4 (reference)" in records
    measured = {r["name"]: r for r in adapters.image(_image_summary(0.19, capped=False), "c")}
    assert measured[rss["name"]]["anchor_value"] == 9000.0  # a tile=0 run that fits is the anchor itself


def test_image_rows_say_how_to_build_a_missing_realesrganer_venv() -> None:
    from bench import adapters

    records = adapters.image(_image_summary(None), "python -m bench.bench_image --quick")
    anchored = [r for r in records if "RealESRGANer" in r["name"] and "precision auto" not in r["name"]]
    assert len(anchored) == 3  # fp32, bf16 speed rows and the RSS row
    for record in anchored:
        assert record["anchor_value"] is None and record["ratio"] is None
        assert "python -m bench.ref_realesrganer --setup" in record["note"]
    assert [r["met"] for r in anchored] == [None, None, True]  # the RSS goal is 2 GB, anchor or not
    ncnn = [r for r in records if r["name"].endswith("vs ncnn") and "precision auto" not in r["name"]]
    assert [r["met"] for r in ncnn] == [False, None] and all("note" not in r for r in ncnn)  # bf16: a reference


def test_realesrganer_anchor_is_skipped_with_the_setup_hint_when_its_venv_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import contextlib

    from bench import bench_image, ref_realesrganer

    monkeypatch.setattr(ref_realesrganer, "check", lambda: None)
    with contextlib.ExitStack() as stack:
        why = bench_image._realesrganer(stack, "/nonexistent", 64, 2, wanted=True)
    assert why == f"not measured: the RealESRGANer venv is missing ({ref_realesrganer.SETUP_HINT})"
    assert ref_realesrganer.measure_rss("/nonexistent", 2, quick=True)["error"] == why


def test_upstream_rrdbnet_key_names_are_the_ones_our_architecture_uses() -> None:
    pytest.importorskip("torch")
    from bench import ref_realesrganer
    from providers.image import archs

    ours = list(archs.RRDBNet(num_block=6).state_dict())
    assert sorted(ref_realesrganer.upstream_keys(6)) == sorted(ours)
    assert len(ours) == 2 * (1 + 6 * 3 * 5 + 5)


def test_tiled_rss_stand_in_runs_the_network_on_exactly_one_full_tile() -> None:
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from bench import realesrganer_runner

    seen: list[tuple[int, int]] = []

    def network(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.zeros(1, 3, x.shape[-2] * 4, x.shape[-1] * 4)

    upsampler = SimpleNamespace(model=network, tile_pad=10)
    assert realesrganer_runner._one_real_tile(upsampler, 400, 10) == 420
    for h, w in [(410, 410), (410, 420), (420, 420), (420, 420), (58, 420)]:
        assert tuple(upsampler.model(torch.zeros(1, 3, h, w)).shape) == (1, 3, 4 * h, 4 * w)
    assert seen == [(420, 420)]


def _rembg_summary(cli: Any) -> dict[str, Any]:
    return {"model": "u2netp", "input": "512x512", "images": 16,
            "ours_sequential": {"images_per_s": 3.0}, "ours_batch": {"images_per_s": 4.0},
            "ours_batch_dispatch": {"images_per_s": 3.9}, "rembg_cli_folder": cli,
            "rembg_library_in_process": {"images_per_s": 2.5},
            "ratios": {"batch_vs_cli_marginal_image": 1.3}}


def test_rembg_rows_are_anchored_on_the_cli_folder_mode_with_their_goals() -> None:
    from bench import adapters

    rows = {r["name"]: r for r in adapters.rembg(_rembg_summary({"images_per_s": 2.5}), "python -m bench.bench_rembg")}
    seq = rows["background removal images/s (u2netp, 512x512), sequential, fp32 vs rembg CLI"]
    batch = rows["background removal images/s (u2netp, 512x512), batch of 16, fp32 vs rembg CLI"]
    assert (seq["ratio"], seq["goal"], seq["met"]) == (1.2, ">= 1x", True)
    assert (batch["ratio"], batch["goal"], batch["met"]) == (1.6, ">= 2x", False)  # no auto figure: fp32 carries it
    assert "rembg p" in seq["anchor"] and all(r["command"] == "python -m bench.bench_rembg" for r in rows.values())
    assert len(rows) == 5  # + dispatch, marginal-image and library references
    summary = {**_rembg_summary({"images_per_s": 2.5}), "auto": {"images_per_s": 6.0, "path": "torch-bf16", "why": "w"}}
    chosen = {r["name"]: r for r in adapters.rembg(summary, "c")}
    auto = chosen["background removal images/s (u2netp, 512x512), batch of 16, precision auto (chose torch-bf16) vs rembg CLI"]
    assert (auto["ratio"], auto["goal"], auto["met"]) == (2.4, ">= 2x", True)
    pinned = chosen[batch["name"]]
    assert pinned["met"] is None and pinned["goal"].startswith("reference") and pinned["ratio"] == 1.6
    missing = adapters.rembg(_rembg_summary("not measured: run python -m bench.bench_rembg --setup"), "c")
    assert all(r["met"] is None for r in missing)
    assert "--setup" in missing[0]["note"]


def test_mcp_concurrency_row_that_missed_zero_errors_says_what_failed() -> None:
    from bench import adapters

    def row(errors: int, first: list[str]) -> dict[str, Any]:
        return {"calls": 200, "errors": errors, "first_errors": first, "wall_s": 2.0, "median_ms": 900.0}

    timing = {"swarm": {"median_ms": 1.0}, "bare": {"median_ms": 1.0}}
    data = {"in_process": {"tools_list": timing, "trivial_call": timing}, "http_200_concurrent": {
        "swarm_list_jobs": row(0, []), "swarm_delegate": row(3, ["ReadTimeout('x')", "job failed: queue full"])}}
    rows = {r["name"]: r for r in adapters.mcp(data, "c")}
    ok = rows["MCP over HTTP: 200 concurrent swarm_list_jobs calls (wall)"]
    bad = rows["MCP over HTTP: 200 concurrent swarm_delegate calls (wall)"]
    assert ok["met"] is True and ok["anchor"] == "median single-call latency under that load"
    assert bad["met"] is False
    assert "3 of 200 calls failed" in bad["anchor"] and "ReadTimeout" in bad["anchor"] and "queue full" in bad["anchor"]


def test_quick_rembg_suite_runs_through_the_harness(tmp_path: Path) -> None:
    assert main(["--quick", "--only", "rembg", "--out", str(tmp_path), "--no-plots"]) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    names = [r["name"] for r in records]
    assert any("sequential, fp32 vs rembg CLI" in n for n in names) and any("batch of 2, fp32 vs rembg CLI" in n for n in names)
    for record in records:
        assert record["value"] is None or record["value"] > 0, record


def test_bf16_is_timed_only_where_the_cpu_runs_it_and_its_row_says_why_not() -> None:
    from bench import adapters, bench_image
    from providers.image.precision import CpuInfo

    amx = CpuInfo("Intel(R) Xeon(R)", frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"}))
    avx2 = CpuInfo("AMD EPYC", frozenset({"avx2", "fma", "f16c"}))
    assert bench_image.low_precision_missing("cpu", amx) is None
    assert bench_image.low_precision_missing("cuda", avx2) is None  # fp16 on a GPU is always timed
    why = bench_image.low_precision_missing("cpu", avx2)
    assert why == "not measured: this CPU has none of amx_bf16, avx512_bf16 (bf16 would run emulated)"
    summary = _image_summary(0.19)
    del summary["upscale"]["torch_bf16_out_mp_s"]
    summary["upscale"]["torch_bf16"] = why
    summary["upscale_auto"] = {"precision": "ncnn", "why": "auto: 1.2x fp32", "out_mp_s": 0.40}
    records = {r["name"]: r for r in adapters.image(summary, "c")}
    bf16 = records["upscale anime-6B x4, CPU bf16 (pinned), output MP/s (192x192 input)"]
    assert (bf16["value"], bf16["met"], bf16["note"]) == (None, None, why)
    assert not [name for name in records if "bf16 (pinned)" in name and name.endswith(("ncnn", "RealESRGANer"))]
    auto = records["upscale anime-6B x4, CPU precision auto (chose ncnn), output MP/s (192x192 input) vs ncnn"]
    assert (auto["ratio"], auto["met"]) == (1.0, False)  # ncnn chosen is ncnn itself: 1x, not 1.5x


def test_auto_choosing_ncnn_reads_the_providers_ncnn_figure_of_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the anchor's: the provider runs ncnn its own way (the tail in strips, its pools emptied)."""
    from bench import upscale_contenders
    from providers.image import upscale

    monkeypatch.setattr(upscale.RealESRGANUpscaler, "precision", lambda self, name, device: ("ncnn", "ncnn (auto: 1.2x)"))
    up = {"torch_fp32_out_mp_s": 0.16, "ncnn_fp32_out_mp_s": 0.20, "ncnn_ours_fp32_out_mp_s": 0.22,
          "realesrganer_fp32_out_mp_s": 0.10}
    result = upscale_contenders.upscale_auto("/nonexistent", "cpu", up)
    assert (result["precision"], result["out_mp_s"]) == ("ncnn", 0.22)
    assert (result["vs_ncnn"], result["vs_torch"], result["vs_realesrganer"]) == (1.1, 1.375, 2.2)


def test_auto_choosing_ncnn_bf16_reads_the_ncnn_bf16_figure_and_gets_a_reference_row(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import adapters, upscale_contenders
    from providers.image import upscale

    monkeypatch.setattr(upscale.RealESRGANUpscaler, "precision",
                        lambda self, name, device: ("ncnn-bf16", "ncnn-bf16 (auto: 1.5x)"))
    up = {**_image_summary(0.16)["upscale"], "ncnn_fp32_out_mp_s": 0.20, "ncnn_bf16_out_mp_s": 0.24,
          "realesrganer_fp32_out_mp_s": 0.12, "ncnn_bf16_vs_torch_fp32_max_diff_levels": 9}
    result = upscale_contenders.upscale_auto("/nonexistent", "cpu", up)
    assert (result["precision"], result["out_mp_s"], result["vs_ncnn"], result["vs_realesrganer"]) == (
        "ncnn-bf16", 0.24, 1.2, 2.0)
    rows = {r["name"]: r for r in adapters.image({"upscale": up, "upscale_auto": result}, "c")}
    goal = rows["upscale anime-6B x4, CPU precision auto (chose ncnn-bf16), output MP/s (192x192 input) vs RealESRGANer"]
    assert (goal["value"], goal["met"]) == (0.24, True)
    ref = rows["upscale anime-6B x4, CPU ncnn bf16 storage, output MP/s (192x192 input) vs ncnn"]
    assert (ref["value"], ref["anchor_value"], ref["met"]) == (0.24, 0.20, None)
    assert ref["goal"].startswith("reference") and "max 9 levels" in ref["note"]


def test_a_research_mode_that_answered_no_question_keeps_its_goal_rows_saying_why() -> None:
    from bench import bench_research_quality

    rows = bench_research_quality.unmeasured_records("abstractive, keyless", "of 12: the time budget ended the rest",
                                                     "c", "standard")
    measured = bench_research_quality.mode_records("abstractive, keyless", [], [], "", "c", "standard")
    assert [(r["name"], r["goal"]) for r in rows] == [(r["name"], r["goal"]) for r in measured]  # the same rows
    names = [r["name"] for r in rows]
    assert "research quality, abstractive, keyless: fact recall" in names
    assert "research quality, abstractive, keyless: seconds per question (depth standard)" in names
    assert "research quality, abstractive, keyless: repeated sentences" in names
    assert all(r["value"] is None and r["met"] is None and r["note"].startswith("not measured: no question fitted")
               for r in rows)
    assert all("the time budget ended the rest" in r["note"] for r in rows)


# --- the precision auto rows are always there; the GPU is detected, not assumed ----------------------

_AUTO = "upscale anime-6B x4, CPU precision auto, output MP/s (192x192 input) vs "


@pytest.mark.parametrize(("auto", "why"), [
    (None, "did not reach the precision auto part"),
    ({"error": "not measured: 25 s left to the suite, under the 30 s the choice needs"}, "25 s left to the suite"),
    ({"precision": "bf16", "why": "auto: 3.9x fp32", "out_mp_s": None}, "auto chose bf16 (auto: 3.9x fp32), a path"),
], ids=["cut", "budget", "untimed-path"])
def test_unmeasured_auto_rows_are_written_and_say_why(auto: Any, why: str) -> None:
    """They vanished while the bf16 row said "the goal is on the row of the path auto chose"."""
    from bench import adapters

    summary = _image_summary(0.19)
    if auto is not None:
        summary["upscale_auto"] = auto
    records = {r["name"]: r for r in adapters.image(summary, "c")}
    for anchor in ("RealESRGANer", "ncnn"):
        row = records[_AUTO + anchor]
        assert row["value"] is None and row["met"] is None and why in row["note"] and row["goal"].startswith(">= ")
    vs_fp32 = records[_AUTO + "fp32"]
    assert vs_fp32["value"] is None and why in vs_fp32["note"]
    assert records["upscale anime-6B x4, CPU bf16 (pinned), output MP/s (192x192 input) vs ncnn"]["goal"] == adapters.PINNED


def test_a_measured_auto_row_says_whose_figure_it_is() -> None:
    from bench import adapters

    summary = {**_image_summary(0.19), "upscale_auto": {"precision": "ncnn", "why": "auto: 2x", "out_mp_s": 0.40}}
    row = {r["name"]: r for r in adapters.image(summary, "c")}[_AUTO + "fp32"]
    assert "the provider's own ncnn code" in row["anchor"] and "without the provider's decode" in row["anchor"]


def test_the_machine_line_names_the_gpu_torch_sees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import results

    for gpu, expected in ((None, ", no GPU, "), ("NVIDIA H200", ", GPU: NVIDIA H200, ")):
        monkeypatch.setattr(results, "gpu_name", lambda gpu=gpu: gpu)
        results.write_markdown(results.Run(quick=True), tmp_path / "RESULTS.md", [])
        machine_line = next(line for line in (tmp_path / "RESULTS.md").read_text().splitlines()
                            if line.startswith("Machine: "))
        assert expected in machine_line and ("no GPU" in machine_line) == (gpu is None)


def test_gpu_detection_is_lazy_and_a_broken_driver_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from bench import common

    class BrokenCuda:
        @staticmethod
        def is_available() -> bool:
            raise RuntimeError("CUDA driver initialization failed")

    common.gpu_name.cache_clear()
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=BrokenCuda))
    try:
        assert common.gpu_name() is None
    finally:
        common.gpu_name.cache_clear()


def test_the_gpu_suite_runs_with_device_cuda_only_where_a_gpu_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import adapters

    gpu_suite = next(s for s in harness.SUITES if s.needs_gpu)
    assert "--device cuda" in gpu_suite.command(False) and "--device cuda" in gpu_suite.command(True)
    assert [e.name for e in gpu_suite.figures] == [adapters.GPU_ROW]
    assert not any(e.name == adapters.GPU_ROW for s in harness.SUITES if not s.needs_gpu for e in s.figures)

    (tmp_path / "fake_gpu_suite.py").write_text(
        "import sys\nfrom bench.common import emit_part\n"
        "assert sys.argv[1:3] == ['--device', 'cuda'], sys.argv\n"
        "emit_part('upscale', {'device': 'cuda', 'input': '64x64', 'torch_fp32_out_mp_s': 2.0,"
        " 'torch_fp16_out_mp_s': 6.0})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    suite = harness.Suite("image_gpu", "fake_gpu_suite", gpu_suite.figures, full_args=("--device", "cuda"),
                          quick_args=("--device", "cuda"), adapt=adapters.image, needs_gpu=True)
    monkeypatch.setattr(harness, "gpu_name", lambda: None)
    (skipped,) = harness.run_all([suite], quick=True, log=lambda line: None).records
    assert (skipped["name"], skipped["value"]) == (adapters.GPU_ROW, None)
    assert skipped["note"] == "not measured: no GPU on this machine (torch sees no CUDA device)"
    monkeypatch.setattr(harness, "gpu_name", lambda: "NVIDIA H200")
    rows = {r["name"]: r for r in harness.run_all([suite], quick=True, log=lambda line: None).records}
    assert rows[adapters.GPU_ROW]["value"] == 6.0  # torch fp16 on the GPU


def test_a_full_run_builds_the_reference_venvs_its_suites_lack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m bench` on a fresh clone left every RealESRGANer and rembg-library anchor
    'not measured' (dashes in the goal rows) until --setup was run: it builds what it lacks."""
    import bench.__main__ as entry
    import bench.ref_realesrganer as ref
    import bench.rembg_reference as rembg

    monkeypatch.setattr(ref, "VENV", tmp_path / "realesrgan")
    monkeypatch.setattr(rembg, "VENV", tmp_path / "rembg")
    assert entry._lacking_venvs(None) == ["bench.ref_realesrganer", "bench.bench_rembg"]
    assert entry._lacking_venvs(["image"]) == ["bench.ref_realesrganer"]
    assert entry._lacking_venvs(["research,concurrency"]) == []
    (tmp_path / "rembg" / "bin").mkdir(parents=True)
    (tmp_path / "rembg" / "bin" / "rembg").write_text("")
    assert entry._lacking_venvs(None) == ["bench.ref_realesrganer"]
