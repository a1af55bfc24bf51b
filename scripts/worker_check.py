"""``scripts/worker-image check``: the image as two real RunPod workers against a local endpoint.

``swarm endpoint serve`` runs on the host; the containers attach to it with ``RUNPOD_WEBHOOK_*``;
every action is submitted through the endpoint's public API and must COMPLETE with its trace. The
cold start of the containers is printed next to ``python handler.py`` started on the host.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from worker_docker import ROOT, _human, docker, ensure_daemon, have_image, say

sys.path.insert(0, str(ROOT))

from swarm.endpoint.workers import worker_env  # noqa: E402  (the project root is on sys.path only now)

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


# --- check --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: where containers reach the endpoint."""
    gateway = docker("network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}")
    return gateway or "172.17.0.1"


class Endpoint:
    """``swarm endpoint serve`` on the host, and a client of its public API."""

    def __init__(self, host: str, logs: Path, *, worker_lost_s: float = 30) -> None:
        self.host, self.port = host, free_port()
        self.endpoint_id, self.api_key = "ep-image-check", secrets.token_hex(16)
        self.base_url = f"http://{host}:{self.port}"
        self.api = f"{self.base_url}/v2/{self.endpoint_id}"
        self.client = httpx.Client(headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)
        self.log = (logs / "endpoint.log").open("wb")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "swarm"), "endpoint", "serve", "--host", host, "--port", str(self.port),
             "--endpoint-id", self.endpoint_id, "--api-key", self.api_key, "--worker-lost-s", str(worker_lost_s)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.client.get(f"{self.api}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"worker-image: the endpoint did not answer on {self.base_url}; see {self.log.name}")

    def submit(self, job: dict[str, Any]) -> str:
        reply = self.client.post(f"{self.api}/run", json={"input": job, "policy": {"executionTimeout": 600_000}})
        reply.raise_for_status()
        return str(reply.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        reply = self.client.get(f"{self.api}/status/{job_id}")
        reply.raise_for_status()
        return dict(reply.json())

    def wait(self, job_ids: list[str], timeout_s: float) -> dict[str, tuple[dict[str, Any], float]]:
        """Poll until every job is final: id -> (status body, when it was seen final)."""
        done: dict[str, tuple[dict[str, Any], float]] = {}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(job_ids) and time.monotonic() < deadline:
            for job_id in job_ids:
                if job_id not in done:
                    body = self.status(job_id)
                    if body["status"] in FINAL:
                        done[job_id] = (body, time.monotonic())
            time.sleep(0.1)
        for job_id in job_ids:
            done.setdefault(job_id, (self.status(job_id), time.monotonic()))
        return done

    def close(self) -> None:
        self.client.close()
        with _quiet():
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with _quiet():
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def check_jobs() -> list[tuple[str, dict[str, Any]]]:
    """Every action, plus the jobs RunPod's Hub runs (.runpod/tests.json)."""
    photo = base64.b64encode((ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg").read_bytes()).decode()
    jobs: list[tuple[str, dict[str, Any]]] = [
        (f"tests.json:{t['name']}", t["input"])
        for t in json.loads((ROOT / ".runpod" / "tests.json").read_text(encoding="utf-8"))["tests"]
    ]
    jobs += [
        ("delegate", {"project": "swarm", "action": "delegate", "input": {"task": "Say hello in three words.", "kind": "critical"}}),
        ("research", {"project": "swarm", "action": "research",
                      "input": {"question": "How does runpod-swarm checkpoint LangGraph jobs?", "depth": "quick", "max_sources": 3}}),
        ("upscale", {"project": "image_tools", "action": "upscale", "input": {"image": photo, "scale": 2}}),
        ("remove_background", {"project": "image_tools", "action": "remove_background", "input": {"image": photo}}),
        ("pipeline", {"project": "image_tools", "action": "pipeline", "input": {"image": photo, "scale": 2}}),
    ]
    return jobs


def trace_summary(output: Any) -> str:
    trace = output.get("trace") if isinstance(output, dict) else None
    if not trace:
        return "(no trace)"
    parts = [f"{s.get('step')}:{s.get('model') or s.get('provider') or '-'}:{s.get('outcome')}" for s in trace]
    return ", ".join(parts[:6]) + (f", ... ({len(parts)} steps)" if len(parts) > 6 else "")


def job_passed(body: dict[str, Any]) -> bool:
    output = body.get("output")
    return (body["status"] == "COMPLETED" and isinstance(output, dict) and output.get("status") == "COMPLETED"
            and bool(output.get("trace")))


def first_job_cold_start(endpoint: Endpoint, start: Any, job: dict[str, Any], timeout_s: float) -> tuple[float, dict[str, Any]]:
    """Seconds from ``start()`` (workers starting) to the first job COMPLETED, and its status."""
    started = time.monotonic()
    start()
    job_id = endpoint.submit(job)
    body, finished = endpoint.wait([job_id], timeout_s)[job_id]
    return finished - started, body


def host_anchor(endpoint: Endpoint, logs: Path, job: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``python handler.py`` on the host as a RunPod worker: its cold start on the same job."""
    home = Path(tempfile.mkdtemp(prefix="worker-anchor-"))
    env = {**os.environ, "RUNPOD_LOG_LEVEL": "INFO", "SWARM_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "SWARM_LOCAL_LLM_PORT": str(free_port()),
           **worker_env(endpoint.base_url, endpoint.endpoint_id, endpoint.api_key, "host-anchor")}
    log = (logs / "host-anchor.log").open("wb")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen([sys.executable, "-u", "handler.py"], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    try:
        return first_job_cold_start(endpoint, start, job, 300)
    finally:
        for proc in procs:
            with _quiet():
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            with _quiet():
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def container_env(endpoint: Endpoint, worker_id: str) -> list[str]:
    env = worker_env(endpoint.base_url, endpoint.endpoint_id, endpoint.api_key, worker_id)
    env["RUNPOD_LOG_LEVEL"] = "INFO"
    return [item for key, value in env.items() for item in ("-e", f"{key}={value}")]


def cmd_check(args: argparse.Namespace) -> int:
    ensure_daemon()
    if not have_image(args.image):
        sys.exit(f"worker-image: {args.image} does not exist; run scripts/worker-image build --variant cpu first")
    logs = ROOT / "build" / ("chaos-logs" if args.chaos else "check-logs")
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    if args.chaos:
        from worker_chaos import cmd_chaos

        return cmd_chaos(args, logs)
    endpoint = Endpoint(bridge_gateway(), logs)
    names = [f"swarm-check-{os.getpid()}-{i}" for i in (1, 2)]
    try:
        return _check(args, endpoint, names, logs)
    finally:
        remove_containers(names, logs)
        endpoint.close()
        say(f"logs: {logs.relative_to(ROOT)}/")


def remove_containers(names: list[str], logs: Path) -> None:
    """Keep each container's log in ``logs/<name>.log``, then remove it (gone or not)."""
    for name in names:
        with (logs / f"{name}.log").open("w", encoding="utf-8") as handle:
            subprocess.run(["docker", "logs", name], stdout=handle, stderr=subprocess.STDOUT, check=False)
        docker("rm", "-f", name, check=False)


def _check(args: argparse.Namespace, endpoint: Endpoint, names: list[str], logs: Path) -> int:
    jobs = check_jobs()
    first = jobs[0][1]
    say(f"endpoint {endpoint.api} (swarm endpoint serve on the host)")
    anchor_s, anchor = host_anchor(endpoint, logs, first)
    say(f"anchor: python handler.py on the host, start to first job done: {anchor_s:.1f} s ({anchor['status']})")

    def start_containers() -> None:
        for name in names:
            docker("run", "-d", "--name", name, *container_env(endpoint, name), args.image)

    cold_s, cold = first_job_cold_start(endpoint, start_containers, first, 600)
    say(f"cold start: 2 containers of {args.image}, docker run to first job done: {cold_s:.1f} s ({cold['status']})")
    submitted = {endpoint.submit(job): name for name, job in jobs}
    results = endpoint.wait(list(submitted), args.timeout_s)
    failures = 0
    print(f"\n{'job':48} {'status':10} {'worker':28} {'run s':>6}  trace")
    for job_id, name in submitted.items():
        body, _ = results[job_id]
        ok = job_passed(body)
        failures += not ok
        output = body.get("output")
        status = body["status"] if ok or not isinstance(output, dict) else f"{body['status']}/{output.get('status')}"
        print(f"{name:48} {status:10} {str(body.get('workerId')):28} {body.get('executionTime', 0) / 1000:6.1f}  {trace_summary(output)}")
        if not ok:
            error = output.get("error") if isinstance(output, dict) else None  # RunPod moves it out
            print(f"    {json.dumps(error or body.get('error'))[:400]}")
    print()
    doctor = subprocess.run(["docker", "exec", names[0], "swarm", "doctor", "--quick"], capture_output=True, text=True, check=False)
    say("swarm doctor --quick in the container:")
    print(doctor.stdout.rstrip() or doctor.stderr.rstrip())
    summary(args.image, anchor_s, cold_s)
    if failures or not (job_passed(cold) and job_passed(anchor)):
        say(f"FAILED: {failures} of {len(submitted)} jobs did not COMPLETE with a trace")
        return 1
    say(f"passed: {len(submitted)} jobs COMPLETED with their traces on {len({results[j][0].get('workerId') for j in submitted})} workers")
    return 0


def summary(image: str, anchor_s: float, cold_s: float) -> None:
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image))
    record_file = ROOT / "build" / f"worker-image-{image.rsplit(':', 1)[-1]}.json"
    build_s = json.loads(record_file.read_text(encoding="utf-8"))["build_s"] if record_file.exists() else None
    say(f"image {image}: size {_human(size)}, last build time " + (f"{build_s:.0f} s" if build_s else "unknown"))
    say(f"cold start (start to first job done): container {cold_s:.1f} s, host handler.py {anchor_s:.1f} s "
        f"(ratio {cold_s / anchor_s:.2f})")
