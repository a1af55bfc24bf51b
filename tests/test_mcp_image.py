"""Image tools through the MCP door on the real models: the result comes back as a storage key
and URL (not megabytes of base64), readable as swarm://artifacts/{key}."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import write_config

from mcp_server.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"


@pytest.fixture(scope="module")
def pulled() -> None:
    from providers.image import pull as weights_pull
    assert weights_pull.pull(["realesrgan-anime-6b"], SHARED)["ok"]


@pytest.mark.slow
async def test_upscale_returns_a_key_and_url_and_the_artifact_resource_serves_it(
    pulled: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    small = (FIXTURES / "sr_input_48.png").read_bytes()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=120)))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"upscale_image", "remove_background", "process_image"} <= set(tools)
        assert tools["upscale_image"].annotations.read_only_hint is False

        result = await client.call_tool("upscale_image", {"image": base64.b64encode(small).decode(), "scale": 2})
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        assert out["status"] == "COMPLETED" and out["image_base64"] is None
        assert out["key"].startswith("image_tools/") and out["url"]
        assert (out["details"]["width"], out["details"]["height"]) == (96, 96)

        blob = (await client.read_resource(f"swarm://artifacts/{out['key']}")).contents[0]
        assert base64.b64decode(blob.blob).startswith(b"\x89PNG")

        inline = await client.call_tool("upscale_image", {"key": out["key"], "scale": 2, "return_base64": True})
        assert base64.b64decode(inline.structured_content["image_base64"]).startswith(b"\x89PNG")

        bad = await client.call_tool("upscale_image", {"image": "bm90IGFuIGltYWdl", "url": "https://example.com/x.png"})
        assert bad.is_error and "exactly one of image, url, key" in bad.content[0].text


async def test_remove_background_with_a_list_of_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``images`` through the MCP door: one entry per image, a bad one fails alone, the limit is named."""
    import io

    import numpy as np
    from PIL import Image

    from providers.image import pull as weights_pull
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=120)))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "images" in tools["remove_background"].input_schema["properties"]

        result = await client.call_tool("remove_background", {
            "images": [{"image": photo}, {"image": "bm90IGFuIGltYWdl"}, {"image": photo}],
            "model": "u2netp", "return_base64": True,
        })
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        assert out["status"] == "COMPLETED" and out["key"] is None
        assert (out["details"]["succeeded"], out["details"]["failed"]) == (2, 1)
        first, bad, third = out["results"]
        assert bad["index"] == 1 and bad["error"]["message"].startswith("images[1].image: not a supported image")
        for entry in (first, third):
            assert entry["key"].startswith("image_tools/") and (entry["width"], entry["height"]) == (256, 300)
            alpha = np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image_base64"]))))[..., 3]
            assert alpha[:20, :20].max() <= 5 and alpha[250:, 100:150].min() >= 240
            blob = (await client.read_resource(f"swarm://artifacts/{entry['key']}")).contents[0]
            assert base64.b64decode(blob.blob) == base64.b64decode(entry["image_base64"])
        per_image = [s for s in out["trace"] if s["step"] in ("read_input", "remove_background")]
        assert sorted(s["outcome"] for s in per_image) == ["error", "ok", "ok"]

        too_many = await client.call_tool("remove_background", {"images": [{"image": photo}] * 17})
        assert too_many.is_error
        assert "input.images: 17 images; give 1 to 16 per job (MAX_BATCH_IMAGES)" in too_many.content[0].text
