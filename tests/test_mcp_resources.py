"""Resources, templates, prompts and the enabled-tools list, through an in-process client."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from mcp import Client
from mcp_helpers import SlowLLM, use_fake_llm, write_config

from mcp_server.resources import paginate
from mcp_server.server import build_server


async def test_listing_shows_tools_with_annotations_resources_templates_and_prompts(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"delegate", "research", "job_status", "job_result", "job_cancel", "list_jobs"} <= set(tools)
        assert tools["job_status"].annotations.read_only_hint is True
        assert tools["job_cancel"].annotations.destructive_hint is True
        assert tools["research"].annotations.open_world_hint is True
        assert tools["delegate"].input_schema["properties"]["task"]["maxLength"] == 20000
        assert tools["research"].input_schema["properties"]["max_sources"]["maximum"] == 20
        assert tools["research"].output_schema and "report" in tools["research"].output_schema["properties"]

        assert {str(r.uri) for r in (await client.list_resources()).resources} == {"swarm://config", "swarm://providers"}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == {"swarm://jobs/{job_id}", "swarm://jobs/{job_id}/report{?page}", "swarm://artifacts/{+key}",
                             "swarm://graphs/{name}", "swarm://threads/{thread_id}",
                             "swarm://jobs/{job_id}/sources/{n}", "swarm://jobs/{job_id}/sources/{n}/text"}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"research_brief", "delegate_and_review"}
        brief = await client.get_prompt("research_brief", {"topic": "RunPod cold starts"})
        assert "RunPod cold starts" in brief.messages[0].content.text
        # a prompt that would send the model to a call that fails is refused, naming the argument
        with pytest.raises(Exception, match="prompt research_brief: depth: Input should be 'quick', 'standard' or 'deep'"):
            await client.get_prompt("research_brief", {"topic": "t", "depth": "huge"})
        with pytest.raises(Exception, match="kind: unknown kind 'bogus'; valid: bulk_content, critical, research"):
            await client.get_prompt("delegate_and_review", {"task": "t", "kind": "bogus"})
        with pytest.raises(Exception, match="topic: must not be empty"):
            await client.get_prompt("research_brief", {"topic": "  "})
        with pytest.raises(Exception, match="task: must not be empty"):
            await client.get_prompt("delegate_and_review", {"task": ""})


async def test_the_research_description_says_what_is_searched_with_this_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyless, a model must not be told "the web": only the local documents are searched."""
    monkeypatch.delenv("SEARXNG_URL", raising=False)
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        keyless = {t.name: t for t in (await client.list_tools()).tools}["research"].description or ""
    assert keyless.startswith("Searches local documents only") and "the web" not in keyless
    assert "(web not set up: searxng, tavily)" in keyless
    monkeypatch.setenv("SEARXNG_URL", "http://127.0.0.1:9")
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        web = {t.name: t for t in (await client.list_tools()).tools}["research"].description or ""
    assert web.startswith("Searches the web (searxng) and local documents")

    # jobs sent to a RunPod endpoint are searched with the worker's variables, not this side's
    monkeypatch.delenv("SEARXNG_URL")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-test-key")
    path = write_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["runner"]["kind"], data["runner"]["runpod"]["endpoint_id"] = "runpod", "ep-test"
    path.write_text(yaml.safe_dump(data))
    async with Client(build_server(str(path))) as client:
        remote = {t.name: t for t in (await client.list_tools()).tools}["research"].description or ""
    assert remote.startswith("Searches with the RunPod worker's search chain (searxng, tavily, local: the web where")
    assert "local documents only" not in remote


async def test_enabled_tools_trims_the_list_but_job_tools_stay(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path, enabled_tools=["research"])))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"research", "job_status", "job_result", "job_cancel", "list_jobs", "list_threads"}


async def test_config_resource_is_redacted_and_providers_show_availability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-live-THIS-IS-A-SECRET-1234567890"
    monkeypatch.setenv("DEEPSEEK_API_KEY", secret)
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-SECRETSECRETSECRET123")
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        config_text = (await client.read_resource("swarm://config")).contents[0].text
        providers_text = (await client.read_resource("swarm://providers")).contents[0].text
    assert '"wait_budget_s": 1.0' in config_text
    assert "tvly-SECRET" not in config_text and secret not in config_text
    assert '"claude-sonnet-5-5"' in providers_text and "ANTHROPIC_API_KEY" in providers_text  # unavailable: no key
    assert secret not in providers_text


async def test_graph_resource_is_mermaid_built_without_a_model(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        delegation = (await client.read_resource("swarm://graphs/delegation")).contents[0].text
        research = (await client.read_resource("swarm://graphs/research")).contents[0].text
        with pytest.raises(Exception, match="unknown graph 'nope'"):
            await client.read_resource("swarm://graphs/nope")
    assert "graph TD" in delegation and "review" in delegation
    assert "graph TD" in research


async def test_report_resource_pages_a_large_report_and_artifacts_come_from_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.testing import MemoryStorage

    storage = MemoryStorage()
    await storage.put("results/cat.png", b"\x89PNG\r\n\x1a\nfake", "image/png")
    use_fake_llm(monkeypatch, SlowLLM(), storage=storage)
    report = "\n".join(f"line {i}: " + "x" * 90 for i in range(60))  # ~6 KB -> 3 pages of 2500
    async with Client(build_server(str(write_config(tmp_path, report_page_chars=2500)))) as client:
        done = await client.call_tool("delegate", {"task": "t", "kind": "critical"})
        job_id = done.structured_content["job_id"]
        jobs = client  # the report of a delegate job is its text; store a long one directly
        from core.config import state_dir
        from mcp_server.jobstore import JobStore

        store = JobStore(state_dir() / "jobs.sqlite")
        row = store.get(job_id)
        store._exec("UPDATE jobs SET result = ? WHERE job_id = ?",  # a finished job's result, rewritten here only
                    (json.dumps({**row["result"], "output": {"report": report}}), job_id))
        shown = json.loads((await jobs.read_resource(f"swarm://jobs/{job_id}")).contents[0].text)
        assert shown["trace"] and all(round(s["latency_ms"], 1) == s["latency_ms"] for s in shown["trace"])
        page1 = (await jobs.read_resource(f"swarm://jobs/{job_id}/report")).contents[0].text
        page3 = (await jobs.read_resource(f"swarm://jobs/{job_id}/report?page=3")).contents[0].text
        with pytest.raises(Exception, match="page: 9 does not exist; the report has"):
            await jobs.read_resource(f"swarm://jobs/{job_id}/report?page=9")
        with pytest.raises(Exception, match="job_id: .* is not a job of yours"):
            await jobs.read_resource("swarm://jobs/nope/report")
        with pytest.raises(Exception, match=r"page: must be a whole number from 1 \(got 'abc'\)"):
            await jobs.read_resource(f"swarm://jobs/{job_id}/report?page=abc")
        with pytest.raises(Exception, match="page: must be a whole number from 1"):  # an Arabic-Indic one
            await jobs.read_resource(f"swarm://jobs/{job_id}/report?page=\u0661")
        # what does not exist is "not found" (-32602), not an internal error (-32603)
        with pytest.raises(Exception, match="no object 'results/dog.png' in storage: use the key an image tool") as gone:
            await client.read_resource("swarm://artifacts/results/dog.png")
        assert getattr(gone.value, "code", None) == -32602
        with pytest.raises(Exception, match="job_id: .* is not a job of yours") as unknown:
            await jobs.read_resource("swarm://jobs/nope")
        assert getattr(unknown.value, "code", None) == -32602
        blob = (await client.read_resource("swarm://artifacts/results/cat.png")).contents[0]
    assert page1.startswith("line 0:") and f"next: swarm://jobs/{job_id}/report?page=2" in page1
    assert page3.rstrip().endswith("x" * 90) and "next:" not in page3
    assert base64.b64decode(blob.blob).startswith(b"\x89PNG")


def test_paginate_cuts_on_line_breaks_and_loses_nothing() -> None:
    text = "".join(f"{i:04d} {'y' * 40}\n" for i in range(200))
    pages = []
    page = 1
    while True:
        body = paginate(text, 1000, page, "u")
        pages.append(body.split("\n\n<!-- page")[0] if "<!-- page" in body else body)
        if "next:" not in body:
            break
        page += 1
    assert "".join(pages) == text
    assert all(p.endswith("\n") for p in pages)


async def test_a_subscriber_hears_when_a_job_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import warnings

    use_fake_llm(monkeypatch, SlowLLM(delay_s=1.0))
    heard: list[str] = []

    async def on_message(message: object) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri is not None:
            heard.append(str(uri))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resources/subscribe is the handshake-era way; still what clients use
        async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.2))), mode="legacy",
                          message_handler=on_message) as client:
            handle = (await client.call_tool("delegate", {"task": "t", "kind": "critical"})).structured_content
            uri = f"swarm://jobs/{handle['job_id']}"
            await client.subscribe_resource(uri)
            await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 10})
            for _ in range(50):
                if heard:
                    break
                await asyncio.sleep(0.05)
    assert heard == [uri]


async def test_a_subscriber_hears_when_another_server_finishes_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clients, two servers on one store: a job ran by A ended there, and B's subscribers never heard."""
    import asyncio
    import warnings

    use_fake_llm(monkeypatch, SlowLLM(delay_s=3.0, text="done by A"))  # B subscribes meanwhile
    config = str(write_config(tmp_path, wait_budget_s=0.2))
    heard: list[str] = []

    async def on_message(message: object) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri is not None:
            heard.append(str(uri))

    submitted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop_a = asyncio.Event()

    async def server_a() -> None:
        async with Client(build_server(config)) as first:
            call = await first.call_tool("delegate", {"task": "t", "kind": "critical"})
            submitted.set_result(call.structured_content["job_id"])
            await stop_a.wait()

    task = asyncio.create_task(server_a())
    job_id = await submitted
    uri = f"swarm://jobs/{job_id}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        async with Client(build_server(config), mode="legacy", message_handler=on_message) as second:
            await second.subscribe_resource(uri)
            assert not heard
            for _ in range(200):
                if heard:
                    break
                await asyncio.sleep(0.05)
            result = (await second.call_tool("job_result", {"job_id": job_id, "wait_s": 5})).structured_content
    stop_a.set()
    await task
    assert heard == [uri] and result["output"]["text"] == "done by A"


async def test_a_running_jobs_resource_shows_the_steps_it_has_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``swarm://jobs/{id}`` of a job still running carries the steps it has finished, as its
    ``job_result`` handle does (it said ``trace: []`` until the job ended)."""
    use_fake_llm(monkeypatch, SlowLLM(delay_s=2.0, text="slow"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.3)))) as client:
        first = (await client.call_tool("delegate", {"task": "write a haiku", "kind": "bulk_content"})).structured_content
        assert first["status"] == "IN_PROGRESS"
        seen: list[list[tuple[str, str]]] = []
        for _ in range(60):
            read = json.loads((await client.read_resource(f"swarm://jobs/{first['job_id']}")).contents[0].text)
            if read["status"] != "IN_PROGRESS":
                break
            seen.append([(step["step"], step["outcome"]) for step in read["trace"]])
            await client.call_tool("job_result", {"job_id": first["job_id"], "wait_s": 0.5})
        assert read["status"] == "COMPLETED" and ("review", "ok") in [(s["step"], s["outcome"]) for s in read["trace"]]
        assert any(("draft", "ok") in steps for steps in seen), seen  # the review was still running then
