"""``precision: auto`` on CUDA: the GPU's own candidates, flags, cache entry and words.

No GPU here (CI has none): the GPU is read through a fake ``torch.cuda``, and the upscaler's CUDA
decision runs the real anime-6B weights on the CPU (``_model``/``_infer_fn`` are pointed at
``cpu``) on a scripted clock, so what is tested is which candidates a GPU gets, how they are
scored and chosen, and what the trace and the cache say. The real CUDA run is the device check
in bench/README.md (``python -m bench.bench_image --device cuda --speed-only``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from providers.image import gpu, precision
from providers.image import upscale as upscale_module
from providers.image.precision import AutoPrecision, CpuInfo
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings
from tests.test_image_precision import IDLE, MODEL, NOT_READ, ScriptedClock, models_dir  # noqa: F401

H200 = CpuInfo("NVIDIA H200", gpu.flags_for((9, 0)), "cuda", 1, "sm_90 cuda 13.0")
T4 = CpuInfo("Tesla T4", gpu.flags_for((7, 5)), "cuda", 1, "sm_75 cuda 12.4")
K80 = CpuInfo("Tesla K80", gpu.flags_for((3, 7)), "cuda", 1, "sm_37 cuda 11.4")


def fake_torch(name: str, capability: tuple[int, int], count: int = 1, cuda: str = "13.0") -> Any:
    cuda_ns = SimpleNamespace(current_device=lambda: 0, get_device_capability=lambda index: capability,
                              get_device_name=lambda index: name, device_count=lambda: count)
    return SimpleNamespace(cuda=cuda_ns, version=SimpleNamespace(cuda=cuda))


def test_a_gpu_is_read_as_a_machine_with_its_own_flags_and_key():
    info = gpu.read_gpu_info(fake_torch("NVIDIA H200", (9, 0)))
    assert info == H200
    assert precision.candidates_for(H200, gpu.CUDA_CANDIDATES) == ["fp32", "fp16", "bf16"]
    # Turing has fp16 tensor cores and no native bf16; Kepler has neither
    assert precision.candidates_for(T4, gpu.CUDA_CANDIDATES) == ["fp32", "fp16"]
    assert precision.candidates_for(K80, gpu.CUDA_CANDIDATES) == ["fp32"]
    # the cache key tells GPUs apart by name, capability, CUDA version and flags
    assert precision.machine_key(H200) == "cuda NVIDIA H200 (sm_90 cuda 13.0) x1 [cuda_bf16,cuda_fp16]"
    assert precision.machine_key(T4) != precision.machine_key(replace_ident(T4, "sm_75 cuda 13.0"))


def replace_ident(info: CpuInfo, ident: str) -> CpuInfo:
    return CpuInfo(info.model, info.flags, info.arch, info.cpus, ident)


def on_cpu(provider: RealESRGANUpscaler) -> RealESRGANUpscaler:
    """Run the CUDA branch's models on the CPU: the decision logic is what is under test."""
    model, infer = provider._model, provider._infer_fn
    provider._model = lambda name, device, p: model(name, "cpu", p)  # type: ignore[method-assign]
    provider._infer_fn = lambda net, device, p: infer(net, "cpu", p)  # type: ignore[method-assign]
    return provider


def gpu_upscaler(models: str, cache: Path, info: CpuInfo, costs: list[float]) -> RealESRGANUpscaler:
    settings = UpscaleSettings(models_dir=models, device="cuda", precision="auto", tile=0)
    cuda = AutoPrecision(cache / "precision.json", lambda: info, probe_size=16, rounds=1,
                         timer=ScriptedClock(costs), load=lambda: IDLE, cpu_share=NOT_READ, hardware="GPU")
    return on_cpu(RealESRGANUpscaler(settings, cuda_precision=cuda))


def test_auto_on_a_gpu_measures_the_gpus_candidates_and_caches_per_gpu(models_dir, tmp_path):  # noqa: F811
    # scripted: fp32 1.0 s, fp16 0.2 s, bf16 0.25 s; the scores are real (fp16 and bf16 of the real weights)
    provider = gpu_upscaler(models_dir, tmp_path, H200, [1.0, 0.2, 0.25])
    chosen, why = provider.precision(MODEL, "cuda")
    assert chosen == "fp16", why
    assert why.startswith("fp16 (auto: 5.0x fp32, PSNR ") and "on 1 CPUs" not in why, why
    (key, entry), = json.loads((tmp_path / "precision.json").read_text())["decisions"].items()
    assert set(entry["measured"]) == {"fp32", "fp16", "bf16"}  # each scored on both probes, and timed
    assert {"psnr_photo", "psnr_line_art", "speedup"} <= set(entry["measured"]["bf16"])
    assert key.startswith("cuda NVIDIA H200 (sm_90 cuda 13.0) x1") and MODEL in key and "upscale-paths 2" in key
    assert entry["precision"] == "fp16"
    # a T4 (no bf16) is measured afresh, on its own candidates: bf16 is never run there
    t4 = gpu_upscaler(models_dir, tmp_path, T4, [1.0, 0.4])
    chosen, why = t4.precision(MODEL, "cuda")
    assert chosen == "fp16" and "bf16" not in why, why
    assert len(json.loads((tmp_path / "precision.json").read_text())["decisions"]) == 2


def test_a_gpu_without_reduced_precision_runs_fp32_and_says_why(models_dir, tmp_path):  # noqa: F811
    chosen, why = gpu_upscaler(models_dir, tmp_path, K80, [1.0]).precision(MODEL, "cuda")
    assert (chosen, why) == ("fp32", "fp32 (auto: this GPU has none of cuda_bf16, cuda_fp16)")


def test_the_cpu_decision_is_not_taken_for_the_gpu(models_dir, tmp_path):  # noqa: F811
    """One provider, both devices: each reads its own machine's decision."""
    provider = gpu_upscaler(models_dir, tmp_path, H200, [1.0, 0.2, 0.25])
    cpu = CpuInfo("AMD EPYC 7763 64-Core Processor", frozenset({"avx2"}), "x86_64", 2, "25/1/1")
    provider.auto_precision = AutoPrecision(tmp_path / "precision.json", lambda: cpu, cpu_share=NOT_READ)
    provider.table = dict(precision.CPU_CANDIDATES)
    assert provider.precision(MODEL, "cpu")[0] == "fp32"
    assert provider.precision(MODEL, "cuda")[0] == "fp16"


def test_strict_fp32_turns_tf32_off_for_the_block_and_back():
    torch = pytest.importorskip("torch")
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        read = lambda: conv.fp32_precision  # noqa: E731
        strict = "ieee"
    else:
        read = lambda: torch.backends.cudnn.allow_tf32  # noqa: E731
        strict = False
    before = read()
    with upscale_module._ieee_fp32(torch):
        assert read() == strict
    assert read() == before
    with pytest.raises(RuntimeError), upscale_module._ieee_fp32(torch):
        raise RuntimeError("a tile failed")
    assert read() == before


def test_the_cuda_fp16_path_gets_half_weights_and_the_others_share_fp32(models_dir, tmp_path):  # noqa: F811
    """fp16 on CUDA is a model of its own (half weights); fp32 and bf16 (autocast) run the fp32 one."""
    provider = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, device="cpu"))
    loads: list[str] = []
    real = provider._model

    def model(name: str, device: str, p: str) -> Any:
        loads.append(p)
        return real(name, "cpu", p)

    provider._model = model  # type: ignore[method-assign]
    provider._cuda_precision = AutoPrecision(tmp_path / "precision.json", lambda: H200, probe_size=16, rounds=1,
                                             timer=ScriptedClock([1.0, 0.2, 0.25]), load=lambda: IDLE,
                                             cpu_share=NOT_READ, hardware="GPU")
    infer = provider._infer_fn
    provider._infer_fn = lambda net, device, p: infer(net, "cpu", p)  # type: ignore[method-assign]
    provider.precision(MODEL, "cuda")
    assert set(loads) == {"fp32", "fp16"} and "bf16" not in loads
