"""A job whose JSON holds a lone UTF-16 surrogate (the JSON text ``"a\\ud800b"``: valid JSON, no
Unicode text) crashed the local endpoint's job-take with ``UnicodeEncodeError``, leaving the job
taken and unanswered; through the SDK loop it failed with pydantic's "unable to parse raw data as
a unicode string", naming the whole ``input`` for a surrogate in a field name. Now the endpoint
hands such a job on, as it came, and the worker refuses it by field path, in plain words."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings

SURROGATE_JOB = '{"input": {"project": "swarm", "action": "delegate", "input": {"task": "a\\ud800b"}}}'


@pytest.fixture
def bare_endpoint() -> Iterator[EndpointServer]:
    server = EndpointServer(Settings(endpoint_id="ep-surrogate", take_hold_s=0.3, stop_hold_s=0.3)).start()
    yield server
    server.stop()


def _client(server: EndpointServer, bearer: bool = True) -> httpx.Client:
    key = server.settings.api_key
    return httpx.Client(base_url=f"{server.api_base}/{server.settings.endpoint_id}",
                        headers={"Authorization": f"Bearer {key}" if bearer else key}, timeout=10)


@pytest.mark.parametrize("route", ["/run", "/runsync?wait=100"])
def test_the_endpoint_hands_a_lone_surrogate_to_the_worker_as_it_came(bare_endpoint: EndpointServer, route: str) -> None:
    client, worker = _client(bare_endpoint), _client(bare_endpoint, bearer=False)
    submitted = client.post(route, content=SURROGATE_JOB, headers={"Content-Type": "application/json"})
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["id"]
    taken = worker.get("/job-take/w1", params={"gpu": "local", "job_in_progress": "0"})
    assert taken.status_code == 200, taken.text  # was a 500 (UnicodeEncodeError) with the job taken
    assert taken.json() == {"id": job_id, "input": json.loads(SURROGATE_JOB)["input"]}
    # a worker's answer that echoes it back is readable too
    done = worker.post(f"/job-done/w1/{job_id}", params={"gpu": "local", "isStream": "false"},
                       content=json.dumps({"output": {"echo": "a\ud800b"}}))
    assert done.status_code == 200, done.text
    state = client.get(f"/status/{job_id}")
    assert state.status_code == 200 and state.json()["output"] == {"echo": "a\ud800b"}, state.text


@pytest.mark.parametrize(("job_input", "field", "message"), [
    ('{"task": "a\\ud800b"}', "input.task", "holds a lone surrogate (\\ud800) at character 1"),
    ('{"ta\\udc00sk": "x"}', "input.ta\\udc00sk", "the field name holds a lone surrogate (\\udc00) at character 2"),
    ('{"task": "t", "context": ["ok", "\\ud800"]}', "input.context[1]", "holds a lone surrogate (\\ud800) at character 0"),
])
async def test_the_dispatcher_names_the_field_that_holds_a_lone_surrogate(job_input: str, field: str, message: str) -> None:
    from swarm.dispatcher import dispatch

    async def never(job_id: str) -> Any:
        raise AssertionError("a refused job builds no context")

    job = json.loads(f'{{"project": "swarm", "action": "delegate", "input": {job_input}}}')
    result = await dispatch(job, never)
    assert result["status"] == "FAILED"
    assert result["error"] == {"type": "InputError", "field": field.removeprefix("input."),
                               "message": f"{field}: {message}; text must be valid Unicode"}
    assert (result["project"], result["action"]) == ("swarm", "delegate")
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # the answer itself is sendable text


async def test_a_surrogate_in_a_name_is_refused_and_not_echoed() -> None:
    from swarm.dispatcher import dispatch

    async def never(job_id: str) -> Any:
        raise AssertionError("a refused job builds no context")

    result = await dispatch(json.loads('{"project": "sw\\ud800", "action": "delegate", "input": {}}'), never)
    assert result["error"]["message"].startswith("job.project: holds a lone surrogate (\\ud800) at character 2")
    assert result["project"] is None and result["action"] == "delegate"


@pytest.fixture(scope="module")
def worker_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointServer]:
    import shipped_config

    home: Path = tmp_path_factory.mktemp("surrogate-home")
    config = shipped_config.with_local_model_at("http://127.0.0.1:9", warm=[])
    with shipped_config.worker_endpoint(home, shipped_config.write(home, config), "ep-surrogate-worker") as server:
        yield server


def test_the_real_worker_loop_fails_the_job_naming_the_field(worker_endpoint: EndpointServer) -> None:
    client = _client(worker_endpoint)
    submitted = client.post("/run", content=SURROGATE_JOB, headers={"Content-Type": "application/json"})
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 60
    while (state := client.get(f"/status/{job_id}").json())["status"] in {"IN_QUEUE", "IN_PROGRESS"}:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["status"] == "FAILED", state
    error = json.loads(state["error"])
    assert error["type"] == "InputError" and error["field"] == "task", error
    assert error["message"] == "input.task: holds a lone surrogate (\\ud800) at character 1; text must be valid Unicode"
