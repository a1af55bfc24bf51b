"""The consensus action: every model at once through the router, failures reported, one synthesis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core.config import BudgetSpec, SwarmConfig
from core.errors import ConfigError, ProviderUnavailable
from graphs.context import JobContext, Providers
from providers.base import LLMConfig, Message
from providers.testing import FunctionLLM
from swarm.dispatcher import dispatch

DELAYS = {"model-a": 0.05, "model-b": 0.15, "model-c": 0.25}


def config(**consensus: Any) -> SwarmConfig:
    models = {name: {"family": f"family-{name[-1]}", "litellm_model": f"openai/{name}"}
              for name in [*DELAYS, "model-d", "synth"]}
    return SwarmConfig.model_validate({
        # default model-d, no fallback chain: a model-d that fails has nothing to fall over to
        "providers": {"llm": {"default": "model-d", "tiers": {"fast": ["model-a"]}, "fallback_chain": []}},
        "models": models,
        "routing": {"delegation": {"critical": {"primary": "model-a"}},
                    "consensus": consensus or {"models": list(DELAYS), "synthesizer": "synth"}},
    })


class Models:
    """One FunctionLLM per model behind a real router; records when each call ran."""

    def __init__(self, cfg: SwarmConfig, failing: frozenset[str] = frozenset(), echo: bool = False,
                 synthesis: str = "All three say yes.", echoing: frozenset[str] = frozenset()) -> None:
        from providers.circuit import CircuitBoard
        from providers.llm.router import LLMRouter

        self.spans: dict[str, tuple[float, float]] = {}
        self.prompts: dict[str, list[Message]] = {}

        def model(name: str) -> FunctionLLM:
            async def answer(messages: list[Message], llm_config: LLMConfig) -> str:
                started = time.monotonic()
                self.prompts[name] = messages
                await asyncio.sleep(DELAYS.get(name, 0.0))
                self.spans[name] = (started, time.monotonic())
                if name in failing:
                    raise ProviderUnavailable("fake", "connection refused", model=name)
                if name in echoing:  # the keyless model's "position": its instruction, reworded a little
                    return "A clear position, the reasons for it and a main risk or caveat."
                if name == "synth":  # ``echo``: as SmolLM2-135M did, the prompt copied back
                    return "## Agreements\n" + (messages[-1].content if echo else synthesis)
                return f"{name} says yes"

            return FunctionLLM(answer, model=name)

        self.router = LLMRouter(cfg.providers.llm, cfg.models, {n: model(n) for n in cfg.models}, CircuitBoard())


def context(cfg: SwarmConfig, llm: Any, events: list[str]) -> Any:
    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        events.append(f"{stage}: {message}")

    async def make(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, {"llm": lambda: llm}), progress=progress)

    return make


def job(**inp: Any) -> dict[str, Any]:
    return {"project": "swarm", "action": "consensus", "input": {"question": "Ship on Friday?", **inp}}


async def test_models_are_asked_at_once_and_the_synthesis_names_each() -> None:
    cfg = config()
    models, events = Models(cfg), []
    result = await dispatch(job(stances=["for", "against", "neutral"]), context(cfg, models.router, events))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert [(p["model"], p["stance"], p["text"]) for p in out["positions"]] == [
        ("model-a", "for", "model-a says yes"), ("model-b", "against", "model-b says yes"),
        ("model-c", "neutral", "model-c says yes")]
    assert out["failed"] == []
    # every call started before the first one finished: they overlapped
    assert max(s for s, _ in (models.spans[m] for m in DELAYS)) < min(e for _, e in (models.spans[m] for m in DELAYS))
    # each model was told its stance; the synthesizer saw who said what
    assert "supporting side" in models.prompts["model-a"][0].content
    assert "critical side" in models.prompts["model-b"][0].content
    synthesis_prompt = models.prompts["synth"][-1].content
    for name, stance in (("model-a", "for"), ("model-b", "against"), ("model-c", "neutral")):
        assert f'<answer model="{name}" stance="{stance}">\n{name} says yes' in synthesis_prompt
    assert out["synthesizer"] == "synth" and out["synthesis"].startswith("## Agreements")
    # cost and tokens per model, and the trace names every model
    assert all(p["input_tokens"] > 0 and "latency_ms" in p for p in out["positions"])
    assert {s["model"] for s in result["trace"] if s["kind"] == "llm"} == {*DELAYS, "synth"}
    # progress names the model actually answering
    assert any(e.startswith("ask: asking (for stance) with model-a") for e in events), events
    assert "ask: model-c answered" in events and "synthesize: synthesized by synth" in events


async def test_a_failing_model_is_reported_and_the_others_answer() -> None:
    cfg = config(models=["model-a", "model-d", "model-c"], synthesizer="synth")
    models, events = Models(cfg, failing=frozenset({"model-d"})), []
    result = await dispatch(job(), context(cfg, models.router, events))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert [p["model"] for p in out["positions"]] == ["model-a", "model-c"]
    assert [(f["asked"], f["error_type"]) for f in out["failed"]] == [("model-d", "AllProvidersFailed")]
    assert "model-d did not answer (AllProvidersFailed)" in models.prompts["synth"][-1].content
    assert any(s["model"] == "model-d" and s["outcome"] == "error" for s in result["trace"])
    assert "ask: model-d gave no answer (AllProvidersFailed)" in events


async def test_a_synthesis_of_one_answer_says_it_is_no_consensus() -> None:
    """Keyless, every model's chain ends at the local one: one position, and a synthesis of it
    that read as a consensus."""
    cfg = config(models=["model-a", "model-d", "model-c"], synthesizer="synth")
    models = Models(cfg, failing=frozenset({"model-d", "model-c"}))
    result = await dispatch(job(), context(cfg, models.router, []))
    out = result["output"]
    assert result["status"] == "COMPLETED" and [p["model"] for p in out["positions"]] == ["model-a"]
    assert out["synthesis_status"] == "done"
    assert out["warnings"] == ["only one of 3 models answered (model-a): the synthesis restates one view, not a consensus"]


async def test_a_stand_in_already_on_the_panel_is_a_failure_and_a_new_one_is_named() -> None:
    """model-d fails and its chain's fallback, model-a, answers for it: with model-a on the panel
    already that is one opinion, not two that agree, and model-d is listed as failed."""
    cfg = config(models=["model-a", "model-d", "model-b"], synthesizer="synth")
    chained = SwarmConfig.model_validate({**cfg.model_dump(), "providers": {
        "llm": {**cfg.providers.llm.model_dump(), "fallback_chain": ["model-a"]}}})
    models = Models(chained, failing=frozenset({"model-d"}))
    result = await dispatch(job(), context(chained, models.router, []))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert [(p["asked"], p["model"], p["status"]) for p in out["positions"]] == [
        ("model-a", "model-a", "answered"), ("model-b", "model-b", "answered")]
    assert [(f["asked"], f["error_type"]) for f in out["failed"]] == [("model-d", "StandInAlreadyOnPanel")]
    prompt = models.prompts["synth"][-1].content
    assert prompt.count('<answer model="model-a"') == 1 and "model-d did not answer (StandInAlreadyOnPanel)" in prompt
    # a stand-in not on the panel yet is a position, and the synthesizer is told whose place it took
    cfg = config(models=["model-d", "model-b"], synthesizer="synth")
    chained = SwarmConfig.model_validate({**cfg.model_dump(), "providers": {
        "llm": {**cfg.providers.llm.model_dump(), "fallback_chain": ["model-a"]}}})
    models = Models(chained, failing=frozenset({"model-d"}))
    out = (await dispatch(job(), context(chained, models.router, [])))["output"]
    assert [(p["asked"], p["model"], p["status"]) for p in out["positions"]] == [
        ("model-d", "model-a", "stand_in"), ("model-b", "model-b", "answered")]
    prompt = models.prompts["synth"][-1].content
    assert '<answer model="model-a" in_place_of="model-d">' in prompt
    assert "model-d did not answer; model-a answered in its place." in prompt

async def test_models_whose_keys_are_unset_are_not_asked_through_the_same_stand_in_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyless, every model's chain ends at the local one: it answered three times, and two of the
    three answers (38 s of CPU) were thrown away as the same model standing in twice."""
    for key in ("KEY_A", "KEY_B", "KEY_C"):
        monkeypatch.delenv(key, raising=False)
    cfg = config(models=["model-a", "model-b", "model-c"], synthesizer="synth")
    raw = cfg.model_dump()
    for name, key in (("model-a", "KEY_A"), ("model-b", "KEY_B"), ("model-c", "KEY_C")):
        raw["models"][name]["api_key_env"] = key
    raw["providers"]["llm"]["fallback_chain"] = ["model-d"]
    keyless = SwarmConfig.model_validate(raw)
    models = Models(keyless)
    result = await dispatch(job(), context(keyless, models.router, []))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    asked = [s["model"] for s in result["trace"] if s["step"] == "ask" and s["kind"] == "llm" and s["outcome"] == "ok"]
    assert asked == ["model-d"], asked  # once, not three times
    assert [(p["asked"], p["model"], p["status"]) for p in out["positions"]] == [("model-a", "model-d", "stand_in")]
    assert [(f["asked"], f["error_type"]) for f in out["failed"]] == [
        ("model-b", "StandInAlreadyOnPanel"), ("model-c", "StandInAlreadyOnPanel")]
    assert "not asked the same question twice" in out["failed"][0]["error"]
    # why it was not asked itself: the newcomer read "StandInAlreadyOnPanel" and never the unset key
    assert out["failed"][0]["error"].startswith("model-b cannot be asked here (model-b: KEY_B is not set);")
    assert out["warnings"] and "restates one view" in out["warnings"][0]


async def test_a_synthesis_that_echoes_the_prompt_is_no_synthesis() -> None:
    """The keyless synthesizer copied the prompt (``<question>...</question><answer model=...>``)
    and the job said ``synthesis_status: done``."""
    cfg = config()
    models, events = Models(cfg, echo=True), []
    result = await dispatch(job(), context(cfg, models.router, events))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert out["synthesis_status"] == "unavailable" and out["synthesis"] == "" and len(out["positions"]) == 3
    node = next(s for s in result["trace"] if s["step"] == "synthesize" and s["kind"] == "node")
    assert node["outcome"] == "error" and "synth echoed the prompt's markup" in node["detail"]


async def test_a_position_that_echoes_its_instruction_is_no_position() -> None:
    """The keyless model answered "A clear position, the reasons for it and a main risk or caveat."
    in 2 of 3 panels, and it stood as a position the synthesis weighed."""
    cfg = config()
    result = await dispatch(job(), context(cfg, Models(cfg, echoing=frozenset({"model-b"})).router, []))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert sorted(p["model"] for p in out["positions"]) == ["model-a", "model-c"]
    assert [(f["asked"], f["error_type"]) for f in out["failed"]] == [("model-b", "EchoedPrompt")]
    from graphs.consensus.nodes import echoes_prompt

    for stance in ("Against.", "For.", "Both.", "Take the risk.", "One."):  # a real one-word stance
        assert not echoes_prompt(stance), stance
    every = await dispatch(job(), context(cfg, Models(cfg, echoing=frozenset({*DELAYS, "model-d"})).router, []))
    assert every["status"] == "FAILED" and "every model echoed the prompt's instruction" in every["error"]["message"]
    assert every["output"]["positions"] == [] and len(every["output"]["failed"]) == 3


async def test_a_synthesis_closed_with_its_own_tag_is_kept_without_it() -> None:
    """SmolLM2 closed its synthesis with "</synthesis>", shown to the user as part of the answer."""
    cfg = config()
    models = Models(cfg, synthesis="All three say yes.\n</synthesis>")
    out = (await dispatch(job(), context(cfg, models.router, [])))["output"]
    assert out["synthesis_status"] == "done" and out["synthesis"] == "## Agreements\nAll three say yes.", out


async def test_no_model_answering_fails_the_job_with_every_attempt() -> None:
    cfg = config(models=["model-a", "model-b"], synthesizer="synth")
    models = Models(cfg, failing=frozenset({"model-a", "model-b", "model-d"}))
    result = await dispatch(job(), context(cfg, models.router, []))
    assert result["status"] == "FAILED" and result["error"]["type"] == "AllProvidersFailed"
    assert {s["model"] for s in result["trace"] if s.get("outcome") == "error"} >= {"model-a", "model-b"}
    # who was asked, and how each ended: the ask steps and the failed list were dropped
    asks = [s["detail"] for s in result["trace"] if s["step"] == "ask" and s["kind"] == "node"]
    assert len(asks) == 2 and all("no answer (AllProvidersFailed)" in d for d in asks), asks
    output = result["output"]
    assert output["partial"] is True and output["positions"] == []
    assert sorted(f["asked"] for f in output["failed"]) == ["model-a", "model-b"]


async def test_each_model_is_asked_under_the_jobs_budget() -> None:
    cfg = config().model_copy(update={"budgets": {"fast": BudgetSpec(max_tokens=20)}})
    models = Models(cfg)
    result = await dispatch(job(tier="fast"), context(cfg, models.router, []))
    assert result["status"] == "FAILED" and result["error"]["type"] == "BudgetExceeded", result["error"]
    assert "budgets.fast" in result["error"]["message"]
    assert models.spans == {}  # refused before any model was called
    assert [f["asked"] for f in result["output"]["failed"]] == list(DELAYS)


@pytest.mark.parametrize(("inp", "message"), [
    ({"stances": ["for"]}, "stances: has 1 entries for 3 models"),
    ({"models": ["model-a", "nope"]}, "'nope' names no model or family"),
    ({"models": ["model-a", "model-a"]}, "lists a model twice"),
    ({"stances": ["maybe", "for", "for"]}, "input.stances.0"),
])
async def test_bad_input_names_the_field(inp: dict[str, Any], message: str) -> None:
    cfg = config()
    result = await dispatch(job(**inp), context(cfg, Models(cfg).router, []))
    assert result["status"] == "FAILED" and result["error"]["type"] == "InputError"
    assert message in result["error"]["message"], result["error"]


def test_consensus_route_and_thread_limits_are_validated_naming_the_key(config_file: Any) -> None:
    from core.config import load_config

    text = config_file.read_text()
    config_file.write_text(text.replace('models: ["deepseek", "gemini", "claude"]', 'models: ["deepseek", "gemni"]'))
    with pytest.raises(ConfigError, match=r"routing\.consensus\.models\[1\]: 'gemni' names no model or family"):
        load_config(config_file)
    config_file.write_text(text.replace("max_turns: 20", "max_turns: 1"))
    with pytest.raises(ConfigError, match=r"threads\.max_turns: .*greater than or equal to 2"):
        load_config(config_file)


async def test_a_model_not_asked_for_a_stand_in_that_then_failed_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in foreseen for two keyless models fails when called: the one not asked must not
    read as "its fallback is on the panel already"."""
    for key in ("KEY_A", "KEY_B"):
        monkeypatch.delenv(key, raising=False)
    cfg = config(models=["model-a", "model-b", "model-c"], synthesizer="synth")
    raw = cfg.model_dump()
    for name, key in (("model-a", "KEY_A"), ("model-b", "KEY_B")):
        raw["models"][name]["api_key_env"] = key
    raw["providers"]["llm"]["fallback_chain"] = ["model-d"]
    keyless = SwarmConfig.model_validate(raw)
    models = Models(keyless, failing=frozenset({"model-d"}))
    out = (await dispatch(job(), context(keyless, models.router, [])))["output"]
    assert [p["model"] for p in out["positions"]] == ["model-c"]
    not_asked = next(f for f in out["failed"] if f["asked"] == "model-b")
    assert not_asked["error"] == ("model-b was not asked: its fallback model-d was to answer for it on the panel,"
                                  " and gave no answer"), not_asked


async def test_a_position_cut_at_its_token_limit_is_said_to_be() -> None:
    """A keyless position ended mid-word ("(e)g") with nothing saying it had been cut."""
    from providers.circuit import CircuitBoard
    from providers.llm.router import LLMRouter

    class CutShort(FunctionLLM):
        async def complete(self, messages: list[Message], llm_config: LLMConfig) -> Any:
            response = await super().complete(messages, llm_config)
            return response.model_copy(update={"finish_reason": "length"}) if self.model == "model-b" else response

    cfg = config()
    llms = {n: CutShort(lambda m, c, n=n: f"{n} says (e)g" if n == "model-b" else f"{n} says yes", model=n) for n in cfg.models}
    router = LLMRouter(cfg.providers.llm, cfg.models, llms, CircuitBoard())
    result = await dispatch(job(), context(cfg, router, []))
    out = result["output"]
    assert [(p.get("cut", False), p.get("cut_reason")) for p in out["positions"]] == [
        (False, None), (True, "length"), (False, None)]
    assert "the position of model-b was cut at its token limit and may end mid-sentence" in out["warnings"]


async def test_a_synthesis_cut_short_is_said_to_be() -> None:
    """A position ended early was flagged; the synthesis ended early was flagged nowhere."""
    from providers.circuit import CircuitBoard
    from providers.llm.router import LLMRouter

    class CutSynthesis(FunctionLLM):
        async def complete(self, messages: list[Message], llm_config: LLMConfig) -> Any:
            response = await super().complete(messages, llm_config)
            return response.model_copy(update={"finish_reason": "loop"}) if llm_config.step == "synthesize" else response

    cfg = config()
    llms = {n: CutSynthesis(lambda m, c, n=n: f"{n} says yes", model=n) for n in cfg.models}
    router = LLMRouter(cfg.providers.llm, cfg.models, llms, CircuitBoard())
    result = await dispatch(job(), context(cfg, router, []))
    out = result["output"]
    assert out["synthesis_status"] == "done" and not any(p.get("cut") for p in out["positions"])
    assert out["warnings"] == [
        "the synthesis was stopped where the model began repeating itself (the repeats are left out)"]
    (step,) = [s for s in result["trace"] if s["step"] == "synthesize" and s["kind"] == "node"]
    assert step["detail"].endswith("(stopped where the model began repeating itself: the repeats are left out)")


async def test_a_position_stopped_where_the_model_looped_is_said_to_be() -> None:
    """The loop guard ended a position (finish reason ``loop``) and nothing said so, where one cut
    at its token limit was marked ``cut`` and warned of. Streamed through litellm from a loopback
    server, as the local model's answers are."""
    from fake_openai import Behaviour, FakeOpenAI

    from mcp_server.results import consensus_output
    from mcp_server.texts import result_text
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router

    loop = "Friday is fine. " + "Ship it on Friday because Friday is fine. Friday is the day to ship. " * 30
    looped = "the position of model-b was stopped where the model began repeating itself (the repeats are left out)"
    with FakeOpenAI() as server:
        server.script("model-b", Behaviour.answer(loop, token_delay_s=0.001))
        raw = config().model_dump()
        for name, spec in raw["models"].items():
            spec.update(api_base=f"{server.url}/v1", stop_on_loop=name == "model-b", timeout_s=5)
        cfg = SwarmConfig.model_validate(raw)
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        result = await dispatch(job(), context(cfg, router, []))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert [(p["model"], p["text"], p.get("cut", False), p.get("cut_reason")) for p in out["positions"]] == [
        ("model-a", "ok from model-a", False, None),
        ("model-b", "Friday is fine. Ship it on Friday because Friday is fine. Friday is the day to ship.", True, "loop"),
        ("model-c", "ok from model-c", False, None)]
    assert out["warnings"] == [looped]
    asked = [s["detail"] for s in result["trace"] if s["step"] == "ask" and s["kind"] == "node"]
    assert "model-b answered (stopped where the model began repeating itself: the repeats are left out)" in asked
    assert f"Warning: {looped}" in result_text(consensus_output(result))
