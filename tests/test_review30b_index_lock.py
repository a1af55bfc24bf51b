"""Builds of one index take turns on ``<index>.lock`` (79b4ba3). A research must not wait out
another process's whole build (``swarm index build`` of a big folder) while the index it would
search is there, and an index whose lock cannot be taken (a filesystem without locks, a lock file
that cannot be made) is built as before the lock, not failed with a raw OSError."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import threading
from pathlib import Path

import pytest

from providers.search import index_store
from providers.search.index_store import build_index
from providers.search.local_index import LocalIndexSearch


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "falcon.md").write_text("# Falcon\n\nThe falcon flies over the hangar at dawn.\n")
    return docs


def test_a_search_answers_from_the_index_while_another_process_builds_it(tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    index = tmp_path / "index.sqlite"
    build_index([docs], index)
    (docs / "heron.md").write_text("# Heron\n\nThe heron waits by the river.\n")
    search = LocalIndexSearch([docs], index, refresh_interval_s=0)
    with open(index.with_name(index.name + ".lock"), "a") as held:  # a long `swarm index build` elsewhere
        fcntl.flock(held, fcntl.LOCK_EX)
        released = threading.Event()

        def build_ends() -> None:
            released.set()
            fcntl.flock(held, fcntl.LOCK_UN)

        ends = threading.Timer(15, build_ends)
        ends.start()
        try:
            titles = [r.title for r in asyncio.run(search.search("falcon hangar", 3))]
            answered_during_build = not released.is_set()
        finally:
            ends.cancel()
            build_ends()
    assert answered_during_build, "the search waited for the other process's build to end"
    assert titles and "Falcon" in titles[0]


def test_an_index_on_a_filesystem_without_locks_is_still_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(*_args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")  # NFS without lockd

    monkeypatch.setattr(index_store.fcntl, "flock", no_locks)
    stats = build_index([_docs(tmp_path)], tmp_path / "index.sqlite")
    assert stats.added == 1


def test_an_index_whose_lock_file_cannot_be_made_is_still_built(tmp_path: Path) -> None:
    index = tmp_path / "index.sqlite"
    (tmp_path / "index.sqlite.lock").mkdir()  # stands for a lock file that cannot be opened
    stats = build_index([_docs(tmp_path)], index)
    assert stats.added == 1
