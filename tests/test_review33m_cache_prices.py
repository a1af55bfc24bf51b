"""What the provider's prompt cache served is priced at its own rate: a price's optional
``cached_input_per_mtok`` (cache reads / hits) and ``cache_write_per_mtok`` (Anthropic's cache
writes), through the real litellm path against a loopback server in each provider's usage shape.

Before, every cached token was charged at the full input rate (DeepSeek's hits cost a tenth of
that, Anthropic's writes 1.25 times it) and the step's detail said "priced at the input rate".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_review33l_usage_truth import (  # the loopback server and its usage shapes
    ASK,
    DEEPSEEK_USAGE,
    Upstream,
    anthropic,
    chat,
    model,
    only_step,
    stream,
)

from core.config import SwarmConfig, load_config
from core.errors import ConfigError, ProviderError
from providers.base import LLMConfig
from providers.llm.litellm_response import CacheUse, billed, cache_note, call_cost, plus_crashed

#: DeepSeek's published shape of rates: a cache hit a tenth of a miss
DEEPSEEK_PRICE = {"input_per_mtok": 0.28, "output_per_mtok": 0.42, "cached_input_per_mtok": 0.028}
#: Anthropic's: reads 0.1x the input rate, 5-minute writes 1.25x
CLAUDE_PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.30,
                "cache_write_per_mtok": 3.75}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def spec(**price: float) -> Any:
    config = SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": {"family": "f", "litellm_model": "openai/m", **({"price": price} if price else {})}},
        "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })
    return config.models["m"]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_deepseek_cache_hits_are_charged_at_the_cached_rate(upstream: Upstream, streamed: bool) -> None:
    """64 of 100 prompt tokens were cache hits: charged $0.028 a million, not $0.28."""
    upstream.reply = stream(["Hello ", "there."], DEEPSEEK_USAGE) if streamed else (lambda p, b: chat(DEEPSEEK_USAGE))
    llm = model("deepseek/deepseek-chat", upstream.url, stop_on_loop=streamed, price=DEEPSEEK_PRICE)
    step = only_step(await llm.complete(ASK, LLMConfig()))
    assert (step.input_tokens, step.output_tokens) == (100, 30)
    assert step.cost_usd == pytest.approx((36 * 0.28 + 64 * 0.028 + 30 * 0.42) / 1e6)
    detail = step.detail or ""
    assert "64 read from the provider's cache, charged at cached_input_per_mtok ($0.028 per million)" in detail
    assert "the other 36 at the input rate ($0.28 per million)" in detail
    assert "priced at the input rate" not in detail


async def test_anthropic_cache_reads_and_writes_are_charged_at_their_own_rates(upstream: Upstream) -> None:
    """20 plain input tokens, 3000 read from the cache and 1000 written to it (litellm counts all
    4020 as prompt tokens): the writes cost more than the input rate, the reads a tenth of it."""
    upstream.reply = anthropic
    step = only_step(await model("anthropic/claude-sonnet-4-5", upstream.url, price=CLAUDE_PRICE)
                     .complete(ASK, LLMConfig()))
    assert (step.input_tokens, step.output_tokens) == (4020, 50)
    assert step.cost_usd == pytest.approx((20 * 3.0 + 3000 * 0.30 + 1000 * 3.75 + 50 * 15.0) / 1e6)
    detail = step.detail or ""
    assert "3000 read from the provider's cache, charged at cached_input_per_mtok ($0.3 per million)" in detail
    assert "1000 written to it, charged at cache_write_per_mtok ($3.75 per million)" in detail
    assert "the other 20 at the input rate ($3 per million)" in detail


async def test_a_cache_rate_the_price_leaves_out_is_the_input_rate_and_the_detail_says_so(upstream: Upstream) -> None:
    upstream.reply = anthropic
    price = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.30}
    step = only_step(await model("anthropic/claude-sonnet-4-5", upstream.url, price=price).complete(ASK, LLMConfig()))
    assert step.cost_usd == pytest.approx((1020 * 3.0 + 3000 * 0.30 + 50 * 15.0) / 1e6)
    assert ("1000 written to it, charged at the input rate (the price sets no cache_write_per_mtok)"
            in (step.detail or "")), step.detail


async def test_an_empty_answer_is_billed_its_cache_hits_at_the_cached_rate(upstream: Upstream) -> None:
    upstream.reply = lambda path, body: chat(DEEPSEEK_USAGE, text="")
    llm = model("deepseek/deepseek-chat", upstream.url, price=DEEPSEEK_PRICE)
    with pytest.raises(ProviderError) as caught:
        await llm.complete(ASK, LLMConfig())
    assert caught.value.cost_usd == pytest.approx((36 * 0.28 + 64 * 0.028 + 30 * 0.42) / 1e6)


def test_call_cost_charges_each_part_of_the_input_at_its_rate() -> None:
    plain = spec(input_per_mtok=1.0, output_per_mtok=2.0)
    assert call_cost(plain, 100, 30, CacheUse(64, 10)) == pytest.approx((100 * 1.0 + 30 * 2.0) / 1e6)  # as before
    both = spec(**CLAUDE_PRICE)
    assert call_cost(both, 4020, 50, CacheUse(3000, 1000)) == pytest.approx(
        (20 * 3.0 + 3000 * 0.30 + 1000 * 3.75 + 50 * 15.0) / 1e6)
    # a usage that says its cache served more than its input: never a negative plain part
    assert call_cost(both, 100, 0, CacheUse(150, 50)) == pytest.approx(100 * 0.30 / 1e6)
    free = spec(input_per_mtok=0, output_per_mtok=0, cached_input_per_mtok=0)
    assert call_cost(free, 100, 30, CacheUse(64, 0)) == 0.0
    assert call_cost(spec(), 100, 30, CacheUse(64, 0)) is None  # no price: unknown, not $0
    assert cache_note(spec(), 100, CacheUse(64, 0)) == "input tokens: 64 read from the provider's cache"
    assert cache_note(both, 100, CacheUse()) is None


def test_a_retried_call_s_cost_keeps_each_attempt_s_cache_rate() -> None:
    """A call asked again after its local server crashed summed both attempts' tokens and priced
    them all at the input rate: the second attempt's cache hits lost their discount."""
    price = spec(**DEEPSEEK_PRICE)
    crashed = billed(price, ProviderError("f", "crashed"), 10, 5)
    error = billed(price, ProviderError("f", "empty answer"), 100, 30, CacheUse(64, 0))
    plus_crashed(price, error, crashed)
    assert (error.input_tokens, error.output_tokens) == (110, 35)
    assert error.cost_usd == pytest.approx((10 * 0.28 + 5 * 0.42 + 36 * 0.28 + 64 * 0.028 + 30 * 0.42) / 1e6)


@pytest.mark.parametrize(("price", "said"), [
    ({"cached_input_per_mtok": -0.01}, "models.m.price.cached_input_per_mtok: Input should be greater than or equal to 0"),
    ({"cache_write_per_mtok": -1}, "models.m.price.cache_write_per_mtok: Input should be greater than or equal to 0"),
    ({"cached_input_per_mtk": 0.01}, "models.m.price.cached_input_per_mtk: unknown key; remove it or check its"
                                     " spelling (did you mean cached_input_per_mtok?); valid: input_per_mtok,"
                                     " output_per_mtok, cached_input_per_mtok, cache_write_per_mtok"),
], ids=["negative-read", "negative-write", "misspelt"])
def test_a_bad_cache_price_is_refused_naming_the_key(tmp_path: Path, price: dict[str, float], said: str) -> None:
    document = {
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": {"family": "f", "litellm_model": "openai/m",
                         "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0, **price}}},
        "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml", env={})
    assert said in str(caught.value), str(caught.value)


def test_the_shipped_config_prices_cache_reads_below_and_writes_above_the_input_rate() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "config.yaml", env={})
    for name, entry in config.models.items():
        price = entry.price
        if price.cached_input_per_mtok is not None:
            assert price.cached_input_per_mtok < price.input_per_mtok, name
        if price.cache_write_per_mtok is not None:
            assert price.cache_write_per_mtok > price.input_per_mtok, name
    assert config.models["claude-sonnet-5-5"].price.cache_write_per_mtok == 2.50
