"""A failed job's envelope (its trace, partial output, totals, job id) reaches the client whether
or not RunPod's answer keeps a FAILED job's ``output``.

The SDK's worker loop (``runpod.serverless.modules.rp_job.run_job``) takes the handler's ``error``
string out of the result and sends the rest as ``output``; the SDK's own local API
(``python handler.py --rp_serve_api``) then answers a FAILED job with ``{id, status, error}``
only. Here the project's real ``handler.py`` runs under that API, and the answer goes through the
client's reader (``RunPodExecutor.envelope``), as an MCP server's RunPod runner reads a job's end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import shipped_config
from fake_openai import RefusedPort, free_port

from swarm.envelope import for_runpod
from swarm.executors.runpod import RunPodExecutor

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-deepseek-key-never-shown-0000"
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi.", "kind": "critical"}}
#: what a swarm handler's failed job answers besides the error: a partial answer, its attempts
PARTIAL = {"project": "swarm", "action": "delegate", "status": "FAILED", "job_id": "job-7",
           "output": {"text": "half an ans", "partial": True}, "totals": {"llm_calls": 2},
           "trace": [{"step": "draft", "kind": "llm", "provider": "deepseek", "outcome": "error"},
                     {"step": "dispatch", "kind": "node", "provider": "dispatcher", "outcome": "error"}],
           "error": {"type": "AllProvidersFailed", "message": "every backend failed: deepseek: error", "attempts": []}}


@pytest.fixture
def sdk_api(tmp_path: Path) -> Iterator[str]:
    """``python handler.py --rp_serve_api``: the SDK's own local API around the real handler, its
    models on a port that refuses connections, so a delegation fails after real attempts."""
    with RefusedPort() as refused:
        path = shipped_config.write(tmp_path, shipped_config.with_local_model_at(refused.url))
        env = {key: value for key, value in os.environ.items() if not key.endswith("_API_KEY")}
        env.update(SWARM_CONFIG=str(path), SWARM_HOME=str(tmp_path / "home"), LITELLM_LOCAL_MODEL_COST_MAP="True",
                   RUNPOD_LOG_LEVEL="INFO", DEEPSEEK_API_KEY=KEY, DEEPSEEK_API_BASE=f"{refused.url}/v1")
        port = free_port()
        log = (tmp_path / "worker.log").open("w")
        proc = subprocess.Popen([sys.executable, "handler.py", "--rp_serve_api", "--rp_api_port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/docs", timeout=2).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the SDK's API did not start"
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()


def test_the_sdks_api_drops_a_failed_jobs_output_and_the_client_still_gets_its_trace(sdk_api: str) -> None:
    answer = httpx.post(f"{sdk_api}/runsync", json={"input": JOB}, timeout=120).json()
    # what the SDK's loop made of the handler's result: the error string alone, no output
    assert answer["status"] == "FAILED" and set(answer) == {"id", "status", "error"}, answer
    assert isinstance(answer["error"], str)

    envelope = RunPodExecutor("http://127.0.0.1:9/v2", "local-api", "k").envelope(
        JOB, answer["id"], answer, time.perf_counter())
    assert envelope["status"] == "FAILED" and envelope["error"]["type"] == "AllProvidersFailed"
    assert envelope["project"] == "swarm" and envelope["action"] == "delegate"
    assert envelope["job_id"] == answer["id"]
    steps = [(s["provider"], s["outcome"]) for s in envelope["trace"]]
    # the worker's own attempts and dispatch step, then this side's runpod step
    assert ("deepseek", "error") in steps and ("local", "error") in steps, steps
    assert steps[-2:] == [("dispatcher", "error"), ("runpod", "error")], steps
    # deepseek-v3.1-q8, then local (the shipped draft chain; gemini and claude skipped: no key)
    assert envelope["totals"]["provider_calls"] == 2, envelope["totals"]
    said = json.dumps(answer) + json.dumps(envelope)
    assert KEY not in said and "Traceback" not in said


@pytest.mark.parametrize("output_kept", [True, False], ids=["output kept", "output dropped"])
def test_a_failed_job_reads_the_same_whether_runpod_keeps_its_output_or_not(output_kept: bool) -> None:
    sent = for_runpod(dict(PARTIAL))
    error = sent.pop("error")
    state: dict[str, Any] = {"id": "rp-1", "status": "FAILED", "error": error}
    if output_kept:
        state["output"] = sent  # what the SDK's loop sends as ``output``
    envelope = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "k").envelope(
        {"project": "swarm", "action": "delegate", "input": {}}, "rp-1", state, time.perf_counter())
    assert envelope["job_id"] == "job-7" and envelope["output"] == PARTIAL["output"]
    assert envelope["totals"] == PARTIAL["totals"]
    assert [s["provider"] for s in envelope["trace"]] == ["deepseek", "dispatcher", "runpod"]
    assert envelope["error"] == PARTIAL["error"]  # the carried envelope is no part of the error
