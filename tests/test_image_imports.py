"""Importing the image/storage modules must not import torch, onnxruntime, PIL, numpy or boto3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MODULES = [
    "graphs.image.action",
    "graphs.image.graph",
    "graphs.image.nodes",
    "providers.image.upscale",
    "providers.image.rembg_backend",
    "providers.image.imageio",
    "providers.image.tiling",
    "providers.image.ncnn_convert",
    "providers.storage.local",
    "providers.storage.s3",
    "providers.image.weights",
    "providers.image.pull",
    "swarm.models_cli",
]
HEAVY = ["torch", "onnxruntime", "PIL", "numpy", "boto3", "botocore", "safetensors"]


def test_no_heavy_imports_at_module_import():
    code = (
        f"import importlib, json, sys\nfor m in {MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []
