"""The bench harness works end to end in quick mode: files, shapes, missing and failing suites.

Nothing here asserts speed: only that the harness runs figures and writes what it promises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import harness
from bench.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_run_of_cheap_suites_writes_results_markdown_and_plots(tmp_path: Path) -> None:
    cheap = ",".join(s.name for s in harness.SUITES if s.cheap)
    assert main(["--quick", "--only", cheap, "--out", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) >= 2
    for record in records:
        assert set(record) == set(harness.KEYS), record  # exactly the published keys
        assert isinstance(record["value"], float | int) and record["value"] > 0
        assert isinstance(record["met"], bool)
        assert record["ratio"] == pytest.approx(record["value"] / record["anchor_value"], rel=1e-2)
        assert record["command"].startswith("python -m bench.")
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| figure | value | anchor | anchor value | ratio | goal | met | command |" in markdown
    for record in records:
        assert record["name"] in markdown
    assert "2 CPU cores" in markdown or "CPU cores" in markdown
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
    assert [r["name"] for r in run.records] == ["fast part", "slow: the rest of the suite"], run.records
    assert run.records[1]["note"].startswith("not measured: slow_bench_for_test ran past 6 s")
    assert run.elapsed_s < 30  # the sleeping child was killed, not waited for
