"""A job's trace exported as OpenTelemetry spans (GenAI semconv), checked with an in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from core.config import load_config
from providers.base import LLMConfig, Message
from providers.testing import FakeLLM, FunctionLLM
from swarm import telemetry
from swarm.dispatcher import dispatch

APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Write two lines about rivers."}, "job_id": "job-otel-1"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry.use_tracer_provider(provider)
    yield memory
    telemetry.use_tracer_provider(None)


def config_with(**observability_section: Any) -> Any:
    base = load_config(ROOT / "config.yaml")
    section = base.observability.model_copy(update=observability_section)
    return base.model_copy(update={"observability": section})


def by_name(spans: Any) -> dict[str, Any]:
    return {span.name: span for span in spans}


async def test_delegation_job_becomes_root_node_and_chat_spans(exporter: InMemorySpanExporter, make_context: Any) -> None:
    cfg = config_with(otlp_endpoint="http://127.0.0.1:4318")
    result = await dispatch(dict(JOB), make_context(FakeLLM(["a draft", APPROVE], model="deepseek-v3.1-q8"), config=cfg))
    assert result["status"] == "COMPLETED", result["error"]
    spans = exporter.get_finished_spans()
    names = sorted(span.name for span in spans)
    assert names == ["chat deepseek-flash", "chat deepseek-flash", "swarm.job", "swarm.node draft", "swarm.node review"]
    root = by_name(spans)["swarm.job"]
    assert root.parent is None
    assert root.attributes["swarm.job.id"] == "job-otel-1"
    assert root.attributes["swarm.job.status"] == "COMPLETED"
    assert root.attributes["swarm.job.project"] == "swarm" and root.attributes["swarm.job.action"] == "delegate"
    nodes = {s.name: s for s in spans if s.name.startswith("swarm.node")}
    for node in nodes.values():
        assert node.parent.span_id == root.context.span_id
        assert node.context.trace_id == root.context.trace_id
    chats = [s for s in spans if s.name.startswith("chat")]
    parents = {chat.parent.span_id for chat in chats}
    assert parents == {nodes["swarm.node draft"].context.span_id, nodes["swarm.node review"].context.span_id}
    draft_chat = next(c for c in chats if c.parent.span_id == nodes["swarm.node draft"].context.span_id)
    attrs = draft_chat.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "deepseek"
    assert attrs["gen_ai.request.model"] == "deepseek-flash"
    assert attrs["gen_ai.usage.input_tokens"] == result["trace"][0]["input_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert "gen_ai.input.messages" not in attrs  # content only when opted in
    # times come from the trace: a child lies inside its parent
    assert root.start_time <= draft_chat.start_time <= draft_chat.end_time <= root.end_time


async def test_failed_attempt_sets_error_type_and_status(exporter: InMemorySpanExporter, make_context: Any) -> None:
    from core.errors import AllProvidersFailed
    from providers.base import TraceStep

    def answer(messages: list[Message], config: LLMConfig) -> str:
        raise AllProvidersFailed("llm", [TraceStep(step="draft", provider="claude", model="claude-sonnet-5-5",
                                                   outcome="error", error_class="ProviderUnavailable")])

    cfg = config_with(otlp_endpoint="http://127.0.0.1:4318")
    result = await dispatch(dict(JOB), make_context(FunctionLLM(answer), config=cfg))
    assert result["status"] == "FAILED"
    spans = by_name(exporter.get_finished_spans())
    root, attempt = spans["swarm.job"], spans["chat claude-sonnet-5-5"]
    assert root.status.status_code == StatusCode.ERROR and root.attributes["error.type"] == "AllProvidersFailed"
    assert attempt.attributes["error.type"] == "ProviderUnavailable"
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.status.status_code == StatusCode.ERROR
    assert attempt.parent.span_id == root.context.span_id  # no node finished: it hangs off the job


async def test_content_only_when_captured_and_redacted(exporter: InMemorySpanExporter, make_context: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "sk-secretvalue-1234567890")
    cfg = config_with(otlp_endpoint="http://127.0.0.1:4318", capture_content=True)
    job = {**JOB, "input": {"task": "Summarise: key sk-secretvalue-1234567890", "kind": "critical"}}
    await dispatch(job, make_context(FakeLLM(["the answer"], model="claude-sonnet-5-5"), config=cfg))
    chat = by_name(exporter.get_finished_spans())["chat claude-sonnet-5-5"]
    assert "Summarise" in chat.attributes["gen_ai.input.messages"]
    assert "the answer" in chat.attributes["gen_ai.output.messages"]
    assert "sk-secretvalue" not in chat.attributes["gen_ai.input.messages"]


async def test_no_endpoint_no_spans(exporter: InMemorySpanExporter, make_context: Any) -> None:
    result = await dispatch(dict(JOB), make_context(FakeLLM(["a draft", APPROVE])))
    assert result["status"] == "COMPLETED"
    assert exporter.get_finished_spans() == ()


async def test_real_otlp_http_exporter_posts_to_a_loopback_collector(make_context: Any) -> None:
    """The shipped OTLP/HTTP path end to end: protobuf spans reach a collector on 127.0.0.1."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = config_with(otlp_endpoint=f"http://127.0.0.1:{server.server_address[1]}")
        job = {**JOB, "input": {"task": "hi", "kind": "critical"}}
        result = await dispatch(job, make_context(FakeLLM(["ok"], model="claude-sonnet-5-5"), config=cfg))
        assert result["status"] == "COMPLETED"
        telemetry.shutdown_tracing()  # flushes the batch processor
    finally:
        server.shutdown()
        server.server_close()
    assert received and received[0][0] == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(received[0][1])
    spans = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert sorted(span.name for span in spans) == ["chat claude-sonnet-5-5", "swarm.job", "swarm.node draft"]
    service = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert service["service.name"] == "runpod-swarm"


def test_opentelemetry_is_imported_only_when_an_endpoint_is_set() -> None:
    import subprocess
    import sys

    code = (
        "import sys, swarm.dispatcher, swarm.logs, swarm.telemetry, graphs.budget;"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('opentelemetry')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_replayed_job_exports_no_earlier_call_again(exporter: InMemorySpanExporter, make_context: Any) -> None:
    """A finished job given its id again (and a resumed one) exported the earlier run's chat spans
    again as a new trace: a backend adding up gen_ai.usage counted each call twice."""
    cfg = config_with(otlp_endpoint="http://127.0.0.1:4318")
    make = make_context(FakeLLM(["a draft", APPROVE], model="deepseek-v3.1-q8"), config=cfg)
    first = await dispatch(dict(JOB), make)
    assert first["status"] == "COMPLETED", first["error"]
    exporter.clear()
    again = await dispatch(dict(JOB), make)
    assert again["status"] == "COMPLETED" and again["output"]["text"] == first["output"]["text"]
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["swarm.job"], [s.name for s in spans]
    root = spans[0]
    assert root.attributes["gen_ai.usage.input_tokens"] == 0 and root.attributes["swarm.job.steps_from_earlier_runs"] >= 4


async def test_a_job_whose_store_would_not_open_still_exports_its_span(exporter: InMemorySpanExporter) -> None:
    """A job that failed before it had a context (PostgreSQL unreachable when its checkpoint store
    opened) exported nothing: the one failure an operator most needs to see was missing."""
    from core.errors import ProviderUnavailable

    cfg = config_with(otlp_endpoint="http://127.0.0.1:4318")

    async def no_store(job_id: str) -> Any:
        raise ProviderUnavailable("checkpointer", "the checkpoint store at db:5432 is unreachable")

    result = await dispatch(dict(JOB), no_store, telemetry_config=cfg)
    assert result["status"] == "FAILED" and result["error"]["type"] == "ProviderUnavailable"
    root = by_name(exporter.get_finished_spans())["swarm.job"]
    assert root.attributes["swarm.job.id"] == "job-otel-1"
    assert root.attributes["swarm.job.status"] == "FAILED"
    assert root.status.status_code == StatusCode.ERROR and root.attributes["error.type"] == "ProviderUnavailable"
    exporter.clear()
    await dispatch(dict(JOB), no_store)  # a caller that names no config: nothing to export with
    assert exporter.get_finished_spans() == ()


async def test_a_cancelled_job_exports_the_steps_it_finished(exporter: InMemorySpanExporter, make_context: Any) -> None:
    """A job cancelled midway (an MCP client's cancel) exported no span, though its draft was paid for."""
    import asyncio

    cfg = config_with(otlp_endpoint="http://127.0.0.1:4318")
    reviewing = asyncio.Event()

    async def answer(messages: list[Message], config: LLMConfig) -> Any:
        if "review" in messages[0].content.lower() or len(messages) > 2:
            reviewing.set()
            await asyncio.sleep(30)
        return "a draft"

    job = asyncio.create_task(dispatch(dict(JOB), make_context(FunctionLLM(answer, model="deepseek-v3.1-q8"), config=cfg)))
    await asyncio.wait_for(reviewing.wait(), 10)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    spans = by_name(exporter.get_finished_spans())
    root = spans["swarm.job"]
    assert root.attributes["swarm.job.status"] == "CANCELLED"
    assert root.status.status_code == StatusCode.ERROR and root.attributes["error.type"] == "JobCancelled"
    assert spans["swarm.node draft"].parent.span_id == root.context.span_id
    assert spans["chat deepseek-flash"].attributes["gen_ai.usage.output_tokens"] > 0  # the paid draft
