"""Background removal on ncnn: the U2-Net ONNX graph written as an ncnn network (``onnx_ncnn``).

The real u2netp weights run on the real ``ncnn`` package. What is checked: the fp32 network
computes what onnxruntime computes; with bf16 storage, the nodes kept fp32 really run fp32
(ncnn's per-layer mask and the casts in front of it); the masks stay within the floor on both
probes; workers sharing one network get each image's own result; the remover runs the paths,
names the engine, and ``auto`` measures them on a CPU without bf16 hardware. Speed is
bench/bench_rembg.py's.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_image_rembg_precision import EPYC, MODEL, PHOTO, SHARED, alpha, batch_matches_single_images, remover

from providers.base import ImageAction, ImageConfig
from providers.image import pull as weights_pull
from providers.image import rembg_paths
from providers.image.onnx_ncnn import NO_BF16, NcnnMaskNet, NcnnModel, ncnn_model, network_files, network_key
from providers.image.onnx_torch import Graph, Node, OnnxTorchNet, UnsupportedGraph, read_graph
from providers.image.rembg_backend import RembgRemover
from providers.image.rembg_paths import mask_scores

pytest.importorskip("ncnn")


@pytest.fixture(scope="module")
def graph() -> OnnxTorchNet:
    assert weights_pull.pull([MODEL], SHARED)["ok"]
    return OnnxTorchNet(read_graph(SHARED / "u2netp.onnx"), (1, 3, 320, 320))


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((2, 3, 320, 320)).astype(np.float32)


def loaded(model: NcnnModel, bf16: bool, threads: int = 1) -> NcnnMaskNet:
    """``model`` loaded by ncnn (from files that last only as long as the load)."""
    with tempfile.TemporaryDirectory() as folder, network_files(Path(folder), "net", lambda: model) as files:
        return NcnnMaskNet(*files, threads, bf16)


def onnxruntime_d0(batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(SHARED / "u2netp.onnx"), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: image[None]})[0]
                           for image in batch])[:, 0]


def test_the_fp32_network_computes_what_onnxruntime_computes(graph, batch):
    model = ncnn_model(graph)
    layers = [line.split()[0] for line in model.param.splitlines()[2:]]
    assert {"Input", "Convolution", "Pooling", "Interp", "Concat", "BinaryOp", "Sigmoid", "Split"} <= set(layers)
    assert "Cast" not in layers and f"31={NO_BF16}" not in model.param  # nothing masked in an fp32 network
    # every Relu of u2netp follows its Conv alone: fused into it (9=1), none left as a layer
    assert "ReLU" not in layers and model.param.count(" 9=1") == sum(node.op == "Relu" for node in graph.plan)
    out = loaded(model, False)(batch)
    expected = onnxruntime_d0(batch)
    assert out.shape == expected.shape == (2, 320, 320)
    assert float(np.abs(out - expected).max()) < 1e-4


def test_nodes_kept_fp32_under_bf16_really_run_fp32(graph, batch):
    """Every node masked: the bf16 network must give the fp32 network's output. Without a Cast in
    front of a masked layer that reads an unmasked one, ncnn hands it bf16 bytes as fp32."""
    fp32 = loaded(ncnn_model(graph), False)(batch)
    everything = ncnn_model(graph, range(len(graph.plan)))
    assert everything.param.count("Cast ") == 1  # only the input (made by no node) is read through one
    masked = loaded(everything, True)(batch)
    assert float(np.abs(masked - fp32).max()) < 1e-5
    moved = loaded(ncnn_model(graph), True)(batch)  # nothing masked: bf16 moves it
    assert float(np.abs(moved - fp32).max()) > 1e-3


def test_bf16_with_the_measured_fp32_nodes_passes_the_floor_on_both_probes(graph):
    import onnxruntime as ort

    session = ort.InferenceSession(str(SHARED / "u2netp.onnx"), providers=["CPUExecutionProvider"])
    model = ncnn_model(graph, graph.fp32_nodes)
    masked_layers = [line for line in model.param.splitlines() if f"31={NO_BF16}" in line]
    assert len(masked_layers) >= 14 and any(line.startswith("Sigmoid") for line in masked_layers)
    extra = {"input_size": 320}

    def masks(net) -> dict[str, np.ndarray]:
        return {label: np.asarray(RembgRemover.predict_mask(net, Image.fromarray(image), extra))
                for label, image in rembg_paths.mask_probes().items()}

    reference = masks(rembg_paths.onnxruntime_net(session))
    kept = masks(loaded(model, True))
    plain = masks(loaded(ncnn_model(graph), True))
    for label in reference:
        scores = mask_scores(reference[label], kept[label])
        assert scores["iou"] >= rembg_paths.IOU_FLOOR and scores["alpha_diff"] <= rembg_paths.ALPHA_DIFF_FLOOR
    # the fp32 nodes matter: all-bf16 moves the photo's alpha several times as far
    assert mask_scores(reference["photo"], plain["photo"])["alpha_diff"] > 4 * mask_scores(
        reference["photo"], kept["photo"])["alpha_diff"]


def test_workers_sharing_one_network_each_get_their_images_own_result(graph, batch):
    net = loaded(ncnn_model(graph, graph.fp32_nodes), True)
    alone = [net(batch[i:i + 1]) for i in range(2)]
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def worker(i: int) -> None:
        for _ in range(3):
            results[i].append(net(batch[i:i + 1]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(2):
        assert all(np.array_equal(out, alone[i]) for out in results[i])
    assert not np.array_equal(alone[0], alone[1])


@pytest.mark.parametrize("node, refused", [
    (Node("Conv", ["x", "w"], ["y"], {"group": 2}), "grouped Conv"),
    (Node("Concat", ["x", "x"], ["y"], {"axis": 2}), "Concat on axis 2"),
])
def test_a_graph_ncnn_is_not_written_for_is_refused(node, refused):
    weights = {"w": np.ones((4, 2, 3, 3), np.float32)} if node.op == "Conv" else {}
    if node.op == "Conv":
        node.attrs["pads"] = [1, 1, 1, 1]
    net = OnnxTorchNet(Graph([node], weights, ["x"], ["y"]), (1, 4, 8, 8))
    with pytest.raises(UnsupportedGraph, match=refused):
        ncnn_model(net)


# --- the remover --------------------------------------------------------------------------------


async def test_pinned_ncnn_paths_run_name_their_engine_and_stay_within_the_floor(tmp_path):
    models_dir = str(SHARED)
    fp32, _ = await alpha(remover(models_dir, tmp_path, EPYC, "fp32"))
    for path in ("ncnn", "ncnn-bf16"):
        provider = remover(models_dir, tmp_path, EPYC, path)
        data, (step,) = await provider.process_traced(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig())
        out = np.asarray(Image.open(io.BytesIO(data)))[..., 3]
        assert step.provider == "rembg-ncnn" and f"path={path} (pinned in config)" in step.detail
        scores = mask_scores(fp32, out)
        assert scores["iou"] >= rembg_paths.IOU_FLOOR and scores["alpha_diff"] <= rembg_paths.ALPHA_DIFF_FLOOR
        if path == "ncnn":  # the same fp32 arithmetic, other kernels
            assert np.abs(out.astype(int) - fp32.astype(int)).max() <= 1
        outcome = await batch_matches_single_images(provider)
        assert {s.provider for s in outcome.steps} == {"rembg-ncnn"}


async def test_auto_measures_the_ncnn_paths_on_a_cpu_without_bf16_hardware(tmp_path):
    """An AVX2-only CPU had nothing to measure; with ncnn installed both ncnn paths are candidates
    (the scripted clock makes ncnn-bf16 the fastest, then ncnn: the real speed is the bench's).
    Which one is chosen depends on ncnn-bf16's masks on this CPU (ncnn has its own bf16 kernels
    where the CPU has AVX512-BF16), so the expectation is read from the decision's own scores."""
    import json

    provider = remover(str(SHARED), tmp_path, EPYC, costs=[1.0, 0.8, 0.5])
    out, detail = await alpha(provider)
    (entry,) = json.loads((tmp_path / "precision.json").read_text())["decisions"].values()
    bf16 = entry["measured"]["ncnn-bf16"]
    within = (min(bf16["iou_photo"], bf16["iou_line_art"]) >= rembg_paths.IOU_FLOOR
              and max(bf16["alpha_diff_photo"], bf16["alpha_diff_line_art"]) <= rembg_paths.ALPHA_DIFF_FLOOR)
    expected = "ncnn-bf16 (auto: 2.0x fp32" if within else "ncnn (auto: 1.25x fp32"
    assert f"device=cpu path={expected}, IoU " in detail
    # the candidate not chosen freed its network (about 200 MB of ncnn buffers each)
    chosen = "ncnn-bf16" if within else "ncnn"
    assert {path for path, _ in provider.paths._ncnn[MODEL]._nets} == {chosen}
    assert provider.paths._torch[MODEL]._net is None
    fp32, _ = await alpha(remover(str(SHARED), tmp_path, EPYC, "fp32"))
    scores = mask_scores(fp32, out)
    assert scores["iou"] >= rembg_paths.IOU_FLOOR and scores["alpha_diff"] <= rembg_paths.ALPHA_DIFF_FLOOR
    assert not np.array_equal(out, fp32) or not within  # ncnn-bf16 really ran


async def test_a_pinned_ncnn_path_without_ncnn_names_the_pip_command(tmp_path, monkeypatch):
    from core.errors import AllProvidersFailed

    monkeypatch.setitem(sys.modules, "ncnn", None)  # as where ncnn is not installed
    assert "ncnn" not in rembg_paths.available_paths() and "fp32" in rembg_paths.available_paths()
    with pytest.raises(AllProvidersFailed) as failed:
        await alpha(remover(str(SHARED), tmp_path, EPYC, "ncnn-bf16"))
    (step,) = failed.value.attempts
    assert (step.provider, step.error_class) == ("rembg-ncnn", "ProviderUnavailable")
    assert "ncnn-bf16 runs on ncnn, which is not installed; run: pip install ncnn==" in step.detail


def test_the_pip_command_names_the_pinned_version():
    pinned = next(line for line in (Path(__file__).parents[1] / "requirements" / "worker.in").read_text().splitlines()
                  if line.startswith("ncnn=="))
    assert rembg_paths.NCNN_PIP == f"pip install {pinned}"


# --- the written network, cached -----------------------------------------------------------------


async def test_a_new_process_loads_the_written_network_without_folding_the_graph(tmp_path, monkeypatch):
    """The first use writes the network beside the model (``<models_dir>/ncnn``); a later process
    loads it as it is: no graph, so no torch import (2 s of a first image's 2.6 s)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHARED / "u2netp.onnx", models / "u2netp.onnx")
    first, _ = await alpha(remover(str(models), tmp_path, EPYC, "ncnn-bf16"))
    written = sorted(path.name for path in (models / "ncnn").iterdir())
    assert len(written) == 2 and written[0].startswith("u2netp-") and written[0].endswith("-320-bf16-w1.bin")

    def no_graph(self):
        raise AssertionError("the graph was folded although the network was written")

    monkeypatch.setattr(rembg_paths.TorchNets, "graph", no_graph)
    again, detail = await alpha(remover(str(models), tmp_path, EPYC, "ncnn-bf16"))
    assert np.array_equal(again, first) and "path=ncnn-bf16 (pinned in config)" in detail


def test_the_cache_name_follows_the_files_content_size_and_storage(tmp_path):
    one, two = tmp_path / "m.onnx", tmp_path / "other" / "m.onnx"
    two.parent.mkdir()
    one.write_bytes(b"weights one")
    two.write_bytes(b"weights two")
    names = {network_key(one, 320, True), network_key(two, 320, True), network_key(one, 1024, True),
             network_key(one, 320, False)}
    assert len(names) == 4
    assert network_key(one, 320, True) == network_key(one, 320, True)


def test_a_folder_that_cannot_be_written_still_loads_the_network(graph, batch, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    model = ncnn_model(graph)
    with network_files(blocked / "ncnn", "net", lambda: model) as (param, weights):
        assert not param.is_relative_to(tmp_path)  # a temporary folder instead
        out = NcnnMaskNet(param, weights, 1, False)(batch)
    assert not param.exists()  # gone after the load
    assert float(np.abs(out - loaded(model, False)(batch)).max()) == 0.0


async def test_models_pull_writes_the_networks_so_the_first_use_folds_nothing(tmp_path, monkeypatch, capsys):
    """``swarm models pull`` writes both ncnn networks beside the model (a worker image bakes
    them): the first image on either ncnn path then loads them, no graph folded, no torch."""
    import json

    from swarm.models_cli import main

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHARED / "u2netp.onnx", models / "u2netp.onnx")
    assert main(["pull", "u2netp", "--json", "--models-dir", str(models)]) == 0
    (row,) = json.loads(capsys.readouterr().out)["models"]
    assert row["status"] == "present" and "ncnn_note" not in row
    assert sorted(row["ncnn"]) == sorted(path.name for path in (models / "ncnn").glob("*.param"))
    assert {name.split("-")[-2] for name in row["ncnn"]} == {"fp32", "bf16"}

    def no_graph(self):
        raise AssertionError("the graph was folded although pull wrote the network")

    monkeypatch.setattr(rembg_paths.TorchNets, "graph", no_graph)
    for path in ("ncnn", "ncnn-bf16"):
        mask, detail = await alpha(remover(str(models), tmp_path, EPYC, path))
        assert mask.shape == (300, 256) and f"path={path} (pinned in config)" in detail


def test_models_pull_says_why_no_network_was_written_without_ncnn(tmp_path, monkeypatch, capsys):
    import json

    from swarm.models_cli import main

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHARED / "u2netp.onnx", models / "u2netp.onnx")
    monkeypatch.setitem(sys.modules, "ncnn", None)  # not installed
    assert main(["pull", "u2netp", "--json", "--models-dir", str(models)]) == 0
    (row,) = json.loads(capsys.readouterr().out)["models"]
    assert "ncnn" not in row and "needs torch and ncnn" in row["ncnn_note"]
    assert not (models / "ncnn").exists()


def test_a_written_network_is_shared_while_held_and_freed_when_no_provider_holds_it(graph, batch, tmp_path):
    """Two providers on one models folder (a config reload keeps the old beside the new) share
    one loaded network (~200 MB of ncnn's buffers each for u2netp); when neither holds it, it goes."""
    import gc
    import weakref

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHARED / "u2netp.onnx", models / "u2netp.onnx")
    one = rembg_paths.NcnnNets(models / "u2netp.onnx", 320, lambda: graph)
    two = rembg_paths.NcnnNets(models / "u2netp.onnx", 320, lambda: graph)
    net = one.net("ncnn", 1)
    assert two.net("ncnn", 1) is net and one.net("ncnn-bf16", 1) is not net
    gone = weakref.ref(net)
    out = net(batch[:1])
    del net, one, two
    gc.collect()
    assert gone() is None
    again = rembg_paths.NcnnNets(models / "u2netp.onnx", 320, lambda: graph).net("ncnn", 1)  # loaded anew from the files
    assert float(np.abs(again(batch[:1]) - out).max()) == 0.0


# --- memory: no onnxruntime where it does not run, and buffers back once idle ------------------------


@pytest.mark.skipif(__import__("providers.image.gpu", fromlist=["x"]).driver_present(),
                    reason="a GPU driver is present: auto asks onnxruntime for the device")
async def test_a_job_on_an_ncnn_path_opens_no_onnxruntime_session(tmp_path):
    """Pinned, or chosen by ``auto`` and cached, an ncnn path runs without an onnxruntime session
    (~50 MB, its import, and an arena of ~450 MB where it runs); measuring opens the reference's,
    and so does config that names an execution provider that might not be the CPU's."""
    pinned = remover(str(SHARED), tmp_path, EPYC, "ncnn-bf16")
    await alpha(pinned)
    assert pinned._sessions._sessions == {}
    measuring = remover(str(SHARED), tmp_path, EPYC, costs=[1.0, 0.8, 0.5])
    await alpha(measuring)
    assert set(measuring._sessions._sessions) == {(MODEL, 1)}  # the one-thread reference of the measurement
    cached = remover(str(SHARED), tmp_path, EPYC)
    out, detail = await alpha(cached)
    assert "path=ncnn" in detail and cached._sessions._sessions == {}
    # config naming another execution provider (OpenVINO may run on this CPU): onnxruntime is asked
    asked = remover(str(SHARED), tmp_path, EPYC)
    asked.paths.providers = ("OpenVINOExecutionProvider", "CPUExecutionProvider")
    _, detail = await alpha(asked)
    assert asked._sessions._sessions and "path=ncnn" in detail  # this onnxruntime has no OpenVINO: the CPU


async def test_what_jobs_loaded_goes_back_once_none_came_for_a_while(tmp_path, monkeypatch):
    """After a batch, ncnn's pools held ~0.8-1.4 GB and onnxruntime's arena ~0.5 GB for the life of
    the process. Once idle, the pools are emptied and the sessions dropped; a job then runs on
    fresh buffers and a new session, with the same result, and no release cuts into a job."""
    from core import heap

    released: list[str] = []
    # only this test's releases count: an earlier test's provider, idle 30 s, may release meanwhile
    ours = threading.local()
    real = NcnnMaskNet.release
    monkeypatch.setattr(NcnnMaskNet, "release",
                        lambda net: getattr(ours, "on", False) and released.append("pools") or real(net))
    monkeypatch.setattr(heap, "trim", lambda: getattr(ours, "on", False) and released.append("trim") or True)

    def release(provider, gone: list[int]) -> None:
        ours.on = True
        try:
            provider._release()
        finally:
            ours.on = False
        gone.append(1)

    for setting in ("fp32", "ncnn-bf16"):
        provider = remover(str(SHARED), tmp_path, EPYC, setting)
        gone: list[int] = []
        provider.idle = heap.IdleRelease(lambda provider=provider, gone=gone: release(provider, gone), 0.5)
        first, _ = await alpha(provider)
        outcome = await provider.process_batch([PHOTO, PHOTO], ImageAction.REMOVE_BACKGROUND, ImageConfig())
        assert all(item.data for item in outcome.items)
        assert provider._sessions._sessions or setting != "fp32"
        released.clear()
        wait_for(lambda gone=gone: gone == [1])
        assert provider._sessions._sessions == {}, setting
        # the single image's network and the batch's (one thread per worker) give their buffers back
        assert released == (["pools", "pools", "trim"] if setting == "ncnn-bf16" else ["trim"])
        again, _ = await alpha(provider)
        assert np.array_equal(again, first), setting
        wait_for(lambda gone=gone: gone == [1, 1])  # its timer ends here, not in the next provider's turn


def wait_for(condition, seconds: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


async def test_under_auto_a_model_not_pulled_is_skipped_not_measured_and_measured_once_pulled(tmp_path, monkeypatch):
    """Without a session to open first, a missing model reached the measurement, whose failure was
    kept as the choice: fp32 with "measuring failed" until a restart, though the model was pulled
    meanwhile. The weights come first: the job names the pull, nothing is chosen, and after the
    pull the same provider measures and runs the chosen path."""
    from core.errors import ProviderUnavailable

    ensure = weights_pull.ensure

    def not_pulled(name, folder=None):
        raise ProviderUnavailable("rembg-onnx", f"model {name} is not pulled; run: swarm models pull {name}")

    provider = remover(str(SHARED), tmp_path, EPYC, costs=[1.0, 0.8, 0.5])
    monkeypatch.setattr(weights_pull, "ensure", not_pulled)
    with pytest.raises(ProviderUnavailable, match="swarm models pull u2netp") as failed:
        await alpha(provider)
    (attempt,) = failed.value.trace  # type: ignore[attr-defined]
    assert attempt["outcome"] == "skipped"
    assert provider.paths._chosen == {} and not (tmp_path / "precision.json").exists()
    monkeypatch.setattr(weights_pull, "ensure", ensure)  # the operator pulls it
    _, detail = await alpha(provider)
    assert "path=ncnn" in detail and "(auto: " in detail and "failed" not in detail
