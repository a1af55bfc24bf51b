"""A JPEG whose EXIF block is corrupt is read as it always was, without Pillow's raw ``UserWarning:
Corrupt EXIF data`` (its library file and source line) reaching the user's terminal: the command
line printed it twice for a job that succeeded."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import yaml
from PIL import Image

from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits, open_checked, read_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"


def jpeg_with_corrupt_exif() -> bytes:
    """64x32 red; an APP1 Exif segment whose TIFF header is cut short."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (200, 50, 50)).save(buffer, "JPEG")
    data = buffer.getvalue()
    payload = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x05\x01\x12"
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def test_decoding_a_corrupt_exif_block_warns_no_one(tmp_path: Path) -> None:
    data = jpeg_with_corrupt_exif()
    (tmp_path / "photo.jpg").write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert open_checked(data, ImageLimits()).size == (64, 32)
        assert read_file(str(tmp_path / "photo.jpg"), ImageLimits()) == data
    assert [str(w.message) for w in caught] == []


def test_the_command_line_prints_no_pillow_warning(tmp_path: Path) -> None:
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["runner"]["kind"] = "local"
    raw["providers"]["image"]["rembg"]["precision"] = "fp32"  # nothing to measure first
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_with_corrupt_exif())
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home"), "SWARM_MODELS_DIR": str(SHARED),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-m", "swarm.cli", "--config", str(config), "run", "image_tools",
                           "remove_background", "-q", "--input", f'{{"path": "{photo}"}}'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "EXIF" not in done.stderr, done.stderr
