"""``delegate`` with a kind routed to research, run on RunPod: the report the worker wrote comes back
through the RunPod executor and the MCP server with its sources and citations, each naming the
resource that opens it, and ``swarm://jobs/{id}/sources/{n}`` opens the passage it was cited for,
as on a local run (``test_review32h_delegate_research_sources``); the research tool's own report,
run the same way, is the reference (no test ran either on a worker before).

The path is real: the MCP server in this process with the RunPod runner, the local endpoint, and
one real runpod worker running ``handler.py``; its ``local`` model is a loopback fake OpenAI server
and its search is a local index over a two-file corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipped_config
import yaml
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp_helpers import write_config

from mcp_server.server import build_server
from swarm.endpoint.server import EndpointServer

MODEL = "smollm2-135m-instruct"  # the shipped ``local`` model's name, as the fake server sees it
CHECKPOINTS = "# LangGraph checkpoints\n\nLangGraph checkpoint durability: checkpoints save state after every step.\n"
RUNPOD = "# RunPod job states\n\nRunPod job states: RunPod jobs can fail, or complete.\n"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> Iterator[EndpointServer]:
    """A worker whose research route writes with ``local`` (no reviewer) and searches the corpus only."""
    home = tmp_path_factory.mktemp("worker-home")
    corpus = home / "corpus"
    corpus.mkdir()
    (corpus / "checkpoints.md").write_text(CHECKPOINTS)
    (corpus / "runpod.md").write_text(RUNPOD)
    config = shipped_config.with_local_model_at(fake_llm.url)
    search = config["providers"]["search"]
    search["default"], search["fallback_chain"] = "local", ["local"]
    search["backends"]["local"]["paths"] = [str(corpus)]
    config["routing"]["delegation"]["research"] = {"primary": "local+search", "reviewer": None}
    with shipped_config.worker_endpoint(home, shipped_config.write(home, config), "ep-research") as server:
        yield server


def _forwarding_config(tmp_path: Path, endpoint: EndpointServer, monkeypatch: pytest.MonkeyPatch) -> str:
    path = write_config(tmp_path, wait_budget_s=120)
    config = yaml.safe_load(path.read_text())
    config["runner"]["kind"] = "runpod"
    config["runner"]["runpod"].update(endpoint_id=endpoint.settings.endpoint_id, base_url=endpoint.api_base,
                                      api_key_env="SWARM_TEST_RUNPOD_KEY")
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SWARM_TEST_RUNPOD_KEY", endpoint.settings.api_key)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    return str(path)


QUESTION = "How do checkpoints and RunPod jobs behave?"


# delegate kind=research, and the research tool's own report run the same way (the reference)
@pytest.mark.parametrize("tool, arguments, text", [
    ("delegate", {"task": QUESTION, "kind": "research"}, "text"),
    ("research", {"question": QUESTION, "depth": "quick"}, "report"),
])
async def test_a_research_report_run_on_runpod_carries_sources_whose_resources_open(
        tmp_path: Path, endpoint: EndpointServer, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
        tool: str, arguments: dict[str, Any], text: str) -> None:
    plan = json.dumps({"queries": ["langgraph checkpoint durability", "runpod job states"]})
    fake_llm.script(MODEL, Behaviour.answer(plan))  # the local model's report quotes the sources
    async with Client(build_server(_forwarding_config(tmp_path, endpoint, monkeypatch))) as client:
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        job_id = out["job_id"]
        opened = (await client.read_resource(f"swarm://jobs/{job_id}/sources/1")).contents[0].text
        collected = (await client.call_tool("job_result", {"job_id": job_id})).structured_content["output"]

    assert "runpod" in [step["provider"] for step in out["trace"]]  # the worker wrote it
    assert "[1]" in out[text], out[text]
    assert out["sources"] and out["citations"], out
    assert all(s["resource"] == f"swarm://jobs/{job_id}/sources/{s['id']}" for s in out["sources"])
    assert all(c["resource"].startswith(f"swarm://jobs/{job_id}/sources/") for c in out["citations"])
    # the resource opens the source and the passage it was cited for, from the result RunPod returned
    first = next(s for s in out["sources"] if s["id"] == 1)
    claim = next(c["claim"] for c in out["citations"] if c["source_ids"] == [1])
    assert f"<{first['url']}>" in opened and f"> {first['snippet']}" in opened, opened
    assert f"Cited for:\n- {claim}" in opened, opened
    # job_result answers as the tool did, and the tool's text links each cited source
    assert collected["sources"] == out["sources"] and collected["citations"] == out["citations"]
    links = [c for c in result.content if c.type == "resource_link"]
    assert links and {str(link.uri) for link in links} <= {s["resource"] for s in out["sources"]}
