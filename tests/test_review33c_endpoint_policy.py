"""The local endpoint holds a request's ``policy`` to RunPod's documented bounds: ``executionTimeout``
from 5000 ms and ``ttl`` from 10000 ms, both up to 7 days, refused with a 400 that names the field
and the limit (it took any from 1 ms); ``--relax-policy-limits`` (or
``$SWARM_ENDPOINT_RELAX_LIMITS=1``, ``Settings.policy_minimums=False``) lowers the minimums for
tests that watch a job time out. ``policy.lowPriority`` (RunPod: the job starts no worker) queues
the job behind every normal one; a value that is no boolean is refused by name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "rpa_REVIEW33CKEY0123456789012345"
FAST: dict[str, Any] = dict(endpoint_id="ep-c", api_key=KEY, take_hold_s=0.3, stop_hold_s=0.3, reap_interval_s=0.05)
WEEK_MS = 7 * 24 * 3600 * 1000


def _clients(server: EndpointServer) -> tuple[httpx.Client, httpx.Client]:
    base = f"{server.api_base}/ep-c"
    return (httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=10),
            httpx.Client(base_url=base, headers={"Authorization": KEY}, timeout=10))


@pytest.fixture
def strict() -> Iterator[EndpointServer]:
    with EndpointServer(Settings(**FAST)) as started:
        yield started


@pytest.mark.parametrize("route", ["/run", "/runsync?wait=1000"])
@pytest.mark.parametrize("key, least", [("executionTimeout", 5000), ("ttl", 10000)])
def test_a_policy_below_runpods_minimum_or_above_7_days_is_refused_by_name(
        strict: EndpointServer, route: str, key: str, least: int) -> None:
    client, _ = _clients(strict)
    for value in (300, least - 1, WEEK_MS + 1):
        response = client.post(route, json={"input": {}, "policy": {key: value}})
        assert response.status_code == 400, (value, response.text)
        error = response.json()["error"]
        assert f"policy.{key}" in error and str(least) in error and str(WEEK_MS) in error, error
    for value in (least, WEEK_MS):  # the bounds themselves are RunPod's: taken
        response = client.post("/run", json={"input": {}, "policy": {key: value}})
        assert response.status_code == 200 and response.json()["status"] == "IN_QUEUE", response.text


def test_relaxed_settings_take_a_short_timeout_and_still_refuse_more_than_7_days() -> None:
    with EndpointServer(Settings(**FAST, policy_minimums=False)) as server:
        client, _ = _clients(server)
        assert client.post("/run", json={"input": {}, "policy": {"executionTimeout": 300, "ttl": 200}}).status_code == 200
        response = client.post("/run", json={"input": {}, "policy": {"ttl": WEEK_MS + 1}})
        assert response.status_code == 400 and "policy.ttl" in response.json()["error"]


def test_a_low_priority_job_waits_behind_normal_ones(strict: EndpointServer) -> None:
    client, worker = _clients(strict)

    def submit(**policy: Any) -> str:
        response = client.post("/run", json={"input": {}, "policy": policy})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    low = submit(lowPriority=True)
    first, second = submit(), submit(lowPriority=False)
    taken = [worker.get("/job-take/w1", params={"gpu": "local"}).json()["id"] for _ in range(3)]
    assert taken == [first, second, low]
    response = client.post("/run", json={"input": {}, "policy": {"lowPriority": "yes"}})
    assert response.status_code == 400 and "policy.lowPriority" in response.json()["error"]


def test_the_environment_variable_relaxes_the_cli_endpoint() -> None:
    from conftest import free_port

    port = free_port()
    env = {**os.environ, "SWARM_LOG_LEVEL": "WARNING", "SWARM_ENDPOINT_RELAX_LIMITS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.endpoint", "serve", "--port", str(port), "--api-key", KEY, "--endpoint-id", "ep-c"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v2/ep-c", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                response = client.post("/run", json={"input": {}, "policy": {"executionTimeout": 300}})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the endpoint did not start"
                time.sleep(0.2)
        assert response.status_code == 200, response.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    usage = subprocess.run([sys.executable, "-m", "swarm.endpoint", "serve", "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60).stdout
    assert "--relax-policy-limits" in usage and "SWARM_ENDPOINT_RELAX_LIMITS" in usage
