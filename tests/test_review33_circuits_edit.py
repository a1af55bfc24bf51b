"""A config edit that redefines a model closes every circuit of it: the one a client's forwarded
key has too (``"<model> (<holder>)"``, the router's name for a call with that key). Only the
model's own was closed, so a job with a client's key kept skipping the fixed model as "circuit
open" for up to an hour after a ``ModelNotServed``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from test_review32q_hot_reload_doctor import KEY, _config


def test_an_edit_closes_the_circuits_a_clients_key_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.runtime import Runtime

    monkeypatch.setenv("REVIEW32Q_KEY", KEY)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "say hi", "kind": "critical"}}

    async def scenario(fake: FakeOpenAI) -> None:
        runtime = Runtime(str(_config(tmp_path, f"{fake.url}/v1")))
        try:
            assert (await runtime.run(job))["status"] == "COMPLETED"
            for name in ("fa", "fa (client-abc)", "fab"):
                runtime.circuits.record_failure(name, "not served", lasting=True)
            assert runtime.circuits.of_model("fa") == ["fa", "fa (client-abc)"]
            _config(tmp_path, f"{fake.url}/v1/")  # the model redefined (another api_base)
            assert (await runtime.run(job))["status"] == "COMPLETED"
            assert [runtime.circuits.state(n) for n in ("fa", "fa (client-abc)", "fab")] == ["closed", "closed", "open"]
        finally:
            await runtime.aclose()

    with FakeOpenAI() as fake:
        asyncio.run(scenario(fake))
