"""Ctrl-C in ``swarm delegate``: the real CLI in a subprocess, litellm against a loopback fake server.

A Ctrl-C printed a ~158-line ``KeyboardInterrupt`` traceback, exited by the signal and never
named the job id, so the draft it had checkpointed could not be resumed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipped_config
from fake_openai import Behaviour, FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "smollm2-135m-instruct"  # what config.yaml's ``local`` model sends as its name
APPROVE = '{"approved": true, "score": 9, "issues": [], "suggestion": ""}'
CLI = [sys.executable, "-m", "swarm.cli"]


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _ctrl_c_heard() -> None:
    """In the child, Ctrl-C is heard as from a terminal: a shell starts a background command
    (``pytest &``, a CI runner's) with SIGINT ignored, and the CLI would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli_env(tmp_path: Path, fake_llm: FakeOpenAI) -> tuple[Path, dict[str, str]]:
    """The project's config with ``bulk_content`` drafted and reviewed by ``local`` (the fake)."""
    config = shipped_config.with_local_model_at(fake_llm.url)
    config["routing"]["delegation"]["bulk_content"] = {"primary": "local", "reviewer": "local"}
    config["runner"]["kind"] = "local"
    path = shipped_config.write(tmp_path, config)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RUNPOD_")}
    env.update(SWARM_HOME=str(tmp_path / "home"), LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
    return path, env


def _reviews(fake: FakeOpenAI) -> int:
    return sum("response_format" in r.body for r in fake.requests_for(LOCAL))


def _drafts(fake: FakeOpenAI) -> int:
    return sum("response_format" not in r.body for r in fake.requests_for(LOCAL))


def _in_review(cli_env: tuple[Path, dict[str, str]], fake_llm: FakeOpenAI, task: str) -> subprocess.Popen[str]:
    """``swarm delegate task`` started, once its draft is done (and checkpointed) and its review hangs."""
    config, env = cli_env
    fake_llm.script(LOCAL, Behaviour.answer("The kept draft."), Behaviour.hang(300))
    proc = subprocess.Popen([*CLI, "--config", str(config), "delegate", task], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_heard)
    deadline = time.monotonic() + 180
    while _reviews(fake_llm) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the draft is checkpointed before the review starts
    assert _reviews(fake_llm) == 1 and _drafts(fake_llm) == 1, proc.poll()
    return proc


def _cli(argv: list[str]) -> list[str]:
    """A printed ``swarm ...`` command as this interpreter runs it."""
    assert argv[0] == "swarm", argv
    return [*CLI, *argv[1:]]


def test_ctrl_c_names_the_job_and_its_resume_command_which_does_not_pay_for_the_draft_again(
    cli_env: tuple[Path, dict[str, str]], fake_llm: FakeOpenAI,
) -> None:
    config, env = cli_env
    proc = _in_review(cli_env, fake_llm, "One sentence on Ctrl-C, 'quoted'.")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "CancelledError" not in err, err
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("job ") and lines[0].endswith(": started"), lines[0]
    job_id = lines[0].removeprefix("job ").removesuffix(": started")
    head, _, command = lines[-1].partition(": resume with: ")
    assert head == f"job {job_id}: interrupted; the finished steps are kept", lines[-1]
    argv = shlex.split(command)
    assert argv[argv.index("--job-id") + 1] == job_id and argv[argv.index("--config") + 1] == str(config)

    fake_llm.script(LOCAL, Behaviour.answer(APPROVE))
    resumed = subprocess.run(_cli(argv), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "The kept draft.\n"
    assert "resuming at review" in resumed.stderr
    assert _drafts(fake_llm) == 1 and _reviews(fake_llm) == 2  # only the interrupted review ran again

    # delegate takes --job-id too: the same task under that id is the finished job's result
    again = subprocess.run([*CLI, "--config", str(config), "delegate", "--job-id", job_id, "-q",
                            "One sentence on Ctrl-C, 'quoted'."], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, "The kept draft.\n", "")
    assert _drafts(fake_llm) == 1 and _reviews(fake_llm) == 2


def test_a_kill_is_said_as_a_ctrl_c_is_with_the_resume_command(
    cli_env: tuple[Path, dict[str, str]], fake_llm: FakeOpenAI,
) -> None:
    """SIGTERM (a kill, a CI timeout, a container's stop) ended the command with -15 and no word."""
    config, env = cli_env
    proc = _in_review(cli_env, fake_llm, "One sentence on SIGTERM.")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    head, _, command = err.strip().splitlines()[-1].partition(": resume with: ")
    assert head.endswith(": terminated; the finished steps are kept") and "--job-id" in command, err
    fake_llm.script(LOCAL, Behaviour.answer(APPROVE))
    resumed = subprocess.run(_cli(shlex.split(command)), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and resumed.stdout == "The kept draft.\n", resumed.stderr
    assert _drafts(fake_llm) == 1


def test_a_bad_job_id_is_refused_before_any_job_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli import main

    assert main(["research", "What?", "--job-id", "has space"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --job-id: 'has space' is not a job id: at most 128 characters"), err
    assert "started" not in err


def test_a_bad_config_is_refused_before_a_job_is_said_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`swarm delegate` with a broken config printed 'job ...: started', then the config error and
    exit 2 ('no job ran'): nothing is said to start before the config loads."""
    from swarm.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config.yaml").read_text().replace("  max_revisions:", "  max_revisions: [1]\n  was_max_revisions:", 1))
    assert main(["--config", str(bad), "delegate", "hi"]) == 2
    err = capsys.readouterr().err
    assert "started" not in err and "config" in err, err


def test_the_cli_prints_the_job_id_it_made_and_the_envelope_carries_it(
    cli_env: tuple[Path, dict[str, str]], fake_llm: FakeOpenAI,
) -> None:
    config, env = cli_env
    fake_llm.script(LOCAL, Behaviour.answer("A draft."), Behaviour.answer(APPROVE))
    done = subprocess.run([*CLI, "--config", str(config), "delegate", "Say hi.", "--json"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    envelope: dict[str, Any] = json.loads(done.stdout)
    assert done.stderr.splitlines()[0] == f"job {envelope['job_id']}: started"
    assert envelope["status"] == "COMPLETED" and envelope["trace"][-1]["provider"] == "dispatcher"


def test_the_resume_line_never_prints_a_secret_or_a_huge_input() -> None:
    """It printed a signed URL's credential and signature, and a whole inline image."""
    import argparse

    from swarm.cli import _resume_command

    args = argparse.Namespace(config=None)
    url = "https://b.s3.amazonaws.com/c.png?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP&X-Amz-Signature=deadbeefcafe1234"
    line = _resume_command(args, {"project": "image_tools", "action": "upscale", "job_id": "j1", "input": {"url": url}})
    assert "AKIA" not in line and "deadbeef" not in line and "--job-id j1" in line and "it holds a secret" in line
    line = _resume_command(args, {"project": "image_tools", "action": "upscale", "job_id": "j1", "input": {"image": "A" * 5000}})
    assert "AAAA" not in line and "characters, so it is not printed" in line
    line = _resume_command(args, {"project": "swarm", "action": "delegate", "job_id": "j1", "input": {"task": "hi"}})
    assert line == """swarm run swarm delegate --job-id j1 --input '{"task": "hi"}'"""


def test_the_help_reads_as_text_not_rest_markup() -> None:
    """``swarm --help`` showed the docstring's ``swarm`` and ``Examples::`` as written."""
    from swarm.cli import build_parser

    text = build_parser().format_help()
    assert "``" not in text and "::" not in text, text
    assert "swarm: run any action from the terminal" in text and "Examples:\n" in text


def test_a_failed_remote_job_is_named_by_our_id_with_the_command_that_runs_it_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A RunPod worker killed mid-job: the CLI said 'job <RunPod id>-u1: FAILED' (started as
    another id) and the only fix was 'POST /retry/...', an HTTP call with the key."""
    import argparse

    from swarm.cli import _report

    args = argparse.Namespace(out=None, json=False, quiet=False, config=None)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "hi"}, "job_id": "local-7"}
    result = {"job_id": "rp-ad45-u1", "status": "FAILED", "output": None, "trace": [], "totals": {}, "elapsed_ms": 9,
              "error": {"type": "WorkerError", "message": "worker w1 stopped responding while running the job"}}
    assert _report(args, result, job) == 1
    err = capsys.readouterr().err
    assert "job local-7 (RunPod job rp-ad45-u1): FAILED" in err
    assert "run it again, from its last finished step: swarm run swarm delegate --job-id local-7 --input" in err


NOT_PULLED = "model isnet-anime is not pulled (needs internet once); run: swarm models pull isnet-anime"


@pytest.mark.parametrize(("message", "trace", "said"), [
    # an outage a run of the same id can get past
    ("ollama: cannot connect: ConnectError", [], "run it again, from its last finished step: swarm run image_tools"),
    # the same job fails the same way until the model is pulled; nothing finished: nothing to resume
    (NOT_PULLED, [{"step": "remove_background", "kind": "image", "outcome": "skipped"}], None),
    # a pipeline's finished background removal: the resume that keeps it, once the pull is done
    (NOT_PULLED, [{"step": "remove_background", "kind": "image", "outcome": "ok"},
                  {"step": "upscale", "kind": "image", "outcome": "error"}],
     "once that is done, run it again; it resumes after remove_background: swarm run image_tools"),
    # the image job's own record of its finished steps, where its partial output carries one
    (NOT_PULLED, [{"step": "upscale", "kind": "image", "outcome": "error"}, {"steps_done": ["remove_background"]}],
     "once that is done, run it again; it resumes after remove_background: swarm run image_tools"),
])
def test_the_resume_line_only_where_a_resume_can_help(
        message: str, trace: list[dict[str, Any]], said: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    """A model that was not pulled got 'run it again, from its last finished step', which failed the
    same way: no resume gets past it before the pull."""
    import argparse

    from swarm.cli import _report

    args = argparse.Namespace(out=None, json=False, quiet=True, config=None)
    job = {"project": "image_tools", "action": "pipeline", "input": {"path": "cat.png"}, "job_id": "j-1"}
    output = next((s for s in trace if "steps_done" in s), None)
    trace = [s for s in trace if s is not output]
    result = {"job_id": "j-1", "status": "FAILED", "output": output, "trace": [*trace, {"step": "dispatch", "kind": "node",
              "outcome": "error"}], "totals": {}, "error": {"type": "ProviderUnavailable", "message": message}}
    assert _report(args, result, job) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"error: ProviderUnavailable: {message}"
    assert lines[1:] == ([] if said is None else [f"{said} pipeline --job-id j-1 --input '{{\"path\": \"cat.png\"}}'"])


@pytest.mark.parametrize(("trace", "after"), [
    # consensus: two positions' model calls answered, the third raised out of its ask: no node returned
    ([{"step": "ask", "kind": "llm", "outcome": "ok"}, {"step": "ask", "kind": "llm", "outcome": "ok"},
      {"step": "ask", "kind": "llm", "outcome": "error"}], None),
    # delegation: the draft node returned; the review's model call answered, then the node raised
    ([{"step": "draft", "kind": "llm", "outcome": "ok"}, {"step": "draft", "kind": "node", "provider": "graph"},
      {"step": "review", "kind": "llm", "outcome": "ok"}], "draft"),
    # a review that absorbed its reviewer's failure returned (outcome error), then a revision; a second review raised
    ([{"step": "draft", "kind": "node", "provider": "graph"},
      {"step": "review", "kind": "node", "provider": "graph", "outcome": "error"},
      {"step": "revise", "kind": "node", "provider": "graph"}, {"step": "review", "kind": "llm", "outcome": "ok"}],
     "revise"),
])
def test_the_resume_names_the_last_node_that_returned_not_the_last_model_call(
        trace: list[dict[str, Any]], after: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    """'it resumes after ask' was said for a consensus job none of whose nodes had returned: a
    model call that answered inside a node that then raised is run again on resume."""
    import argparse

    from swarm.cli import _report

    args = argparse.Namespace(out=None, json=False, quiet=True, config=None)
    job = {"project": "swarm", "action": "consensus", "input": {"question": "q"}, "job_id": "j-2"}
    result = {"job_id": "j-2", "status": "FAILED", "output": None, "trace": trace, "totals": {},
              "error": {"type": "ProviderUnavailable", "message": NOT_PULLED}}
    assert _report(args, result, job) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[1:] == ([] if after is None else [
        f"once that is done, run it again; it resumes after {after}: swarm run swarm consensus --job-id j-2"
        " --input '{\"question\": \"q\"}'"])


def test_a_reader_that_stops_early_and_ctrl_c_in_doctor_end_without_a_traceback(tmp_path: Path) -> None:
    """`swarm doctor --quick | head -1` ended in a BrokenPipeError traceback (exit 1), and Ctrl-C in
    `swarm doctor` printed a CancelledError and a KeyboardInterrupt traceback."""
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    reader_gone = subprocess.Popen([*CLI, "models", "list", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    assert reader_gone.stdout is not None
    reader_gone.stdout.close()  # the reader stopped before the first byte
    _, err = reader_gone.communicate(timeout=120)
    assert reader_gone.returncode == 0 and b"Traceback" not in err, err.decode()[-2000:]
    home = tmp_path / "doctor-home"
    doctor = subprocess.Popen([*CLI, "doctor"], cwd=ROOT, env={**env, "SWARM_HOME": str(home)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_heard)
    # Ctrl-C once doctor runs (it has made its SWARM_HOME), not after a fixed 0.5 s: a loaded machine
    # was still starting Python then, and the interpreter's own KeyboardInterrupt traceback failed this
    deadline = time.monotonic() + 120
    while not home.exists() and doctor.poll() is None:
        assert time.monotonic() < deadline, "swarm doctor never made its SWARM_HOME"
        time.sleep(0.02)
    doctor.send_signal(signal.SIGINT)
    _, said = doctor.communicate(timeout=120)
    if doctor.returncode == 0:  # it finished before the signal on a fast machine: nothing to check
        return
    assert doctor.returncode == 130 and "Traceback" not in said and said.strip().endswith("error: interrupted"), said


@pytest.mark.parametrize(("given", "said"), [("", "--input is not valid JSON"), ('["hi"]', "not a JSON list"),
                                             ('"str"', "not a JSON str")])
def test_an_input_that_is_no_json_object_runs_no_job(given: str, said: str, capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--input ''` ran as {} and `--input '["hi"]'` made a job that failed on "job.input" (exit 1);
    the README says a job that never ran exits 2."""
    from swarm.cli import main

    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    assert main(["run", "swarm", "delegate", "--input", given]) == 2
    err = capsys.readouterr().err
    assert said in err and "started" not in err and "job.input" not in err, err


def test_config_check_refuses_what_every_job_would_be_refused_for(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """RUNPOD_ENDPOINT_ID='abc def' passed `swarm config check` ("valid", exit 0); every delegate
    then failed naming runner.runpod.endpoint_id (exit 2), and doctor said FAIL."""
    from swarm.cli import main

    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc def")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_FAKEKEY0123456789abcdef")
    assert main(["config", "check"]) == 2
    err = capsys.readouterr().err
    assert "runner.runpod.endpoint_id" in err and "holds ' '" in err and "valid" not in err.split("\n")[0], err
