"""consensus over real stdio (the SDK client against a server subprocess), with three loopback models
of different latency and one that fails: the models are asked at once, each position is named, the
failure is reported, progress names the model answering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from mcp import Client
from mcp_helpers import write_config
from test_mcp_stdio import server_params

KEY_ENV = "SWARM_CONSENSUS_FAKE_KEY"
LATENCY_S = {"fast": 0.3, "medium": 0.8, "slow": 1.4}


def consensus_config(tmp_path: Path, base: str) -> Path:
    """The shipped config plus four loopback models (one failing) and a synthesizer."""
    path = write_config(tmp_path, wait_budget_s=30)
    data = yaml.safe_load(path.read_text())

    def spec(alias: str, family: str) -> dict[str, Any]:
        return {"family": family, "litellm_model": f"openai/{alias}", "api_base": f"{base}/v1",
                "api_key_env": KEY_ENV, "timeout_s": 10}

    data["models"].update({name: spec(f"slow-{delay}", f"family-{name}") for name, delay in LATENCY_S.items()})
    data["models"]["broken"] = spec("status-500", "family-broken")
    data["models"]["synth"] = spec("synthesizer", "family-synth")
    # the default is the broken model and nothing follows it: a failing model has no stand-in
    data["providers"]["llm"].update(default="broken", fallback_chain=[])
    data["routing"]["consensus"] = {"models": ["fast", "medium", "slow"], "synthesizer": "synth"}
    path.write_text(yaml.safe_dump(data))
    return path


async def test_consensus_asks_every_model_at_once_and_names_each_position(tmp_path: Path) -> None:
    from fake_openai import FakeOpenAI

    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    with FakeOpenAI() as models:
        params = server_params(consensus_config(tmp_path, models.url), SWARM_HOME=str(tmp_path / "home"),
                               **{KEY_ENV: "sk-consensus-fake"})
        async with Client(params) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert "default fast, medium, slow" in listed["consensus"].input_schema["properties"]["models"]["description"]
            result = await client.call_tool("consensus", {"question": "Should we ship on Friday?",
                                                          "stances": ["for", "against", "neutral"]},
                                            progress_callback=on_progress)
            assert not result.is_error, result.content
            out = result.structured_content
            with_failure = (await client.call_tool(
                "consensus", {"question": "Rewrite it in Rust?", "models": ["fast", "broken", "slow"]})).structured_content

    # the three calls overlapped: each started before any of them finished
    calls = {alias: models.requests_for(f"slow-{delay}")[0] for alias, delay in LATENCY_S.items()}
    assert max(c.started for c in calls.values()) < min(c.finished or 0 for c in calls.values())
    assert [(p["model"], p["stance"], p["text"]) for p in out["positions"]] == [
        ("fast", "for", "ok from slow-0.3"), ("medium", "against", "ok from slow-0.8"),
        ("slow", "neutral", "ok from slow-1.4")]
    assert out["failed"] == [] and out["synthesizer"] == "synth" and out["synthesis"] == "ok from synthesizer"
    synthesis_prompts = [r.body["messages"][-1]["content"] for r in models.requests_for("synthesizer")]
    for name, stance in (("fast", "for"), ("medium", "against"), ("slow", "neutral")):
        assert f'<answer model="{name}" stance="{stance}">' in synthesis_prompts[0]  # the synthesizer saw who said what
    assert all(p["input_tokens"] == 11 and p["output_tokens"] == 7 for p in out["positions"])  # usage per model
    assert any(m.startswith("ask: asking (against stance) with medium") for m in progress), progress
    assert "ask: slow answered" in progress and "synthesize: synthesized by synth" in progress

    assert [p["model"] for p in with_failure["positions"]] == ["fast", "slow"]
    assert [(f["asked"], f["error_type"]) for f in with_failure["failed"]] == [("broken", "AllProvidersFailed")]
    assert "broken did not answer (AllProvidersFailed)" in synthesis_prompts[1]
    assert any(s["model"] == "broken" and s["outcome"] == "error" for s in with_failure["trace"])
