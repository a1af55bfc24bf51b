"""image_tools actions through the real dispatcher: graph, providers on real weights, storage."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from providers.image import pull as weights_pull
from providers.image.imageio import ImageLimits
from providers.image.rembg_backend import RembgRemover
from providers.image.upscale import RealESRGANUpscaler
from providers.storage.local import LocalStorage
from swarm.dispatcher import dispatch

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
SMALL = (FIXTURES / "sr_input_48.png").read_bytes()


def upscaler(config) -> RealESRGANUpscaler:
    """The upscaler as the runtime builds it: its section, the models folder and limits injected."""
    image = config.providers.image
    return RealESRGANUpscaler.from_config(
        "upscale", image.upscale, models_dir=image.models_dir, limits=ImageLimits.from_config(config)
    )


def remover(config) -> RembgRemover:
    """The background remover as the runtime builds it."""
    image = config.providers.image
    return RembgRemover.from_config(
        "remove_background", image.rembg, models_dir=image.models_dir, limits=ImageLimits.from_config(config)
    )


@pytest.fixture(scope="module")
def pulled():
    assert weights_pull.pull(["realesrgan-anime-6b", "u2netp"], SHARED)["ok"]


@pytest.fixture
def setup(pulled, make_context, tmp_path, monkeypatch):
    from core.config import load_config

    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    storage = LocalStorage(tmp_path / "artifacts")
    make = make_context(
        None,
        config=config,
        storage=storage,
        upscale=upscaler(config),
        remove_background=remover(config),
    )
    return make, storage


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_upscale_action_stores_output_and_traces(setup):
    make, storage = setup
    result = await dispatch(
        {
            "project": "image_tools",
            "action": "upscale",
            "job_id": "up-1",
            "input": {"image": b64(SMALL), "inline": True},
        },
        make,
    )
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert (out["width"], out["height"]) == (192, 192) and out["image_key"] == "image_tools/up-1/upscale.png"
    assert await storage.get(out["image_key"]) == base64.b64decode(out["image_b64"])
    assert out["url"].startswith("file://")
    step = next(s for s in result["trace"] if s["step"] == "upscale")
    assert step["model"] == "realesrgan-anime-6b" and "tiles=1" in step["detail"] and step["latency_ms"] > 0


@pytest.mark.parametrize("failing", ["put", "get"])
async def test_a_storage_call_that_fails_leaves_its_step_in_the_trace(make_context, tmp_path, failing):
    """The error named the store; the trace had only the dispatch step, so where the job stopped
    (reading the input, writing the output) and how long the store took was nowhere."""
    from core.config import load_config
    from core.errors import ProviderUnavailable

    class Unreachable(LocalStorage):
        name = "s3"

        async def put(self, key, data, content_type=None, *, overwrite=True):
            if failing == "put":
                raise ProviderUnavailable("s3", "cannot reach http://127.0.0.1:9")
            return await super().put(key, data, content_type, overwrite=overwrite)

        async def get(self, key):
            raise ProviderUnavailable("s3", "cannot reach http://127.0.0.1:9")

    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    make = make_context(None, config=config, storage=Unreachable(tmp_path / "s3"), upscale=upscaler(config))
    result = await dispatch({"project": "image_tools", "action": "upscale", "job_id": f"st-{failing}",
                             "input": {"image": b64(SMALL)}}, make)
    assert result["status"] == "FAILED" and "cannot reach http://127.0.0.1:9" in result["error"]["message"]
    step = next(s for s in result["trace"] if s["kind"] == "storage")
    assert step["step"] == f"storage.{failing}" and step["provider"] == "s3" and step["outcome"] == "error"
    assert step["detail"].startswith(f"image_tools/st-{failing}/input.png: ") and step["error_class"] == "ProviderUnavailable"


@pytest.mark.parametrize("result_put_fails", [True, False])
async def test_the_result_is_described_from_the_step_and_a_failed_store_keeps_the_model_step(
        make_context, tmp_path, result_put_fails):
    """A reviewer's S3 proxy: the result's PUT failed and the trace held the storage error alone,
    not the upscale that had run; and every finished job downloaded its result again, whole, only
    to read its width, height and length."""
    from core.config import load_config
    from core.errors import ProviderUnavailable

    reads: list[str] = []

    class Counting(LocalStorage):
        name = "s3"

        async def put(self, key, data, content_type=None, *, overwrite=True):
            if result_put_fails and key.endswith("/upscale.png"):
                raise ProviderUnavailable("s3", "503 Slow Down")
            return await super().put(key, data, content_type, overwrite=overwrite)

        async def get(self, key):
            reads.append(key)
            return await super().get(key)

    config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    make = make_context(None, config=config, storage=Counting(tmp_path / "s3"), upscale=upscaler(config))
    result = await dispatch({"project": "image_tools", "action": "upscale", "job_id": "described",
                             "input": {"image": b64(SMALL)}}, make)
    steps = [(s["step"], s["outcome"]) for s in result["trace"]]
    if result_put_fails:
        assert result["status"] == "FAILED" and steps[:2] == [("upscale", "ok"), ("storage.put", "error")], steps
    else:
        assert result["status"] == "COMPLETED", result["error"]
        out = result["output"]
        assert (out["width"], out["height"], out["bytes"]) == (192, 192, len(await LocalStorage(tmp_path / "s3").get(out["image_key"])))
        assert reads == ["image_tools/described/input.png"]  # the input once; the result never read back


async def test_pipeline_removes_background_then_upscales_with_alpha(setup):
    make, storage = setup
    photo = Image.open(FIXTURES / "grace_hopper_256.jpg").resize((64, 75))
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    await storage.put("uploads/photo.png", buf.getvalue())
    result = await dispatch(
        {
            "project": "image_tools",
            "action": "pipeline",
            "job_id": "pipe-1",
            "input": {"key": "uploads/photo.png", "scale": 2, "output_format": "webp"},
        },
        make,
    )
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert (out["width"], out["height"]) == (128, 150) and out["format"] == "webp"
    img = np.asarray(Image.open(io.BytesIO(await storage.get(out["image_key"]))).convert("RGBA"))
    assert img[:10, :10, 3].max() <= 10 and img[-20:, 50:80, 3].min() >= 200
    steps = [(s["step"], s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "image"]
    assert steps == [
        ("remove_background", "u2netp", "ok"),  # the offline default: isnet-anime is not tried
        ("upscale", "realesrgan-anime-6b", "ok"),
    ]


@pytest.mark.parametrize(
    ("inp", "field", "match"),
    [
        ({"image": "not base64 !!!"}, "image", "not valid base64"),
        ({"image": b64(b"plain text, not an image")}, "image", "not a supported image"),
        ({"image": b64(SMALL[:200])}, "image", "truncated|corrupt"),
        ({"key": "../../etc/passwd"}, "key", "'..' segment"),
        ({"url": "http://127.0.0.1:1/x.png"}, None, "127.0.0.1|loopback|not allowed|refused"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, None, "169.254|link-local|metadata|refused"),
        ({"image": b64(SMALL), "key": "a.png"}, None, "exactly one"),
        ({"image": b64(SMALL), "model": "nope"}, "model", "unknown model 'nope'; valid: realesr-animevideov3 \\(= realesr-animevideov3-x4\\), r"),
        # a model of the other kind is named as such, and only upscalers are offered
        ({"image": b64(SMALL), "model": "u2netp"}, "model", "'u2netp' is not an upscaling model; valid: realesr[^;]*x4plus-anime \\(= realesrgan-anime-6b\\)$"),
    ],
)
async def test_bad_input_fails_cleanly_and_writes_nothing(setup, inp, field, match):
    make, storage = setup
    result = await dispatch({"project": "image_tools", "action": "upscale", "input": inp}, make)
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "InputError"
    assert __import__("re").search(match, result["error"]["message"]), result["error"]["message"]
    if field:
        assert result["error"]["message"].startswith(field) or f"input.{field}" in result["error"]["message"]
    assert await storage.list() == []


async def test_output_pixel_cap_refused_before_running(setup, make_context, config_file, tmp_path):
    import yaml

    from core.config import load_config

    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["image"]["max_output_pixels"] = 20_000
    config_file.write_text(yaml.safe_dump(raw))
    config = load_config(config_file)
    storage = LocalStorage(tmp_path / "capped")
    make = make_context(
        None, config=config, storage=storage, upscale=upscaler(config)
    )
    result = await dispatch(
        {"project": "image_tools", "action": "upscale", "input": {"image": b64(SMALL)}}, make
    )
    assert result["status"] == "FAILED"
    assert result["error"]["message"] == (
        "scale: output would be 192x192 = 36,864 pixels; the limit is 20,000 (providers.image.max_output_pixels; input 48x48 at x4)"
    )
    assert await storage.list() == []


async def test_remove_background_to_s3_stores_output_and_keeps_signed_urls_out_of_the_result(pulled, make_context, monkeypatch):
    """Output written to S3 (moto's server over HTTP); the result names the key and resource, and no
    presigned URL (a credential) reaches it; the key presigns to the same bytes."""
    import socket

    import boto3
    import httpx
    from moto.server import ThreadedMotoServer

    from core.config import load_config
    from providers.storage.s3 import S3Storage

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret-value-123456")
        monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="art")
        config = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
        storage = S3Storage("art", prefix="swarm/", endpoint_url=endpoint)
        make = make_context(
            None,
            config=config,
            storage=storage,
            remove_background=remover(config),
        )
        from graphs.image.action import RemoveBackgroundInput, remove_background

        inp = RemoveBackgroundInput(image=b64(SMALL), model="u2netp", only_mask=True)
        out = await remove_background(inp, await make("s3-1"))
        assert out["image_key"] == "image_tools/s3-1/remove_background.png"
        assert out["url"] is None and out["resource"] == f"swarm://artifacts/{out['image_key']}"
        assert "Signature" not in str(out)
        async with httpx.AsyncClient() as http:
            fetched = (await http.get(await storage.url(out["image_key"]))).content
        assert fetched == await storage.get(out["image_key"])
        assert Image.open(io.BytesIO(fetched)).mode == "L"
        assert "Signature" not in str(out["trace"])
    finally:
        server.stop()


# --- remove_background on a list of images -------------------------------------------------------


def photo_png(size: tuple[int, int], mirror: bool = False) -> bytes:
    img = Image.open(FIXTURES / "grace_hopper_256.jpg").convert("RGB").resize(size)
    if mirror:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def test_remove_background_batch_one_result_per_image_and_a_bad_one_fails_alone(setup):
    make, storage = setup
    first, second = photo_png((128, 150)), photo_png((96, 112), mirror=True)
    await storage.put("uploads/second.png", second)
    job = {
        "project": "image_tools",
        "action": "remove_background",
        "job_id": "batch-1",
        "input": {
            "images": [{"image": b64(first)}, {"image": "not base64 !!!"}, {"key": "uploads/second.png"},
                       {"image": b64(b"plain text")}],
            "model": "u2netp",
            "inline": True,
        },
    }
    result = await dispatch(job, make)
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert (out["images"], out["succeeded"], out["failed"]) == (4, 2, 2)
    results = out["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[1]["error"] == {"type": "InputError", "message": "images[1].image: not valid base64",
                                   "field": "images[1].image"}
    assert results[3]["error"]["message"].startswith("images[3].image: not a supported image")
    for entry, source, size in ((results[0], first, (128, 150)), (results[2], second, (96, 112))):
        assert entry["image_key"] == f"image_tools/batch-1/remove_background-{entry['index']}.png"
        assert (entry["width"], entry["height"]) == size
        stored = await storage.get(entry["image_key"])
        assert base64.b64decode(entry["image_b64"]) == stored
        # the same pixels as the single-image action gives for that image
        single = await dispatch(
            {"project": "image_tools", "action": "remove_background", "job_id": f"one-{entry['index']}",
             "input": {"image": b64(source), "model": "u2netp"}},
            make,
        )
        alone = await storage.get(single["output"]["image_key"])
        assert (np.asarray(Image.open(io.BytesIO(stored))) == np.asarray(Image.open(io.BytesIO(alone)))).all()
        alpha = np.asarray(Image.open(io.BytesIO(stored)))[..., 3]
        assert alpha.min() <= 5 and alpha.max() >= 250
    # one trace step per image: two read failures, two model runs
    steps = [(s["step"], s["outcome"], (s["detail"] or "").split(" ")[0]) for s in result["trace"] if s["kind"] != "node"
             or s["step"] == "read_input"]
    assert sorted(steps) == sorted([
        ("read_input", "error", "images[1].image:"), ("read_input", "error", "images[3].image:"),
        ("remove_background", "ok", "index=0"), ("remove_background", "ok", "index=2"),
    ])
    # the bad images were never written
    keys = [obj.key for obj in await storage.list()]
    assert "image_tools/batch-1/input-0.png" in keys
    assert not [k for k in keys if k.startswith("image_tools/batch-1/") and ("-1." in k or "-3." in k)]


@pytest.mark.parametrize(
    ("images", "extra", "match"),
    [
        ([{"image": "eA=="}] * 17, {}, r"^input\.images: 17 images; give 1 to 16 per job \(MAX_BATCH_IMAGES\)"),
        ([], {}, r"^input\.images: 0 images; give 1 to 16"),
        ([{"image": "eA==", "url": "https://example.com/x.png"}], {}, r"input\.images\.0: give exactly one of image, url, key"),
        ([{"image": "eA=="}], {"image": "eA=="}, "give images or one of image, url, key, not both"),
        ([{"image": "!!"}, {"image": b64(b"text")}], {}, r"^images: none of the 2 images could be read: images\[0\]\.image"),
    ],
)
async def test_remove_background_batch_bad_input(setup, images, extra, match):
    make, storage = setup
    result = await dispatch(
        {"project": "image_tools", "action": "remove_background", "input": {"images": images, **extra}}, make
    )
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "InputError"
    assert __import__("re").search(match, result["error"]["message"]), result["error"]["message"]
    assert await storage.list() == []


async def test_pipeline_does_not_take_images(setup):
    make, _ = setup
    result = await dispatch(
        {"project": "image_tools", "action": "pipeline", "input": {"images": [{"image": b64(SMALL)}]}}, make
    )
    assert result["status"] == "FAILED" and "input.images" in result["error"]["message"]


async def test_batch_node_calls_a_provider_without_batches_once_per_image():
    """A provider with only ``process`` still serves a batch: one call per image, a failure stays its own."""
    from core.errors import InputError
    from graphs.image.nodes import make_batch_step
    from providers.testing import MemoryStorage

    calls = []

    class OneAtATime:
        async def process(self, image, action, config):
            calls.append(image)
            if image == b"bad":
                raise InputError("cannot read it", field="image")
            buf = io.BytesIO()
            Image.new("RGBA", (len(image), 2)).save(buf, "PNG")
            return buf.getvalue()

    storage = MemoryStorage()
    await storage.put("in/a", b"first")
    await storage.put("in/b", b"bad")
    node = make_batch_step("remove_background", lambda kind: OneAtATime(), storage)
    state = {"job_id": "j", "batch": [{"index": 0, "key": "in/a"}, {"index": 4, "key": "in/b"}], "options": {}}
    out = await node(state)
    assert calls == [b"first", b"bad"]
    ok, bad = out["batch_results"]
    assert ok["image_key"] == "image_tools/j/remove_background-0.png"
    assert (ok["width"], ok["height"]) == (5, 2)
    assert Image.open(io.BytesIO(await storage.get(ok["image_key"]))).size == (5, 2)
    assert bad == {"index": 4, "error": {"type": "InputError", "message": "image: cannot read it", "field": "image"}}
    assert [(s["outcome"], s["detail"]) for s in out["trace"]] == [("ok", "index=0"), ("error", "index=4")]


async def test_upscale_reports_progress_tile_by_tile(setup):
    """Progress moves while the model runs (it sat at 0% for the whole upscale): one event per
    tile, sent from the model's worker thread through the job's loop, in order."""
    import dataclasses

    make, _ = setup
    events: list[tuple[str, str, float | None]] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        events.append((stage, message, fraction))

    async def make_with_progress(job_id: str):
        return dataclasses.replace(await make(job_id), progress=progress)

    result = await dispatch(
        {"project": "image_tools", "action": "upscale", "job_id": "up-tiles",
         "input": {"image": b64(SMALL), "tile": 16, "scale": 2}},
        make_with_progress,
    )
    assert result["status"] == "COMPLETED", result["error"]
    tiles = [(message, fraction) for stage, message, fraction in events if "tile" in message]
    assert [message for message, _ in tiles] == [f"upscale (1/1): tile {n}/9" for n in range(10)]
    assert [fraction for _, fraction in tiles] == pytest.approx([n / 9 for n in range(10)])


@pytest.mark.parametrize("mode", ["L", "LA"])
async def test_a_grey_image_stays_grey(setup, mode):
    """Grey inputs came back as RGB/RGBA whose channels differed by up to 8 levels (a tint)."""
    make, storage = setup
    grey = Image.open(io.BytesIO(SMALL)).convert(mode)
    if mode == "LA":  # a transparent corner: an opaque alpha is dropped, as RGBA's is
        grey.paste((0, 0), (0, 0, 8, 8))
    buf = io.BytesIO()
    grey.save(buf, "PNG")
    result = await dispatch({"project": "image_tools", "action": "upscale", "job_id": f"grey-{mode}",
                             "input": {"image": b64(buf.getvalue()), "scale": 2}}, make)
    assert result["status"] == "COMPLETED", result["error"]
    out = Image.open(io.BytesIO(await storage.get(result["output"]["image_key"])))
    assert out.mode == mode and out.size == (96, 96)
