"""Tiled inference with overlap, so memory stays bounded at any image size.

The input is cut into ``tile`` x ``tile`` pieces; each is run with ``pad`` extra pixels of
context on every side (clipped at the image border) and only the centre of the result is kept.
The output is assembled in a uint8 array, so peak memory is the output image plus one padded
tile's activations, whatever the input size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile: the kept box ``(x0, y0, x1, y1)`` and the padded box fed to the model."""

    keep: tuple[int, int, int, int]
    padded: tuple[int, int, int, int]


def plan_tiles(width: int, height: int, tile: int, pad: int) -> list[Tile]:
    """Tiles covering ``width`` x ``height``; ``tile <= 0`` means one tile (the whole image)."""
    if tile <= 0 or (width <= tile and height <= tile):
        return [Tile((0, 0, width, height), (0, 0, width, height))]
    tiles = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            padded = (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, width), min(y1 + pad, height))
            tiles.append(Tile((x0, y0, x1, y1), padded))
    return tiles


def run_tiled(
    image: np.ndarray,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    scale: int,
    tile: int,
    pad: int,
    on_tile: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Run ``infer`` (uint8 HxWx3 -> uint8 (H*scale)x(W*scale)x3) tile by tile.

    ``on_tile(done, total)`` is called before the first tile (``done`` 0) and after each one; an
    exception it raises stops the run there.

    Returns:
        The assembled uint8 output and the number of tiles run.
    """
    import numpy as np

    height, width = image.shape[:2]
    tiles = plan_tiles(width, height, tile, pad)
    out = np.empty((height * scale, width * scale, image.shape[2]), dtype=np.uint8)
    if on_tile:
        on_tile(0, len(tiles))
    for index, (part, piece) in enumerate(_pieces(image, tiles)):
        result = infer(piece)
        kx0, ky0, kx1, ky1 = part.keep
        px0, py0 = part.padded[:2]
        ox, oy = (kx0 - px0) * scale, (ky0 - py0) * scale
        out[ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] = result[
            oy : oy + (ky1 - ky0) * scale, ox : ox + (kx1 - kx0) * scale
        ]
        if on_tile:
            on_tile(index + 1, len(tiles))
    return out, len(tiles)


def _pieces(image: np.ndarray, tiles: list[Tile]) -> Iterator[tuple[Tile, np.ndarray]]:
    for part in tiles:
        x0, y0, x1, y1 = part.padded
        yield part, image[y0:y1, x0:x1]
