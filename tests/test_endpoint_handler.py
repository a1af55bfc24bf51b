"""The project's own ``handler.py`` as a real runpod worker behind the local endpoint.

``python handler.py`` runs unmodified with the ``RUNPOD_WEBHOOK_*`` environment; its config
points the ``local`` model at a loopback fake OpenAI server, so a delegation job makes real
HTTP calls through litellm without a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipped_config
from fake_openai import FakeOpenAI

from swarm.endpoint.server import EndpointServer
from swarm.executors.runpod import RunPodExecutor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> Iterator[EndpointServer]:
    home = tmp_path_factory.mktemp("handler-home")
    # the image models' background warm-up is tests/test_handler_warm.py's
    config = shipped_config.with_local_model_at(fake_llm.url, warm=["llm"])
    config["providers"]["image"]["upscale"]["precision"] = "fp32"  # no per-machine decision in this test
    with shipped_config.worker_endpoint(home, shipped_config.write(home, config), "ep-handler") as server:
        yield server


def _runner(server: EndpointServer) -> RunPodExecutor:
    return RunPodExecutor(server.api_base, server.settings.endpoint_id, server.settings.api_key, poll_interval_s=0.2, timeout_s=120)


async def test_unknown_action_comes_back_as_a_clear_failed_envelope(endpoint: EndpointServer) -> None:
    envelope = await _runner(endpoint).run({"project": "swarm", "action": "nope", "input": {}})
    assert envelope["status"] == "FAILED"
    assert envelope["error"]["type"] == "InputError"
    assert "unknown action 'nope'" in envelope["error"]["message"] and "delegate" in envelope["error"]["message"]
    assert envelope["project"] == "swarm" and envelope["job_id"].endswith("-u1")
    assert "Traceback" not in str(envelope)
    # the worker's own trace came back in its error string (the endpoint, as the SDK's own API, drops a
    # FAILED job's ``output``)
    assert [step["provider"] for step in envelope["trace"]] == ["dispatcher", "runpod"]
    state = await _runner(endpoint).status(envelope["job_id"])
    assert state["status"] == "FAILED" and isinstance(state["error"], str), state
    assert json.loads(state["error"])["type"] == "InputError"


async def test_a_body_that_is_no_object_gets_a_whole_envelope_with_the_runpod_job_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import handler

    monkeypatch.setattr(handler, "_runtime", None)
    try:
        result = await handler.handler({"id": "rp-job-7", "input": "hello"})
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()
    assert result["status"] == "FAILED" and result["job_id"] == "rp-job-7"
    assert result["trace"] and result["trace"][-1]["provider"] == "dispatcher"
    error = json.loads(result["error"])
    carried = error.pop("envelope")  # the rest of the envelope, for an API that drops a FAILED job's output
    assert error == {"type": "InputError", "message": "job: must be an object with project, action and input, not str",
                     "field": "job"}
    assert carried["job_id"] == "rp-job-7" and carried["trace"] == result["trace"]


def test_for_runpod_sends_the_error_as_a_string_and_the_client_reads_all_of_it_back() -> None:
    from swarm.envelope import for_runpod
    from swarm.executors.runpod_envelope import worker_error

    attempts = [{"model": "deepseek", "outcome": "error"}]
    error = {"type": "AllProvidersFailed", "message": "every model failed", "attempts": attempts}
    sent = for_runpod({"status": "FAILED", "error": error, "trace": []})
    assert isinstance(sent["error"], str) and sent["trace"] == []
    assert worker_error(sent["error"]) == error
    assert for_runpod({"status": "COMPLETED", "error": None}) == {"status": "COMPLETED", "error": None}


async def test_malformed_job_is_refused_by_the_handler(endpoint: EndpointServer) -> None:
    envelope = await _runner(endpoint).run({"action": "delegate", "input": "not an object"})
    assert envelope["status"] == "FAILED"
    assert envelope["error"]["type"] == "InputError"
    assert "project" in envelope["error"]["message"]


async def test_delegation_runs_through_the_worker(endpoint: EndpointServer, fake_llm: FakeOpenAI) -> None:
    updates: list[Any] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        updates.append(stage)

    job = {"project": "swarm", "action": "delegate", "input": {"task": "Say hello.", "kind": "critical"}}
    envelope = await _runner(endpoint).run(job, progress)
    assert envelope["status"] == "COMPLETED", envelope["error"]
    assert envelope["output"]["text"].startswith("ok from")
    assert any(step.get("provider") == "local" and step.get("outcome") == "ok" for step in envelope["trace"])
    assert envelope["trace"][-1]["provider"] == "runpod"
    assert fake_llm.requests, "the worker never called the model server"


def test_the_worker_logs_each_line_once_and_never_the_job_input(tmp_path: Path) -> None:
    """``python handler.py`` as RunPod starts it: the SDK's DEBUG print of the job input (a signed
    URL here) is off by default, and its root handler does not write every line a second time."""
    import os
    import subprocess
    import sys

    signature = "X-Amz-Signature=deadbeefcafe0123456789abcdef"
    job = {"input": {"project": "swarm", "action": "nope", "input": {"url": f"https://b.s3.amazonaws.com/x.png?{signature}"}}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(SWARM_HOME=str(tmp_path), LITELLM_LOCAL_MODEL_COST_MAP="True")
    done = subprocess.run([sys.executable, "handler.py", "--test_input", json.dumps(job)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    out = done.stdout + done.stderr
    assert "unknown action 'nope'" in out, out
    assert signature not in out and "deadbeefcafe" not in out
    failed = [line for line in out.splitlines() if "failed: action: unknown action 'nope'" in line]
    assert len(failed) == 1 and failed[0].startswith("{"), failed  # one JSON line, no plain copy


def test_a_worker_with_a_bad_config_says_each_bad_key_once_and_exits_without_a_traceback(tmp_path: Path) -> None:
    """No job can run on it, so ``python handler.py`` stops at start, with the CLI's ``error:``
    message and status 2; it printed a traceback (``handler.main`` -> ``Runtime`` -> ``load_config``)."""
    import os
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    text = (ROOT / "config.yaml").read_text()
    config.write_text(text.replace('premium: ["claude-opus-5-5"]', "premium: []", 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(SWARM_HOME=str(tmp_path), SWARM_CONFIG=str(config), LITELLM_LOCAL_MODEL_COST_MAP="True")
    job = {"input": {"project": "swarm", "action": "delegate", "input": {"task": "hi"}}}
    done = subprocess.run([sys.executable, "handler.py", "--test_input", json.dumps(job)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: invalid config:\n"), done.stderr
    assert "providers.llm.tiers.premium: List should have at least 1 item" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


async def test_an_image_job_on_the_worker_lands_in_this_sides_storage(endpoint: EndpointServer, tmp_path: Path) -> None:
    """Both sides on local storage (the keyless default): the worker's ``file://`` URL is on its
    own disk, so the client asks for the image inline and stores it under the same key."""
    import base64
    import io

    from PIL import Image

    from providers.storage.local import LocalStorage

    mine = LocalStorage(tmp_path / "mine")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    runner = RunPodExecutor(endpoint.api_base, endpoint.settings.endpoint_id, endpoint.settings.api_key,
                            poll_interval_s=0.2, timeout_s=300, local_storage=lambda: mine)
    envelope = await runner.run({"project": "image_tools", "action": "upscale", "input": {"image": image}})
    assert envelope["status"] == "COMPLETED", envelope["error"]
    output = envelope["output"]
    assert "image_b64" not in output  # asked for by the client, not by the job
    assert output["url"] == await mine.url(output["image_key"])
    stored = Image.open(io.BytesIO(await mine.get(output["image_key"])))
    assert stored.size == (output["width"], output["height"]) == (32, 32)
    asked = await runner.run({"project": "image_tools", "action": "upscale", "input": {"image": image, "inline": True}})
    assert base64.b64decode(asked["output"]["image_b64"]) == await mine.get(asked["output"]["image_key"])
    # any other RunPod client: a worker on its own disk answers image jobs inline unless told otherwise
    raw = await _runner(endpoint).run({"project": "image_tools", "action": "upscale", "input": {"image": image}})
    assert Image.open(io.BytesIO(base64.b64decode(raw["output"]["image_b64"]))).size == (32, 32)
    told = await _runner(endpoint).run({"project": "image_tools", "action": "upscale", "input": {"image": image, "inline": False}})
    assert "image_b64" not in told["output"]


async def test_adopting_images_keeps_the_result_when_an_image_cannot_be_taken(tmp_path: Path) -> None:
    """Only images a worker kept on its own disk (``file:``) are adopted; bad base64 or a store
    that refuses leaves the worker's key and url with a note, never a FAILED job."""
    import base64

    from core.errors import ProviderUnavailable
    from providers.storage.local import LocalStorage

    class Refusing(LocalStorage):
        async def put(self, key, data, content_type=None, *, overwrite=True):  # type: ignore[no-untyped-def]
            raise ProviderUnavailable("local", "disk full")

    good = base64.b64encode(b"\x89PNG fake").decode()
    job = {"project": "image_tools", "action": "remove_background", "input": {"images": []}}

    def envelope() -> dict[str, Any]:
        return {"job_id": "j", "status": "COMPLETED", "output": {"results": [
            {"image_key": "a.png", "url": "file:///app/state/a.png", "image_b64": good},
            {"image_key": "b.png", "url": "https://bucket.s3.amazonaws.com/b.png", "image_b64": good},
            {"image_key": "c.png", "url": "file:///app/state/c.png", "image_b64": "not base64!"},
            {"image_key": "d.png", "url": "file:///app/state/d.png"},
        ]}}

    mine = LocalStorage(tmp_path / "mine")
    runner = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "k", local_storage=lambda: mine)
    a, b, c, d = (await runner.adopt_images(job, envelope()))["output"]["results"]
    assert await mine.get("a.png") == b"\x89PNG fake" and a["url"] == await mine.url("a.png") and "image_b64" not in a
    assert b["url"].startswith("https://bucket") and not await mine.exists("b.png")  # a store both sides reach
    assert c["url"] == "file:///app/state/c.png" and "Error" in c["note"] and not await mine.exists("c.png")
    assert "stays on the worker's disk" in d["note"]
    refusing = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "k", local_storage=lambda: Refusing(tmp_path / "r"))
    kept = (await refusing.adopt_images(job, envelope()))["output"]["results"][0]
    assert kept["url"] == "file:///app/state/a.png" and "ProviderUnavailable" in kept["note"]


    class Presigning(LocalStorage):
        """This side's storage is S3: its url is presigned, a credential."""

        async def url(self, key: str) -> str:
            return (f"http://127.0.0.1:9000/bucket/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                    "AKIAIOSFODNN7EXAMPLE%2F20261206%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=" + "d5" * 32)

    signed = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "k", local_storage=lambda: Presigning(tmp_path / "s"))
    adopted = (await signed.adopt_images(job, envelope()))["output"]["results"][0]
    assert adopted["url"] is None and adopted["url_note"].startswith("read swarm://artifacts/a.png"), adopted
    assert "X-Amz" not in json.dumps(adopted)


def test_worker_errors_keep_what_a_swarm_error_carries_and_a_swarm_job_that_lost_its_error_fails() -> None:
    from swarm.executors.runpod_envelope import worker_error

    raw = json.dumps({"type": "InputError", "message": "bad", "traceback": "File x.py, line 1", "field": "task"})
    assert worker_error(raw) == {"type": "InputError", "message": "bad", "field": "task"}
    runner = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "k")
    lost = runner.envelope({"project": "swarm", "action": "delegate", "input": {}}, "rp-1", {"id": "rp-1", "status": "COMPLETED"}, 0.0)
    assert lost["status"] == "FAILED" and lost["error"]["type"] == "WorkerError" and "older than this client" in lost["error"]["message"]
    other = runner.envelope({"anything": 1}, "rp-2", {"id": "rp-2", "status": "COMPLETED"}, 0.0)
    assert other["status"] == "COMPLETED"  # another handler may well answer nothing


async def test_a_body_job_id_sent_again_with_another_task_is_refused_by_the_worker(
    endpoint: EndpointServer, fake_llm: FakeOpenAI,
) -> None:
    """Two /run calls with the same body ``job_id`` and different tasks: the second came back
    COMPLETED with the first task's answer. The same task again still returns the stored result."""
    def job(task: str) -> dict[str, Any]:
        return {"project": "swarm", "action": "delegate", "job_id": "body-id-reused-1", "input": {"task": task, "kind": "critical"}}

    first = await _runner(endpoint).run(job("What is the capital of France?"))
    assert first["status"] == "COMPLETED", first["error"]
    calls = len(fake_llm.requests)
    other = await _runner(endpoint).run(job("Write a haiku about the sea."))
    assert other["status"] == "FAILED", other
    assert other["error"]["type"] == "InputError"
    assert other["error"]["message"] == (
        "job_id: 'body-id-reused-1' was used for another input; use a new job_id, or the same input to resume")
    assert [step["provider"] for step in other["trace"]] == ["dispatcher", "runpod"]
    again = await _runner(endpoint).run(job("What is the capital of France?"))
    assert again["status"] == "COMPLETED" and again["output"]["text"] == first["output"]["text"]
    assert len(fake_llm.requests) == calls  # neither paid for a model call



def test_a_test_input_that_is_no_json_object_is_one_line(tmp_path: Path) -> None:
    """The README's `python handler.py --test_input '<bad JSON>'` printed the SDK's JSONDecodeError traceback."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(SWARM_HOME=str(tmp_path), LITELLM_LOCAL_MODEL_COST_MAP="True")
    for given, said in (("{bad", "not valid JSON"), ('["a"]', "a JSON list, not an object")):
        done = subprocess.run([sys.executable, "handler.py", "--test_input", given], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2 and done.stderr.startswith(f"error: --test_input: {said}"), done.stderr
        assert "Traceback" not in done.stderr
