"""A skipped step's ``skip`` (why, for a program: ``providers.base.SkipKind``) reaches an MCP client:
the output model of a trace step dropped it, so a client read the reason only from English text."""

from __future__ import annotations

from mcp_server.outputs import TraceStepOut
from providers.base import TraceStep


def test_a_skipped_steps_kind_is_in_the_tool_output() -> None:
    step = TraceStep(step="write", kind="llm", provider="local", model="local", latency_ms=0.0,
                     outcome="skipped", skip="stopped", detail="not asked: its report would be quoted over")
    out = TraceStepOut.model_validate(step.model_dump(mode="json"))
    assert out.skip == "stopped" and out.detail == step.detail
    assert "skip" in TraceStepOut.model_json_schema()["properties"]
