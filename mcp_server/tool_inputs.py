"""The argument types the MCP action tools share (``IdempotencyKey``) and those of the image tools
(``ImageB64``, ``ImagePath`` ... ``ImageItem``), with the limits the schemas advertise; and
``drop_none``, which turns a call's arguments into a job's input.

Annotations are evaluated at registration (no ``from __future__ import annotations``), as in
``mcp_server.tools``.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.rules import IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY_CHARS, MAX_NAME_CHARS
from graphs.image.inputs import Rgba

# no description: the name says it (a retry with the same key gets the same job), and six tools
# would repeat it in every client's context
IdempotencyKey = Annotated[
    str | None, Field(max_length=MAX_IDEMPOTENCY_KEY_CHARS, pattern=IDEMPOTENCY_KEY_PATTERN),
]

MAX_IMAGE_URL_CHARS = 4096
MAX_KEY_CHARS = 1024
ImageB64 = Annotated[str | None, Field(description="base64 or data: URL")]
# its length is checked when it is read (imageio.local_path): a limit no path reaches, not worth the context;
# nor is "a local file" (the name says it): the chars pay for the output schemas' failure shapes (admit_failures)
ImagePath = Annotated[str | None, Field(description="absolute, or a file:// URL")]
ImageUrl = Annotated[str | None, Field(description="http(s)", max_length=MAX_IMAGE_URL_CHARS)]
ImageKey = Annotated[str | None, Field(description="a result's storage key", max_length=MAX_KEY_CHARS)]
OutputFormat = Literal["png", "webp", "jpeg"]
ReturnB64 = Annotated[bool, Field(description="also base64 (capped)")]
Scale = Annotated[Literal[2, 3, 4] | None, Field(description="default: model's")]
Tile = Annotated[int | None, Field(ge=0, le=2048, description="input px per tile; 0: none")]
UpscaleModel = Annotated[str | None, Field(
    max_length=MAX_NAME_CHARS, description="realesrgan-anime-6b (default), realesrgan-x4plus, realesr-animevideov3-x2/x3/x4")]
RembgModel = Annotated[str | None, Field(max_length=MAX_NAME_CHARS, description="u2netp (default), isnet-anime, u2net")]
Fill = Annotated[Rgba | None, Field(description="RGB(A) fill")]


class ImageItem(BaseModel):
    # no docstring: it would be the schema's description, and the tool's says "one of image, path, url, key"

    model_config = ConfigDict(extra="forbid")

    # the same limits as the top-level image/path/url/key, whose descriptions say the rest
    image: str | None = None
    path: str | None = None
    url: Annotated[str | None, Field(max_length=MAX_IMAGE_URL_CHARS)] = None
    key: Annotated[str | None, Field(max_length=MAX_KEY_CHARS)] = None


def drop_none(**values: Any) -> dict[str, Any]:
    """``values`` without those that are None (an argument left out is no key of the job's input)."""
    return {k: v for k, v in values.items() if v is not None}
