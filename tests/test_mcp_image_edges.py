"""Image answers at their limits, and where a poll's progress starts (a reviewer over MCP)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from core.errors import InputError
from mcp_server.jobstore import JobStore
from mcp_server.results import inline_within
from providers.image.imageio import ImageLimits, read_input
from providers.storage.local import LocalStorage


def test_a_result_exactly_at_the_inline_limit_is_inlined() -> None:
    """1,549 bytes read as 1,550 (the base64's padding counted) against a limit of 1,549."""
    for size in (1547, 1548, 1549):
        encoded = base64.b64encode(b"x" * size).decode()
        assert inline_within({}, encoded, 1549) == encoded, size
    entry: dict[str, str] = {}
    assert inline_within(entry, base64.b64encode(b"x" * 1550).decode(), 1549) is None and entry["inline_omitted"]


async def test_a_key_over_the_input_limit_names_the_setting(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    await storage.put("uploads/big.png", b"x" * 5000)
    with pytest.raises(InputError) as refused:
        await read_input(key="uploads/big.png", storage=storage, limits=ImageLimits(max_input_bytes=3000))
    assert str(refused.value) == "key: object is 5,000 bytes; the limit is 3,000 (providers.image.max_input_bytes)"


def test_a_poll_replays_the_last_fraction_a_job_reached() -> None:
    """A poll of a job past 50% opened at 0%: its last event ("measuring ...") had no fraction."""
    store = JobStore(":memory:")
    store.create("j1", "local", {"project": "image_tools", "action": "upscale", "input": {}})
    store.set_progress("j1", "upscale", "tile 4/8", 0.5)
    store.set_progress("j1", "upscale", "measuring this CPU's paths", None)
    progress = store.get("j1")["progress"]  # type: ignore[index]
    assert progress["fraction"] is None and progress["reached"] == 0.5
    store.close()
