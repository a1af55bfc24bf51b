"""Safe image input: every bad input gets a clear InputError naming the field and the limit."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.errors import InputError
from providers.image.imageio import (
    ImageLimits,
    check_output_pixels,
    decode_base64,
    encode,
    open_checked,
    read_input,
    sniff_format,
)
from providers.testing import MemoryStorage

FIXTURES = Path(__file__).parent / "fixtures"
LIMITS = ImageLimits(max_input_bytes=200_000, max_input_pixels=1_000_000, max_output_pixels=4_000_000)


def png_bytes(size=(8, 8), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 20, 30) if mode == "RGB" else None).save(buf, "PNG")
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims width x height (bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_real_photo_decodes():
    img = open_checked((FIXTURES / "grace_hopper_256.jpg").read_bytes(), LIMITS)
    assert img.size == (256, 300) and sniff_format((FIXTURES / "grace_hopper_256.jpg").read_bytes()) == "jpeg"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"hello, this is text", "not a supported image"),
        (b"", "not a supported image"),
        (b"%PDF-1.7 ...", "not a supported image"),
        (png_declaring(20_000, 10_000), "200,000,000 pixels; the limit is 1,000,000 \\(providers.image.max_input_pixels\\)"),
        (png_declaring(1100, 1000), "1100x1000 = 1,100,000 pixels; the limit is 1,000,000 \\(providers.image.max_input_pixels\\)"),
        (png_bytes((64, 64))[:60], "truncated|corrupt|header"),
        ((FIXTURES / "grace_hopper_256.jpg").read_bytes()[:5000], "truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "header"),
        (b"\0" * 300_000, "300,000 bytes; the limit is 200,000 \\(providers.image.max_input_bytes\\)"),
    ],
)
def test_bad_images_refused(data, match):
    with pytest.raises(InputError, match=match) as info:
        open_checked(data, LIMITS)
    assert info.value.field == "image"


def test_format_allow_list():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "BMP")
    with pytest.raises(InputError, match="formats: png"):
        open_checked(buf.getvalue(), ImageLimits(formats=("png",)))


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    img = open_checked(buf.getvalue(), LIMITS)
    assert img.convert("RGB").getpixel((3, 3)) == (255, 0, 0)


def test_base64_rules():
    raw = png_bytes()
    assert decode_base64(base64.b64encode(raw).decode(), LIMITS) == raw
    assert decode_base64("data:image/png;base64," + base64.b64encode(raw).decode(), LIMITS) == raw
    with pytest.raises(InputError, match="not valid base64"):
        decode_base64("@@@not-base64@@@", LIMITS)
    with pytest.raises(InputError, match="characters; the limit is 266668"):
        decode_base64("A" * 400_000, LIMITS)
    encoded = base64.b64encode(raw).decode()  # a good image under a wrong label says so
    with pytest.raises(InputError, match=r"a data: URL of text/plain, not an image type; send data:image/png;base64"):
        decode_base64("data:text/plain;base64," + encoded, LIMITS)
    with pytest.raises(InputError, match="a data: URL of image/png without ;base64"):
        decode_base64("data:image/png," + encoded, LIMITS)
    assert decode_base64("DATA:IMAGE/WEBP;base64," + encoded, LIMITS) == raw
    assert decode_base64("data:image/png;charset=utf-8;name=cat.png;base64," + encoded, LIMITS) == raw  # RFC 2397 parameters


def test_output_cap():
    assert check_output_pixels(500, 500, 4, LIMITS) == (2000, 2000)
    with pytest.raises(InputError, match="4004x4000 = 16,016,000 pixels; the limit is 4,000,000 \\(providers.image.max_output_pixels") as info:
        check_output_pixels(1001, 1000, 4, LIMITS)
    assert info.value.field == "scale"


def test_encode_jpeg_flattens_alpha():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = Image.open(io.BytesIO(encode(img, "jpeg")))
    assert out.mode == "RGB" and out.getpixel((1, 1))[0] > 240
    with pytest.raises(InputError, match="output_format"):
        encode(img, "tiff")


async def test_read_input_sources():
    storage = MemoryStorage()
    raw = png_bytes()
    await storage.put("in/a.png", raw)
    assert await read_input(key="in/a.png", storage=storage, limits=LIMITS) == raw
    assert await read_input(image_b64=base64.b64encode(raw).decode(), limits=LIMITS) == raw
    with pytest.raises(InputError, match="exactly one"):
        await read_input(image_b64="x", key="y", limits=LIMITS)
    with pytest.raises(InputError, match="exactly one"):
        await read_input(limits=LIMITS)
    with pytest.raises(InputError) as info:
        await read_input(key="../etc/passwd", storage=storage, limits=LIMITS)
    assert info.value.field == "key"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/x",
        "file:///etc/passwd",
    ],
)
async def test_read_input_refuses_internal_urls(url):
    with pytest.raises(InputError):
        await read_input(url=url, limits=LIMITS)


def _gradient_16bit() -> tuple[bytes, list[int]]:
    """A 16-bit greyscale PNG whose columns run 0..65535, and each column's 8-bit value."""
    import numpy as np

    levels = np.linspace(0, 65535, 64).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(np.tile(levels, (4, 1))).save(buf, "PNG")
    return buf.getvalue(), [round(int(v) / 257) for v in levels]


def test_16bit_greyscale_is_scaled_to_8_bits_not_clipped():
    """``convert("RGB")`` clipped every level over 255 to white: a gradient came out black and white."""
    import numpy as np

    from providers.image.imageio import to_8bit, to_rgb_alpha

    data, expected = _gradient_16bit()
    rgb, alpha = to_rgb_alpha(open_checked(data, LIMITS))
    red = np.asarray(rgb)[0, :, 0].astype(int)
    assert alpha is None and np.abs(red - expected).max() <= 1
    assert red[31] == expected[31] and 120 <= red[31] <= 130  # mid-grey, not white
    # the other wide modes a decoder may give (big-endian, 32-bit) scale the same way
    wide = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert wide.mode == "I" and np.asarray(to_8bit(wide)).tolist() == [[0, 128, 255]]
    big = Image.frombytes("I;16B", (3, 1), np.array([0, 32768, 65535], dtype=">u2").tobytes())
    assert np.asarray(to_8bit(big)).tolist() == [[0, 128, 255]]


@pytest.mark.parametrize("mode", ["I;16", "L", "RGB"])
def test_a_trns_colour_stays_transparent(mode: str) -> None:
    """PNG's tRNS makes one grey level or colour transparent; outside palette images it was dropped
    (a 16-bit level also sits among others that share its 8-bit value: only the exact one is clear)."""
    import numpy as np

    from providers.image.imageio import to_rgb_alpha

    values: dict[str, Any] = {
        "I;16": ([0, 1000, 1100, 65535], np.uint16, 1000),
        "L": ([0, 100, 101, 255], np.uint8, 100),
        "RGB": ([[0, 0, 0], [10, 20, 30], [10, 20, 31], [255, 255, 255]], np.uint8, (10, 20, 30)),
    }
    pixels, dtype, clear = values[mode]
    buf = io.BytesIO()
    Image.fromarray(np.array([pixels], dtype=dtype)).save(buf, "PNG", transparency=clear)
    img = open_checked(buf.getvalue(), LIMITS)
    rgb, alpha = to_rgb_alpha(img)
    assert alpha is not None and np.asarray(alpha).tolist() == [[255, 0, 255, 255]]
    assert rgb.mode == "RGB" and rgb.size == (4, 1)


def test_exif_orientation_is_applied():
    """A photo stored landscape with orientation 6 (rotate 90) is upright (portrait) once opened."""
    import numpy as np

    stored = Image.new("RGB", (96, 64), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 48, 64))  # left half red as stored: the top once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    img = open_checked(buf.getvalue(), LIMITS)
    assert img.size == (64, 96)
    pixels = np.asarray(img.convert("RGB")).astype(int)
    assert pixels[10, 32, 0] > 200 and pixels[10, 32, 2] < 60  # top: red
    assert pixels[85, 32, 2] > 200 and pixels[85, 32, 0] < 60  # bottom: blue


async def test_an_empty_source_is_named_as_empty():
    """``""`` (a zero-byte file's base64) was taken for no source at all: "give exactly one of ...\""""
    cases = [({"image_b64": ""}, "image"), ({"image_b64": "  \n"}, "image"), ({"url": ""}, "url"), ({"key": ""}, "key")]
    for source, field in cases:
        with pytest.raises(InputError, match="is empty") as info:
            await read_input(**source, storage=MemoryStorage(), limits=LIMITS)
        assert info.value.field == field
    assert str(info.value) == "key: is empty"


def test_an_empty_field_beside_a_filled_one_is_unset_and_alone_it_is_given():
    """Tool callers send "" for optional strings: ``{"image": <b64>, "url": ""}`` was refused as two sources."""
    from pydantic import ValidationError

    from graphs.image.inputs import ImageInput

    assert ImageInput.model_validate({"image": "aGk=", "url": "", "key": ""}).source == "image"
    assert ImageInput.model_validate({"url": ""}).source == "url"  # read later as "url: is empty"
    with pytest.raises(ValidationError, match="got image, url"):
        ImageInput.model_validate({"image": "aGk=", "url": "https://example.org/a.png"})


async def test_a_url_answering_an_http_error_is_refused_naming_the_status():
    """A 404 whose body is a placeholder PNG was processed as the image, and an empty 404 read as
    "not a supported image (magic bytes empty)" on field image, naming neither the URL nor 404."""
    import httpx

    placeholder = io.BytesIO()
    Image.new("RGB", (4, 4)).save(placeholder, "PNG")
    answer = httpx.Response(404, content=placeholder.getvalue(), headers={"content-type": "image/png"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: answer)) as http:
        with pytest.raises(InputError, match="HTTP 404") as refused:
            await read_input(url="http://8.8.8.8/missing.png", limits=LIMITS, http=http)
    assert refused.value.field == "url"


def test_an_image_in_another_colour_profile_is_read_in_srgb():
    """An Adobe-RGB-like profile (tests/fixtures/wide_gamut_rgb.icc: primaries of Adobe RGB, gamma
    2.2) was dropped without converting: every output is untagged, read as sRGB, and a green shown
    as (0,201,37) came back as (37,200,58). An sRGB profile, or none, leaves the pixels as they are."""
    from PIL import ImageCms

    icc = (FIXTURES / "wide_gamut_rgb.icc").read_bytes()
    for mode, colour in (("RGB", (40, 200, 60)), ("RGBA", (40, 200, 60, 128))):
        buf = io.BytesIO()
        Image.new(mode, (8, 8), colour).save(buf, "PNG", icc_profile=icc)
        img = open_checked(buf.getvalue(), LIMITS)
        assert img.mode == mode and "icc_profile" not in img.info
        assert img.getpixel((0, 0))[:3] == (0, 201, 37) and img.getpixel((0, 0))[3:] == colour[3:]
    srgb = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 200, 60)).save(
        srgb, "PNG", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert open_checked(srgb.getvalue(), LIMITS).getpixel((0, 0)) == (40, 200, 60)
    bad = io.BytesIO()  # a profile no one can read: shown as sRGB, as a viewer does
    Image.new("RGB", (8, 8), (40, 200, 60)).save(bad, "PNG", icc_profile=b"not a profile at all")
    assert open_checked(bad.getvalue(), LIMITS).getpixel((0, 0)) == (40, 200, 60)


async def test_a_failed_fetch_of_one_image_is_a_step_of_the_job(make_context, tmp_path):
    """A single image's url that could not be fetched left only the dispatch step in the trace; in
    a batch the same url had its read_input step."""
    from swarm.dispatcher import dispatch

    url = "https://unresolvable.invalid/cat.png?X-Amz-Signature=PLANTEDSIG0123456789abcdef"
    from providers.storage.local import LocalStorage

    result = await dispatch({"project": "image_tools", "action": "upscale", "input": {"url": url}},
                            make_context(None, storage=LocalStorage(tmp_path / "artifacts")))
    assert result["error"]["type"] != "ConfigError", result["error"]
    assert result["status"] == "FAILED"
    step = next(s for s in result["trace"] if s["step"] == "read_input")
    assert step["outcome"] == "error" and step["detail"].startswith("url: ") and step["latency_ms"] >= 0
    assert result["error"]["field"] == "url"  # the error names the input, as a refusal does (only the step did)
    assert "PLANTEDSIG" not in str(result)
