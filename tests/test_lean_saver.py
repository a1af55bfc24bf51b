"""LeanStartSaver: a new thread's checkpoints are stored from its first node's result on.

Checked on the stores a job can use (SQLite through LoopSqliteSaver, LangGraph's memory saver,
which like PostgreSQL keeps one blob per channel version, and PostgreSQL when the test services
run): what reaches the store, that every channel reads back, that a job dying in its first node
starts again from its input, and that an interrupt in the first node can still be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from graphs.lean_saver import LeanStartSaver
from graphs.sqlite_saver import LoopSqliteSaver

VERDICT = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
INITIAL = {"task": "Write a line about lean starts.", "kind": "bulk_content", "tier": None, "primary": "p",
           "reviewer": "r", "max_revisions": 1, "trace": [],
           "history": [{"n": 1, "role": "user", "model": None, "content": "an earlier turn"}]}
PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _graph(saver: Any, calls: list[str] | None = None, fail_draft: bool = False) -> Any:
    from core.errors import ProviderUnavailable
    from graphs.delegation.graph import build_graph
    from providers.testing import FunctionLLM

    async def answer(messages: Any, config: Any) -> Any:
        if calls is not None:
            calls.append(config.step)
        if fail_draft and config.step == "draft":
            raise ProviderUnavailable("p", "refused")
        return VERDICT if config.step == "review" else "a lean draft"

    return build_graph(FunctionLLM(answer), saver)


@contextlib.asynccontextmanager
async def _store(kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    if kind == "sqlite":
        with LoopSqliteSaver.open(str(tmp_path / "cp.sqlite")) as saver:
            yield saver
    elif kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(PG_DSN or "") as saver:
            await saver.setup()
            yield saver


STORES = ["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG_DSN, reason="SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL"))]


@pytest.mark.parametrize("kind", STORES)
async def test_the_stored_state_is_whole_though_the_start_was_not_stored(kind: str, tmp_path: Path) -> None:
    thread = f"lean-whole-{kind}-{os.getpid()}"
    async with _store(kind, tmp_path) as inner:
        final = await _graph(LeanStartSaver(inner)).ainvoke(INITIAL, _config(thread), durability="sync")
        history = [t async for t in inner.alist(_config(thread))]
        # read back through the store alone, as a worker that restarts would
        snapshot = await _graph(inner).aget_state(_config(thread))
    assert [t.metadata["step"] for t in history] == [2, 1]  # the draft's and the review's, newest first
    assert history[-1].parent_config is None  # no parent that never reached the store
    assert snapshot.values["final"] == final["final"] == "a lean draft"
    # history is a list: PostgreSQL and memory keep it in a blob of the version step 0 gave it
    for key in ("task", "kind", "primary", "reviewer", "max_revisions", "history", "draft", "review"):
        assert snapshot.values.get(key) == final[key], key  # set before the first node, stored later


async def test_only_the_first_nodes_result_and_later_reach_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as inner:
        await _graph(LeanStartSaver(inner)).ainvoke(INITIAL, _config("solo"), durability="sync")
        commits, writes = inner.commits, inner.writes
    # plain saver: 4 checkpoints + 3 tasks' writes in 4 commits (test_checkpoint_saver)
    # the draft's and the review's checkpoints, and the review task's writes (the draft ran at the
    # held step 0: its writes are in the step-1 checkpoint that followed at once)
    assert (writes, commits) == (3, 2)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*), count(parent_checkpoint_id) FROM checkpoints").fetchone() == (2, 1)
        assert conn.execute("SELECT count(DISTINCT task_id) FROM writes").fetchone() == (1,)


async def test_a_job_that_dies_in_its_first_node_starts_again_from_its_input(make_context: Any) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from core.errors import SwarmError
    from graphs.run import run_graph
    from providers.testing import FakeLLM

    inner = InMemorySaver()
    lean = LeanStartSaver(inner)
    ctx = await make_context(FakeLLM())("dies-early")
    ctx.checkpointer = inner
    calls: list[str] = []
    with pytest.raises(SwarmError):
        await run_graph(_graph(lean, calls, fail_draft=True), dict(INITIAL), ctx)
    assert await inner.aget_tuple(_config("dies-early")) is None  # nothing half-made was stored
    assert lean._held == {}  # and nothing is kept for it
    state = await run_graph(_graph(lean, calls), dict(INITIAL), ctx)  # the same job id, again
    assert state["final"] == "a lean draft"
    assert calls.count("draft") == 2 and calls.count("review") == 1


async def test_an_interrupt_in_the_first_node_is_stored_and_resumes() -> None:
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    class State(TypedDict, total=False):
        question: str
        answer: str

    def ask(state: State) -> State:
        return {"answer": interrupt(state["question"])}

    builder: Any = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    inner = InMemorySaver()
    graph = builder.compile(checkpointer=LeanStartSaver(inner))
    paused = await graph.ainvoke({"question": "go on?"}, _config("asks"), durability="sync")
    assert paused["__interrupt__"][0].value == "go on?"
    assert (await inner.aget_tuple(_config("asks"))) is not None  # held checkpoint stored for the resume
    # a fresh graph on the store alone resumes it (another worker, after a restart)
    fresh = builder.compile(checkpointer=LeanStartSaver(inner))
    done = await fresh.ainvoke(Command(resume="yes"), _config("asks"), durability="sync")
    assert done == {"question": "go on?", "answer": "yes"}


async def test_concurrent_new_jobs_each_keep_their_own_state(tmp_path: Path) -> None:
    with LoopSqliteSaver.open(str(tmp_path / "cp.sqlite")) as inner:
        lean = LeanStartSaver(inner)
        graph = _graph(lean)
        finals = await asyncio.gather(*(
            graph.ainvoke({**INITIAL, "task": f"task {i:02d}"}, _config(f"job-{i}"), durability="sync")
            for i in range(30)
        ))
        stored = [await inner.aget_tuple(_config(f"job-{i}")) for i in range(30)]
    assert lean._held == {}
    assert [s.checkpoint["channel_values"]["task"] for s in stored] == [f"task {i:02d}" for i in range(30)]
    assert all(f["final"] == "a lean draft" for f in finals)


async def test_a_thread_said_to_be_new_is_read_from_the_store_only_after_its_first_read() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    inner = InMemorySaver()
    lean = LeanStartSaver(inner)
    await _graph(lean).ainvoke(INITIAL, _config("old"), durability="sync")
    stored = await inner.aget_tuple(_config("old"))
    assert stored is not None
    lean.expect_new("old")  # a wrong promise, to see which reads it answers
    assert await lean.aget_tuple(_config("old")) is None  # the run's first read: not asked
    assert (await lean.aget_tuple(_config("old"))) == stored  # any later read asks the store
    lean.expect_new("old")
    lean.forget("old")  # the run ended: the promise goes with it
    assert (await lean.aget_tuple(_config("old"))) == stored
