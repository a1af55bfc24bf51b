"""An image given as a local file (``path``) is named ``path`` by every error, the job's too (the door
reads the file into ``image``, and the job's errors named ``image``, a field the caller never sent);
and ``swarm run`` points a file's path given as ``image`` to ``path``, as the MCP server does (it said
"image: not valid base64")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_helpers import EchoImages, use_echo_images, write_config
from test_image_deadline import DEADLINE_S, EARLIER_SPEED, MODEL, RUN, SHARED, measured_upscaler, png

from core.config import load_config
from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch
from swarm.local_images import read_local_sources

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = FIXTURES / "sr_input_48.png"
HINT = "looks like a file's path; give a local file as path (an absolute path or a file:// URL)"


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> EchoImages:
    return use_echo_images(monkeypatch)


def run_cli(config: Path, action: str, inp: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    """``swarm run image_tools <action> --json -q``: exit code, the printed envelope, stderr."""
    from swarm.cli import main

    capsys.readouterr()
    code = main(["--config", str(config), "run", "image_tools", action, "-q", "--json", "--input", json.dumps(inp)])
    said = capsys.readouterr()
    return code, json.loads(said.out), said.err


def test_a_batch_image_given_as_path_that_cannot_be_decoded_names_its_path(
    echo: EchoImages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.png"
    cut.write_bytes(SMALL.read_bytes()[: SMALL.stat().st_size // 2])
    inp = {"images": [{"path": str(SMALL)}, {"path": str(cut)}]}  # read by the door, decoded by the job
    code, envelope, _ = run_cli(write_config(tmp_path, wait_budget_s=30), "remove_background", inp, capsys)
    assert code == 0 and envelope["status"] == "COMPLETED", envelope
    good, bad = envelope["output"]["results"]
    assert "image_key" in good
    assert bad["error"] == {"type": "InputError", "message": "images[1].path: png image is truncated",
                            "field": "images[1].path"}
    assert echo.seen == [SMALL.read_bytes()]


async def test_a_deadline_refusal_of_an_image_given_as_path_names_path(
    make_context: Any, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert weights_pull.pull([MODEL], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    raw = yaml.safe_load(config_file.read_text())
    raw["limits"]["job_deadline_s"] = DEADLINE_S
    config_file.write_text(yaml.safe_dump(raw))
    config = load_config(config_file)
    (tmp_path / "state").mkdir()
    provider = measured_upscaler(str(SHARED), tmp_path / "state", ImageLimits.from_config(config))
    provider.speeds.note(MODEL, EARLIER_SPEED, 1.0, RUN)
    big = tmp_path / "big.png"
    big.write_bytes(png(512, 512))
    make = make_context(None, config=config, storage=LocalStorage(tmp_path / "artifacts"), upscale=provider)

    sent = await read_local_sources(config, {"path": str(big)})  # the door (MCP server, swarm run) reads the file
    result = await dispatch({"project": "image_tools", "action": "upscale", "input": sent}, make)
    assert result["status"] == "FAILED", result
    assert result["error"]["field"] == "path"
    assert result["error"]["message"].startswith("path: a 512x512 input needs about 72 s to upscale"), result["error"]


@pytest.mark.parametrize("given", [str(SMALL), "tests/fixtures/sr_input_48.png", SMALL.as_uri()])
def test_the_command_line_says_a_files_path_given_as_image_goes_in_path(
    given: str, echo: EchoImages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, envelope, err = run_cli(write_config(tmp_path, wait_budget_s=30), "upscale", {"image": given}, capsys)
    assert code == 1 and envelope["status"] == "FAILED"
    assert f"error: InputError: input.image: {HINT}" in err, err
    assert echo.seen == []
