"""Hostile input: every action's input schema fuzzed through the dispatcher (hypothesis).

A job ends in a result or a clean error naming the field, never an InternalError, an exception
out of ``dispatch`` or a hang. CI runs 200 jobs; ``python -m bench.bench_fuzz`` runs 10,000.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import bench_fuzz


def test_every_registered_action_is_fuzzed() -> None:
    names = {f"{p}/{a}" for p, a, _ in bench_fuzz.actions()}
    assert {"swarm/delegate", "swarm/research"} <= names


def test_fuzzed_jobs_end_in_a_result_or_a_clean_error() -> None:
    report = bench_fuzz.run(200)
    assert report["examples"] >= 200
    assert any(k.startswith("FAILED:InputError") for k in report["outcomes"])  # bad input was generated
    assert any(k.startswith("COMPLETED") for k in report["outcomes"])  # and some good input too


@pytest.mark.parametrize("raw", [
    None, [], "job", 7, {"project": "swarm"}, {"project": ["swarm"], "action": {"x": 1}},
    {"project": "swarm", "action": "delegate", "input": {"task": "x" * 20_001}},
    {"project": "swarm", "action": "delegate", "input": {"task": "hi", "tier": "ultra"}},
    {"project": "swarm", "action": "delegate", "input": {"task": "hi", "kind": "__proto__"}},
    {"project": "swarm", "action": "research", "input": {"question": "q", "max_sources": 10**30}},
    {"project": "swarm", "action": "research", "input": {"question": "q", "backends": ["../../etc"]}},
    {"project": "swarm", "action": "delegate", "input": {"task": "hi"}, "job_id": "../../x"},
    {"project": "image_tools", "action": "upscale", "input": {"image": "not base64 !!!"}},
    {"project": "image_tools", "action": "upscale", "input": {"key": "../../etc/passwd"}},
    {"project": "image_tools", "action": "upscale", "input": {"url": "http://169.254.169.254/"}},
    {"project": "swarm", "action": "delegate", "input": {"task": "\u202e" * 50}},  # invisible only: says nothing
])
def test_known_hostile_jobs(raw: Any) -> None:
    result = asyncio.run(bench_fuzz.check_job(raw, bench_fuzz.make_fuzz_context()))
    assert result["status"] == "FAILED" and result["error"]["type"] == "InputError", result["error"]


@pytest.mark.parametrize("task", ["\x00" * 10, "${DEEPSEEK_API_KEY}", "\u202e" + "txet" * 12, "{{7*7}} %s %n"])
def test_odd_but_valid_tasks_run(task: str) -> None:
    raw = {"project": "swarm", "action": "delegate", "input": {"task": task, "kind": "critical"}}
    result = asyncio.run(bench_fuzz.check_job(raw, bench_fuzz.make_fuzz_context()))
    assert result["status"] == "COMPLETED"


@pytest.mark.parametrize("field", ["idempotencykey", "jobid"])
def test_an_unknown_top_level_job_field_is_refused_by_name(field: str) -> None:
    """A typo in a job's own fields (``idempotencykey`` for ``idempotency_key``) is refused naming
    it: a job that ignored it ran without the key its caller sent, and a retry ran it twice."""
    raw = {"project": "swarm", "action": "delegate", "input": {"task": "hi"}, field: "retry-7"}
    result = asyncio.run(bench_fuzz.check_job(raw, bench_fuzz.make_fuzz_context()))
    assert result["status"] == "FAILED" and result["error"]["type"] == "InputError", result["error"]
    assert result["error"]["field"] == field and result["error"]["message"].startswith(f"job.{field}: "), result["error"]
