"""Which path background removal runs on this CPU: onnxruntime fp32, or ncnn or torch on the same weights.

``precision: auto`` (``providers.image.rembg.precision``) measures, once per machine, model and
runtime versions (cached in ``<state_dir>/precision.json`` beside the upscaler's decisions),
the paths this CPU supports and runs the fastest whose masks stay within the floor against
onnxruntime fp32's: mask IoU >= ``IOU_FLOOR`` (alpha >= 128 is foreground) and mean alpha
difference <= ``ALPHA_DIFF_FLOOR`` levels, on a real photo (``probes/portrait_256.jpg``, the
public-domain Grace Hopper portrait: a salient-object model needs a subject, and on a synthetic
texture the reference mask is almost empty, so its IoU says nothing) and on the line-art image
of ``precision.py``. The choosing, timing and caching are ``precision.AutoPrecision``'s.

The paths (``PATHS``: their names, needs and engines) are ``rembg_path_table.py``'s, re-exported here.

A batch's workers (one per core) each run their own single-threaded torch forward, side by side,
as they do with onnxruntime (``TorchNets``); a single image runs on torch's whole pool. ``auto``
times both candidates one thread per call: the per-core rate a batch runs at. A torch path that
fails while measured is dropped (the why-text names the error) and the decision cached; anything
else failing leaves onnxruntime, and the trace says why. The trace step's provider is the engine
that ran: ``rembg-onnx``, ``rembg-ncnn`` or ``rembg-torch`` (``engine``). A batch's workers share
one single-threaded ncnn network (``NcnnNets``), each call with its own extractor.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable
from core.redact import redact
from providers.image import gpu
from providers.image.precision import AutoPrecision, CpuInfo, Floor, Metric, decisions_file, probe_images
from providers.image.rembg_path_table import (  # noqa: F401 - re-exported: the paths' own module
    NCNN_ENGINE,
    NCNN_PATHS,
    NCNN_PIP,
    ONNX_ENGINE,
    PATHS,
    PINNABLE,
    REFERENCE,
    REVISION,
    TORCH_DTYPES,
    TORCH_ENGINE,
    TORCH_PIP,
    MaskNet,
    Predict,
    available_paths,
    describe_pinned,
    engine,
    onnxruntime_net,
    ort_device,
    versions,
)

if TYPE_CHECKING:
    import numpy as np

    from providers.image.onnx_ncnn import NcnnMaskNet

#: the floor against the reference's mask: IoU of the alpha >= 128 regions ...
IOU_FLOOR = 0.99
#: ... and the mean absolute alpha difference, in levels of 255
ALPHA_DIFF_FLOOR = 1.0
#: side of the probe images: the models' own input size is 320, masks come back at this size
PROBE_SIZE = 256


def mask_scores(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """IoU of the foregrounds (alpha >= 128) and mean alpha difference of two uint8 masks."""
    import numpy as np

    ref, out = reference >= 128, output >= 128
    union = int(np.count_nonzero(ref | out))
    iou = 1.0 if union == 0 else int(np.count_nonzero(ref & out)) / union
    diff = float(np.mean(np.abs(reference.astype(np.int16) - output.astype(np.int16))))
    return {"iou": iou, "alpha_diff": diff}


def mask_floor() -> Floor:
    """The floor background removal's paths are held to (read from the module when called)."""
    return Floor(
        (Metric("iou", "IoU", "", IOU_FLOOR), Metric("alpha_diff", "alpha diff", " levels", ALPHA_DIFF_FLOOR, False)),
        mask_scores,
    )


def mask_probes() -> dict[str, np.ndarray]:
    """The probe images of background removal: the portrait photo and the line art."""
    import numpy as np
    from PIL import Image

    with Image.open(Path(__file__).parent / "probes" / "portrait_256.jpg") as photo:
        return {"photo": np.asarray(photo.convert("RGB")), "line_art": probe_images(PROBE_SIZE)["line_art"]}


def _openmp() -> Any:
    """The OpenMP runtime torch loaded (found once in ``/proc/self/maps``), or None where there
    is none to find (not Linux, a torch built without OpenMP)."""
    if not _OPENMP:
        import torch

        lib = None
        try:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                found = {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line}
            chosen = pick_openmp(found, str(Path(torch.__file__).parent))
            lib = ctypes.CDLL(chosen) if chosen else None
        except OSError:
            pass
        _OPENMP.append(lib)
    return _OPENMP[0]


def pick_openmp(loaded: Collection[str], torch_dir: str) -> str | None:
    """Which of the OpenMP runtimes ``loaded`` in this process is torch's: the one inside torch's
    package (``torch/lib``); else (a torch that uses the system's) the first not bundled by another
    wheel (``<package>.libs``). Wheels bundle their own copies: with ncnn loaded there are two
    libgomp, and limiting ncnn's leaves torch's threads as they were (found on an AMD machine,
    where ncnn's copy sorted first)."""
    inside = torch_dir.rstrip("/") + "/"
    return min(loaded, default=None,
               key=lambda path: (not path.startswith(inside), Path(path).parent.name.endswith(".libs"), path))


_OPENMP: list[Any] = []


@contextmanager
def thread_limit(threads: int) -> Iterator[bool]:
    """torch ops of the calling thread use at most ``threads`` threads inside; other threads'
    torch is untouched (OpenMP's thread count is a per-thread setting, unlike
    ``torch.set_num_threads``'s process-wide default). Yields False where it cannot."""
    import torch

    omp = _openmp()
    if omp is None:
        yield False
        return
    torch.get_num_threads()  # torch's per-thread first-use init, which would reset the limit later
    before = omp.omp_get_max_threads()
    omp.omp_set_num_threads(threads)
    try:
        yield True
    finally:
        omp.omp_set_num_threads(before)


class TorchNets:
    """One ``OnnxTorchNet`` per model file, built on first use; ``net(path, threads)`` gives a
    path's ``MaskNet``.

    ``threads=None``: one forward at a time on torch's intra-op pool (every core). ``threads=n``
    (a batch's workers, one per core): each caller runs its own forward with ``n`` OpenMP
    threads, concurrently. Measured here (2-core Xeon, shared, load average 5.4; u2netp bf16,
    best of 5): two single-threaded forwards side by side gave 2.2x the images/s of 2-image
    forwards on the 2-thread pool (133 vs 291 ms an image); the pool's threads wait for each
    other at every one of the graph's ~200 small ops. The
    same ops on the same input either way: an image's mask does not depend on which runs it.
    """

    def __init__(self, onnx_path: Path, input_size: int) -> None:
        self.onnx_path, self.input_size = onnx_path, input_size
        self._net: Any = None
        self._lock = threading.Lock()

    def net(self, path: str, threads: int | None = None) -> MaskNet:
        import torch

        dtype_name = TORCH_DTYPES[path]
        dtype = getattr(torch, dtype_name) if dtype_name else None
        graph = self.graph()
        with self._lock:
            graph._weights(dtype)  # cast once, here, not by concurrent callers

        def run(batch: np.ndarray) -> np.ndarray:
            with thread_limit(threads) if threads else nullcontext(False) as limited:
                if limited:
                    (out,) = graph(torch.from_numpy(batch), dtype)
                else:
                    with self._lock:
                        (out,) = graph(torch.from_numpy(batch), dtype)
            return out[:, 0].numpy()

        return run

    def graph(self) -> Any:
        """The ``OnnxTorchNet`` of the model, built once: the torch paths run it, the ncnn paths are
        written from its plan."""
        from providers.image.onnx_torch import OnnxTorchNet, read_graph

        with self._lock:
            self._net = self._net or OnnxTorchNet(read_graph(self.onnx_path), (1, 3, self.input_size, self.input_size))
        return self._net

    def release(self) -> None:
        """Drop the graph (built again if a path asks for it later)."""
        with self._lock:
            self._net = None


class NcnnNets:
    """The ncnn paths of one model: its network (fp32 and, with its fp32 nodes masked, bf16),
    written from the graph once per machine (``onnx_ncnn.network_files``, in ``<models_dir>/ncnn``)
    and loaded per path and thread count on first use; ``net(path, threads)`` gives the
    ``MaskNet``. ``threads=None``: every core, for a single image. ``graph`` (which imports torch)
    is called only when a network is not written yet."""

    def __init__(self, onnx_path: Path, input_size: int, graph: Callable[[], Any]) -> None:
        self.onnx_path, self.input_size, self._graph = onnx_path, input_size, graph
        self._nets: dict[tuple[str, int], NcnnMaskNet] = {}
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        """Where the written networks are kept: ``<models_dir>/ncnn``."""
        return self.onnx_path.parent / "ncnn"

    @contextmanager
    def files(self, path: str) -> Iterator[tuple[Path, Path]]:
        """The ``.param`` and ``.bin`` of ``path``'s network, written from the graph when absent
        (``onnx_ncnn.network_files``: outside ``folder`` when it cannot be written)."""
        from providers.image.onnx_ncnn import ncnn_model, network_files, network_key

        bf16 = NCNN_PATHS[path]

        def build() -> Any:
            graph = self._graph()
            return ncnn_model(graph, graph.fp32_nodes if bf16 else ())

        with network_files(self.folder, network_key(self.onnx_path, self.input_size, bf16), build) as files:
            yield files

    def net(self, path: str, threads: int | None = None) -> MaskNet:
        from providers.image.onnx_ncnn import loaded

        count = threads or len(os.sched_getaffinity(0))
        with self._lock:
            if (path, count) not in self._nets:
                with self.files(path) as (param, weights):
                    self._nets[path, count] = loaded(param, weights, count, NCNN_PATHS[path],
                                                     share=param.parent == self.folder)
            return self._nets[path, count]

    def release(self) -> None:
        """The loaded networks' pooled buffers back (``NcnnMaskNet.release``); the networks stay."""
        with self._lock:
            nets = list(self._nets.values())
        for net in nets:
            net.release()

    def keep(self, path: str) -> None:
        """Let go of the loaded networks of the other ncnn path: freed unless another provider of
        this process holds them (``onnx_ncnn.loaded``); each is loaded again if asked for."""
        with self._lock:
            self._nets = {key: net for key, net in self._nets.items() if key[0] == path}


def write_networks(onnx_path: Path, input_size: int) -> list[Path]:
    """Write the ncnn networks of the model at ``onnx_path`` (fp32, and bf16 storage with its fp32
    nodes kept) into ``<its folder>/ncnn``, where ``NcnnNets`` looks first; the ``.param`` files.

    ``swarm models pull`` calls it, so a worker image baked with the models starts with them: the
    first measurement under ``auto`` then loads them instead of importing torch to fold the graph
    (~2 s of a cold start here). None where torch or ncnn is not installed (``auto`` does not
    measure the ncnn paths there), or where the folder cannot be written (first use writes them).
    """
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("ncnn") is None:
        return []
    nets = NcnnNets(onnx_path, input_size, TorchNets(onnx_path, input_size).graph)
    written = []
    for path in NCNN_PATHS:
        with nets.files(path) as (param, _):
            if param.parent == nets.folder:
                written.append(param)
    return written


class PathChooser:
    """Chooses and builds a model's path: ``precision`` pinned, or ``auto`` measured and cached.

    Args:
        precision: ``providers.image.rembg.precision``.
        models_dir: the models folder (the torch paths read the ``.onnx`` file from it).
        cpu_info: reads the CPU (tests pass a fake).
        auto_precision: the decision cache (default: ``<state_dir>/precision.json``).
        table: the candidates of ``auto`` (default ``PATHS``; tests force a set).
        providers: ``providers.image.rembg.providers``, onnxruntime's execution providers.
    """

    def __init__(self, precision: str, models_dir: str | None, cpu_info: Callable[[], CpuInfo],
                 auto_precision: AutoPrecision | None = None, table: dict[str, frozenset[str]] | None = None,
                 providers: tuple[str, ...] = ()) -> None:
        self.precision, self.models_dir, self.cpu_info, self.table = precision, models_dir, cpu_info, table
        self.providers = providers
        self.auto = auto_precision or AutoPrecision(decisions_file(), cpu_info, probe_size=PROBE_SIZE, rounds=2)
        self._torch: dict[str, TorchNets] = {}
        self._ncnn: dict[str, NcnnNets] = {}
        self._chosen: dict[str, tuple[str, str]] = {}

    def net(self, name: str, session: Callable[[], Any], extra: dict[str, Any], measure_session: Callable[[], Any],
            predict: Predict, threads: int | None = None) -> tuple[MaskNet, str]:
        """``name``'s ``MaskNet`` on its path and ``device=... path=...`` for the trace.

        ``session()`` makes (or gives the made) onnxruntime session the reference path runs on,
        with ``threads`` intra-op threads (None: all; a torch path then uses as many per call):
        called only where the reference runs, or where ``auto`` must ask it for its device before
        a path is chosen (``ask_onnxruntime``). Another path never imports onnxruntime:
        ~70 MB and its arena (~450 MB after two images) for nothing. ``measure_session`` gives the
        one-thread session a measurement uses; ``predict(net, image, extra)`` makes a mask.
        """
        def device() -> str:
            return ort_device(session()) if self.ask_onnxruntime() else "cpu"

        path, why = self._path(name, device, extra, measure_session, predict)
        net = self.build(name, path, session, extra, threads)
        return net, f"device={ort_device(session()) if path == REFERENCE else 'cpu'} path={why}"

    def ask_onnxruntime(self) -> bool:
        """Whether onnxruntime's session may run on something other than the CPU: a GPU driver is
        present (``gpu.driver_present``), or config names an execution provider other than CPU and
        CUDA (OpenVINO, say); elsewhere the device is the CPU without a session."""
        named = set(self.providers) - {"CPUExecutionProvider", "CUDAExecutionProvider"}
        return bool(named) or gpu.driver_present()

    def release(self) -> None:
        """Every model's loaded ncnn networks give their pooled buffers back (``NcnnNets.release``)."""
        for nets in list(self._ncnn.values()):
            nets.release()

    def build(self, name: str, path: str, session: Callable[[], Any], extra: dict[str, Any],
              threads: int | None = None) -> MaskNet:
        """The ``MaskNet`` of ``path`` (``session()`` for the reference; ``threads`` per torch call)."""
        if path == REFERENCE:
            return onnxruntime_net(session())
        if importlib.util.find_spec("torch") is None:
            needs = "needs torch (to write its ncnn network)" if path in NCNN_PATHS else "runs on torch"
            raise ProviderUnavailable(engine(path), f"providers.image.rembg.precision {path} {needs}, which is "
                                      f"not installed; run: {TORCH_PIP} (or set precision: auto)")
        if path in NCNN_PATHS and importlib.util.find_spec("ncnn") is None:
            raise ProviderUnavailable(NCNN_ENGINE, f"providers.image.rembg.precision {path} runs on ncnn, which is "
                                      f"not installed; run: {NCNN_PIP} (or set precision: auto)")
        if name not in self._torch:
            from providers.image import pull as weights_pull

            onnx_file = weights_pull.ensure(name, self.models_dir)
            self._torch[name] = TorchNets(onnx_file, int(extra.get("input_size", 320)))
        if path in NCNN_PATHS:
            torch_nets = self._torch[name]
            nets = self._ncnn.setdefault(name, NcnnNets(torch_nets.onnx_path, torch_nets.input_size, torch_nets.graph))
            return nets.net(path, threads)
        return self._torch[name].net(path, threads)

    def _path(self, name: str, device: Callable[[], str], extra: dict[str, Any], measure_session: Callable[[], Any],
              predict: Predict) -> tuple[str, str]:
        if self.precision != "auto":
            if name not in self._chosen:  # /proc/cpuinfo once, not per image
                self._chosen[name] = self.precision, describe_pinned(self.precision, self.cpu_info())
            return self._chosen[name]
        if name not in self._chosen and (where := device()) != "cpu":
            return REFERENCE, f"{REFERENCE} (auto: onnxruntime on {where}, not measured)"
        if name not in self._chosen:
            import numpy as np
            from PIL import Image

            def run(path: str, image: np.ndarray) -> np.ndarray:
                # one thread per call for every candidate: the per-core rate a batch runs at
                return np.asarray(predict(self.build(name, path, measure_session, extra, 1), Image.fromarray(image), extra))

            try:  # a torch path failing is dropped inside; this is the reference or the probes failing
                decision = self.auto.decide(name, versions(), run, table=available_paths(self.table),
                                            floor=mask_floor(), probes=mask_probes)
                self._chosen[name] = decision.precision, decision.describe()
                self._release_unchosen(name, decision.precision)
            except Exception as exc:  # onnxruntime, not cached, and the trace says why
                first = redact((str(exc).splitlines() or [""])[0])[:200]
                self._chosen[name] = REFERENCE, f"{REFERENCE} (auto: measuring {name} failed: {type(exc).__name__}: {first})"
        return self._chosen[name]

    def _release_unchosen(self, name: str, path: str) -> None:
        """After a decision, the candidates measured and not chosen free what they loaded: a
        loaded u2netp ncnn network holds about 200 MB of buffers, the graph on torch its weights."""
        if name in self._ncnn:
            self._ncnn[name].keep(path)
        if name in self._torch and path not in TORCH_DTYPES:
            self._torch[name].release()

    def engine(self, name: str) -> str:
        """The engine that runs ``name``'s chosen path (``rembg-onnx`` before one is chosen)."""
        return engine(self._chosen.get(name, (REFERENCE, ""))[0])
