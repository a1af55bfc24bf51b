"""A research answer says what the citation check took out once: the warnings count it (every door
shows them), and the MCP summary line says where the removals are listed, not the same counts
again ("The check took out 1 unsupported sentence(s)." above "1 sentence(s) ... were removed")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import use_fake_llm, write_config

CHECKPOINTS = ("# LangGraph checkpoints\n\nA checkpointer saves graph state after every step.\n\n"
               "## Savers\n\nThe SQLite saver keeps checkpoints in one file on disk.\n")


def brain(messages: Any, config: Any) -> Any:
    if config.step == "plan":
        return {"queries": ["langgraph checkpoint saver"]}
    if config.step in ("write", "revise"):  # one sentence backed, one not, and a source never retrieved
        return ("A checkpointer saves graph state after every step [1]. Checkpoints are kept on the moon by a"
                " robot [1]. See also [9].")
    return {"approved": True, "issues": []}


def _search(tmp_path: Path) -> Any:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "checkpoints.md").write_text(CHECKPOINTS)
    return SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite", refresh_interval_s=0))])


async def test_what_the_check_took_out_is_counted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_server.server import build_server
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(brain), search=_search(tmp_path))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("research", {"question": "How are checkpoints saved?", "depth": "quick"})
    assert not result.is_error, result.content[0].text
    out = result.structured_content
    summary = result.content[0].text.split("\n---\n")[-1]
    taken = {"unsupported_sentences": out["unsupported_sentences"], "removed_citations": out["removed_citations"]}
    assert all(taken.values()), out  # the check took out both kinds
    others = "\n".join(line for line in summary.splitlines() if not line.startswith("Warning: "))
    assert not re.search(r"took out \d", others), summary  # the counts are the warnings'
    for warning in out["warnings"]:
        assert summary.count(warning) == 1, (warning, summary)
    assert any("were removed" in w for w in out["warnings"]), out["warnings"]
    assert ("What the check took out, each with its reason: unsupported_sentences, removed_citations in the"
            " structured result.") in summary, summary
