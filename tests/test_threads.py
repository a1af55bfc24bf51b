"""Threads: the store (SQLite, PostgreSQL), ownership, the bound, and what a continued delegation sees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from core.config import CheckpointerSection
from providers.base import LLMConfig, Message
from providers.testing import FunctionLLM
from swarm.dispatcher import dispatch
from swarm.threads import open_thread_store, record_turns

PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")
needs_pg = pytest.mark.skipif(
    not PG_DSN, reason="SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
def section(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointerSection:
    if request.param == "postgres":
        return CheckpointerSection(kind="postgres", dsn=PG_DSN)
    return CheckpointerSection(kind="sqlite", path=str(tmp_path / "state" / "checkpoints.sqlite"))


def turn(role: str, content: str, model: str | None = None) -> dict[str, Any]:
    return {"role": role, "content": content, "model": model}


def test_turns_survive_a_reopen_and_belong_to_their_owner(section: CheckpointerSection) -> None:
    store = open_thread_store(section)
    thread_id = store.create("alice")
    assert store.append(thread_id, "alice", [turn("user", "hi"), turn("assistant", "hello", "model-a")], 10,
                        job_id="job-1") == ([1, 2], [])
    store.close()

    reopened = open_thread_store(section)
    try:
        thread = reopened.get(thread_id, "alice")
        assert thread is not None
        assert [(t["n"], t["role"], t["model"], t["content"]) for t in thread["turns"]] == [
            (1, "user", None, "hi"), (2, "assistant", "model-a", "hello")]
        # another owner sees nothing and can add nothing: the same answer as an unknown id
        assert reopened.get(thread_id, "mallory") is None
        assert reopened.append(thread_id, "mallory", [turn("user", "x")], 10) == ([], [])
        assert thread_id not in {t["thread_id"] for t in reopened.list("mallory")}
        listed = {t["thread_id"]: t for t in reopened.list("alice")}
        assert listed[thread_id]["turns"] == 2 and listed[thread_id]["models"] == ["model-a"]
        # a resumed job appends its turns once
        assert reopened.append(thread_id, "alice", [turn("user", "hi")], 10, job_id="job-1") == ([], [])
    finally:
        reopened.close()


@needs_pg
def test_a_postgres_store_reconnects_after_a_restart_and_says_when_it_cannot(tmp_path: Path) -> None:
    """PostgreSQL restarted under a running MCP server: every thread call failed ("the connection
    is lost") until the server was restarted. Its backend ended here with pg_terminate_backend."""
    import psycopg

    from swarm.threads import ThreadStoreUnavailable

    store = open_thread_store(CheckpointerSection(kind="postgres", dsn=PG_DSN))
    backend = store._backend
    owner = f"reconnect-{os.getpid()}-{id(store)}"  # the database is shared with the other tests
    thread = store.create(owner)

    def kill_backend() -> None:
        pid = backend._db.info.backend_pid  # type: ignore[union-attr]
        with psycopg.connect(str(PG_DSN), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    kill_backend()
    assert store.get(thread, owner) is not None  # reconnected, nothing to restart
    connect = backend._connect  # type: ignore[union-attr]
    backend._connect = lambda: psycopg.connect("postgresql://u:pw-secret-1@127.0.0.1:9/none", connect_timeout=2)  # type: ignore[union-attr]
    kill_backend()
    with pytest.raises(ThreadStoreUnavailable, match=r"checkpointer.dsn\) is unreachable") as err:
        store.list(owner, 5)
    assert "pw-secret-1" not in str(err.value)
    backend._connect = connect  # type: ignore[union-attr]
    assert store.get(thread, owner) is not None and store.list(owner, 5) == []  # back as soon as it is
    store.close()

@needs_pg
def test_threads_left_in_sqlite_at_the_switch_to_postgres_are_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An operator set SWARM_CHECKPOINTER_DSN: the SQLite threads vanished from list_threads, nothing said why."""
    path = tmp_path / "state" / "checkpoints.sqlite"
    sqlite_store = open_thread_store(CheckpointerSection(kind="sqlite", path=str(path)))
    sqlite_store.append(sqlite_store.create("alice"), "alice", [turn("user", "hi")], 10)
    sqlite_store.close()
    with caplog.at_level("WARNING", logger="swarm.threads"):
        open_thread_store(CheckpointerSection(kind="postgres", dsn=PG_DSN, path=str(path))).close()
    assert f"1 thread(s) kept in {path.with_name('threads.sqlite')} before the switch to PostgreSQL" in caplog.text
    assert "`swarm threads import` copies them over" in caplog.text


@needs_pg
def test_swarm_threads_import_carries_sqlite_threads_into_postgres_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """There was no way to carry a conversation over after the switch, only to switch back."""
    import yaml
    from conftest import ROOT

    from swarm.cli import main

    path = tmp_path / "state" / "checkpoints.sqlite"
    old = open_thread_store(CheckpointerSection(kind="sqlite", path=str(path)))
    kept = old.create("alice")
    old.append(kept, "alice", [turn("user", "hi"), turn("assistant", "hello", "local")], 10, job_id="job-1")
    old.create("bob")  # no turn yet: carried over all the same (usable by its id)
    old.close()
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "postgres", "dsn": PG_DSN, "path": str(path)}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))

    assert main(["--config", str(config), "threads", "import"]) == 0
    assert "2 copied from" in capsys.readouterr().err
    store = open_thread_store(CheckpointerSection(kind="postgres", dsn=PG_DSN, path=str(path)))
    thread = store.get(kept, "alice")
    assert thread is not None and [(t["role"], t["content"], t["model"]) for t in thread["turns"]] == [
        ("user", "hi", None), ("assistant", "hello", "local")]
    assert store.get(kept, "bob") is None  # its owner came along
    assert store.append(kept, "alice", [turn("user", "again")], 10, job_id="job-1") == ([], [])  # job ids too
    assert store.append(kept, "alice", [turn("user", "next")], 10, job_id="job-2") == ([3], [])
    store.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="swarm.threads"):
        assert main(["--config", str(config), "threads", "import"]) == 0  # again: nothing twice
        open_thread_store(CheckpointerSection(kind="postgres", dsn=PG_DSN, path=str(path))).close()
    err = capsys.readouterr().err
    assert "0 copied from" in err and "2 already there" in err, err
    assert "before the switch" not in caplog.text  # nothing left behind to warn about


def test_swarm_threads_import_needs_postgres(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml
    from conftest import ROOT

    from swarm.cli import main

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "sqlite", "path": str(tmp_path / "checkpoints.sqlite")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(config), "threads", "import"]) == 2
    err = capsys.readouterr().err
    assert "checkpointer.kind" in err and "imported into PostgreSQL" in err, err

def test_the_oldest_turns_are_dropped_past_max_turns(section: CheckpointerSection) -> None:
    store = open_thread_store(section)
    try:
        thread_id = store.create("alice")
        for i in range(3):
            added, dropped = store.append(thread_id, "alice", [turn("user", f"q{i}"), turn("assistant", f"a{i}", "m")], 4)
        assert (added, dropped) == ([5, 6], [1, 2])
        thread = store.get(thread_id, "alice")
        assert thread is not None and thread["dropped"] == 2
        assert [t["content"] for t in thread["turns"]] == ["q1", "a1", "q2", "a2"]
    finally:
        store.close()


def test_record_turns_says_in_the_trace_what_was_saved_and_dropped(tmp_path: Path) -> None:
    store = open_thread_store(CheckpointerSection(kind="memory"))
    thread_id = store.create("local")
    row = {"job_id": "j1", "owner": "local", "action": "delegate", "thread_id": thread_id, "input": {"task": "q1"}}
    envelope = {"status": "COMPLETED", "output": {"text": "a1", "model": "model-a"}, "trace": []}
    first = record_turns(store, row, envelope, max_turns=2)
    assert first["output"]["thread_id"] == thread_id
    assert first["trace"][-1]["detail"] == f"thread {thread_id}: saved turns 1-2"
    second = record_turns(store, {**row, "job_id": "j2", "input": {"task": "q2"}}, envelope, max_turns=2)
    assert second["trace"][-1]["detail"] == (
        f"thread {thread_id}: saved turns 3-4; dropped turns 1-2 (oldest past threads.max_turns=2)")
    failed = {"status": "FAILED", "output": None, "trace": []}
    assert record_turns(store, {**row, "job_id": "j3"}, failed, max_turns=2) is failed  # only a completed job adds turns
    store.close()


THREAD = "thr-" + "a" * 32


async def test_a_continued_delegation_sees_who_said_what(make_context: Any) -> None:
    seen: list[list[Message]] = []

    def answer(messages: list[Message], config: LLMConfig) -> str:
        seen.append(messages)
        return '{"approved": true, "score": 9, "issues": [], "suggestion": ""}' if config.step == "review" else "v2"

    history = [{"n": 1, "role": "user", "model": None, "content": "Write a haiku about rivers."},
               {"n": 2, "role": "assistant", "model": "gemini-2.5-flash-lite", "content": "Water finds its way"}]
    job = {"project": "swarm", "action": "delegate",
           "input": {"task": "Make it about mountains.", "thread_id": THREAD, "history": history}}
    result = await dispatch(job, make_context(FunctionLLM(answer)))
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["thread_id"] == THREAD
    draft = seen[0]
    assert "Earlier turns of this conversation" in draft[0].content
    assert "turn 2 by gemini-2.5-flash-lite" in draft[0].content  # who wrote it: named outside the answer
    assert [(m.role, m.content) for m in draft[1:]] == [
        ("user", "Write a haiku about rivers."), ("assistant", "Water finds its way"),
        ("user", "Make it about mountains.")]
    assert "gemini-2.5-flash-lite: Water finds its way" in seen[1][-1].content  # the reviewer sees the thread too
    step = next(s for s in result["trace"] if s["step"] == "thread")
    assert step["detail"] == f"thread {THREAD}: turns 1-2 in the prompt"


async def _go_on(make_context: Any, history: list[dict[str, Any]], max_turns: int) -> tuple[dict[str, Any], list[list[Message]]]:
    """A "go on" delegation over ``history`` with ``threads.max_chars`` 1000: its result and the
    messages the model was sent (it answers "short answer")."""
    from core.config import ThreadsSection, load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    cfg = cfg.model_copy(update={"threads": ThreadsSection(max_turns=max_turns, max_chars=1000)})
    seen: list[list[Message]] = []

    def answer(messages: list[Message], config: LLMConfig) -> str:
        seen.append(messages)
        return "short answer"

    job = {"project": "swarm", "action": "delegate",
           "input": {"task": "go on", "kind": "critical", "thread_id": THREAD, "history": history}}
    result = await dispatch(job, make_context(FunctionLLM(answer), config=cfg))
    assert result["status"] == "COMPLETED", result["error"]
    return result, seen


async def test_a_long_thread_is_cut_to_max_chars_and_the_trace_says_which(make_context: Any) -> None:

    # turns 1-2 were dropped by the store already; 3-6 are kept, 400 characters each
    history = [{"n": n, "role": "user" if n % 2 else "assistant", "model": None if n % 2 else "model-x",
                "content": f"turn {n} " + "x" * 393} for n in range(3, 7)]
    result, seen = await _go_on(make_context, history, max_turns=4)
    # 5-6 whole (800); turn 4 and its question share the 200 left, shortened (a third for the question)
    assert [m.content[:6] for m in seen[0][1:-1]] == ["turn 3", "turn 4", "turn 5", "turn 6"]
    assert [len(m.content) for m in seen[0][1:3]] == [66, 134]
    assert all(m.content.endswith("…\n[shortened]") for m in seen[0][1:3])
    step = next(s for s in result["trace"] if s["step"] == "thread")
    assert step["detail"] == (f"thread {THREAD}: turns 3-6 in the prompt; turns 1-2 dropped earlier (threads.max_turns);"
                              " turn 3 shortened to 66 of 400 characters (threads.max_chars=1000);"
                              " turn 4 shortened to 134 of 400 characters (threads.max_chars=1000)")


async def test_a_follow_up_to_an_answer_longer_than_max_chars_keeps_the_question_and_the_answer_shortened(
        make_context: Any) -> None:
    # the newest answer alone was over threads.max_chars: the whole exchange was left out, and
    # "go on" reached the model with no conversation at all

    long_answer = "A circuit breaker stops calls to a failing provider.\n\n```python\n" + "x = 1\n" * 400 + "```\n"
    history = [{"n": 1, "role": "user", "content": "Write a circuit breaker in Python."},
               {"n": 2, "role": "assistant", "model": "model-x", "content": long_answer}]
    result, seen = await _go_on(make_context, history, max_turns=10)
    question, earlier = seen[0][1], seen[0][2]
    assert (question.role, question.content) == ("user", "Write a circuit breaker in Python.")
    assert earlier.role == "assistant" and earlier.content.startswith("A circuit breaker stops calls to a failing provider.")
    assert earlier.content.endswith("\n[shortened]") and len(question.content) + len(earlier.content) <= 1000
    # the code keeps its lines, and the fence the cut left open is closed
    assert "```python\nx = 1\nx = 1\n" in earlier.content and earlier.content.endswith("x = 1\n```\n[shortened]")
    step = next(s for s in result["trace"] if s["step"] == "thread")
    assert step["detail"] == (f"thread {THREAD}: turns 1-2 in the prompt;"
                              f" turn 2 shortened to {len(earlier.content)} of {len(long_answer)} characters"
                              " (threads.max_chars=1000)")


async def test_a_question_too_long_for_the_room_is_shortened_with_its_answer_not_left_out(make_context: Any) -> None:
    # the answer took all the room and its question was left out: the model read an answer to an
    # unseen question, in a message list opening with the assistant's turn

    question = "Here is my code: " + "call(x) " * 160 + "Why does it fail?"
    history = [{"n": 1, "role": "user", "content": question},
               {"n": 2, "role": "assistant", "model": "model-x", "content": "It fails because the call returns early. " * 100}]
    result, seen = await _go_on(make_context, history, max_turns=10)
    asked, earlier, now = seen[0][1:]
    assert [m.role for m in (asked, earlier, now)] == ["user", "assistant", "user"]
    assert asked.content.startswith("Here is my code: call(x)") and asked.content.endswith("[shortened]")
    assert earlier.content.startswith("It fails because the call returns early.") and earlier.content.endswith("[shortened]")
    assert len(asked.content) + len(earlier.content) <= 1000 and now.content == "go on"
    step = next(s for s in result["trace"] if s["step"] == "thread")
    assert "turns 1-2 in the prompt" in step["detail"] and "turn 1 shortened" in step["detail"] and "left out" not in step["detail"]


def test_a_thread_store_that_cannot_be_written_is_said_with_its_file_and_the_fix(tmp_path: Path) -> None:
    """A read-only threads.sqlite failed every delegate, thread or not, as an internal error."""
    from core.errors import ProviderUnavailable

    store = open_thread_store(CheckpointerSection(kind="sqlite", path=str(tmp_path / "checkpoints.sqlite")))
    kept = store.create("me")
    store._backend._db.execute("PRAGMA query_only = ON")  # SQLite refuses every write, as for a read-only file
    with pytest.raises(ProviderUnavailable) as refused:
        store.create("me")
    said = str(refused.value)
    assert f"the thread store {tmp_path / 'threads.sqlite'} cannot be written (attempt to write a readonly database)" in said
    assert "check the file's and its folder's permissions" in said and "no restart needed" in said
    store._backend._db.execute("PRAGMA query_only = OFF")
    assert store.create("me") and store.get(kept, "me") is not None  # once it can be written again
    store.close()
