"""Safe image input and output: base64 / URL / storage key / local file in, checked pixels, bytes out.

Every limit is checked before the expensive step it guards: base64 length before decoding,
magic bytes before Pillow sees the data, the declared width x height (read from the header)
before any pixel is decoded, and the output size before a model runs. Pillow's own
``MAX_IMAGE_PIXELS`` only warns up to twice its value, so it is not relied on, nor let refuse an
image within our limits (``open_header``). Errors are ``InputError`` naming the field and the limit.

The one name to import these from; each lives in the module of its job:

- ``providers.image.limits``: ``ImageLimits``, the limits of ``providers.image`` in config;
- ``providers.image.header``: the format by magic bytes, the size a header declares, and
  Pillow's decompression-bomb limit around an open;
- ``providers.image.inputs``: base64, URL or storage key in, checked 8-bit sRGB pixels out;
- ``providers.image.local_files``: a local file (the MCP tools' ``path``);
- ``providers.image.outputs``: output checks, encoding, and a preview of an encoded output.

Importing it imports no Pillow, numpy or torch: each function imports what it needs when called.
"""

from __future__ import annotations

from providers.image.header import encoded_size, open_header, sniff_format, webp_size
from providers.image.inputs import (
    base64_limit_chars,
    base64_payload,
    decode_base64,
    open_checked,
    read_input,
    to_8bit,
    to_srgb,
)
from providers.image.limits import ImageLimits
from providers.image.local_files import MAX_PATH_CHARS, local_path, looks_like_path, read_file
from providers.image.outputs import (
    MAX_SIDE,
    OPAQUE_FORMATS,
    OUTPUT_FORMATS,
    alpha_fate,
    check_output_pixels,
    check_output_side,
    decode_for_preview,
    encode,
    has_transparency,
    to_rgb_alpha,
    transparency_lost,
)
from providers.image.quiet import quiet_pillow

__all__ = [
    "MAX_PATH_CHARS",
    "MAX_SIDE",
    "OPAQUE_FORMATS",
    "OUTPUT_FORMATS",
    "ImageLimits",
    "alpha_fate",
    "base64_limit_chars",
    "base64_payload",
    "check_output_pixels",
    "check_output_side",
    "decode_base64",
    "decode_for_preview",
    "encode",
    "encoded_size",
    "has_transparency",
    "local_path",
    "looks_like_path",
    "open_checked",
    "open_header",
    "quiet_pillow",
    "read_file",
    "read_input",
    "sniff_format",
    "to_8bit",
    "to_rgb_alpha",
    "to_srgb",
    "transparency_lost",
    "webp_size",
]
