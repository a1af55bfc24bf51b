"""``swarm doctor`` says which path each image role runs on this CPU: pinned in config, the only
path this CPU has, the newest decision ``precision: auto`` cached here, or not measured yet."""

from __future__ import annotations

from dataclasses import asdict

from providers.image.precision import Decision, cache_key, decisions_file, read_cpu_info
from providers.image.precision_cache import DecisionCache
from swarm.doctor_models import check_precision

#: a path no CPU has the flag for, beside the reference: auto has nothing to measure
ONLY_FP32 = {"fp32": frozenset[str](), "bf16": frozenset({"no_such_cpu_flag"})}
#: a path every CPU may run: auto measures
TWO = {"fp32": frozenset[str](), "ncnn": frozenset[str]()}


def test_pinned_and_nothing_to_measure_are_said_without_reading_decisions() -> None:
    pinned = check_precision("upscale", ["realesrgan-anime-6b"], "fp32", "providers.image.upscale.precision")
    assert (pinned.status, pinned.detail) == ("info", "fp32, pinned in config (providers.image.upscale.precision)")
    only = check_precision("remove_background", ["u2netp"], "auto", "k", ONLY_FP32)
    assert only.detail == "auto: fp32, the only path here (this CPU has none of no_such_cpu_flag)"


def test_the_newest_decision_of_this_cpu_for_the_first_model_that_has_one() -> None:
    """isnet-anime was never measured here (not pulled): its fallback u2netp's decision is the one
    that runs; of two decisions (two onnxruntime versions), the newest is said."""
    unmeasured = check_precision("remove_background", ["isnet-anime", "u2netp"], "auto", "k", TWO)
    assert unmeasured.detail.startswith("auto, not measured on this CPU yet: the first remove_background job")
    cache, cpu = DecisionCache(decisions_file()), read_cpu_info()
    cache.store(cache_key(cpu, "u2netp", "ort 1.0 rules"), asdict(Decision("fp32", "auto: old")))
    cache.store(cache_key(cpu, "u2netp", "ort 2.0 rules"), asdict(Decision("torch-bf16", "auto: 2.5x fp32")))
    cache.store(cache_key(cpu, "u2net", "ort 2.0 rules"), asdict(Decision("fp32", "auto: another model")))
    said = check_precision("remove_background", ["isnet-anime", "u2netp"], "auto", "k", TWO)
    assert said.detail == (f"u2netp: torch-bf16 (auto: 2.5x fp32); 1 older decision(s) of other runtime versions"
                           f" kept (cached in {decisions_file()})")
