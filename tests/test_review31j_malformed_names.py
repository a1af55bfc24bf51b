"""A job whose ``input`` is malformed (a string, null) is refused, and its FAILED envelope still
names the project and action the client gave: they came back ``null``, as if the job had named
none, and a client sorting failures by action lost them."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.mark.parametrize("given", ["hello", None, [1, 2]])
async def test_a_malformed_input_keeps_the_jobs_project_and_action(monkeypatch: pytest.MonkeyPatch, given: Any) -> None:
    import handler

    monkeypatch.setattr(handler, "_runtime", None)
    try:
        result = await handler.handler({"id": "rp-job-9", "input": {"project": "swarm", "action": "delegate", "input": given}})
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()
    error = json.loads(result["error"])
    assert error["type"] == "InputError" and error["field"] == "input", error
    assert (result["project"], result["action"]) == ("swarm", "delegate"), result
    assert (error["envelope"]["project"], error["envelope"]["action"]) == ("swarm", "delegate")


async def test_a_name_no_job_may_carry_is_not_echoed(make_context: Any) -> None:
    from providers.testing import FakeLLM
    from swarm.dispatcher import dispatch

    result = await dispatch({"project": "p" * 10_000, "action": 7, "input": {}}, make_context(FakeLLM(["x"])))
    assert result["error"]["type"] == "InputError"
    assert result["project"] is None and result["action"] is None
