"""Provider keys set on the client reach the RunPod worker, for that job only (core/credentials.py).

The real local endpoint runs the project's own ``handler.py`` as a runpod worker (our logs and the
SDK's at DEBUG, into files); its config points the DeepSeek models and the local one at a loopback
fake OpenAI server that records each request's Authorization header. The worker's environment
holds no provider key (conftest.py removes them before any worker starts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipped_config
import yaml
from fake_openai import FakeOpenAI, RefusedPort

from core.config import load_config
from core.credentials import client_credentials, provider_credential_names
from swarm.endpoint.server import EndpointServer
from swarm.executors import make_executor
from swarm.executors.runpod import FINAL_STATES, RunPodExecutor
from swarm.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
CLIENT_KEY = "sk-CLIENTFORWARDED0123456789"
WORKER_KEY = "sk-WORKEROWNKEY9876543210"
TASK = "Explain what a circuit breaker does."


def _write_config(folder: Path, fake_url: str, **runpod: Any) -> Path:
    """The project's config with DeepSeek and the local model on the fake server."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for name in ("deepseek-v3.1-q8", "deepseek-v3.1-q4"):
        config["models"][name].update(litellm_model="openai/deepseek-fake", api_base=f"{fake_url}/v1")
    local = config["models"]["local"]
    local.update(litellm_model="openai/local-fake", api_base=f"{fake_url}/v1")
    local.pop("local_server", None)
    config["worker"]["warm"] = ["llm"]
    config["runner"]["runpod"].update(runpod)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> Iterator[EndpointServer]:
    home = tmp_path_factory.mktemp("worker-home")
    assert not os.environ.get("DEEPSEEK_API_KEY")  # the worker inherits this process's environment
    with shipped_config.worker_endpoint(home, _write_config(home, fake_llm.url), "ep-keys",
                                        RUNPOD_LOG_LEVEL="DEBUG", SWARM_LOG_LEVEL="DEBUG") as server:
        yield server


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, endpoint: EndpointServer) -> None:
    """The client's shell: the endpoint's settings and a DeepSeek key, nothing else."""
    monkeypatch.setenv("RUNPOD_API_BASE", endpoint.api_base)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", endpoint.settings.endpoint_id)
    monkeypatch.setenv("RUNPOD_API_KEY", endpoint.settings.api_key)
    monkeypatch.setenv("DEEPSEEK_API_KEY", CLIENT_KEY)


async def _submit_and_wait(runner: Any, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """RunPod's job id and the job's envelope, as the CLI and the MCP server get them."""
    started = time.perf_counter()
    job_id = await runner.submit(job)
    for _ in range(600):
        state = await runner.status(job_id)
        if state.get("status") in FINAL_STATES:
            return job_id, runner.envelope(job, job_id, state, started)
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _step(envelope: dict[str, Any], provider: str) -> dict[str, Any]:
    return next(step for step in envelope["trace"] if step.get("provider") == provider)


def _files_holding(folder: Path, text: str) -> list[str]:
    return [str(path) for path in folder.rglob("*") if path.is_file() and text.encode() in path.read_bytes()]


@pytest.mark.usefixtures("client_env")
async def test_a_key_set_on_the_client_runs_the_job_on_the_worker_and_stays_out_of_everything_kept(
    tmp_path: Path, endpoint: EndpointServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.reset()
    runtime = Runtime(_write_config(tmp_path / "client", fake_llm.url))
    runner = make_executor(runtime.config, runtime)  # what `swarm delegate` and swarm-mcp use
    job = {"project": "swarm", "action": "delegate", "input": {"task": TASK, "kind": "critical"}, "job_id": "keys-1"}
    try:
        runpod_id, envelope = await _submit_and_wait(runner, job)
    finally:
        await runtime.aclose()
    assert envelope["status"] == "COMPLETED", envelope["error"]
    # sent with the job under the reserved field: only the keys config names, never the RunPod key
    assert endpoint.store is not None
    assert endpoint.store.get(runpod_id).input["_credentials"] == {"DEEPSEEK_API_KEY": CLIENT_KEY}
    assert "_credentials" not in job  # the caller's job (which the MCP server stores) is left alone
    calls = fake_llm.requests_for("deepseek-fake")
    assert calls and {call.headers.get("authorization") for call in calls} == {f"Bearer {CLIENT_KEY}"}
    assert not fake_llm.requests_for("local-fake")  # not the local model, as the reviewer saw
    assert "credentials from the client: DEEPSEEK_API_KEY" in _step(envelope, "dispatcher")["detail"]
    skipped = {step["model"]: step["detail"] for step in envelope["trace"] if step.get("outcome") == "skipped"}
    assert skipped.get("claude-opus-5-5") == "ANTHROPIC_API_KEY is not set on this worker and the client did not send it"
    # the value is in no result, log or stored file of the worker (its logs ran at DEBUG)
    assert CLIENT_KEY not in json.dumps(envelope)
    assert CLIENT_KEY not in json.dumps(await runner.status(runpod_id))
    assert endpoint.pool.log_dir is not None
    home = endpoint.pool.log_dir.parent
    await asyncio.sleep(0.5)  # the worker's last lines for this job
    logs = "".join(path.read_text(errors="replace") for path in (home / "logs").glob("*.log"))
    assert "keys-1" in logs and "DEBUG" in logs  # the logs do cover this job, verbosely
    assert _files_holding(home, CLIENT_KEY) == []
    assert list(home.glob("checkpoints.sqlite*"))  # the job was checkpointed (and the key is not there)


@pytest.mark.usefixtures("client_env")
async def test_forward_credentials_false_sends_none(tmp_path: Path, endpoint: EndpointServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.reset()
    runtime = Runtime(_write_config(tmp_path / "client", fake_llm.url, forward_credentials=False))
    runner = make_executor(runtime.config, runtime)
    job = {"project": "swarm", "action": "delegate", "input": {"task": TASK, "kind": "critical"}, "job_id": "keys-off"}
    try:
        runpod_id, envelope = await _submit_and_wait(runner, job)
    finally:
        await runtime.aclose()
    assert endpoint.store is not None
    assert "_credentials" not in endpoint.store.get(runpod_id).input
    assert envelope["status"] == "COMPLETED", envelope["error"]
    assert not fake_llm.requests_for("deepseek-fake") and fake_llm.requests_for("local-fake")
    skipped = {step["model"]: step["detail"] for step in envelope["trace"] if step.get("outcome") == "skipped"}
    assert skipped["deepseek-v3.1-q8"] == "DEEPSEEK_API_KEY is not set on this worker and the client did not send it"
    assert "credentials" not in (_step(envelope, "dispatcher")["detail"] or "")


async def _handler_run(job: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``handler.handler`` in this process, with a runtime of its own (the worker's config)."""
    import handler

    monkeypatch.setattr(handler, "_runtime", None)
    try:
        return await handler.handler(job)
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()


async def test_jobs_running_at_once_each_use_their_own_clients_key_and_keep_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI
) -> None:
    import handler

    fake_llm.reset()
    monkeypatch.setenv("SWARM_CONFIG", str(_write_config(tmp_path, fake_llm.url)))
    monkeypatch.setattr(handler, "_runtime", None)
    keys = {"alpha": "sk-ALPHACLIENTKEY0000001", "beta": "sk-BETACLIENTKEY00000002"}

    def job(name: str, credentials: dict[str, str]) -> dict[str, Any]:
        task = {"task": f"Task {name}: {TASK}", "kind": "critical"}
        return {"id": f"rp-{name}", "input": {"project": "swarm", "action": "delegate", "input": task, "_credentials": credentials}}

    try:  # one worker, one runtime, the two jobs at once (worker.concurrency)
        results = await asyncio.gather(*(handler.handler(job(name, {"DEEPSEEK_API_KEY": key})) for name, key in keys.items()))
        after = await handler.handler(job("after", {}))  # a later client that sent no key
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()
    assert [result["status"] for result in results] == ["COMPLETED", "COMPLETED"]
    for name, key in keys.items():
        sent = {call.headers.get("authorization") for call in fake_llm.requests_for("deepseek-fake")
                if f"Task {name}:" in json.dumps(call.body)}
        assert sent == {f"Bearer {key}"}, name
    assert not [call for call in fake_llm.requests_for("deepseek-fake") if "Task after:" in json.dumps(call.body)]
    skipped = {step["model"]: step["detail"] for step in after["trace"] if step.get("outcome") == "skipped"}
    assert skipped["deepseek-v3.1-q8"] == "DEEPSEEK_API_KEY is not set on this worker and the client did not send it"


async def test_a_clients_wrong_key_opens_the_circuit_for_that_key_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI
) -> None:
    """One worker runtime serves every client: the 401s of a client whose forwarded key is wrong
    open DeepSeek's circuit for that key; another client's good key still reaches DeepSeek."""
    import handler

    fake_llm.reset()
    good, bad = "sk-GOODCLIENTKEY00000001", "sk-WRONGCLIENTKEY0000002"
    monkeypatch.setattr(fake_llm, "chat_keys", {"deepseek-fake": {good}})
    monkeypatch.setenv("SWARM_CONFIG", str(_write_config(tmp_path, fake_llm.url)))
    monkeypatch.setattr(handler, "_runtime", None)

    def job(n: int, key: str) -> dict[str, Any]:
        task = {"task": f"Task {n}: {TASK}", "kind": "critical"}
        return {"id": f"rp-circuit-{n}", "input": {"project": "swarm", "action": "delegate", "input": task,
                                                   "_credentials": {"DEEPSEEK_API_KEY": key}}}

    try:
        wrong = [await handler.handler(job(n, bad)) for n in range(4)]  # past the failure threshold (3)
        right = await handler.handler(job(9, good))
        board = handler._runtime.circuits.snapshot() if handler._runtime is not None else {}
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()
    last = {step["model"]: step for step in wrong[-1]["trace"] if step.get("model") == "deepseek-v3.1-q8"}
    assert last["deepseek-v3.1-q8"]["outcome"] == "skipped" and "circuit open" in last["deepseek-v3.1-q8"]["detail"]
    answered = [step for step in right["trace"] if step.get("model") == "deepseek-v3.1-q8"]
    assert right["status"] == "COMPLETED" and [s["outcome"] for s in answered] == ["ok"], right["trace"]
    assert board.get("deepseek-v3.1-q8", {}).get("state", "closed") == "closed"  # the worker's own circuit
    opened = [name for name, c in board.items() if c["state"] == "open"]
    assert "deepseek-v3.1-q8 (client key " in " ".join(opened), board
    assert all(name.startswith("deepseek-v3.1-q") and "(client key " in name for name in opened), board
    assert bad not in json.dumps(board) and good not in json.dumps(board)


async def test_the_workers_own_key_wins_and_unknown_names_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI
) -> None:
    fake_llm.reset()
    monkeypatch.setenv("SWARM_CONFIG", str(_write_config(tmp_path, fake_llm.url)))
    monkeypatch.setenv("DEEPSEEK_API_KEY", WORKER_KEY)  # the endpoint owner's
    body = {"project": "swarm", "action": "delegate", "input": {"task": TASK, "kind": "critical"},
            "_credentials": {"DEEPSEEK_API_KEY": CLIENT_KEY, "SOME_OTHER_API_KEY": "sk-NOTUSEDANYWHERE123"}}
    job = {"id": "rp-own-1", "input": body}
    result = await _handler_run(job, monkeypatch)
    assert result["status"] == "COMPLETED", result["error"]
    assert "_credentials" not in job["input"]  # out of the SDK's own copy, before the job ran
    calls = fake_llm.requests_for("deepseek-fake")
    assert calls and {call.headers.get("authorization") for call in calls} == {f"Bearer {WORKER_KEY}"}
    detail = _step(result, "dispatcher")["detail"]
    assert "the worker's own kept over the client's: DEEPSEEK_API_KEY" in detail
    assert "1 forwarded name(s) this worker's config does not use, ignored" in detail
    assert "credentials from the client" not in detail
    assert "SOME_OTHER_API_KEY" not in json.dumps(result) and CLIENT_KEY not in json.dumps(result)


@pytest.mark.parametrize(("forwarded", "field", "problem"), [
    ({"DEEPSEEK_API_KEY": 1234567890}, "_credentials.DEEPSEEK_API_KEY", "must be a string, not int"),
    ({"DEEPSEEK_API_KEY": "sk-" + "x" * 5000}, "_credentials.DEEPSEEK_API_KEY", "over the limit of 4096"),
    ("sk-JUSTAKEYNOOBJECT12345", "_credentials", "must be an object"),
])
async def test_a_bad_forwarded_value_fails_the_job_naming_the_field_not_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI, forwarded: Any, field: str, problem: str
) -> None:
    fake_llm.reset()
    monkeypatch.setenv("SWARM_CONFIG", str(_write_config(tmp_path, fake_llm.url)))
    body = {"project": "swarm", "action": "delegate", "input": {"task": TASK}, "_credentials": forwarded}
    result = await _handler_run({"id": "rp-bad-1", "input": body}, monkeypatch)
    assert result["status"] == "FAILED" and result["job_id"] == "rp-bad-1"
    error = json.loads(result["error"])
    assert error["type"] == "InputError"
    assert error["message"].startswith(f"{field}: ") and problem in error["message"]
    assert "1234567890" not in result["error"] and "xxxxxxxx" not in result["error"] and "NOOBJECT" not in result["error"]
    assert not fake_llm.requests  # no provider was called


async def test_a_search_key_from_the_client_reaches_that_jobs_search_only(tmp_path: Path) -> None:
    from search_fake_servers import serve

    from core.credentials import JobCredentials, credentials_scope

    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    with serve() as tavily:
        config["providers"]["search"].update(default="tavily", fallback_chain=["tavily"])
        config["providers"]["search"]["backends"]["tavily"]["base_url"] = tavily.url
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        runtime = Runtime(path)
        try:
            forwarded = runtime.job_credentials({"TAVILY_API_KEY": "tvly-CLIENTSEARCHKEY123"})
            with credentials_scope(forwarded):
                ctx = await runtime.context("search-job")
            results = await ctx.providers.search.search("checkpoints", 2)
            shared = (await runtime.context("another-job")).providers.search
            with credentials_scope(JobCredentials()):
                assert (await runtime.context("remote-no-keys")).providers.search is shared
        finally:
            await runtime.aclose()
    assert results and tavily.requests[-1]["headers"]["Authorization"] == "Bearer tvly-CLIENTSEARCHKEY123"
    assert ctx.providers.llm is (await _shared_llm(runtime))  # everything else stays shared


async def _shared_llm(runtime: Runtime) -> Any:
    return runtime.providers(runtime.config).llm


def test_the_forwarded_names_come_from_config_and_never_include_the_runpod_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    # a self-hosted model on a RunPod vLLM endpoint may well take the RunPod key: it stays here
    config["models"]["deepseek-v3.1-q4"]["api_key_env"] = "RUNPOD_API_KEY"
    config["models"]["gemini-2.5-flash-lite"]["api_key_env"] = "MY_GEMINI_CREDENTIAL"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(path)
    assert provider_credential_names(loaded, path) == {"DEEPSEEK_API_KEY", "MY_GEMINI_CREDENTIAL",
                                                       "ANTHROPIC_API_KEY", "TAVILY_API_KEY"}
    for name, value in {"RUNPOD_API_KEY": "rpa_SHOULDSTAYHERE12345", "MY_GEMINI_CREDENTIAL": "AIzaGEMINIKEY1234",
                        "SEARXNG_URL": "http://127.0.0.1:9", "DEEPSEEK_API_BASE": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    assert client_credentials(loaded, path) == {"MY_GEMINI_CREDENTIAL": "AIzaGEMINIKEY1234"}
    # a value too short to be a key stays here too: the worker refused every job for it, where the
    # same setup run locally fell back past that model
    monkeypatch.setenv("ANTHROPIC_API_KEY", "abcd")
    with caplog.at_level(logging.WARNING, logger="core.credentials"):
        assert client_credentials(loaded, path) == {"MY_GEMINI_CREDENTIAL": "AIzaGEMINIKEY1234"}
    assert "not sent to the RunPod worker: ANTHROPIC_API_KEY (shorter than 6" in caplog.text and "abcd" not in caplog.text


async def test_a_refused_submit_keeps_the_job_id_the_caller_was_shown() -> None:
    with RefusedPort() as refused:
        runner = RunPodExecutor(f"{refused.url}/v2", "ep", "rpa_KEY", max_retries=0)
        envelope = await runner.run({"project": "swarm", "action": "delegate", "input": {"task": "hi"}, "job_id": "local-7"})
    assert envelope["status"] == "FAILED" and envelope["job_id"] == "local-7"
    assert envelope["error"]["type"] == "ProviderUnavailable"
    step = _step(envelope, "runpod")
    assert "None" not in step["detail"] and "not queued" in step["detail"]


def test_the_cli_prints_the_same_job_id_when_runpod_refuses_the_submit(endpoint: EndpointServer, tmp_path: Path) -> None:
    env = {**os.environ, "RUNPOD_API_BASE": endpoint.api_base, "RUNPOD_ENDPOINT_ID": endpoint.settings.endpoint_id,
           "RUNPOD_API_KEY": "rpa_WRONGKEY0123456789012345", "SWARM_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "swarm.cli", "delegate", "hi"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    out = done.stdout + done.stderr
    started = next(line for line in out.splitlines() if line.endswith(": started"))
    job_id = started.removeprefix("job ").removesuffix(": started")
    assert f"job {job_id}: FAILED" in out and "job None" not in out, out


def test_a_forwarded_key_is_named_by_a_salted_fingerprint_and_the_workers_own_by_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.credentials import JobCredentials, credential_holder, credentials_scope

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    assert credential_holder("DEEPSEEK_API_KEY") is None and credential_holder(None) is None
    one, other = JobCredentials(values={"DEEPSEEK_API_KEY": CLIENT_KEY}), JobCredentials(values={"DEEPSEEK_API_KEY": WORKER_KEY})
    with credentials_scope(one):
        first = credential_holder("DEEPSEEK_API_KEY")
        assert credential_holder("GEMINI_API_KEY") is None  # not forwarded
    with credentials_scope(JobCredentials(values={"DEEPSEEK_API_KEY": CLIENT_KEY})):
        assert credential_holder("DEEPSEEK_API_KEY") == first  # the same key, another job: one circuit
    with credentials_scope(other):
        assert credential_holder("DEEPSEEK_API_KEY") not in (None, first)
    assert first is not None and first.startswith("client key ") and CLIENT_KEY[3:13] not in first
    monkeypatch.setenv("DEEPSEEK_API_KEY", WORKER_KEY)
    with credentials_scope(one):
        assert credential_holder("DEEPSEEK_API_KEY") is None  # the worker's own key wins: its own circuit


async def test_an_image_job_carries_no_provider_key() -> None:
    """An upscale went with DEEPSEEK_API_KEY into RunPod's input retention, though no image job
    calls a model or a search backend (walkthrough)."""
    from test_runpod_dropped import ScriptedEndpoint

    server = ScriptedEndpoint({"run": [(0, 200, {"id": "rp-1", "status": "IN_QUEUE"})]})
    try:
        runner = RunPodExecutor(server.url, "ep", "rpa_KEY0123456789abcdef", credentials=lambda: {"DEEPSEEK_API_KEY": "sk-x0123456789abcdef"})
        await runner.submit({"project": "image_tools", "action": "upscale", "input": {"key": "a.png"}})
        await runner.submit({"project": "swarm", "action": "delegate", "input": {"task": "hi"}})
    finally:
        server.close()
    image, delegate = (body["input"] for body in server.bodies)
    assert "_credentials" not in json.dumps(image) and "sk-x0123456789abcdef" not in json.dumps(image)
    assert "sk-x0123456789abcdef" in json.dumps(delegate)


def test_a_refused_config_edit_does_not_change_which_keys_are_forwarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit refused for a typo still named a new secret (``AWS_SECRET_ACCESS_KEY``), which the
    next RunPod job forwarded while the last good config served; broken YAML forwarded none."""
    import time as _time

    from core.config import ConfigStore

    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    store = ConfigStore(path)
    for name, value in {"DEEPSEEK_API_KEY": "sk-deepseek-0123456789", "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789"}.items():
        monkeypatch.setenv(name, value)
    before = client_credentials(store.current(), store)
    assert "DEEPSEEK_API_KEY" in before and "AWS_SECRET_ACCESS_KEY" not in before
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["models"]["z1"] = {"litellm_model": "openai/z", "family": "deepseek", "api_key_env": "AWS_SECRET_ACCESS_KEY",
                              "timeout_z": 5}  # the typo: the edit is refused
    _time.sleep(0.01)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert client_credentials(store.current(), store) == before and store.last_error
    path.write_text("models: [unclosed", encoding="utf-8")  # YAML that does not parse: the good config's keys still go
    assert client_credentials(store.current(), store) == before


def test_an_accepted_config_edit_changes_which_keys_are_forwarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names the config in force takes keys from follow an accepted edit: a model added with
    its own ``api_key_env`` has that key forwarded, and the edit that removes it stops it (names
    kept from the file first loaded forwarded a key no model used any more, and never a new one)."""
    import time as _time

    from core.config import ConfigStore

    path = tmp_path / "config.yaml"
    original = (ROOT / "config.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    store = ConfigStore(path)
    for name, value in {"DEEPSEEK_API_KEY": "sk-deepseek-0123456789", "MY_NEW_CRED": "new-cred-0123456789"}.items():
        monkeypatch.setenv(name, value)
    before = client_credentials(store.current(), store)
    assert "DEEPSEEK_API_KEY" in before and "MY_NEW_CRED" not in before
    config = yaml.safe_load(original)
    config["models"]["z1"] = {"litellm_model": "openai/z", "family": "deepseek", "api_key_env": "MY_NEW_CRED"}
    _time.sleep(0.01)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert client_credentials(store.current(), store) == {**before, "MY_NEW_CRED": "new-cred-0123456789"}
    assert store.last_error is None and store.version == 1
    assert "MY_NEW_CRED" in store.credential_names()["models"]
    _time.sleep(0.01)
    path.write_text(original, encoding="utf-8")  # the model removed again: its key stays here
    assert client_credentials(store.current(), store) == before
    assert store.version == 2 and "MY_NEW_CRED" not in store.credential_names()["models"]
