"""The small exception tree every layer speaks.

Backends translate upstream failures into ``ProviderError`` subclasses once, at their
boundary; routers fall back only on ``ProviderError``; doors turn any ``SwarmError`` into a
short, secret-free message for a person or a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.redact import redact


class SwarmError(Exception):
    """Base of every error this project raises on purpose."""

    #: Stable name shown to clients in ``{"error": {"type": ...}}``.
    kind = "swarm_error"
    #: what the failed job had made before it stopped (``{..., "partial": True}``), where its graph
    #: had something: a job's result carries it as its ``output``
    partial: Any = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description for job results and tool errors (already redacted)."""
        return {"type": type(self).__name__, "message": redact(str(self))}


class ConfigError(SwarmError):
    """An operator mistake in config: says which file, which key and what to do."""

    kind = "config_error"

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ", ".join(p for p in (file and f"file {file}", key and f"key {key}") if p)
        super().__init__(f"{where}: {message}" if where else message)

    def to_dict(self) -> dict[str, Any]:
        """``{type, message}``, and ``key``, the config key at fault, where it is known."""
        data = super().to_dict()
        if self.key:
            data["key"] = redact(self.key)
        return data


class InputError(SwarmError):
    """Bad tool or job input: says which field was wrong and the limit."""

    kind = "input_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, Any]:
        """``{type, message}``, and ``field``, the input at fault (``images[2].url``), where it is
        known: a client reads it as data. Redacted too: a key the caller named may be a secret."""
        data = super().to_dict()
        if self.field:
            data["field"] = redact(self.field)
        return data


class ProviderError(SwarmError):
    """An upstream failure, translated once at the backend's boundary."""

    kind = "provider_error"
    #: the call's own time when the backend measured it (leaving out a one-off import); else the
    #: router's clock around the call is the attempt's latency
    latency_ms: float | None = None
    #: what a call that answered unusably (nothing but reasoning, an empty answer) was billed: the
    #: router puts it on the failed attempt, so the job's totals and budget count it
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    #: the input whose fetch failed (an image's ``url`` that did not answer), where one did
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{type, message}``, and ``field`` where the failure was of one input (a URL to fetch)."""
        data = super().to_dict()
        if self.field:
            data["field"] = redact(self.field)
        return data

    def __init__(self, provider: str, message: str, *, model: str | None = None, text: str | None = None) -> None:
        """``text``: the whole one-line error, where "provider (model): message" would not read as a
        sentence (the model store's "model u2net is not pulled; ..." rather than "models (u2net): ...")."""
        self.provider = provider
        self.model = model
        self.message = message  # what happened, without who: a trace step names the provider and model itself
        super().__init__(text or f"{provider}{f' ({model})' if model else ''}: {message}")


class ProviderUnavailable(ProviderError):
    """Connection refused, 5xx, missing credentials or an open circuit."""

    kind = "provider_unavailable"


class ProviderRateLimited(ProviderError):
    """HTTP 429; ``retry_after`` is the server's hint in seconds, when it gave one."""

    kind = "provider_rate_limited"

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        model: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(provider, message, model=model)


class ProviderTimeout(ProviderError):
    """The upstream did not answer within its configured timeout."""

    kind = "provider_timeout"


class ModelNotServed(ProviderError):
    """The provider does not serve the model name config asks for (retired or misspelt): no
    retry or wait mends it, only an edit of config; the router falls over at once and opens the
    model's circuit for long (``providers.circuit.NOT_SERVED_HOLD_S``)."""

    kind = "model_not_served"


class AllProvidersFailed(ProviderError):
    """Every backend of a chain failed; ``attempts`` lists each one, in order.

    ``partial`` carries whatever the caller had produced before the chain ran dry.
    """

    kind = "all_providers_failed"

    def __init__(
        self,
        capability: str,
        attempts: Sequence[Any],
        *,
        partial: Any = None,
    ) -> None:
        self.attempts = list(attempts)
        self.partial = partial
        lines = []
        for step in self.attempts:
            data = step.model_dump() if hasattr(step, "model_dump") else dict(step)
            said = " ".join(str(p) for p in (data.get("outcome"), data.get("error_class"), data.get("detail")) if p)
            lines.append(f"{_who(data)}: {said} ({data.get('latency_ms', 0):.0f} ms)")
        summary = "; ".join(lines) if lines else "no backend configured"
        super().__init__(capability, f"every backend failed: {summary}")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["attempts"] = [
            step.model_dump() if hasattr(step, "model_dump") else dict(step) for step in self.attempts
        ]
        return data


def _who(step: dict[str, Any]) -> str:
    """``provider/model`` of one attempt (``deepseek/fast``), as short as tells them apart: a model
    name in config may be an alias that does not say whose it is; the provider alone where the
    step has no model of its own (storage, search) or the model is the provider's name."""
    provider, model = step.get("provider") or "", step.get("model") or ""
    if provider and model and model != provider:
        return f"{provider}/{model}"
    return model or provider


class StillRunning(SwarmError):
    """The job id given is running now, elsewhere: in another process on this machine (a second
    ``swarm ... --job-id`` with the same id), or on a RunPod worker past the wait budget."""

    kind = "still_running"


class BudgetExceeded(SwarmError):
    """The job's next LLM call would pass its token or cost budget (``budgets`` in config).

    Not a ``ProviderError``: no fallback can help. ``partial`` carries what the job had produced
    before it stopped; ``trace`` the attempts so far.
    """

    kind = "budget_exceeded"

    def __init__(self, message: str, *, tier: str | None = None, partial: Any = None) -> None:
        self.tier = tier
        self.partial = partial
        super().__init__(message)
