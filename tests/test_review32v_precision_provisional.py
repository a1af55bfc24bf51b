"""Review 32v: a provisional (busy) precision decision.

- A start that finds one, while another process holds this machine's measurement lock (measuring
  another model), ran it at once before; since provisional decisions were cached it waited for the
  lock, up to ``wait_s`` (300 s), though it had a decision to run.
- An entry whose ``busy_runs`` is no count (a hand edit, another version) failed the image job
  with a TypeError; an unreadable entry is measured again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_image_precision import AMX, MODEL, FakeModel, chooser

from providers.image import precision
from providers.image.precision import AutoPrecision, machine_key
from providers.image.precision_cache import DecisionCache


def _provisional(tmp_path: Path, model: FakeModel) -> precision.Decision:
    decision = chooser(tmp_path, AMX, model, load=4.6).decide(MODEL, "t", model.run)
    assert decision.busy_runs == 1
    return decision


def test_a_provisional_decision_runs_at_once_while_another_process_measures(tmp_path, monkeypatch):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    decision = _provisional(tmp_path, model)
    said: list[str] = []
    monkeypatch.setattr(precision, "report", said.append)
    before = len(model.calls)
    quiet = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                          load=lambda: 0.25, wait_s=0.5, cpu_share=chooser(tmp_path, AMX, model).cpu_share)
    with DecisionCache(tmp_path / "precision.json").measuring(machine_key(AMX), 0) as held:  # another process
        assert held
        assert quiet.decide(MODEL, "t", model.run) == decision
    assert len(model.calls) == before
    assert not [s for s in said if s.startswith("waiting")], said


@pytest.mark.parametrize("runs", ["2", None, [1]])
def test_an_entry_whose_busy_runs_is_no_count_is_measured_again(tmp_path, runs):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    _provisional(tmp_path, model)
    path = tmp_path / "precision.json"
    raw = json.loads(path.read_text())
    (entry,) = raw["decisions"].values()
    entry["busy_runs"] = runs
    path.write_text(json.dumps(raw))
    before = len(model.calls)
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    assert len(model.calls) > before and decision.busy_runs == 0
