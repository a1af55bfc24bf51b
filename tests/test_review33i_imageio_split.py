"""``providers.image.imageio`` split by job: each part imports without Pillow or numpy, and the old
import path still hands out the very objects the parts define (one definition, not a copy)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PARTS = {
    "providers.image.limits": ["ImageLimits"],
    "providers.image.header": ["sniff_format", "open_header", "encoded_size", "webp_size"],
    "providers.image.inputs": ["base64_payload", "base64_limit_chars", "decode_base64", "open_checked", "to_srgb",
                               "to_8bit", "read_input"],
    "providers.image.local_files": ["MAX_PATH_CHARS", "looks_like_path", "local_path", "read_file"],
    "providers.image.outputs": ["OUTPUT_FORMATS", "MAX_SIDE", "OPAQUE_FORMATS", "check_output_pixels",
                                "check_output_side", "has_transparency", "alpha_fate", "transparency_lost",
                                "to_rgb_alpha", "encode", "decode_for_preview"],
}
HEAVY = ["PIL", "numpy", "torch", "onnxruntime"]


@pytest.mark.parametrize("module", sorted(PARTS))
def test_each_part_imports_without_pillow_or_numpy(module: str) -> None:
    code = (f"import importlib, json, sys\nimportlib.import_module({module!r})\n"
            f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_imageio_hands_out_the_parts_own_objects() -> None:
    imageio = importlib.import_module("providers.image.imageio")
    for module, names in PARTS.items():
        part = importlib.import_module(module)
        for name in names:
            assert getattr(imageio, name) is getattr(part, name), f"{name} of {module}"
            assert name in imageio.__all__, name
