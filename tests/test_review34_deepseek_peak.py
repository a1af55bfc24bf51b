"""DeepSeek's current model and its two prices a day.

DeepSeek's API now serves ``deepseek-flash`` (V4.1 Flash; ``deepseek-v4-flash`` is a retired name
it still accepts) and, since 2026-08-16, bills peak and off-peak rates: off-peak $0.15 input,
$0.003 cache hit, $0.60 output, and twice that from 01:00 to 04:00 and 06:00 to 10:00 UTC, Monday
to Friday (weekends off-peak all day). The
shipped price was the old $0.14 / $0.28 at every hour: a job's cost read 2-4x low. A price may
now carry ``peak`` rates and hours; the call's time picks them, and its step says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from test_review33l_usage_truth import Upstream, chat

from core.config import SwarmConfig, load_config
from core.errors import ConfigError
from providers.base import LLMConfig, Message
from providers.llm import litellm_response
from providers.llm.litellm_backend import LiteLLMModel

UTC = datetime.UTC
ASK = [Message(role="user", content="Say hi.")]
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
         "prompt_cache_hit_tokens": 400, "prompt_cache_miss_tokens": 600}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def at(hour: int, minute: int = 0, day: int = 7) -> datetime.datetime:
    """2026-12-07 is a Monday; the 5th and 6th a Saturday and a Sunday."""
    return datetime.datetime(2026, 12, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "peak"), [
    (at(0, 59), False), (at(1, 0), True), (at(3, 59), True), (at(4, 0), False), (at(5, 30), False),
    (at(6, 0), True), (at(9, 59), True), (at(10, 0), False), (at(23, 59), False),
    # any zone: 09:30 in UTC+8 is 01:30 UTC
    (datetime.datetime(2026, 12, 7, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=8))), True),
    # the weekend is off-peak all day (it was charged at the peak rates)
    (at(2, 0, day=5), False), (at(7, 0, day=6), False), (at(2, 0, day=11), True),
])
def test_the_shipped_deepseek_price_is_the_peak_one_in_deepseeks_peak_hours(moment: datetime.datetime, peak: bool) -> None:
    for name in ("deepseek-v3.1-q8", "deepseek-v3.1-q4"):
        rates, note = load_config().models[name].price.at(moment)
        assert (rates.input_per_mtok, rates.output_per_mtok, rates.cached_input_per_mtok) == (
            (0.30, 1.20, 0.006) if peak else (0.15, 0.60, 0.003))
        assert (note is not None) == peak


@pytest.mark.parametrize(("hour", "cost", "peak"), [(2, (600 * 0.30 + 400 * 0.006 + 500 * 1.20) / 1e6, True),
                                                     (12, (600 * 0.15 + 400 * 0.003 + 500 * 0.60) / 1e6, False)])
async def test_a_call_is_charged_at_the_rates_of_its_hour_and_says_so(
        upstream: Upstream, monkeypatch: pytest.MonkeyPatch, hour: int, cost: float, peak: bool) -> None:
    """Through litellm's real DeepSeek route: the shipped model at the shipped price."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-deepseek-peak-0000")
    monkeypatch.setattr(litellm_response, "utc_now", lambda: at(hour))
    upstream.reply = lambda path, body: chat(USAGE, "Hi.")
    spec = load_config().models["deepseek-v3.1-q8"]
    llm = LiteLLMModel("deepseek-v3.1-q8", spec.model_copy(update={"api_base": upstream.url}))
    answer = await llm.complete(ASK, LLMConfig())
    assert upstream.bodies[-1]["model"] == "deepseek-flash"
    [step] = answer.attempts
    assert step.cost_usd == pytest.approx(cost)
    detail = step.detail or ""
    assert ("priced at peak-hour rates (01:00-04:00, 06:00-10:00 UTC mon-fri)" in detail) == peak, detail
    assert "400 read from the provider's cache" in detail, detail


def _price(price: dict[str, Any]) -> SwarmConfig:
    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": {"family": "f", "litellm_model": "openai/m", "price": price}},
        "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })


@pytest.mark.parametrize("spans", [["25:00-26:00"], ["04:00-01:00"], ["1-4"], ["22:00-24:30"], []])
def test_peak_hours_that_are_no_span_of_a_day_are_refused_naming_the_key(spans: list[str]) -> None:
    with pytest.raises((ConfigError, ValueError)) as caught:
        _price({"input_per_mtok": 1, "output_per_mtok": 2,
                "peak": {"hours_utc": spans, "input_per_mtok": 2, "output_per_mtok": 4}})
    assert "hours_utc" in str(caught.value), caught.value


def test_a_peak_span_may_end_at_midnight() -> None:
    price = _price({"input_per_mtok": 1, "output_per_mtok": 2,
                    "peak": {"hours_utc": ["22:00-24:00"], "input_per_mtok": 2, "output_per_mtok": 4}}).models["m"].price
    assert price.at(at(23, 59))[0].input_per_mtok == 2 and price.at(at(0, 0))[0].input_per_mtok == 1


def test_a_peak_without_a_cache_rate_the_base_sets_is_refused_naming_it() -> None:
    """It charged DeepSeek's cache hits at the peak input rate, 50x the peak hit rate."""
    with pytest.raises((ConfigError, ValueError)) as caught:
        _price({"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cached_input_per_mtok": 0.003,
                "peak": {"hours_utc": ["01:00-04:00"], "input_per_mtok": 0.3, "output_per_mtok": 1.2}})
    assert "peak" in str(caught.value) and "cached_input_per_mtok" in str(caught.value), caught.value


def test_peak_days_are_checked_and_said() -> None:
    price = _price({"input_per_mtok": 1, "output_per_mtok": 2, "peak": {
        "hours_utc": ["00:00-24:00"], "days": ["sat", "sun"], "input_per_mtok": 2, "output_per_mtok": 4}}).models["m"].price
    assert price.at(at(12, 0, day=5)) == (price.peak, "priced at peak-hour rates (00:00-24:00 UTC sat, sun)")
    assert price.at(at(12, 0, day=7))[1] is None
    with pytest.raises((ConfigError, ValueError)) as caught:
        _price({"input_per_mtok": 1, "output_per_mtok": 2, "peak": {
            "hours_utc": ["01:00-04:00"], "days": ["monday"], "input_per_mtok": 2, "output_per_mtok": 4}})
    assert "days" in str(caught.value), caught.value
