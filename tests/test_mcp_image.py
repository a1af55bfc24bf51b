"""Image tools through the MCP door on the real models: the result comes back as a storage key
and URL (not megabytes of base64), readable as swarm://artifacts/{key}."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import IMAGE_WAIT_BUDGET_S, collect, write_config

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
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=IMAGE_WAIT_BUDGET_S)))) as client:
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
        assert bad.is_error and "image: give one of image, path, url, key (got image and url)" in bad.content[0].text


async def test_remove_background_with_a_list_of_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``images`` through the MCP door: one entry per image, a bad one fails alone, the limit is named."""
    import io

    import numpy as np
    from PIL import Image

    from providers.image import pull as weights_pull
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=IMAGE_WAIT_BUDGET_S)))) as client:
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
        # refused by the tool before any image is read or a job made (the dispatcher says input.images)
        assert "InputError: images: 17 images; give 1 to 16 per job (MAX_BATCH_IMAGES)" in too_many.content[0].text


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    import io

    from PIL import Image

    photo = Image.open(FIXTURES / "grace_hopper_256.jpg").convert(mode).resize(size)
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
async def test_stdio_image_results_show_a_preview_and_link_the_full_image(tmp_path: Path) -> None:
    """Over stdio, as Claude Desktop calls it: each image result carries an image block (the result
    itself when it fits mcp.max_inline_image_bytes, else a downscaled copy of the same shape) and a
    resource_link whose resources/read returns the stored bytes exactly; a batch gives one of each
    per good image."""
    import io

    from mcp.types import ImageContent, ResourceLink, TextContent
    from PIL import Image
    from test_mcp_stdio import server_params

    from providers.image import pull as weights_pull
    assert weights_pull.pull(["realesrgan-anime-6b", "u2netp"], SHARED)["ok"]
    limit = 30_000
    config = write_config(tmp_path, wait_budget_s=IMAGE_WAIT_BUDGET_S, max_inline_image_bytes=limit)
    home = tmp_path / "home"
    params = server_params(config, SWARM_MODELS_DIR=str(SHARED), SWARM_HOME=str(home), SWARM_STORAGE="local")

    def blocks(result: object) -> tuple[list[str], list[ImageContent], list[ResourceLink]]:
        content = result.content  # type: ignore[attr-defined]
        texts = [b.text for b in content[1:] if isinstance(b, TextContent)]
        return texts, [b for b in content if isinstance(b, ImageContent)], [b for b in content if isinstance(b, ResourceLink)]

    async with Client(params) as client:
        async def check_link(link: ResourceLink, key: str) -> bytes:
            stored = (home / "artifacts" / key).read_bytes()
            assert str(link.uri) == f"swarm://artifacts/{key}" and link.mime_type == "image/png"
            assert link.size == len(stored)
            read = (await client.read_resource(str(link.uri))).contents[0]
            assert base64.b64decode(read.blob) == stored  # the full image, byte for byte
            return stored

        # small enough: the preview is the result itself
        small = await client.call_tool("upscale_image", {"image": base64.b64encode(_png((24, 12))).decode(), "scale": 4})
        assert not small.is_error, small.content[0].text
        texts, images, links = blocks(small)
        assert len(images) == len(links) == 1
        stored = await check_link(links[0], small.structured_content["key"])
        assert base64.b64decode(images[0].data) == stored and images[0].mime_type == "image/png"
        assert "96x48" in texts[0] and f"{len(stored)} bytes" in texts[0]
        assert links[0].description == "result at full size (96x48 image/png): read this resource for its bytes"

        # too big to inline: a downscaled copy, same aspect ratio, its real size in the text
        big = await client.call_tool("upscale_image", {"image": base64.b64encode(_png((160, 80))).decode(), "scale": 4})
        assert not big.is_error, big.content[0].text
        texts, images, links = blocks(big)
        assert len(images) == len(links) == 1
        stored = await check_link(links[0], big.structured_content["key"])
        assert len(stored) > limit
        preview = base64.b64decode(images[0].data)
        assert len(preview) <= limit
        with Image.open(io.BytesIO(preview)) as shown:
            assert shown.format == images[0].mime_type.split("/")[1].upper()
            width, height = shown.size
        assert width < 640 and abs(width / height - 2.0) < 0.05
        assert "640x320" in texts[0] and f"{len(stored)} bytes" in texts[0] and "downscaled" in texts[0]
        assert all(big.structured_content["url"] not in text for text in texts)  # links name swarm://, no URL

        # a batch: one preview and one link per good image, none for the bad one
        cutout = base64.b64encode(_png((48, 64))).decode()
        batch = await client.call_tool("remove_background", {
            "images": [{"image": cutout}, {"image": "bm90IGFuIGltYWdl"}, {"image": cutout}], "model": "u2netp"})
        assert not batch.is_error, batch.content[0].text
        texts, images, links = blocks(batch)
        assert len(images) == len(links) == 2
        assert [t.split(":")[0] for t in texts] == ["images[0]", "images[2]"]
        for image, link, entry in zip(images, links, [batch.structured_content["results"][i] for i in (0, 2)],
                                      strict=True):
            await check_link(link, entry["key"])
            assert len(base64.b64decode(image.data)) <= limit // 2  # the batch shares the budget
            with Image.open(io.BytesIO(base64.b64decode(image.data))) as shown:
                assert shown.mode == "RGBA" and abs(shown.width / shown.height - 48 / 64) < 0.05


def test_preview_downscales_to_fit_and_keeps_shape_and_alpha() -> None:
    import io

    from PIL import Image

    from mcp_server.previews import preview

    data = _png((400, 100), "RGBA")
    same = preview(data, "image/png", 400, 100, len(data))
    assert same is not None and same.data == data and not same.downscaled

    small = preview(data, "image/png", 400, 100, 8_000)
    assert small is not None and small.downscaled and len(small.data) <= 8_000 and small.mime_type == "image/png"
    with Image.open(io.BytesIO(small.data)) as img:
        assert img.mode == "RGBA" and img.size == (small.width, small.height)
        assert abs(img.width / img.height - 4.0) < 0.1

    assert preview(data, "image/png", 400, 100, 50) is None  # nothing that small: text and link only


def test_a_wide_image_that_compresses_small_is_still_shrunk_to_a_side_a_chat_shows() -> None:
    import io

    from PIL import Image

    from mcp_server.previews import PREVIEW_MAX_SIDE, preview

    flat = Image.new("RGB", (12000, 1200), (40, 90, 200))  # a flat panorama: ~50 KB of PNG
    buffer = io.BytesIO()
    flat.save(buffer, "PNG")
    shown = preview(buffer.getvalue(), "image/png", 12000, 1200, 1_000_000)
    assert shown is not None and shown.downscaled and len(buffer.getvalue()) < 1_000_000
    assert (shown.width, shown.height) == (PREVIEW_MAX_SIDE, round(1200 * PREVIEW_MAX_SIDE / 12000))


async def test_an_image_job_collected_by_job_result_shows_its_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the tool's wait the image tool answers IN_PROGRESS; job_result then brings what the
    tool would have: the envelope plus a preview image block and a resource_link that reads back."""
    import io

    from mcp.types import ImageContent, ResourceLink
    from PIL import Image

    from providers.image import pull as weights_pull
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.01)))) as client:
        started = await client.call_tool("remove_background", {"image": photo, "model": "u2netp"})
        assert not started.is_error, started.content[0].text
        job_id = started.structured_content["job_id"]
        collected = await collect(client, job_id)  # the first image job measures precision: auto first
        assert not collected.is_error, collected.content[0].text
        assert collected.structured_content["status"] == "COMPLETED"
        key = collected.structured_content["output"]["key"]  # the tool's own field names
        images = [b for b in collected.content if isinstance(b, ImageContent)]
        links = [b for b in collected.content if isinstance(b, ResourceLink)]
        assert len(images) == 1 and len(links) == 1
        preview = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
        assert abs(preview.width / preview.height - 256 / 300) < 0.02
        assert str(links[0].uri) == f"swarm://artifacts/{key}"
        full = (await client.read_resource(links[0].uri)).contents[0]
        assert full.mime_type == links[0].mime_type == "image/png"  # not the template's text/plain
        assert Image.open(io.BytesIO(base64.b64decode(full.blob))).size == (256, 300)

        text_only = await client.call_tool("job_result", {"job_id": "no-such-job"})
        assert text_only.is_error
