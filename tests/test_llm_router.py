"""LLMRouter and CircuitBoard with the shipped fakes: chain resolution, skips, circuits, retries."""

from __future__ import annotations

import pytest
from fake_openai import make_swarm_config

from core.errors import (
    AllProvidersFailed,
    InputError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter
from providers.testing import DownLLM, FakeLLM, FunctionLLM

ALPHA_KEY = "SWARM_TEST_ALPHA_KEY"
BETA_KEY = "SWARM_TEST_BETA_KEY"
ASK = [Message(role="user", content="hello")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _model(family: str, key: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"family": family, "litellm_model": f"openai/{family}"}
    if key:
        spec["api_key_env"] = key
    return spec


def config(**overrides: object):
    models = {
        "a1": _model("alpha", ALPHA_KEY),
        "a2": _model("alpha", ALPHA_KEY),
        "b1": _model("beta", BETA_KEY),
        "b2": _model("beta", BETA_KEY),
        "c1": _model("gamma"),
    }
    kwargs: dict[str, object] = {
        "default": "a1",
        "tiers": {"fast": ["a2", "b1"], "balanced": ["a1", "b2"], "premium": ["b2"]},
        "fallback_chain": ["beta", "gamma", "a2"],
        "circuit": {"failure_threshold": 2, "cooldown_s": 10},
        "retry": {"max_retry_after_s": 2, "max_retries": 1},
    }
    kwargs.update(overrides)
    return make_swarm_config(models, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALPHA_KEY, "alpha-secret-value")
    monkeypatch.setenv(BETA_KEY, "beta-secret-value")


def router(models: dict[str, object], *, board: CircuitBoard | None = None, cfg=None) -> LLMRouter:
    cfg = cfg or config()
    return LLMRouter(cfg.providers.llm, cfg.models, models, board or CircuitBoard())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tier", "prefer", "expected"),
    [
        (None, None, ["a1", "b1", "c1", "a2"]),
        ("fast", None, ["a2", "b1", "c1"]),
        ("premium", None, ["b2", "b1", "c1", "a2"]),
        ("balanced", "beta", ["b2", "a1", "b1", "c1", "a2"]),
        ("fast", "beta+search", ["b1", "a2", "c1"]),
        ("fast", "gamma", ["c1", "a2", "b1"]),
        ("fast", "b2", ["b2", "a2", "b1", "c1"]),
        (None, "alpha", ["a1", "b1", "c1", "a2"]),
    ],
)
def test_chain_resolution(tier: str | None, prefer: str | None, expected: list[str]) -> None:
    assert router({}).resolve_chain(LLMConfig(tier=tier, prefer=prefer)) == expected  # type: ignore[arg-type]


def test_an_avoided_family_goes_last_in_its_order() -> None:
    chain = router({}).resolve_chain(LLMConfig(tier="balanced", prefer="beta", avoid="beta"))
    assert chain == ["a1", "c1", "a2", "b2", "b1"]  # was b2, a1, b1, c1, a2
    assert router({}).resolve_chain(LLMConfig(avoid="delta")) == ["a1", "b1", "c1", "a2"]  # no such family: as is


def test_unknown_prefer_names_valid_choices() -> None:
    with pytest.raises(InputError) as err:
        router({}).resolve_chain(LLMConfig(prefer="mistral"))
    assert err.value.field == "prefer"
    assert "alpha" in str(err.value) and "b2" in str(err.value)


async def test_unset_key_is_skipped_with_reason_without_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALPHA_KEY)
    a1 = FakeLLM(["never"], model="a1")
    b1 = FakeLLM(["from b1"], model="b1")
    answer = await router({"a1": a1, "b1": b1, "c1": FakeLLM(), "a2": FakeLLM()}).complete(ASK, LLMConfig())
    assert answer.text == "from b1"
    assert a1.calls == []
    first, second = answer.attempts
    assert (first.model, first.outcome, first.detail, first.latency_ms) == (
        "a1", "skipped", f"{ALPHA_KEY} is not set", 0.0
    )
    assert (second.model, second.outcome) == ("b1", "ok")


async def test_failure_falls_over_and_trace_keeps_every_step() -> None:
    models = {"a1": DownLLM(model="a1"), "b1": FakeLLM([ProviderTimeout("beta", "slow", model="b1")]),
              "c1": FakeLLM(["from c1"]), "a2": FakeLLM()}
    answer = await router(models).complete(ASK, LLMConfig(step="draft"))
    assert answer.text == "from c1"
    assert [(s.model, s.outcome, s.error_class) for s in answer.attempts] == [
        ("a1", "error", "ProviderUnavailable"),
        ("b1", "error", "ProviderTimeout"),
        ("c1", "ok", None),
    ]
    assert {s.step for s in answer.attempts} == {"draft"}
    assert answer.attempts[0].provider == "alpha"


async def test_an_answer_the_caller_cannot_use_falls_over_and_is_billed() -> None:
    """A reviewer answering prose where a JSON verdict was asked ("Sure! approved {") made the
    review "unusable" while another family was there to ask (a keyed-path review found it)."""
    accept = LLMConfig(step="review", accept=lambda text: None if text.startswith("{") else "no JSON verdict")
    models = {"a1": FakeLLM(["Sure! approved {"], model="a1"), "b1": FakeLLM(['{"approved": true}'], model="b1"),
              "c1": FakeLLM(), "a2": FakeLLM()}
    answer = await router(models).complete(ASK, accept)
    assert answer.text == '{"approved": true}'
    assert [(s.model, s.outcome, s.error_class, s.detail) for s in answer.attempts] == [
        ("a1", "error", "UnusableAnswer", "no JSON verdict"), ("b1", "ok", None, None)]
    assert answer.attempts[0].output_tokens > 0  # it answered: billed, in the totals and the budget
    # nobody does better: the first answer comes back (the caller says it is unusable), every attempt kept
    prose = {name: FakeLLM([f"prose from {name}"], model=name) for name in ("a1", "b1", "c1", "a2")}
    last = await router(prose).complete(ASK, accept)
    assert last.text == "prose from a1" and [s.outcome for s in last.attempts] == ["error"] * 4
    assert {s.error_class for s in last.attempts} == {"UnusableAnswer"}


async def test_all_fail_raises_with_every_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BETA_KEY)
    models: dict[str, object] = {name: DownLLM(model=name) for name in ("a1", "b1", "c1", "a2")}
    # an upstream that echoes the key it was sent: the final error must not carry it
    models["a1"] = FakeLLM([ProviderUnavailable("alpha", "HTTP 401: invalid key alpha-secret-value", model="a1")])
    with pytest.raises(AllProvidersFailed) as err:
        await router(models).complete(ASK, LLMConfig())
    steps = err.value.attempts
    assert [(s.model, s.outcome) for s in steps] == [
        ("a1", "error"), ("b1", "skipped"), ("c1", "error"), ("a2", "error")
    ]
    assert err.value.to_dict()["attempts"][1]["detail"] == f"{BETA_KEY} is not set"
    assert steps[0].detail == "HTTP 401: invalid key [REDACTED]"
    assert "alpha-secret-value" not in str(err.value) and "alpha-secret-value" not in str(err.value.to_dict())


async def test_short_retry_after_is_retried_once_on_the_same_model() -> None:
    a1 = FakeLLM([ProviderRateLimited("alpha", "429", model="a1", retry_after=0.01), "second try"])
    answer = await router({"a1": a1, "b1": FakeLLM(["b1"]), "c1": FakeLLM(), "a2": FakeLLM()}).complete(
        ASK, LLMConfig()
    )
    assert answer.text == "second try"
    assert [(s.model, s.attempt, s.outcome) for s in answer.attempts] == [
        ("a1", 1, "error"), ("a1", 2, "ok")
    ]


async def test_retry_budget_is_bounded_then_falls_over() -> None:
    limited = ProviderRateLimited("alpha", "429", model="a1", retry_after=0.01)
    a1 = FakeLLM([limited, limited, limited, "too late"])
    answer = await router({"a1": a1, "b1": FakeLLM(["from b1"]), "c1": FakeLLM(), "a2": FakeLLM()},
                          cfg=config(circuit={"failure_threshold": 5, "cooldown_s": 10})).complete(
        ASK, LLMConfig()
    )
    assert answer.text == "from b1"
    assert [(s.model, s.attempt, s.outcome) for s in answer.attempts] == [
        ("a1", 1, "error"), ("a1", 2, "error"), ("b1", 1, "ok")
    ]


@pytest.mark.parametrize("retry_after", [30.0, None])
async def test_long_or_missing_retry_after_falls_over_at_once(retry_after: float | None) -> None:
    a1 = FakeLLM([ProviderRateLimited("alpha", "429", model="a1", retry_after=retry_after), "unused"])
    answer = await router({"a1": a1, "b1": FakeLLM(["from b1"]), "c1": FakeLLM(), "a2": FakeLLM()}).complete(
        ASK, LLMConfig()
    )
    assert answer.text == "from b1"
    assert len(a1.calls) == 1
    assert answer.attempts[0].error_class == "ProviderRateLimited"


async def test_circuit_opens_skips_then_half_open_probe_closes_it() -> None:
    clock = FakeClock()
    board = CircuitBoard(clock=clock)
    healthy = {"up": False}

    def a1_answer(messages: list[Message], cfg: LLMConfig) -> str:
        if not healthy["up"]:
            raise ProviderUnavailable("alpha", "HTTP 500", model="a1")
        return "a1 is back"

    a1 = FunctionLLM(a1_answer, model="a1")
    models = {"a1": a1, "b1": FakeLLM(["from b1"]), "c1": FakeLLM(), "a2": FakeLLM()}
    r = router(models, board=board)
    for _ in range(2):  # failure_threshold: 2
        assert (await r.complete(ASK, LLMConfig())).text == "from b1"
    assert board.state("a1") == "open"

    skipped = await r.complete(ASK, LLMConfig())
    assert len(a1.calls) == 2
    assert skipped.attempts[0].outcome == "skipped"
    assert skipped.attempts[0].detail.startswith("circuit open until")
    assert (await r.health())["a1"]["available"] is False

    clock.now += 10
    assert board.state("a1") == "half_open"
    healthy["up"] = True
    probed = await r.complete(ASK, LLMConfig())
    assert probed.text == "a1 is back"
    assert board.state("a1") == "closed"
    assert board.snapshot()["a1"]["consecutive_failures"] == 0


async def test_failed_probe_reopens_and_state_survives_a_config_reload() -> None:
    clock = FakeClock()
    board = CircuitBoard(clock=clock)
    models = {"a1": DownLLM(model="a1"), "b1": FakeLLM(["from b1"]), "c1": FakeLLM(), "a2": FakeLLM()}
    for _ in range(2):
        await router(models, board=board).complete(ASK, LLMConfig())
    clock.now += 10
    probe = await router(models, board=board).complete(ASK, LLMConfig())
    assert probe.attempts[0].outcome == "error"  # the one probe went through, and failed
    assert board.state("a1") == "open"
    reloaded = router(models, board=board, cfg=config(circuit={"failure_threshold": 2, "cooldown_s": 60}))
    assert (await reloaded.complete(ASK, LLMConfig())).attempts[0].outcome == "skipped"


def test_a_failed_probe_reopens_even_after_a_reload_raised_the_threshold() -> None:
    """A failed probe re-opens its circuit whatever the count: with a reload's higher
    ``failure_threshold`` (2 -> 5) the third failure stayed under it and the model was left
    half-open, every caller then let through to probe a model still down."""
    clock = FakeClock()
    board = CircuitBoard(failure_threshold=2, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert board.acquire("a1") is None
        board.record_failure("a1", "HTTP 500")
    assert board.state("a1") == "open"
    board.configure(config(circuit={"failure_threshold": 5, "cooldown_s": 10}).providers.llm.circuit)
    clock.now += 10
    assert board.acquire("a1") is None  # the probe
    board.record_failure("a1", "HTTP 500")
    assert board.state("a1") == "open"
    assert board.snapshot()["a1"]["times_opened"] == 2 and board.acquire("a1") is not None


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    board = CircuitBoard(failure_threshold=1, cooldown_s=5, clock=clock)
    assert board.acquire("m") is None
    board.record_failure("m", "boom")
    assert board.acquire("m") is not None
    clock.now += 5
    assert board.acquire("m") is None
    assert "probe" in (board.acquire("m") or "")
    board.release("m")  # the probe was cancelled: the next caller may probe
    assert board.acquire("m") is None


async def test_non_provider_errors_propagate_and_free_the_probe() -> None:
    clock = FakeClock()
    board = CircuitBoard(clock=clock)

    def broken(messages: list[Message], cfg: LLMConfig) -> str:
        raise ValueError("a bug, not an outage")

    models = {"a1": FunctionLLM(broken), "b1": FakeLLM(), "c1": FakeLLM(), "a2": FakeLLM()}
    board.configure(config().providers.llm.circuit)
    board.record_failure("a1")
    board.record_failure("a1")
    clock.now += 10
    with pytest.raises(ValueError):
        await router(models, board=board).complete(ASK, LLMConfig())
    assert board.snapshot()["a1"]["probe_in_flight"] is False


async def test_health_reports_availability_reason_and_circuit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BETA_KEY)
    r = router({"a1": FakeLLM(), "a2": DownLLM(), "b1": FakeLLM(), "b2": FakeLLM(), "c1": FakeLLM()})
    health = await r.health()
    assert health["a1"] == {"available": True, "reason": None, "circuit": health["a1"]["circuit"]}
    assert health["b2"]["reason"] == f"{BETA_KEY} is not set"
    assert health["a1"]["circuit"]["state"] == "closed"
    assert await r.health_check() is True
    down = router({"a1": DownLLM(), "a2": DownLLM(), "c1": DownLLM()})
    assert await down.health_check() is False


def test_importing_the_llm_layer_does_not_import_litellm_or_llama_cpp() -> None:
    import subprocess
    import sys

    code = (
        "import sys, providers.llm.router, providers.llm.local_server, providers.circuit;"
        "from providers.llm import build_llm_router, LocalServerManager;"
        "print(sorted(m for m in ('litellm', 'llama_cpp', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_model_that_timed_out_in_a_job_is_passed_over_while_a_later_one_can_answer() -> None:
    from providers.base import job_memory

    models = {"a1": FakeLLM([ProviderTimeout("alpha", "no answer within 60 s", model="a1"), "a1 at last"]),
              "b1": DownLLM(model="b1"), "c1": FakeLLM(["c1 first", "c1 second"]), "a2": DownLLM(model="a2")}
    r = router(models)
    with job_memory():
        first = await r.complete(ASK, LLMConfig(step="draft"))
        second = await r.complete(ASK, LLMConfig(step="review"))
        assert r.passed_over(LLMConfig())[0].startswith("a1: no answer within 60 s at draft earlier in this job")
    assert (first.text, second.text) == ("c1 first", "c1 second")
    assert [(s.model, s.outcome) for s in second.attempts] == [("a1", "skipped"), ("b1", "error"), ("c1", "ok")]
    assert second.attempts[0].detail == "no answer within 60 s at draft earlier in this job: not waited for again in it"
    # another job (no memory of this one) asks a1 first again
    assert (await r.complete(ASK, LLMConfig(step="draft"))).text == "a1 at last"


async def test_a_model_that_timed_out_is_asked_again_when_it_is_the_chain_s_last_hope() -> None:
    from providers.base import job_memory

    cfg = config(fallback_chain=["gamma"])  # a circuit opens after 2 failures
    models = {"a1": FakeLLM([ProviderTimeout("alpha", "no answer within 60 s", model="a1"), "a1 at last", "a1 again"]),
              "c1": DownLLM(model="c1")}
    r = router(models, cfg=cfg)
    with job_memory():
        with pytest.raises(AllProvidersFailed):
            await r.complete(ASK, LLMConfig(step="draft"))  # a1 timed out, c1 failed
        # a1 passed over while c1 may answer; c1 fails (its circuit opens): a1 is asked after all,
        # where the step failed without asking it (review of 6d19229)
        second = await r.complete(ASK, LLMConfig(step="review"))
        assert second.text == "a1 at last"
        assert [(s.model, s.outcome) for s in second.attempts] == [("a1", "skipped"), ("c1", "error"), ("a1", "ok")]
        again = await r.complete(ASK, LLMConfig(step="revise"))  # c1's circuit is open: a1 is the last hope at once
    assert again.text == "a1 again"
    assert [(s.model, s.outcome) for s in again.attempts] == [("a1", "ok")]
