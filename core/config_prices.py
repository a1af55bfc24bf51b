"""A model's prices in ``config.yaml`` (``models.<name>.price``): USD per million tokens, the
rates of the input a provider's cache served or stored, and a provider's peak-hour rates
(DeepSeek's, from 2026-08-16), which the call's time picks (``Price.at``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_backends import StrictModel, raise_all


class Rates(StrictModel):
    """USD per million tokens. The input tokens the provider's cache served or stored are charged at
    their own rates where they are written; unset, at ``input_per_mtok`` (and the trace says so)."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_per_mtok: float | None = Field(
        default=None, ge=0,
        description="input tokens read from the provider's cache (a cache hit: DeepSeek's prompt_cache_hit_tokens,"
        " OpenAI's and Gemini's cached tokens, Anthropic's cache_read_input_tokens); unset: input_per_mtok",
    )
    cache_write_per_mtok: float | None = Field(
        default=None, ge=0,
        description="input tokens written to the provider's cache (Anthropic's cache_creation_input_tokens, the"
        " 5-minute rate); unset: input_per_mtok",
    )


_HOURS = re.compile(r"\A([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)\Z")


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: ``PeakRates.days``' names, Monday first (``datetime.weekday()``'s order)
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PeakRates(Rates):
    """The rates a provider charges in its peak hours (DeepSeek's, from 2026-08-16: twice the others,
    01:00-04:00 and 06:00-10:00 UTC, Monday to Friday)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    hours_utc: list[str] = Field(min_length=1, description='UTC spans, "HH:MM-HH:MM" (end 24:00 for midnight)')
    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1,
        description="the UTC days the hours are peak on (default every day): DeepSeek's are mon-fri",
    )

    @field_validator("hours_utc")
    @classmethod
    def _spans(cls, value: list[str]) -> list[str]:
        bad = [span for span in value if not (m := _HOURS.fullmatch(span)) or m.group(1, 2) >= m.group(3, 4)
               or (m.group(3) == "24" and m.group(4) != "00")]
        if bad:
            raise ValueError(f'{", ".join(map(repr, bad))}: each span is "HH:MM-HH:MM" in UTC, start before end')
        return value

    def covers(self, moment: datetime.datetime) -> bool:
        """Whether ``moment`` (aware, any zone) falls in one of the spans."""
        utc = moment.astimezone(datetime.UTC)
        minute = f"{utc.hour:02d}:{utc.minute:02d}"
        return WEEKDAYS[utc.weekday()] in self.days and any(span[:5] <= minute < span[6:] for span in self.hours_utc)


class Price(Rates):
    """A model's rates; ``peak``: other rates in the provider's peak hours (the call's time decides)."""

    peak: PeakRates | None = None

    @model_validator(mode="after")
    def _peak_sets_what_the_base_sets(self) -> Price:
        """A peak without a cache rate the base price sets charged cache hits at its full input rate
        (DeepSeek's: 0.30 instead of 0.006 a million, 50x)."""
        missing = [key for key in ("cached_input_per_mtok", "cache_write_per_mtok")
                   if self.peak is not None and getattr(self, key) is not None and getattr(self.peak, key) is None]
        if missing:
            raise_all("Price", [InitErrorDetails(type=PydanticCustomError(
                "peak_rate", "the price sets {key}: set the peak's too (its rate in the peak hours)", {"key": key}),
                loc=("peak", key), input=None) for key in missing])
        return self

    def at(self, moment: datetime.datetime) -> tuple[Rates, str | None]:
        """The rates charged at ``moment``, and a note when they are the peak hours' (else ``None``)."""
        if self.peak is None or not self.peak.covers(moment):
            return self, None
        days = "" if len(self.peak.days) == len(WEEKDAYS) else f" {_days(self.peak.days)}"
        return self.peak, f"priced at peak-hour rates ({', '.join(self.peak.hours_utc)} UTC{days})"


def _days(days: Sequence[str]) -> str:
    """``["mon", ..., "fri"]`` as "mon-fri"; days that are not a run, as written."""
    order = sorted({WEEKDAYS.index(d) for d in days})
    if order == list(range(order[0], order[-1] + 1)) and len(order) > 2:
        return f"{WEEKDAYS[order[0]]}-{WEEKDAYS[order[-1]]}"
    return ", ".join(WEEKDAYS[i] for i in order)
