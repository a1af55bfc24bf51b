"""A research writer passed over for the job's budget is named so in the warning, in full words."""

from __future__ import annotations

from graphs.research.writer_chain import unanswered


def test_a_writer_passed_over_for_the_budget_is_said_briefly_not_cut_at_80_characters() -> None:
    reason = ("the balanced budget would be passed: $0.4900 spent, ~$0.6539 after this call > max_cost_usd 0.5;"
              " it is asked for up to 16384 output tokens, at its price")
    steps = [{"model": "claude-opus-5-5", "outcome": "skipped", "skip": "over_budget", "detail": reason},
             {"model": "deepseek-v3.1-q8", "outcome": "error", "error_class": "ProviderUnavailable"}]
    said = unanswered(steps)
    assert said == "claude-opus-5-5: it would pass the job's budget; deepseek-v3.1-q8: ProviderUnavailable", said
