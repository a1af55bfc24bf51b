"""What the image backends share: one action each, run in a worker thread, traced.

A backend subclasses ``SingleActionBackend``, names its ``action`` and ``name`` and implements
``_process_sync``; ``process`` (the ``ImageProvider`` contract), ``process_traced`` (the
``TracedImageProvider`` capability) and ``warm`` (``Warmable``: ``_warm_sync`` in a worker
thread; a backend with nothing to load ahead keeps the no-op) are this one implementation.
"""

from __future__ import annotations

from typing import ClassVar

import anyio

from core.errors import InputError
from providers.base import ImageAction, ImageConfig, TraceStep


class SingleActionBackend:
    """Base of an ``ImageProvider`` that does exactly one ``ImageAction``."""

    #: the one action this backend does
    action: ClassVar[ImageAction]
    #: the provider name in errors and trace steps
    name: ClassVar[str]

    def check_action(self, action: ImageAction | str) -> None:
        """Raise ``InputError`` (field ``action``) unless ``action`` is this backend's."""
        if ImageAction(action) is not self.action:
            raise InputError(f"{self.name} only does {self.action}, not {action}", field="action")

    async def process(self, image: bytes, action: ImageAction, config: ImageConfig) -> bytes:
        """Run the action on ``image`` (PNG/JPEG/WebP/GIF/BMP bytes); returns encoded bytes."""
        data, _ = await self.process_traced(image, action, config)
        return data

    async def process_traced(
        self, image: bytes, action: ImageAction, config: ImageConfig
    ) -> tuple[bytes, list[TraceStep]]:
        """Like ``process``, plus its trace steps (one per model tried, skips and failures included)."""
        self.check_action(action)
        return await anyio.to_thread.run_sync(self._process_sync, image, config)

    async def warm(self) -> None:
        """Load the configured model and make its one-off choices (``Warmable``), off the event
        loop, so the first job finds them done; a job arriving meanwhile waits on the same lock."""
        await anyio.to_thread.run_sync(self._warm_sync)

    def _warm_sync(self) -> None:
        """The warm-up, in a worker thread; nothing by default."""

    def _process_sync(self, image: bytes, config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        """The work, in a worker thread: encoded output and its trace steps."""
        raise NotImplementedError
