"""The bench keeps what it measured: rows reach disk as they finish, a cut or a crash keeps them,
slow rows size themselves to their budget, and the ratio chart reads one way (right is better).

Fake suites here are tiny modules written to a temp dir and run by the real harness in a
subprocess; nothing asserts speed.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bench import adapters, harness
from bench.common import machine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fake_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    """Write ``body`` as module ``name`` importable by the harness's child process."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return name


ROW = "{'value': %s, 'unit': 'ms', 'anchor': 'a', 'anchor_value': 1.0, 'ratio': %s, 'goal': '<= 2x', 'met': True}"


def _saving_to(out: Path, snapshots: list[tuple[bool, list[dict[str, Any]], str]]) -> Any:
    def save(run: harness.Run, suite_done: bool) -> None:
        harness.write_results(run, out, plots=False)
        snapshots.append((run.finished, json.loads((out / "results.json").read_text()),
                          (out / "RESULTS.md").read_text()))
    return save


def test_a_suite_cut_by_its_budget_keeps_finished_rows_on_disk_and_names_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = _fake_suite(tmp_path, monkeypatch, "fake_slow_rows", f"""
        import time
        from bench.common import emit_record
        emit_record({{'name': 'row a', **{ROW % (1.0, 1.0)}}})
        time.sleep(0.5)
        emit_record({{'name': 'row b', **{ROW % (1.5, 1.5)}}})
        time.sleep(60)  # the slow row: the budget ends first
        emit_record({{'name': 'row c', **{ROW % (1.0, 1.0)}}})
    """)
    expected = tuple(harness.Expected(f"row {x}", "ms", "a", "<= 2x") for x in "abc")
    later = harness.Suite("later", "bench.bench_does_not_exist", (harness.Expected("later row", "ms", "a", "g"),))
    out = tmp_path / "out"
    snapshots: list[tuple[bool, list[dict[str, Any]], str]] = []
    run = harness.run_all([harness.Suite("slow", module, expected), later], quick=True, budget_s=8,
                          log=lambda line: None, on_update=_saving_to(out, snapshots))
    assert run.elapsed_s < 30  # cut at its budget, not waited for

    on_disk = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    assert (on_disk["row a"]["value"], on_disk["row b"]["value"], on_disk["row b"]["ratio"]) == (1.0, 1.5, 1.5)
    assert "note" not in on_disk["row a"] and "note" not in on_disk["row b"]
    assert on_disk["row c"]["value"] is None
    # its share of the 8 s budget: what is left of it when the suite starts (7 or 8 s, by the machine)
    assert re.match(r"not measured: fake_slow_rows ran past [1-8] s \(its share of the time budget\)", on_disk["row c"]["note"])
    assert on_disk["later row"]["note"] == "not run: the harness's time budget was spent"
    assert "## Not measured" in (out / "RESULTS.md").read_text()

    # while the suite still ran, row a was already on disk and the rows to come said why they were empty
    mid = [rows for finished, rows, _ in snapshots if not finished and any(r["value"] for r in rows)]
    assert mid, "no file was written while the suite was running"
    first = {r["name"]: r for r in mid[0]}
    assert first["row a"]["value"] == 1.0
    assert first["row c"]["note"] == "measuring: this row is not finished yet"
    assert first["later row"]["note"] == harness.NOT_REACHED
    assert "**in progress**" in next(md for finished, rows, md in snapshots if rows == mid[0])


def test_a_later_suite_s_reserve_is_left_to_it_by_the_suites_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the AMD machine lost: the image suite used the time the research-quality rows needed."""
    greedy = _fake_suite(tmp_path, monkeypatch, "fake_greedy", f"""
        import time
        from bench.common import emit_record
        emit_record({{'name': 'greedy row', **{ROW % (1.0, 1.0)}}})
        time.sleep(60)
    """)
    last = _fake_suite(tmp_path, monkeypatch, "fake_last", f"""
        from bench.common import emit_record
        emit_record({{'name': 'last row', **{ROW % (1.0, 1.0)}}})
    """)
    suites = [harness.Suite("greedy", greedy, (harness.Expected("greedy row", "ms", "a", "<= 2x"),
                                                harness.Expected("greedy slow row", "ms", "a", "<= 2x")),
                            full_timeout_s=600),
              harness.Suite("last", last, (harness.Expected("last row", "ms", "a", "<= 2x"),), reserve_s=8)]
    lines: list[str] = []
    run = harness.run_all(suites, quick=False, budget_s=14, log=lines.append)
    rows = {r["name"]: r for r in run.records}
    assert rows["greedy slow row"]["note"].startswith("not measured: fake_greedy ran past 6 s")
    assert rows["last row"]["value"] == 1.0 and "note" not in rows["last row"]
    assert "bench: greedy (python -m fake_greedy), limit 6 s" in lines
    held = harness.run_all(suites, quick=False, budget_s=12, log=lambda line: None)  # 12 - 8 leaves greedy 4 s
    skipped = {r["name"]: r for r in held.records}["greedy row"]
    assert skipped["note"] == "not run: the 12 s left are reserved for last"
    assert {r["name"]: r for r in held.records}["last row"]["value"] == 1.0


def test_a_crash_mid_suite_keeps_the_rows_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _fake_suite(tmp_path, monkeypatch, "fake_crashing_rows", f"""
        from bench.common import emit_record
        emit_record({{'name': 'row a', **{ROW % (2.0, 2.0)}}})
        raise RuntimeError("the model file is gone")
    """)
    expected = tuple(harness.Expected(f"row {x}", "ms", "a", "<= 2x") for x in "ab")
    out = tmp_path / "out"
    harness.run_all([harness.Suite("crashy", module, expected)], quick=True, log=lambda line: None,
                    on_update=_saving_to(out, []))
    on_disk = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in on_disk] == ["row a", "row b"]
    assert on_disk[0]["value"] == 2.0 and on_disk[0]["met"] is True
    assert on_disk[1]["note"].startswith("failed: exit 1") and "the model file is gone" in on_disk[1]["note"]


def test_the_image_suite_cut_after_its_speed_rows_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Intel machine lost: upscale figures measured, then the peak-RSS run ran out of time."""
    upscale = {"device": "cpu", "input": "192x192", "torch_fp32_out_mp_s": 0.3, "torch_bf16_out_mp_s": 1.2,
               "ncnn_fp32_out_mp_s": 0.2, "realesrganer_fp32_out_mp_s": 0.25}
    module = _fake_suite(tmp_path, monkeypatch, "fake_image_suite", f"""
        import time
        from bench.common import emit_part
        emit_part("upscale", {upscale!r})
        time.sleep(60)  # the 2048x2048 peak-RSS run
    """)
    image = next(s for s in harness.SUITES if s.name == "image")
    suite = harness.Suite("image", module, image.figures, quick_timeout_s=6, adapt=adapters.image)
    run = harness.run_all([suite], quick=True, log=lambda line: None)
    rows = {r["name"]: r for r in run.records}
    fp32 = rows["upscale anime-6B x4, CPU fp32 (pinned), output MP/s (192x192 input) vs RealESRGANer"]
    assert fp32["ratio"] == pytest.approx(1.2) and fp32["met"] is False  # no auto figure: fp32 carries the goal
    assert rows["upscale anime-6B x4, CPU bf16 (pinned), output MP/s (192x192 input) vs ncnn"]["ratio"] == pytest.approx(6)
    auto = rows["upscale anime-6B x4, CPU precision auto, output MP/s (192x192 input) vs RealESRGANer"]
    assert auto["value"] is None and "did not reach the precision auto part" in auto["note"]  # there, saying why
    for name in ("upscale peak RSS, 2048x2048 input", "RealESRGANer peak RSS (tile=0 scaling, tile=400 at 2048x2048)"):
        assert rows[name]["value"] is None and "ran past 6 s" in rows[name]["note"]
    assert len(rows) == len(run.records)  # no row twice


def test_peak_rss_runs_all_tiles_only_when_the_measured_speed_says_it_fits() -> None:
    from bench import bench_image

    # 2048 -> 8192: 67 MP at 0.24 MP/s is ~280 s of network time (the 2-core machines)
    assert not bench_image.full_rss_fits(2048, 0.24, seconds_left=200)
    assert bench_image.full_rss_fits(2048, 0.24, seconds_left=560)
    assert not bench_image.full_rss_fits(2048, 0.41, seconds_left=233)  # it ran past 233 s here
    assert bench_image.full_rss_fits(256, 0.24, seconds_left=90)
    assert not bench_image.full_rss_fits(2048, None, seconds_left=10_000)  # speed unknown: stand in


def test_a_full_peak_rss_run_that_runs_out_of_time_leaves_the_row_to_the_stand_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The full 2048 run was chosen, ran past its time, and the goal row was lost (a full
    ``python -m bench`` on the AMX Xeon, 789 s)."""
    from bench import bench_image

    calls: list[tuple[bool, float, str]] = []

    def bench_rss(models_dir: str, size: int, device: str, timeout: float, stand_in: bool = False,
                  precision: str = "fp32") -> dict:
        calls.append((stand_in, timeout, precision))
        return {"peak_rss_mb": 1500.0} if stand_in else {"input": "2048x2048", "error": f"took longer than {timeout:.0f} s"}

    monkeypatch.setattr(bench_image, "bench_rss", bench_rss)
    monkeypatch.setattr(bench_image, "seconds_left", lambda default=0.0: 600.0)
    result = bench_image.our_rss("models", 2048, "cpu", ("ncnn-bf16", 0.5), reserve_s=0.0)
    assert [stand_in for stand_in, _, _ in calls] == [False, True]
    assert {precision for _, _, precision in calls} == {"ncnn-bf16"}  # the path auto chose, both times
    assert calls[0][1] == 600.0 - bench_image.STAND_IN_RESERVE_S  # the full run leaves the stand-in its time
    assert result["peak_rss_mb"] == 1500.0 and "took longer than 555 s" in result["why_stand_in"]


def test_the_stand_in_runs_the_network_once_per_tile_shape_including_the_largest() -> None:
    np = pytest.importorskip("numpy")
    from bench import bench_image
    from providers.image.tiling import run_tiled

    seen: list[tuple[int, int]] = []

    def network(piece: Any) -> Any:
        seen.append(piece.shape[:2])
        return np.zeros((piece.shape[0] * 4, piece.shape[1] * 4, 3), dtype=np.uint8)

    counts: dict[str, int] = {}
    image = np.zeros((1024, 1024, 3), dtype=np.uint8)
    out, tiles = run_tiled(image, bench_image.stand_in_after_largest(network, 4, counts), scale=4, tile=256, pad=16)
    assert out.shape == (4096, 4096, 3) and tiles == 16
    assert counts == {"real": len(seen), "stand_in": 16 - len(seen)}
    assert len(seen) == len(set(seen)) == 4  # corner, top edge, left edge, interior
    assert max(h * w for h, w in seen) == 288 * 288  # an interior tile, the largest, went through the network


def test_realesrganer_rss_rows_past_the_budget_are_skipped_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import ref_realesrganer

    monkeypatch.setattr(ref_realesrganer, "check", lambda: {"realesrgan": "0.3.0"})
    monkeypatch.setattr(ref_realesrganer, "write_pth", lambda models_dir, out: out / "w.pth")
    timeouts: list[float] = []

    def rss_run(model: Path, size: int, tile: int, threads: int, cap: float, one: bool, timeout_s: float) -> dict:
        timeouts.append(timeout_s)
        return {"input": f"{size}x{size}", "tile": tile, "peak_rss_mb": 1000.0}

    monkeypatch.setattr(ref_realesrganer, "rss_run", rss_run)
    left = iter([400.0, 60.0, 10.0, 10.0])
    runs = ref_realesrganer.measure_rss("/models", 2, quick=False, seconds_left=lambda: next(left))["runs"]
    assert timeouts == [300.0, 55.0]  # each run within what is left
    assert [r.get("error") for r in runs[2:]] == ["not run: the suite's time budget was spent"] * 2
    rows = adapters.image({"peak_rss_upscale": {"input": "2048x2048", "peak_rss_mb": 1800.0},
                           "peak_rss_realesrganer": {"runs": runs}}, "c")
    assert rows[0]["anchor_value"] is None and "time budget was spent" in rows[0]["note"]


def test_stand_in_rss_row_says_how_many_tiles_ran_through_the_network() -> None:
    rss = {"input": "2048x2048", "peak_rss_mb": 1750.0, "tiles_real": 4, "tiles_stand_in": 60}
    row = adapters.image({"peak_rss_upscale": rss}, "c")[0]
    assert "4 of 64 tiles through the network" in row["name"] and row["met"] is True


# --- one reading direction in the ratio chart ----------------------------------------------------

RECORDS = [
    {"name": "cold start", "value": 700.0, "unit": "ms", "anchor_value": 550.0, "goal": "<= 1.5x", "met": True},
    {"name": "failover", "value": 16.0, "unit": "ms", "anchor_value": 4.0, "goal": "<= anchor + 20 ms", "met": True},
    {"name": "upscale fp32", "value": 0.24, "unit": "MP/s", "anchor_value": 0.2, "goal": ">= 1.5x RealESRGANer",
     "met": False},
    {"name": "peak RSS", "value": 1800.0, "unit": "MB", "anchor_value": 8192.0, "goal": "<= 2 GB", "met": True},
    {"name": "reference row", "value": 3.0, "unit": "ms", "anchor_value": 1.0, "goal": "reference", "met": None},
    {"name": "not measured", "value": None, "unit": "ms", "anchor_value": None, "goal": ">= 2x", "met": None},
]


def test_every_bar_is_a_speed_up_over_its_anchor_with_its_goal() -> None:
    from bench.plotting import speedups

    rows = {r.name: r for r in speedups(RECORDS)}
    assert set(rows) == {"cold start", "failover", "upscale fp32", "peak RSS", "reference row"}
    assert all(r.speedup > 0 for r in rows.values())
    assert rows["cold start"].speedup == pytest.approx(550 / 700)  # a time: anchor / ours
    assert rows["cold start"].goal == pytest.approx(1 / 1.5)
    assert rows["failover"].goal == pytest.approx(4 / 24)
    assert rows["upscale fp32"].speedup == pytest.approx(1.2)  # a throughput: ours / anchor
    assert rows["upscale fp32"].goal == pytest.approx(1.5)
    assert rows["peak RSS"].speedup == pytest.approx(8192 / 1800) and rows["peak RSS"].goal == pytest.approx(4.0)
    assert rows["reference row"].goal is None
    for row in rows.values():  # right of the goal mark is exactly "goal met"
        if row.goal is not None:
            assert (row.speedup >= row.goal) == row.met, row


def test_the_ratio_chart_is_drawn_and_names_the_machine(tmp_path: Path) -> None:
    from bench.plotting import draw_all, ratio_chart_title

    drawn = draw_all(RECORDS, tmp_path / "plots", machine=machine())
    assert (tmp_path / "plots" / "ratios.png") in drawn
    assert (tmp_path / "plots" / "ratios.png").read_bytes()[:8] == PNG_MAGIC
    title = ratio_chart_title(machine())
    assert "right is better" in title and machine() in title and " cores" in title


def test_the_last_write_of_a_run_leaves_only_its_own_plots(tmp_path: Path) -> None:
    """A plot's file name follows its row's, which names the path ``auto`` chose: a run on another
    CPU drew its own beside the old ones, and plots/ kept every earlier run's."""
    from bench.results import Run, write_results

    stale = tmp_path / "plots" / "upscale_peak_rss_ncnn_bf16.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)
    latency = {**RECORDS[0], "samples_ms": [700.0, 710.0], "anchor_samples_ms": [550.0, 560.0]}
    run = Run(quick=True, records=[latency, *RECORDS[1:]])
    write_results(run, tmp_path)  # mid-run: the rows to come may still redraw what is there
    assert stale.exists()
    files = write_results(run, tmp_path, final=True)
    left = sorted(path.name for path in (tmp_path / "plots").glob("*.png"))
    assert left == sorted(path.name for path in files.values() if path.suffix == ".png")
    assert "ratios.png" in left and "latency_cold_start.png" in left and stale.name not in left
