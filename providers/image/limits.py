"""The limits an image input and output are checked against: ``providers.image`` in config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import ImageSection, SwarmConfig


@dataclass(frozen=True)
class ImageLimits:
    """The limits of ``providers.image`` in config."""

    max_input_bytes: int = 20 * 1024 * 1024
    max_input_pixels: int = 16_777_216
    max_output_pixels: int = 268_435_456
    formats: tuple[str, ...] = ("png", "jpeg", "webp", "gif", "bmp")

    @classmethod
    def from_section(cls, image: ImageSection) -> ImageLimits:
        """The limits of ``providers.image``."""
        return cls(image.max_input_bytes, image.max_input_pixels, image.max_output_pixels)

    @classmethod
    def from_config(cls, config: SwarmConfig) -> ImageLimits:
        """The limits of ``config.providers.image``."""
        return cls.from_section(config.providers.image)
