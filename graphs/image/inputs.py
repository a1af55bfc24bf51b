"""What the ``image_tools`` actions take: one image source (or a batch), options, limits.

``graphs.image.action`` runs single images and ``graphs.image.batch`` runs a list; both read
their inputs, limits and file extensions from here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from core.rules import MAX_NAME_CHARS

INLINE_MAX_BYTES = 4 * 1024 * 1024
#: most images one remove_background job takes in ``images``
MAX_BATCH_IMAGES = 16
#: file extension of each format an input may have
EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "bmp": "bmp"}
_SOURCES = ("image", "url", "key")
#: what a background colour takes, said in the error when it is given anything else
RGBA_TAKES = "give 3 or 4 values 0-255 (R, G, B[, A])"


def _rgba(value: Any) -> Any:
    """``[R, G, B]`` (opaque) or ``[R, G, B, A]``, each 0-255, as an RGBA tuple; anything else is one
    error that says what the field takes and what it got (a number as given, anything else by its
    kind: a text may be whatever a client pasted)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise _rgba_error(f"{_kind(value)}, not a list")
    if len(value) not in (3, 4):
        raise _rgba_error(f"{len(value)} value{'' if len(value) == 1 else 's'}")
    for name, channel in zip("RGBA", value, strict=False):
        if not isinstance(channel, int | float) or isinstance(channel, bool):
            raise _rgba_error(f"{name} as {_kind(channel)}")
        if (isinstance(channel, float) and not channel.is_integer()) or not 0 <= channel <= 255:  # NaN, inf too
            raise _rgba_error(f"{name}={channel}")
    return (*(int(channel) for channel in value), 255)[:4]  # RGB: opaque


def _rgba_error(got: str) -> PydanticCustomError:
    # pydantic's own were one per item, and named a missing alpha "background_color.3: Field required"
    return PydanticCustomError("rgba", "{takes}; got {got}", {"takes": RGBA_TAKES, "got": got})


def _kind(value: Any) -> str:
    """What a JSON value is, in words."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    return next((word for kind, word in kinds.items() if isinstance(value, kind)), "null" if value is None else type(value).__name__)


#: a fill colour: RGB or RGBA in, always an RGBA tuple out; one error for any bad value, and a
#: schema that says both lengths (``mcp_server.tool_inputs`` takes it too)
Rgba = Annotated[
    tuple[int, int, int, int],
    BeforeValidator(_rgba),
    WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255},
                    "minItems": 3, "maxItems": 4}),
]


class ImageSource(BaseModel):
    """One image: exactly one of ``image``, ``url``, ``key``."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a wrong type is refused, not coerced (true -> 1)

    image: str | None = Field(
        default=None, description="the image as base64 (or a data:image/...;base64, URL)"
    )
    url: str | None = Field(
        default=None, max_length=4096, description="an http(s) URL to fetch the image from"
    )
    key: str | None = Field(default=None, max_length=1024, description="a key in the configured storage")
    #: set by a door that read a local file (``path``) into ``image`` (``swarm.local_images``): the
    #: job's errors name the field the caller wrote, not one it never sent; not in the schema
    given_as: SkipJsonSchema[Literal["path"] | None] = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ImageSource:
        # an empty field beside a filled one is a client's "unset" (tool callers send "" for optional
        # strings); an empty one alone is given: "" (a zero-byte file's base64) fails when read,
        # naming that image alone, rather than the whole job here as "got none"
        given = self._given()
        if getattr(self, "images", None) is not None:
            if given:
                raise ValueError(f"give images or one of image, url, key, not both (got images and {', '.join(given)})")
            return self
        if len(given) != 1:
            raise ValueError(f"give exactly one of image, url, key (got {', '.join(given) or 'none'})")
        return self

    def _given(self) -> list[str]:
        present = [name for name in _SOURCES if getattr(self, name) is not None]
        filled = [name for name in present if getattr(self, name) != ""]
        return filled or present

    @property
    def source(self) -> str:
        """The name of the field the caller gave the image in (``path`` for a local file a door read)."""
        given = self._given()[0]
        return self.given_as if given == "image" and self.given_as else given


class ImageInput(ImageSource):
    """Where the image comes from, and how the result is returned."""

    output_format: Literal["png", "webp", "jpeg"] = "png"
    inline: bool = Field(
        default=False, description=f"also return the output as base64 (up to {INLINE_MAX_BYTES} bytes)"
    )


class UpscaleInput(ImageInput):
    """Upscale with Real-ESRGAN."""

    model: str | None = Field(
        default=None, max_length=MAX_NAME_CHARS, description="realesrgan-anime-6b, realesrgan-x4plus, realesr-animevideov3-x2/x3/x4"
    )
    scale: Literal[2, 3, 4] | None = Field(
        default=None, description="default: the model's, else providers.image.upscale.scale"
    )
    tile: int | None = Field(
        default=None, ge=0, le=2048, description="tile size in input pixels; 0 = no tiling"
    )


class BackgroundOptions(ImageInput):
    """The background-removal options remove_background and pipeline share."""

    model: str | None = Field(
        default=None, max_length=MAX_NAME_CHARS, description="isnet-anime, u2netp, u2net; default: providers.image.rembg.model"
    )
    alpha_matting: bool = False
    only_mask: bool = False
    background_color: Rgba | None = Field(
        default=None, description="R, G, B[, A], each 0-255; without A: opaque"
    )


class RemoveBackgroundInput(BackgroundOptions):
    """Cut the subject out; transparent (or coloured) background. One image, or a batch."""

    images: list[ImageSource] | None = Field(
        default=None,
        description=f"several images in one job, each {{image | url | key}} (1 to {MAX_BATCH_IMAGES});"
        " instead of image/url/key; one result per image",
        json_schema_extra={"minItems": 1, "maxItems": MAX_BATCH_IMAGES},
    )

    @field_validator("images", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        # counted before any item is validated: a huge list costs nothing
        if isinstance(value, list) and not 1 <= len(value) <= MAX_BATCH_IMAGES:
            raise ValueError(f"{len(value)} images; give 1 to {MAX_BATCH_IMAGES} per job (MAX_BATCH_IMAGES)")
        return value


class PipelineInput(BackgroundOptions):
    """Remove the background, then upscale (alpha kept through the upscale)."""

    model: str | None = Field(default=None, max_length=MAX_NAME_CHARS, description="background-removal model")
    upscale_model: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    scale: Literal[2, 3, 4] | None = None
    tile: int | None = Field(default=None, ge=0, le=2048)
