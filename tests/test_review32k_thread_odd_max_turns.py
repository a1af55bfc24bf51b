"""``threads.max_turns`` odd (the schema allows any from 2): the store dropped turns one by one and
kept an answer whose question it had dropped, so the next prompt opened with that answer alone
(an assistant message first, no question for it)."""

from __future__ import annotations

from core.config import CheckpointerSection
from swarm.threads import open_thread_store


def test_an_odd_max_turns_never_keeps_an_answer_without_its_question() -> None:
    store = open_thread_store(CheckpointerSection(kind="memory"))
    try:
        thread_id = store.create("alice")
        for i in range(3):
            added, dropped = store.append(thread_id, "alice", [{"role": "user", "content": f"q{i}"},
                                                               {"role": "assistant", "content": f"a{i}", "model": "m"}], 3)
        thread = store.get(thread_id, "alice")
        assert thread is not None
        assert [t["content"] for t in thread["turns"]] == ["q2", "a2"]
        assert (added, dropped) == ([5, 6], [3, 4]) and thread["dropped"] == 4
    finally:
        store.close()
