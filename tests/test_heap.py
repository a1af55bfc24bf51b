"""core.heap.settle: start-up's objects leave the collector's walk; what jobs make is still collected."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from core.heap import YOUNG_THRESHOLD, settle


@pytest.fixture
def unfrozen() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()  # the rest of the test session runs as before
    gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_settle_freezes_what_exists_and_later_cycles_are_still_freed(unfrozen: None) -> None:
    before = _Node()
    frozen = settle()
    assert frozen > 0
    assert not any(obj is before for obj in gc.get_objects())  # out of every generation's walk
    later = _Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None  # a job's cyclic garbage is still collected


def test_settle_spaces_out_young_collections_and_cycles_still_go_without_an_explicit_collect(unfrozen: None) -> None:
    gc.set_threshold(700, 10, 10)
    settle()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    collections = gc.get_stats()[0]["collections"]
    cycle = _Node()
    gone = weakref.ref(cycle)
    del cycle
    keep = [[] for _ in range(2 * YOUNG_THRESHOLD)]  # past the threshold: the collector runs by itself
    assert gc.get_stats()[0]["collections"] > collections
    assert gone() is None
    del keep


def test_settle_keeps_a_higher_threshold_and_a_collector_turned_off(unfrozen: None) -> None:
    gc.set_threshold(200_000, 5, 5)
    settle()
    assert gc.get_threshold() == (200_000, 5, 5)
    gc.set_threshold(0, 10, 10)
    settle()
    assert gc.get_threshold()[0] == 0


async def test_a_stopped_in_process_mcp_server_leaves_its_runtime_collectable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    """The server settles (freezes) at start-up; a host that stops it and goes on must get its
    state back: before ``unsettle`` every stopped lifespan kept its runtime, and with it the
    loaded models (u2netp's onnxruntime session and thread: ~275 MB a start/stop)."""
    from mcp import Client
    from mcp_helpers import write_config

    from mcp_server.server import SETTLE_AFTER_S, build_server
    from swarm.runtime import Runtime

    made: list[weakref.ref[Runtime]] = []
    init = Runtime.__init__

    def recording(self: Runtime, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Runtime, "__init__", recording)
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}
        deadline = time.monotonic() + SETTLE_AFTER_S + 10
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:  # settles after the first answers
            await anyio.sleep(0.05)
        assert gc.get_freeze_count() > 0  # the lifespan settled
        assert made and made[-1]() is not None
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert [ref for ref in made if ref() is not None] == []


async def test_the_server_answers_before_it_settles_and_a_stop_before_then_never_settles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    """The collection before the freeze walks start-up's ~100k objects (31-43 ms): ``initialize``
    and ``tools/list`` no longer wait for it, and a server stopped first leaves nothing frozen."""
    from mcp import Client
    from mcp_helpers import write_config

    from mcp_server import server as server_module

    gc.unfreeze()
    monkeypatch.setattr(server_module, "SETTLE_AFTER_S", 60.0)
    async with Client(server_module.build_server(str(write_config(tmp_path)))) as client:
        assert (await client.list_tools()).tools
        assert gc.get_freeze_count() == 0  # answered, not settled yet
    await anyio.sleep(0.1)
    assert gc.get_freeze_count() == 0  # the stop cancelled the settle
