"""A RunPod job that no worker has taken yet says so, and the same local job id never pays twice.

The real local endpoint starts with no worker (a cold start, or an endpoint scaled to zero), so
each job stays IN_QUEUE; its store counts the jobs ``/run`` queued. A demo worker (the real SDK
worker loop, no models) is started once a test needs the job to finish.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm.cli import main
from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor

ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-u", "-m", "swarm.endpoint.demo_worker"]


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[EndpointServer]:
    server = EndpointServer(Settings(endpoint_id="ep-empty", take_hold_s=2, stop_hold_s=2), workers=0,
                            worker_command=DEMO, log_dir=tmp_path / "logs")
    with server:
        yield server


def _queued_jobs(server: EndpointServer) -> int:
    """How many jobs ``/run`` has queued on the endpoint (each one a paid job on RunPod)."""
    return int(server.call(lambda store: len(store.jobs)))


def _runner(server: EndpointServer) -> RunPodExecutor:
    """An executor as ``make_executor`` builds it: its records go under this test's SWARM_HOME."""
    return RunPodExecutor(server.api_base, server.settings.endpoint_id, server.settings.api_key, poll_interval_s=0.1)


def _recorder() -> tuple[list[str], Any]:
    said: list[str] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        said.append(f"[{stage}] {message}")

    return said, progress


#: the demo worker echoes the top-level ``echo`` of what it is sent
JOB = {"project": "demo", "action": "sleep", "input": {}, "echo": "hi", "job_id": "local-job-1"}


async def test_a_job_no_worker_has_taken_says_it_is_queued(endpoint: EndpointServer) -> None:
    said, progress = _recorder()
    envelope = await _runner(endpoint).run(dict(JOB), progress, wait_budget_s=1.0)

    assert envelope["status"] == "IN_QUEUE"
    assert any(line.startswith("[queued] queued on endpoint ep-empty, no worker has taken it yet (") for line in said), said
    assert envelope["error"]["type"] == "StillRunning"
    assert "run this job again with job id local-job-1 to follow it" in envelope["error"]["message"]


async def test_the_same_job_id_follows_the_queued_job_and_gets_its_result(endpoint: EndpointServer) -> None:
    runner = _runner(endpoint)
    first = await runner.run(dict(JOB), None, wait_budget_s=0.5)
    assert first["status"] == "IN_QUEUE" and _queued_jobs(endpoint) == 1

    said, progress = _recorder()
    again = await runner.run(dict(JOB), progress, wait_budget_s=0.5)
    assert again["status"] == "IN_QUEUE"
    assert _queued_jobs(endpoint) == 1  # nothing submitted a second time
    assert any("[queued]" in line for line in said)

    endpoint.pool.start(1, endpoint.url, endpoint.settings.endpoint_id, endpoint.settings.api_key)
    done = await runner.run(dict(JOB), None, wait_budget_s=60)
    assert done["status"] == "COMPLETED", done.get("error")
    assert done["output"]["echo"] == "hi"
    assert _queued_jobs(endpoint) == 1

    # a job the endpoint has no record of (its result expired, or it restarted) is submitted anew, and says so
    endpoint.call(lambda store: store.jobs.clear())
    said, progress = _recorder()
    anew = await runner.run(dict(JOB), progress, wait_budget_s=60)
    assert anew["status"] == "COMPLETED"
    assert any("is unknown to the endpoint now (its result expired, or the endpoint restarted since); submitting it anew"
               in line for line in said), said
    assert _queued_jobs(endpoint) == 1  # the store was emptied: this is the one new job

    # the same id with another input is no re-run: it is sent (for the worker to refuse)
    await runner.run({**JOB, "echo": "other"}, None, wait_budget_s=60)
    assert _queued_jobs(endpoint) == 2


def test_the_cli_run_again_with_the_job_id_follows_instead_of_resubmitting(
    endpoint: EndpointServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["runner"]["kind"] = "runpod"
    config["runner"]["runpod"].update(timeout_s=1, poll_interval_s=0.1)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("RUNPOD_API_BASE", endpoint.api_base)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", endpoint.settings.endpoint_id)
    monkeypatch.setenv("RUNPOD_API_KEY", endpoint.settings.api_key)

    argv = ["--config", str(path), "delegate", "hi there", "--job-id", "cli-job-7"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "queued on endpoint ep-empty, no worker has taken it yet" in err
    assert f"follow it with: swarm --config {path} run swarm delegate" in err and "--job-id cli-job-7" in err
    assert main(argv) == 1
    assert "queued on endpoint ep-empty" in capsys.readouterr().err
    assert _queued_jobs(endpoint) == 1
