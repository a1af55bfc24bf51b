"""LeanStartSaver: a checkpoint saver wrapper that stores nothing before a job's first node ran.

LangGraph stores two checkpoints before any node of a new thread runs (step -1, the input; step 0,
the input applied) and the start task's writes between them. For a job they hold nothing the job
does not carry itself: a job that dies before its first node finishes restarts from its input,
exactly as if they had been stored (``graphs.run.run_graph`` starts from the input when a thread
has no checkpoint). Skipping them takes a delegation job from 4 checkpoints and 3 write sets
to 2 and 2, and the saver's share of a job's CPU with it (``python -m bench.bench_concurrency``).

What stays durable is unchanged: every checkpoint from step 1 on (the first node's result) is
stored as before. Rules that keep the stored history whole on every saver:

- a checkpoint stored after held ones carries the channel versions the held ones introduced
  (savers that keep one blob per channel version, PostgreSQL and memory, write them then), and
  is stored without a parent (the held parent never reached the store);
- writes to a held checkpoint are dropped (a finished first task's writes are in the next
  checkpoint, which follows at once), except an interrupt or resume: then the held checkpoint
  is stored first, so the thread can be resumed there.

Only for graphs whose first step runs one task: with several (a ``Send`` fan-out from START),
the finished tasks' writes are what spares them a rerun, and those graphs use the plain saver.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    INTERRUPT,
    RESUME,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

#: writes that make a held checkpoint worth storing: the thread will be resumed from it
_RESUMABLE = frozenset({INTERRUPT, RESUME})


@dataclass
class _Held:
    """The checkpoints of one thread not stored yet (all before its first node ran)."""

    ids: set[str] = field(default_factory=set)
    versions: dict[str, Any] = field(default_factory=dict)  # channel -> version they introduced
    last: tuple[RunnableConfig, Checkpoint, CheckpointMetadata] | None = None


def _thread(config: RunnableConfig) -> str | None:
    """The thread of a root-graph config; ``None`` for a subgraph's (never held)."""
    conf = config["configurable"]
    return None if conf.get("checkpoint_ns") else str(conf["thread_id"])


def _without_parent(config: RunnableConfig) -> RunnableConfig:
    conf = {k: v for k, v in config["configurable"].items() if k != "checkpoint_id"}
    return {**config, "configurable": conf}


class LeanStartSaver(BaseCheckpointSaver):
    """Wraps any LangGraph saver; holds back a new thread's checkpoints until its first node ran.

    Args:
        inner: the saver that stores (SQLite, PostgreSQL, memory); every read goes to it.
    """

    def __init__(self, inner: BaseCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.get_next_version = inner.get_next_version  # type: ignore[method-assign]  # hot: no extra hop
        self._held: dict[str, _Held] = {}  # thread id -> what is held for it
        self._new: set[str] = set()  # threads known to have nothing stored (``expect_new``)

    @property
    def config_specs(self) -> list:
        return self.inner.config_specs

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> LeanStartSaver:
        inner = self.inner.with_allowlist(extra_allowlist)
        if inner is self.inner:
            return self
        clone = copy.copy(self)  # shares ``_held``: the same threads, whichever copy LangGraph uses
        clone.inner, clone.serde = inner, inner.serde
        return clone

    def expect_new(self, thread_id: str) -> None:
        """Say that ``thread_id`` has nothing stored (its id was minted for this run): the run's
        first read of it is answered without asking the store."""
        self._new.add(str(thread_id))

    def forget(self, thread_id: str) -> None:
        """Drop what is held or expected for ``thread_id`` (call it when its run ends)."""
        self._held.pop(str(thread_id), None)
        self._new.discard(str(thread_id))

    # --- the rules, shared by the sync and async methods ------------------------------------

    def _hold(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
              new_versions: ChannelVersions) -> RunnableConfig | None:
        """Hold the checkpoint and return its config, or ``None`` when it is to be stored."""
        thread = _thread(config)
        if thread is None or metadata.get("step", 1) > 0:
            return None
        held = self._held.setdefault(thread, _Held())
        held.ids.add(checkpoint["id"])
        held.versions.update(new_versions)
        held.last = (config, checkpoint, metadata)
        return {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": checkpoint["id"]}}

    def _release(self, config: RunnableConfig, checkpoint: Checkpoint,
                 new_versions: ChannelVersions) -> tuple[RunnableConfig, ChannelVersions]:
        """The config and versions to store ``checkpoint`` with, the thread's held ones folded in."""
        thread = _thread(config)
        held = None if thread is None else self._held.pop(thread, None)
        if held is None:
            return config, new_versions
        current = checkpoint["channel_versions"]
        versions = {ch: current[ch] for ch in held.versions if ch in current}
        versions.update(new_versions)
        return _without_parent(config), versions

    def _writes_plan(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]]) -> tuple[bool, tuple | None]:
        """(drop the writes?, ``put``'s arguments for the held checkpoint to store first, if any)."""
        thread = _thread(config)
        held = None if thread is None else self._held.get(thread)
        if held is None or config["configurable"].get("checkpoint_id") not in held.ids:
            return False, None
        if not any(channel in _RESUMABLE for channel, _ in writes):
            return True, None
        if held.last is None:
            return False, None
        last_config, checkpoint, metadata = held.last
        stored_config, versions = self._release(last_config, checkpoint, {})
        return False, (stored_config, checkpoint, metadata, versions)

    # --- writes ----------------------------------------------------------------------------

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        held = self._hold(config, checkpoint, metadata, new_versions)
        if held is not None:
            return held
        config, new_versions = self._release(config, checkpoint, new_versions)
        return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        drop, store_first = self._writes_plan(config, writes)
        if drop:
            return
        if store_first is not None:
            await self.inner.aput(*store_first)
        await self.inner.aput_writes(config, writes, task_id, task_path)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        held = self._hold(config, checkpoint, metadata, new_versions)
        if held is not None:
            return held
        config, new_versions = self._release(config, checkpoint, new_versions)
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        drop, store_first = self._writes_plan(config, writes)
        if drop:
            return
        if store_first is not None:
            self.inner.put(*store_first)
        self.inner.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.forget(thread_id)
        await self.inner.adelete_thread(thread_id)

    def delete_thread(self, thread_id: str) -> None:
        self.forget(thread_id)
        self.inner.delete_thread(thread_id)

    # --- reads and the rest: the inner saver's --------------------------------------------

    def _known_new(self, config: RunnableConfig) -> bool:
        """True once for a thread said to be new, for a read of its latest checkpoint."""
        if not self._new or config["configurable"].get("checkpoint_id"):
            return False
        thread = _thread(config)
        if thread is None or thread not in self._new:
            return False
        self._new.discard(thread)
        return True

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return None if self._known_new(config) else await self.inner.aget_tuple(config)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return None if self._known_new(config) else self.inner.get_tuple(config)

    async def alist(self, config: RunnableConfig | None, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, **kwargs):
            yield item

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, **kwargs)

    async def aget_delta_channel_history(self, *, config: RunnableConfig,
                                         channels: Sequence[str]) -> Mapping[str, DeltaChannelHistory]:
        return await self.inner.aget_delta_channel_history(config=config, channels=channels)

    def get_delta_channel_history(self, *, config: RunnableConfig,
                                  channels: Sequence[str]) -> Mapping[str, DeltaChannelHistory]:
        return self.inner.get_delta_channel_history(config=config, channels=channels)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], **kwargs: Any) -> None:
        await self.inner.aprune(thread_ids, **kwargs)

    def prune(self, thread_ids: Sequence[str], **kwargs: Any) -> None:
        self.inner.prune(thread_ids, **kwargs)


# LangGraph asks, on every run, whether ``aput_writes`` takes ``task_path`` (``inspect.signature``):
# a signature stored on the function answers at once instead of being rebuilt from its code.
for _method in (LeanStartSaver.aput_writes, LeanStartSaver.put_writes):
    _method.__signature__ = inspect.signature(_method)  # type: ignore[union-attr]
