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

from providers.image import archs, gpu, precision
from providers.image import upscale as upscale_module
from providers.image.cpu import usable_cpus
from providers.image.precision import AutoPrecision, CpuInfo
from providers.image.precision_cache import DecisionCache
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings
from tests.test_image_precision import AMX, IDLE, MODEL, NOT_READ, ScriptedClock, models_dir  # noqa: F401

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
    # the CPU share in the why-text is the host's, on its cores, not on the GPU count
    assert why.startswith("fp16 (auto: 5.0x fp32, PSNR ") and "; host " in why, why
    (key, entry), = json.loads((tmp_path / "precision.json").read_text())["decisions"].items()
    assert entry["conditions"]["cpus"] == usable_cpus()
    assert set(entry["measured"]) == {"fp32", "fp16", "bf16"}  # each scored on both probes, and timed
    assert {"psnr_photo", "psnr_line_art", "speedup"} <= set(entry["measured"]["bf16"])
    assert key.startswith("cuda NVIDIA H200 (sm_90 cuda 13.0) x1") and MODEL in key and upscale_module.REVISION in key
    assert entry["precision"] == "fp16"
    # a T4 (no bf16) is measured afresh, on its own candidates: bf16 is never run there
    t4 = gpu_upscaler(models_dir, tmp_path, T4, [1.0, 0.4])
    chosen, why = t4.precision(MODEL, "cuda")
    assert chosen == "fp16" and "bf16" not in why, why
    assert len(json.loads((tmp_path / "precision.json").read_text())["decisions"]) == 2


def test_a_gpu_without_reduced_precision_runs_fp32_and_says_why(models_dir, tmp_path):  # noqa: F811
    chosen, why = gpu_upscaler(models_dir, tmp_path, K80, [1.0]).precision(MODEL, "cuda")
    assert (chosen, why) == ("fp32", "fp32 (auto: this GPU has none of cuda_bf16, cuda_fp16)")


def test_the_cpu_and_the_gpu_keep_their_own_decisions_in_one_file(models_dir, tmp_path):  # noqa: F811
    """One provider, both devices, one precision.json: each measures and reads its own entry."""
    provider = gpu_upscaler(models_dir, tmp_path, H200, [1.0, 0.2, 0.25])
    # the AMX CPU measures fp32 and bf16 (scripted: bf16 4x, its real PSNR on 16 px probes decides)
    provider.auto_precision = AutoPrecision(tmp_path / "precision.json", lambda: AMX, probe_size=16, rounds=1,
                                            timer=ScriptedClock([1.0, 0.25]), load=lambda: IDLE, cpu_share=NOT_READ)
    provider.table = dict(precision.CPU_CANDIDATES)
    cpu_choice = provider.precision(MODEL, "cpu")[0]
    decisions = json.loads((tmp_path / "precision.json").read_text())["decisions"]
    assert len(decisions) == 1 and next(iter(decisions)).startswith("x86_64 ")
    assert provider.precision(MODEL, "cuda")[0] == "fp16"  # measured on its own candidates, not the CPU's entry
    decisions = json.loads((tmp_path / "precision.json").read_text())["decisions"]
    assert sorted(k.split()[0] for k in decisions) == ["cuda", "x86_64"]
    assert set(decisions[next(k for k in decisions if k.startswith("cuda"))]["measured"]) == {"fp32", "fp16", "bf16"}
    # a fresh process (new AutoPrecision objects) reads each back without measuring
    again = gpu_upscaler(models_dir, tmp_path, H200, [9.0])
    again.auto_precision = AutoPrecision(tmp_path / "precision.json", lambda: AMX, timer=ScriptedClock([9.0]),
                                         load=lambda: IDLE, cpu_share=NOT_READ)
    again.table = dict(precision.CPU_CANDIDATES)
    assert again.precision(MODEL, "cpu")[0] == cpu_choice and again.precision(MODEL, "cuda")[0] == "fp16"


def test_a_gpu_that_waited_too_long_for_the_lock_runs_fp16_not_its_slowest_path(models_dir, tmp_path):  # noqa: F811
    provider = gpu_upscaler(models_dir, tmp_path, H200, [1.0, 0.2, 0.25])
    assert provider._cuda_precision is not None
    provider._cuda_precision.wait_s = 0.2
    with DecisionCache(tmp_path / "precision.json").measuring(precision.machine_key(H200), 0) as held:
        assert held  # another process is measuring on this GPU
        chosen, why = provider.precision(MODEL, "cuda")
    assert chosen == "fp16" and why.startswith("fp16 (auto: the default here, not measured: another process held")
    assert not (tmp_path / "precision.json").exists()  # nothing cached: the next start measures


def test_pinned_precisions_on_a_gpu_say_what_they_run():
    assert gpu.describe_pinned("fp32", H200) == "fp32 (pinned in config; IEEE, TF32 off)"
    assert gpu.describe_pinned("fp16", H200) == "fp16 (pinned in config)"
    assert gpu.describe_pinned("bf16", T4) == "bf16 (pinned in config; this GPU lacks cuda_bf16: emulated, slow)"


def _tf32_reader(torch: Any) -> tuple[Any, Any]:
    """Reads the switch ``ieee_fp32`` sets, and its IEEE value, on this torch."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if getattr(conv, "fp32_precision", None) is not None:
        return (lambda: (conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision)), ("ieee", "ieee")
    return (lambda: torch.backends.cudnn.allow_tf32), False


def test_ieee_fp32_turns_tf32_off_while_any_inference_holds_it_and_then_back():
    torch = pytest.importorskip("torch")
    read, strict = _tf32_reader(torch)
    before = read()
    assert before != strict  # torch's default lets cuDNN use TF32
    with gpu.ieee_fp32(torch):
        assert read() == strict
    assert read() == before
    with pytest.raises(RuntimeError), gpu.ieee_fp32(torch):
        raise RuntimeError("a tile failed")
    assert read() == before
    # two inferences overlapping (a config reload rebuilt the provider mid-job): A in, B in, A out
    # leaves B's tiles strict; the switch comes back once, at the last exit
    first, second = gpu.ieee_fp32(torch), gpu.ieee_fp32(torch)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert read() == strict
    second.__exit__(None, None, None)
    assert read() == before


def test_only_fp32_on_cuda_runs_strict():
    torch = pytest.importorskip("torch")
    read, strict = _tf32_reader(torch)
    for device, p in [("cuda", "fp16"), ("cuda", "bf16"), ("cpu", "fp32"), ("cpu", "bf16")]:
        with gpu.inference_context(torch, device, p):
            assert read() != strict, (device, p)
    with gpu.inference_context(torch, "cuda", "fp32"):
        assert read() == strict


def test_the_cuda_fp16_path_loads_half_weights_and_the_others_share_fp32(models_dir, monkeypatch, tmp_path):  # noqa: F811
    """fp16 on CUDA is a model of its own, half weights in channels_last; fp32 and bf16 (autocast)
    run the fp32 one. archs.load is pointed at the CPU: the dtype and layout are what is checked."""
    torch = pytest.importorskip("torch")
    load = archs.load
    monkeypatch.setattr(archs, "load", lambda path, device="cpu": load(path, device="cpu"))
    provider = RealESRGANUpscaler(UpscaleSettings(models_dir=models_dir, device="cuda"))
    half, _ = provider._model(MODEL, "cuda", "fp16")
    full, _ = provider._model(MODEL, "cuda", "fp32")
    assert provider._model(MODEL, "cuda", "bf16")[0] is full
    conv = next(m for m in half.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.dtype == torch.float16 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert next(full.parameters()).dtype == torch.float32
