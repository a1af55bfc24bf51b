"""A measurement's time is bounded: once ``MEASURE_BUDGET_S`` is spent no run starts, the candidates
not yet timed are dropped and named, and the rounds done decide. The clock is the fake model's."""

from __future__ import annotations

import time

import numpy as np
from test_image_precision import AMX, MODEL, FakeModel, chooser

from providers.image import precision, precision_measure

IMAGES = precision.probe_images(16)  # two images: a candidate's round is two runs


def test_rounds_stop_when_the_budget_is_spent_and_the_rounds_done_decide():
    model = FakeModel({"fp32": 1.0, "bf16": 2.9, "ncnn": 0.5}, {})  # bf16 just under the drop bound
    decision = precision.measure(model.run, ["fp32", "bf16", "ncnn"], IMAGES, rounds=20, timer=model.clock,
                                 clock=model.clock, budget_s=30)
    assert model.now <= 30 + 2 * 2.9  # the budget, and the round under way when it ran out
    assert decision.describe() == "ncnn (auto: 2.0x fp32, PSNR inf dB; timed 2 of 20 rounds: the 30 s budget ran out)"
    assert decision.measured["bf16"]["speedup"] == 0.34  # bf16 was timed too, in the same rounds


def test_candidates_not_reached_within_the_budget_are_dropped_and_named():
    model = FakeModel({"fp32": 1.0, "bf16": 40.0, "ncnn": 0.5}, {})  # one bf16 run spends it all
    decision = precision.measure(model.run, ["fp32", "bf16", "ncnn"], IMAGES, rounds=3, timer=model.clock,
                                 clock=model.clock, budget_s=10)
    assert model.calls == ["fp32", "fp32", "bf16"]  # nothing started once the budget was spent
    assert decision.describe() == ("fp32 (auto: bf16 not measured: the 10 s measuring budget ran out; "
                                   "ncnn not measured: the 10 s measuring budget ran out)")
    assert decision.measured == {}


class Stalls(FakeModel):
    """``FakeModel`` whose bf16 runs take ``stall`` real seconds (a pathological path)."""

    def __init__(self, stall: float) -> None:
        super().__init__({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
        self.stall = stall

    def run(self, name: str, image: np.ndarray) -> np.ndarray:
        if name == "bf16":
            time.sleep(self.stall)
        return super().run(name, image)


def test_warm_up_measures_within_the_budget_and_says_what_it_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_measure, "MEASURE_BUDGET_S", 0.2)
    model = Stalls(stall=0.3)
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    assert decision.precision == "fp32" and model.calls.count("bf16") == 1
    assert decision.why.startswith("auto: bf16 not measured: the 0.2 s measuring budget ran out; load 0.25")
