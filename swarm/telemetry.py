"""A finished job's trace exported as OpenTelemetry spans (the logs live in ``swarm.logs``).

When ``observability.otlp_endpoint`` is set, ``export_job(result, config)`` turns the trace of a
finished job into spans after the fact (explicit start and end times from each step's ``at`` and
``latency_ms``): one ``swarm.job`` root span, one span per graph node, one per provider attempt,
with the OpenTelemetry GenAI semantic-convention attributes. The provider layer stays untouched,
and nothing of OpenTelemetry is imported unless an endpoint is configured.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from graphs.context import EARLIER_STEPS, step_identity
from swarm.envelope import totals_of

if TYPE_CHECKING:
    from core.config import SwarmConfig
    from graphs.context import JobContext

log = logging.getLogger("swarm.telemetry")

#: litellm's provider prefix -> ``gen_ai.provider.name`` (well-known values of the semconv).
GENAI_PROVIDER = {
    "anthropic": "anthropic",
    "openai": "openai",
    "deepseek": "deepseek",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "xai": "x_ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
}
#: TraceStep.kind -> ``gen_ai.operation.name`` where the semconv has one.
GENAI_OPERATION = {"llm": "chat"}

_providers_lock = threading.Lock()
_tracer_providers: dict[str, Any] = {}
_override: Any = None


def use_tracer_provider(provider: Any) -> None:
    """Send spans to ``provider`` instead of an OTLP exporter (tests; ``None`` undoes it)."""
    global _override
    _override = provider


def _otlp_url(endpoint: str) -> str:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL; the HTTP trace exporter wants the full path."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _tracer(endpoint: str) -> Any:
    if _override is not None:
        return _override.get_tracer("swarm")
    with _providers_lock:
        provider = _tracer_providers.get(endpoint)
        if provider is None:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor
            except ModuleNotFoundError as exc:
                from core.errors import ConfigError

                raise ConfigError(
                    f"needs OpenTelemetry ({exc.name} is missing): pip install opentelemetry-sdk"
                    " opentelemetry-exporter-otlp-proto-http, or unset it",
                    key="observability.otlp_endpoint",
                ) from None
            provider = TracerProvider(resource=Resource.create({"service.name": "runpod-swarm"}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_otlp_url(endpoint))))
            _tracer_providers[endpoint] = provider
    return provider.get_tracer("swarm")


def shutdown_tracing() -> None:
    """Flush and close every OTLP exporter this process opened (call at worker exit)."""
    with _providers_lock:
        for provider in _tracer_providers.values():
            provider.shutdown()
        _tracer_providers.clear()


def _ns(iso: str | None, fallback_ns: int) -> int:
    if not iso:
        return fallback_ns
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return fallback_ns
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def _span_times(step: dict[str, Any], fallback_ns: int) -> tuple[int, int]:
    end = _ns(step.get("at"), fallback_ns)
    return end - int(float(step.get("latency_ms") or 0) * 1e6), end


def _provider_attributes(step: dict[str, Any], config: SwarmConfig | None) -> dict[str, Any]:
    spec = config.models.get(step.get("model") or "") if config is not None else None
    attrs: dict[str, Any] = {}
    if spec is not None:
        prefix, _, upstream = spec.litellm_model.partition("/")
        attrs["gen_ai.provider.name"] = "llama_cpp" if spec.local_server else GENAI_PROVIDER.get(prefix, prefix)
        attrs["gen_ai.request.model"] = upstream or spec.litellm_model
    else:
        attrs["gen_ai.provider.name"] = step.get("provider") or "unknown"
        if step.get("model"):
            attrs["gen_ai.request.model"] = step["model"]
    return attrs


def _step_attributes(step: dict[str, Any], config: SwarmConfig | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "swarm.step": step.get("step") or "",
        "swarm.kind": step.get("kind") or "",
        "swarm.outcome": step.get("outcome") or "ok",
        "swarm.attempt": int(step.get("attempt") or 1),
    }
    if step.get("provider"):
        attrs["swarm.provider"] = step["provider"]
    if step.get("model"):
        attrs["swarm.model"] = step["model"]
    if step.get("cost_usd") is not None:
        attrs["swarm.cost_usd"] = float(step["cost_usd"])
    if step.get("detail"):
        attrs["swarm.detail"] = str(step["detail"])[:500]
    if step.get("error_class"):
        attrs["error.type"] = step["error_class"]
    if step.get("kind") != "node":
        operation = GENAI_OPERATION.get(step.get("kind") or "")
        if operation:
            attrs["gen_ai.operation.name"] = operation
            attrs.update(_provider_attributes(step, config))
            attrs["gen_ai.usage.input_tokens"] = int(step.get("input_tokens") or 0)
            attrs["gen_ai.usage.output_tokens"] = int(step.get("output_tokens") or 0)
    return attrs


def _span_name(step: dict[str, Any], attrs: dict[str, Any]) -> str:
    if step.get("kind") == "node":
        return f"swarm.node {step.get('step')}"
    operation = attrs.get("gen_ai.operation.name")
    if operation:
        return f"{operation} {attrs.get('gen_ai.request.model') or step.get('model') or ''}".strip()
    return f"{step.get('kind')} {step.get('provider') or step.get('step')}".strip()


def _group_by_node(trace: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """(node step, its provider attempts): a node's attempts are the non-node steps just before it.

    Attempts with no node after them (a node that failed midway) stand alone under the root.
    """
    groups: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    pending: list[dict[str, Any]] = []
    for step in trace:
        if step.get("kind") == "node":
            if step.get("step") == "dispatch" and step.get("provider") == "dispatcher":
                continue
            groups.append((step, pending))
            pending = []
        else:
            pending.append(step)
    if pending:
        groups.append((None, pending))
    return groups


def _set_status(span: Any, step: dict[str, Any]) -> None:
    from opentelemetry.trace import Status, StatusCode

    if step.get("outcome") == "error":
        span.set_status(Status(StatusCode.ERROR, step.get("error_class") or "error"))


def export_job(result: dict[str, Any], config: SwarmConfig | None, content: dict[Any, Any] | None = None,
               earlier_steps: set[tuple[Any, ...]] | None = None) -> None:
    """Export one finished job's envelope as spans, when ``observability.otlp_endpoint`` is set.

    Args:
        result: the (redacted) envelope ``dispatch`` returns.
        config: the job's config; ``None`` (the job never got a context) uses only an override.
        content: ``{(step, at): {"input": [...], "output": "..."}}`` message content recorded
            during the job; used only when ``observability.capture_content`` is on.
        earlier_steps: the identities of the steps a resumed or replayed job's earlier runs made
            (``graphs.run.EARLIER_STEPS``): exported with those runs, left out here and counted.
    """
    if config is None or not config.observability.otlp_endpoint:
        return
    tracer = _tracer(config.observability.otlp_endpoint)
    recorded = content if config.observability.capture_content and content else None
    from opentelemetry import trace as otel_trace

    trace = list(result.get("trace") or [])
    now = int(datetime.now(UTC).timestamp() * 1e9)
    job_step = next((s for s in reversed(trace) if s.get("step") == "dispatch" and s.get("kind") == "node"), None)
    if job_step is not None:
        job_start, job_end = _span_times(job_step, now)
    else:
        job_end = now
        job_start = now - int(float(result.get("elapsed_ms") or 0) * 1e6)
    # a resumed job's trace holds its earlier runs' steps (and a replayed one only those): they were
    # exported with those runs, and a backend adding up usage counted each call two or three times
    earlier = [s for s in trace if step_identity(s) in (earlier_steps or ())]
    if earlier:
        kept = [s for s in trace if not any(s is e for e in earlier)]
        result = {**result, "totals": totals_of(kept), "trace": kept}
        trace = kept
    root = _root_span(tracer, result, job_start)
    if earlier:
        root.set_attribute("swarm.job.steps_from_earlier_runs", len(earlier))
    root_ctx = otel_trace.set_span_in_context(root)
    for node, attempts in _group_by_node(trace):
        _export_node(tracer, root_ctx, node, attempts, config, recorded, now)
    root.end(end_time=max(job_end, job_start))


def _root_span(tracer: Any, result: dict[str, Any], start: int) -> Any:
    """The ``swarm.job`` span: the job's names, status, token and cost totals, error type."""
    root_attrs: dict[str, Any] = {
        "swarm.job.id": str(result.get("job_id") or ""),
        "swarm.job.project": str(result.get("project") or ""),
        "swarm.job.action": str(result.get("action") or ""),
        "swarm.job.status": str(result.get("status") or ""),
    }
    totals = result.get("totals") or {}
    root_attrs["gen_ai.usage.input_tokens"] = int(totals.get("input_tokens") or 0)
    root_attrs["gen_ai.usage.output_tokens"] = int(totals.get("output_tokens") or 0)
    if totals.get("cost_usd") is not None:
        root_attrs["swarm.cost_usd"] = float(totals["cost_usd"])
    error = result.get("error") or {}
    if error.get("type"):
        root_attrs["error.type"] = error["type"]
    root = tracer.start_span("swarm.job", start_time=start, attributes=root_attrs)
    if error:
        from opentelemetry.trace import Status, StatusCode

        root.set_status(Status(StatusCode.ERROR, str(error.get("type"))))
    return root


def _export_node(tracer: Any, root_ctx: Any, node: dict[str, Any] | None, attempts: list[dict[str, Any]],
                 config: SwarmConfig, content: dict[Any, Any] | None, now: int) -> None:
    """One node's span (when there is a node) with a child span per provider attempt."""
    from opentelemetry import trace as otel_trace

    parent_ctx = root_ctx
    node_span = None
    node_start = node_end = 0
    if node is not None:
        node_start, node_end = _span_times(node, now)
        node_start = min([node_start, *(_span_times(a, now)[0] for a in attempts)])
        attrs = _step_attributes(node, config)
        node_span = tracer.start_span(_span_name(node, attrs), context=root_ctx, start_time=node_start,
                                      attributes=attrs)
        _set_status(node_span, node)
        parent_ctx = otel_trace.set_span_in_context(node_span)
    for step in attempts:
        start, end_attempt = _span_times(step, now)
        attrs = _step_attributes(step, config)
        recorded = content.get((step.get("step"), step.get("at"))) if content else None
        if recorded:
            from core.redact import redact

            attrs["gen_ai.input.messages"] = redact(json.dumps(recorded["input"], ensure_ascii=False))
            attrs["gen_ai.output.messages"] = redact(json.dumps(recorded["output"], ensure_ascii=False))
        span = tracer.start_span(_span_name(step, attrs), context=parent_ctx, start_time=start, attributes=attrs)
        _set_status(span, step)
        span.end(end_time=max(end_attempt, start))
    if node_span is not None:
        node_span.end(end_time=max(node_end, node_start))


def export_job_spans(result: dict[str, Any], ctx: JobContext | None, fallback: SwarmConfig | None = None) -> None:
    """``export_job`` for ``dispatch``: content from the job's meter; a failing export is logged, not raised.
    A job that never got a context (its store would not open) exports with ``fallback``, the process's config."""
    config = ctx.config if ctx is not None else fallback
    if config is None or not config.observability.otlp_endpoint:
        return
    extras = ctx.extras if ctx is not None else {}
    meter = extras.get("job_meter")
    try:
        export_job(result, config, getattr(meter, "content", None), extras.get(EARLIER_STEPS))
    except Exception as exc:  # the job is done; its telemetry must not turn it into a failure
        log.warning("could not export the spans of job %s: %s", result.get("job_id"), exc)
