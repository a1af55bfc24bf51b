"""core.heap.settle: start-up's objects leave the collector's walk; what jobs make is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from core.heap import settle


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session runs as before


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
