"""``scripts/worker-image check --chaos``: a job survives the death of the worker running it.

Two containers of the image run as RunPod workers on one PostgreSQL (``SWARM_CHECKPOINTER_DSN``).
A delegation job is submitted through the endpoint's public API; once its draft node is
checkpointed and the review call is on the wire, the container running it is SIGKILLed
(``docker kill``). The endpoint notices the lost worker and fails the job; ``POST /retry``
queues it again under the same id, the other container takes it, reads the checkpoint and runs
only the review. The models are a loopback OpenAI-compatible server on the host (the same fake
the tests use), so "the draft is paid once" is counted at the wire, not inferred.

The containers use the host's network (``--network host``): PostgreSQL, the fake model server
and the endpoint listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from worker_check import Endpoint, container_env, job_passed, remove_containers, trace_summary
from worker_docker import ROOT, docker, say

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import Behaviour, FakeOpenAI, RecordedRequest  # noqa: E402  (tests/ is on sys.path only now)

LOCAL_ALIAS = "smollm2-135m-instruct"  # config.yaml's `local` model: what answers with no API key
DRAFT = "Checkpoints let another worker finish what a dead one started."
APPROVE = '{"approved": true, "score": 9, "issues": [], "suggestion": ""}'
JOB = {"project": "swarm", "action": "delegate",
       "input": {"task": "Write one sentence about durable jobs.", "kind": "bulk_content"}}


def _is_review(request: RecordedRequest) -> bool:
    return "response_format" in request.body  # the review asks for a JSON verdict; the draft does not


def start_postgres() -> tuple[str, dict[str, str]]:
    """``scripts/services start``: a private PostgreSQL on 127.0.0.1; (dsn, its exported vars)."""
    done = subprocess.run([str(ROOT / "scripts" / "services"), "start"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker-image: scripts/services start failed:\n{done.stderr[-2000:]}")
    exported = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines() if line.startswith("export "))
    exported = {key: value.strip("'") for key, value in exported.items()}
    return exported["SWARM_TEST_PG_DSN"], exported


def stop_postgres(exported: dict[str, str]) -> None:
    subprocess.run([str(ROOT / "scripts" / "services"), "stop"], env={**os.environ, **exported},
                   capture_output=True, check=False)


def checkpointed_state(dsn: str, job_id: str) -> dict[str, Any]:
    """The job's latest checkpoint in PostgreSQL, read with LangGraph's own saver: its channel
    values, plus ``_step`` and ``_next`` (the nodes still to run). Empty when there is none."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.errors import UndefinedTable

    with PostgresSaver.from_conn_string(dsn) as saver:
        try:
            found = saver.get_tuple({"configurable": {"thread_id": job_id, "checkpoint_ns": ""}})
        except UndefinedTable:
            return {}  # no worker has opened the store yet
    if found is None:
        return {}
    values = dict(found.checkpoint.get("channel_values") or {})
    values["_step"] = found.metadata.get("step")
    values["_next"] = [key.removeprefix("branch:to:") for key in values if str(key).startswith("branch:to:")]
    return values


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"worker-image: chaos: timed out after {timeout_s:.0f} s waiting for {what}")


def cmd_chaos(args: argparse.Namespace, logs: Path) -> int:
    dsn, exported = start_postgres()
    say(f"PostgreSQL for both workers: {dsn.rsplit('@', 1)[-1]} (scripts/services)")
    names = [f"swarm-chaos-{os.getpid()}-{i}" for i in (1, 2)]
    try:
        with FakeOpenAI() as models:
            endpoint = Endpoint("127.0.0.1", logs, worker_lost_s=4)
            try:
                return _chaos(args, endpoint, models, dsn, names)
            finally:
                remove_containers(names, logs)
                endpoint.close()
    finally:
        stop_postgres(exported)
        say(f"logs: {logs.relative_to(ROOT)}/")


def _chaos(args: argparse.Namespace, endpoint: Endpoint, models: FakeOpenAI, dsn: str, names: list[str]) -> int:
    extra = ["-e", f"SWARM_CHECKPOINTER_DSN={dsn}", "-e", f"SWARM_LOCAL_LLM_PORT={models.port}"]
    for name in names:
        docker("run", "-d", "--network", "host", "--name", name, *container_env(endpoint, name), *extra, args.image)
    say(f"2 workers of {args.image} on {endpoint.api}; models: the loopback fake on port {models.port}")
    # the draft answers; the first review hangs, so the job is caught between its two model calls
    models.script(LOCAL_ALIAS, Behaviour.answer(DRAFT), Behaviour.hang(600))
    job_id = endpoint.submit(JOB)
    reviews = lambda: [r for r in models.requests_for(LOCAL_ALIAS) if _is_review(r)]  # noqa: E731
    _wait(lambda: bool(reviews()), 300, "the job's review call (after its draft node)")
    victim = str(endpoint.status(job_id).get("workerId"))
    stored = checkpointed_state(dsn, job_id)
    say(f"job {job_id}: drafted on {victim}; its checkpoint in PostgreSQL: step {stored.get('_step')}, "
        f"drafted_by {stored.get('drafted_by')!r}, next {stored.get('_next')}, draft {str(stored.get('draft'))[:60]!r}")
    if stored.get("draft") != DRAFT:
        say("FAILED: the draft is not checkpointed in PostgreSQL while the review runs")
        return 1
    docker("kill", "-s", "KILL", victim)
    say(f"SIGKILLed {victim} while its review call was open")
    _wait(lambda: endpoint.status(job_id)["status"] == "FAILED", 60, "the endpoint to notice the lost worker")
    say(f"endpoint: {endpoint.status(job_id).get('error')}")
    models.script(LOCAL_ALIAS, Behaviour.answer(APPROVE))
    endpoint.client.post(f"{endpoint.api}/retry/{job_id}").raise_for_status()
    say(f"POST /retry/{job_id}")
    body, _ = endpoint.wait([job_id], args.timeout_s)[job_id]
    return report(body, models, victim)


def report(body: dict[str, Any], models: FakeOpenAI, victim: str) -> int:
    output = body.get("output") if isinstance(body.get("output"), dict) else {}
    sent = models.requests_for(LOCAL_ALIAS)
    drafts = [r for r in sent if not _is_review(r)]
    reviews = [r for r in sent if _is_review(r)]
    trace = output.get("trace") or []
    nodes = [s["step"] for s in trace if s.get("kind") == "node"]
    totals = output.get("totals") or {}
    print(f"\nretried job: {body['status']} on {body.get('workerId')} (retries: {body.get('retries', 0)})")
    print(f"  trace: {trace_summary(output)}")
    print(f"  model calls at the wire: {len(drafts)} draft, {len(reviews)} review (the first cut off by the kill)")
    print(f"  token totals: {totals.get('input_tokens')} in, {totals.get('output_tokens')} out, "
          f"{totals.get('provider_calls')} provider calls")
    checks = {
        "COMPLETED with its trace": job_passed(body),
        f"on the other worker (not {victim})": body.get("workerId") not in (None, victim),
        "the draft was paid once": len(drafts) == 1,
        "the review ran again": len(reviews) == 2,
        "the answer is the first worker's draft": (output.get("output") or {}).get("text") == DRAFT,
        "the trace holds draft and review once each": nodes.count("draft") == 1 and nodes.count("review") == 1,
    }
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not all(checks.values()):
        say("chaos FAILED")
        return 1
    say("chaos passed: the job resumed from its PostgreSQL checkpoint on the other worker without paying for the draft again")
    return 0
