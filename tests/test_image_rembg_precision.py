"""Background removal's ``precision: auto``: onnxruntime fp32 or torch on the same weights.

The real u2netp weights run on both paths on any CPU: the candidate set is forced through the
remover's ``paths`` parameter, the CPU is faked, and a scripted clock decides which candidate
"is faster", so what is checked is the choice, the floor, the cache and the pin, not this
machine's speed (speed is bench/bench_rembg.py's).
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_image_precision import IDLE, NOT_READ, ScriptedClock

from core.config import RembgSpec, load_config
from core.errors import ConfigError
from providers.base import ImageAction, ImageConfig
from providers.image import precision, rembg_paths
from providers.image import pull as weights_pull
from providers.image.onnx_torch import Graph, Node, OnnxTorchNet, UnsupportedGraph, read_graph
from providers.image.precision import AutoPrecision, CpuInfo, measure
from providers.image.rembg_backend import RembgRemover, RembgSettings
from providers.image.rembg_paths import mask_floor, mask_scores

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
PHOTO = (FIXTURES / "grace_hopper_256.jpg").read_bytes()
MODEL = "u2netp"

SAPPHIRE = CpuInfo("Intel(R) Xeon(R) Platinum 8480+", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"}))
EPYC = CpuInfo("AMD EPYC 7763 64-Core Processor", frozenset({"avx2", "fma"}))
FP16_ONLY = {"fp32": frozenset(), "torch-fp16": frozenset()}


# --- the floor ----------------------------------------------------------------------------------


def test_mask_scores_iou_of_the_foregrounds_and_mean_alpha_difference():
    ref = np.zeros((10, 10), np.uint8)
    ref[:, :5] = 255  # 50 foreground pixels
    out = ref.copy()
    out[:, 4] = 100  # 10 of them drop below 128, each by 155 levels
    scores = mask_scores(ref, out)
    assert scores["iou"] == pytest.approx(40 / 50)
    assert scores["alpha_diff"] == pytest.approx(10 * 155 / 100)
    assert mask_scores(np.zeros((4, 4), np.uint8), np.full((4, 4), 3, np.uint8)) == {"iou": 1.0, "alpha_diff": 3.0}


def fake_masks(noise: dict[str, float]) -> precision.RunFn:
    """A "model" whose mask is the image's red channel, plus ``noise[path]`` levels of seeded noise."""

    def run(path: str, image: np.ndarray) -> np.ndarray:
        mask = image[..., 0].astype(float)
        if noise.get(path):
            mask += np.random.default_rng(0).normal(0, noise[path], mask.shape)
        return np.clip(mask.round(), 0, 255).astype(np.uint8)

    return run


def test_the_floor_rejects_a_faster_path_that_moves_alpha_and_keeps_one_within_it():
    images = rembg_paths.mask_probes()
    paths = ["fp32", "torch-bf16", "torch-fp16"]
    run = fake_masks({"torch-bf16": 6.0, "torch-fp16": 0.4})
    decision = measure(run, paths, images, rounds=1, timer=ScriptedClock([1.0, 0.2, 0.5]), floor=mask_floor())
    assert decision.precision == "torch-fp16"
    assert decision.why.startswith("auto: 2.0x fp32, IoU ")
    assert decision.measured["torch-bf16"]["alpha_diff_photo"] > rembg_paths.ALPHA_DIFF_FLOOR
    assert min(decision.measured["torch-fp16"][f"iou_{k}"] for k in images) >= rembg_paths.IOU_FLOOR

    alone = measure(run, ["fp32", "torch-bf16"], images, rounds=1, timer=ScriptedClock([1.0, 0.2]), floor=mask_floor())
    assert alone.precision == "fp32" and alone.why.startswith("auto: torch-bf16 5.0x but IoU 0.9")
    assert "< 0.99, alpha diff " in alone.why and alone.why.endswith(" levels > 1")


def test_config_offers_auto_fp32_and_the_torch_paths(tmp_path):
    assert RembgSpec().precision == "auto"
    assert RembgSpec(precision="torch-bf16").precision == "torch-bf16"
    shipped = (Path(__file__).parents[1] / "config.yaml").read_text()
    assert load_config(Path(__file__).parents[1] / "config.yaml").providers.image.rembg.precision == "auto"
    rembg_section = shipped.index("    rembg:")
    at = shipped.index("precision: auto", rembg_section)
    (tmp_path / "config.yaml").write_text(shipped[:at] + "precision: int8" + shipped[at + len("precision: auto"):])
    with pytest.raises(ConfigError, match=r"providers\.image\.rembg\.precision: Input should be 'auto', 'fp32'"):
        load_config(tmp_path / "config.yaml")


# --- the graph on torch -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir():
    assert weights_pull.pull([MODEL], SHARED)["ok"]
    return str(SHARED)


def test_torch_runs_the_onnx_graph_as_onnxruntime_does(models_dir):
    import onnxruntime as ort
    import torch

    path = Path(models_dir) / "u2netp.onnx"
    net = OnnxTorchNet(read_graph(path), (1, 3, 320, 320))
    assert {node.op for node in net.plan} <= {"Conv", "Relu", "MaxPool", "Resize", "Concat", "Add", "Sigmoid"}
    batch = np.random.default_rng(1).standard_normal((1, 3, 320, 320)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: batch})[0]
    (ours,) = net(torch.from_numpy(batch))
    assert ours.shape == expected.shape and float(np.abs(ours.numpy() - expected).max()) < 1e-4
    (pair,) = net(torch.from_numpy(np.concatenate([batch, batch[:, :, ::-1].copy()])))  # any batch size
    assert pair.shape[0] == 2 and float(np.abs(pair[:1].numpy() - expected).max()) < 1e-4


def test_bf16_keeps_the_measured_nodes_in_fp32_and_passes_the_floor_on_both_probes(models_dir):
    import onnxruntime as ort
    import torch

    path = Path(models_dir) / "u2netp.onnx"
    net = OnnxTorchNet(read_graph(path), (1, 3, 320, 320))
    ops = [net.plan[i].op for i in sorted(net.fp32_nodes)]
    # the tail of the half-resolution decoder block (its last two convs up to the residual Add),
    # then the output head: 6 side convs, 5 resizes, the concat, the fusion conv, the sigmoid
    assert ops[:7] == ["Conv", "Relu", "Resize", "Concat", "Conv", "Relu", "Add"]
    assert ops[7:].count("Conv") == 7 and ops[-1] == "Sigmoid" and len(ops) == 7 + 14
    tail_add = net.plan[sorted(net.fp32_nodes)[6]]
    assert net.shapes[tail_add.outputs[0]][2] == 160

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = session.get_inputs()[0].name, session.get_outputs()[0].name
    extra = {"input_size": 320}

    def masks(run) -> dict[str, np.ndarray]:
        return {label: np.asarray(RembgRemover.predict_mask(run, Image.fromarray(image), extra))
                for label, image in rembg_paths.mask_probes().items()}

    reference = masks(lambda batch: session.run([names[1]], {names[0]: batch})[0][:, 0])
    mixed = masks(lambda batch: net(torch.from_numpy(batch), torch.bfloat16)[0][:, 0].numpy())
    net.fp32_nodes = frozenset()
    all_bf16 = masks(lambda batch: net(torch.from_numpy(batch), torch.bfloat16)[0][:, 0].numpy())
    for label in reference:
        scores = mask_scores(reference[label], mixed[label])
        assert scores["iou"] >= rembg_paths.IOU_FLOOR and scores["alpha_diff"] <= rembg_paths.ALPHA_DIFF_FLOOR / 4
    # every node in bf16 misses the floor on the photo: the fp32 nodes are what passes it
    assert mask_scores(reference["photo"], all_bf16["photo"])["alpha_diff"] > rembg_paths.ALPHA_DIFF_FLOOR


def test_thread_limit_applies_to_the_calling_thread_only(monkeypatch: pytest.MonkeyPatch):
    import importlib.util
    import threading

    import torch

    if importlib.util.find_spec("ncnn") is not None:
        import ncnn  # noqa: F401  # its own libgomp copy, loaded first: the limit must still reach torch's
    monkeypatch.setattr(rembg_paths, "_OPENMP", [])  # found afresh, with both copies in the process
    seen: list[int] = []

    def worker() -> None:
        with rembg_paths.thread_limit(1) as limited:
            seen.extend([int(limited), torch.get_num_threads()])
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen[0] == 1, "no OpenMP runtime found in this process"
    assert seen[1] == 1 and seen[2] == before and torch.get_num_threads() == before


def test_the_openmp_runtime_limited_is_torchs_own_not_another_wheels_copy():
    torch_dir = "/venv/site-packages/torch"
    ncnn_copy = "/venv/site-packages/ncnn.libs/libgomp-6a29c32d.so.1.0.0"
    ours = f"{torch_dir}/lib/libgomp.so.1"
    assert rembg_paths.pick_openmp({ncnn_copy, ours}, torch_dir) == ours  # ncnn's sorts first
    assert rembg_paths.pick_openmp({ncnn_copy, ours}, torch_dir + "/") == ours
    # a torch that uses the system's runtime: the copy no wheel bundled
    system = "/usr/lib/x86_64-linux-gnu/libgomp.so.1"
    assert rembg_paths.pick_openmp({ncnn_copy, system}, torch_dir) == system
    assert rembg_paths.pick_openmp({ncnn_copy}, torch_dir) == ncnn_copy  # only one: that one
    assert rembg_paths.pick_openmp(set(), torch_dir) is None


def test_a_graph_with_an_op_torch_cannot_run_is_refused():
    graph = Graph([Node("LSTM", ["x"], ["y"])], {}, ["x"], ["y"])
    with pytest.raises(UnsupportedGraph, match="LSTM"):
        OnnxTorchNet(graph, (1, 3, 8, 8))


def test_a_relu_overwrites_its_input_only_where_no_other_node_reads_it():
    """``Relu`` runs in place (a new tensor per Relu cost 3-8% of a u2netp forward) only on a value
    the plan made and nothing else reads: here ``c`` feeds the Relu and the Add, ``d`` only a Relu;
    the graph's output matches the same ops run out of place, and the caller's batch is untouched."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    nodes = [
        Node("Relu", ["x"], ["r0"]),  # reads the caller's batch
        Node("Conv", ["r0", "w"], ["c"], {"pads": [1, 1, 1, 1]}),
        Node("Relu", ["c"], ["r1"]),  # c is read again by the Add below
        Node("Add", ["c", "r1"], ["d"]),
        Node("Relu", ["d"], ["y"]),  # d's only reader
    ]
    net = OnnxTorchNet(Graph(nodes, {"w": weight}, ["x"], ["y"]), (1, 3, 6, 6))
    assert net._in_place == {4}

    batch = torch.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    kept = batch.clone()
    r0 = torch.relu(kept)
    c = torch.nn.functional.conv2d(r0.contiguous(memory_format=torch.channels_last), torch.from_numpy(weight),
                                   padding=1)
    expected = torch.relu(c + torch.relu(c))
    for dtype in (None, torch.bfloat16):
        (out,) = net(batch, dtype)
        assert torch.equal(batch, kept)
        tolerance = 0 if dtype is None else 0.1
        assert torch.allclose(out, expected, atol=tolerance, rtol=tolerance)


# --- the remover ----------------------------------------------------------------------------------


def remover(models_dir: str, cache: Path, cpu: CpuInfo, setting: str = "auto", *,
            paths: dict[str, frozenset[str]] | None = None, costs: list[float] | None = None) -> RembgRemover:
    settings = RembgSettings(model=MODEL, fallback_models=(), models_dir=models_dir, precision=setting)
    auto = AutoPrecision(cache / "precision.json", lambda: cpu, rounds=1, timer=ScriptedClock(costs or [1.0]),
                         load=lambda: IDLE, cpu_share=NOT_READ)
    return RembgRemover(settings, cpu_info=lambda: cpu, auto_precision=auto, paths=paths)


async def alpha(provider: RembgRemover, image: bytes = PHOTO) -> tuple[np.ndarray, str]:
    data, (step,) = await provider.process_traced(image, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    return np.asarray(Image.open(io.BytesIO(data)))[..., 3], step.detail


async def test_auto_runs_the_faster_torch_path_within_the_floor_then_reuses_it(models_dir, tmp_path, monkeypatch):
    fp32, _ = await alpha(remover(models_dir, tmp_path, EPYC, "fp32"))
    chosen, detail = await alpha(remover(models_dir, tmp_path, SAPPHIRE, paths=FP16_ONLY, costs=[1.0, 0.25]))
    assert "device=cpu path=torch-fp16 (auto: 4.0x fp32, IoU " in detail and " levels; load 0.25 on " in detail
    assert not np.array_equal(chosen, fp32)  # torch really ran ...
    scores = mask_scores(fp32, chosen)  # ... within the floor on the real photo
    assert scores["iou"] >= rembg_paths.IOU_FLOOR and scores["alpha_diff"] <= rembg_paths.ALPHA_DIFF_FLOOR

    (key,) = json.loads((tmp_path / "precision.json").read_text())["decisions"]
    assert "Platinum 8480+" in key and MODEL in key and "onnxruntime " in key and "torch " in key
    assert rembg_paths.REVISION in key  # a decision measured before the paths changed is not reused

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured although a decision was cached")

    monkeypatch.setattr(precision, "measure", no_measuring)  # a new process reads the cache
    again, detail_again = await alpha(remover(models_dir, tmp_path, SAPPHIRE, paths=FP16_ONLY))
    assert detail_again == detail and np.array_equal(again, chosen)


async def test_auto_keeps_onnxruntime_when_torch_breaks_the_floor(models_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(rembg_paths, "ALPHA_DIFF_FLOOR", 0.0)  # any moved level breaks it
    paths = {"fp32": frozenset(), "torch-bf16": frozenset()}
    out, detail = await alpha(remover(models_dir, tmp_path, EPYC, paths=paths, costs=[1.0, 0.25]))
    assert "path=fp32 (auto: torch-bf16 4.0x but alpha diff " in detail and "levels > 0" in detail
    pinned, _ = await alpha(remover(models_dir, tmp_path, EPYC, "fp32"))
    assert np.array_equal(out, pinned)


async def test_cpu_without_bf16_or_fp16_or_ncnn_runs_onnxruntime_without_measuring(models_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ncnn", None)  # as where ncnn is not installed
    _, detail = await alpha(remover(models_dir, tmp_path, EPYC))
    assert "path=fp32 (auto: this CPU has none of amx_bf16, amx_fp16, avx512_bf16, avx512_fp16)" in detail
    assert not (tmp_path / "precision.json").exists()


async def test_pinned_paths_run_and_are_named_in_the_trace(models_dir, tmp_path):
    reference = np.asarray(Image.open(FIXTURES / "rembg_u2netp_grace_hopper_alpha.png")).astype(int)
    fp32, detail = await alpha(remover(models_dir, tmp_path, SAPPHIRE, "fp32"))
    assert "device=cpu path=fp32 (pinned in config)" in detail
    assert np.abs(fp32.astype(int) - reference).max() <= 1  # the rembg library's output, as before
    torch_fp32, detail = await alpha(remover(models_dir, tmp_path, EPYC, "torch-fp32"))
    assert "path=torch-fp32 (pinned in config)" in detail
    assert np.abs(torch_fp32.astype(int) - fp32.astype(int)).max() <= 1  # same weights, same graph
    _, detail = await alpha(remover(models_dir, tmp_path, EPYC, "torch-bf16"))
    assert "path=torch-bf16 (pinned in config; this CPU lacks amx_bf16/avx512_bf16: emulated, slow)" in detail
    assert not (tmp_path / "precision.json").exists()


async def batch_matches_single_images(provider: RembgRemover) -> Any:
    """A batch of the photo, its mirror image and the photo again: each item's alpha is the one
    the same provider gives that image alone. Returns the batch's outcome."""
    mirrored = Image.open(io.BytesIO(PHOTO)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    mirrored.save(buffer, "PNG")
    photos = [PHOTO, buffer.getvalue(), PHOTO]
    outcome = await provider.process_batch(photos, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    for photo, item in zip(photos, outcome.items, strict=True):
        single, _ = await alpha(provider, photo)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(item.data)))[..., 3], single)
    return outcome


@pytest.mark.parametrize("path", ["torch-fp16", "torch-bf16"])
async def test_batch_on_a_torch_path_gives_each_image_the_single_path_result(models_dir, tmp_path, monkeypatch, path):
    limits: list[int] = []
    real_limit = rembg_paths.thread_limit

    def recording(threads):
        limits.append(threads)
        return real_limit(threads)

    monkeypatch.setattr(rembg_paths, "thread_limit", recording)
    monkeypatch.setattr("providers.image.rembg_backend._cores", lambda: 2)
    outcome = await batch_matches_single_images(remover(models_dir, tmp_path, SAPPHIRE, path))
    assert all(f"path={path} (pinned in config)" in step.detail for step in outcome.steps)
    # the batch's 2 workers ran their forwards one thread each, side by side; single images on the pool
    assert limits == [1, 1, 1]


@pytest.mark.parametrize("error", [RuntimeError("could not create a primitive\nlong oneDNN detail"),
                                   ValueError("could not create a primitive")], ids=["RuntimeError", "ValueError"])
async def test_torch_failing_while_measuring_leaves_onnxruntime_says_why_and_is_cached(models_dir, tmp_path, monkeypatch,
                                                                                      error):
    def broken(self, path, threads=None):
        def run(batch):
            raise error
        return run

    monkeypatch.setattr(rembg_paths.TorchNets, "net", broken)
    out, detail = await alpha(remover(models_dir, tmp_path, SAPPHIRE, paths=FP16_ONLY, costs=[1.0, 0.25]))
    name = type(error).__name__
    assert f"path=fp32 (auto: torch-fp16 failed: {name}: could not create a primitive; load 0.25 on " in detail
    pinned, _ = await alpha(remover(models_dir, tmp_path, SAPPHIRE, "fp32"))
    assert np.array_equal(out, pinned)
    (entry,) = json.loads((tmp_path / "precision.json").read_text())["decisions"].values()
    assert entry["precision"] == "fp32"  # the next start neither measures nor fails again


async def test_the_reference_failing_while_measuring_leaves_onnxruntime_and_says_why(models_dir, tmp_path, monkeypatch):
    def probes_fail():
        raise OSError("probes/portrait_256.jpg: No such file")

    monkeypatch.setattr(rembg_paths, "mask_probes", probes_fail)
    _, detail = await alpha(remover(models_dir, tmp_path, SAPPHIRE, paths=FP16_ONLY))
    assert "path=fp32 (auto: measuring u2netp failed: OSError: probes/portrait_256.jpg: No such file)" in detail


async def test_the_trace_step_names_the_engine_that_ran(models_dir, tmp_path):
    """The step said rembg-onnx while its detail said path=torch-fp32."""
    ran = {}
    for setting in ("fp32", "torch-fp32"):
        provider = remover(models_dir, tmp_path, EPYC, setting)
        _, (step,) = await provider.process_traced(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig())
        outcome = await provider.process_batch([PHOTO, PHOTO], ImageAction.REMOVE_BACKGROUND, ImageConfig())
        ran[setting] = {step.provider, *(s.provider for s in outcome.steps)}
    assert ran == {"fp32": {"rembg-onnx"}, "torch-fp32": {"rembg-torch"}}


async def test_a_pinned_torch_path_without_torch_names_the_pip_command(models_dir, tmp_path, monkeypatch):
    import sys

    from core.errors import AllProvidersFailed

    monkeypatch.setitem(sys.modules, "torch", None)  # as where torch is not installed
    with pytest.raises(AllProvidersFailed) as failed:
        await alpha(remover(models_dir, tmp_path, EPYC, "torch-bf16"))
    (step,) = failed.value.attempts
    assert (step.provider, step.error_class) == ("rembg-torch", "ProviderUnavailable")
    assert "torch-bf16 runs on torch, which is not installed; run: pip install torch==2.13.0" in step.detail

