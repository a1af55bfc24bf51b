"""A newcomer's walk through ``swarm``: Ctrl-C while a step runs on a worker thread (an image
tile), the envelope of an input refused before the job, and where research finds its sources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swarm.cli import main
from swarm.envelope import ENVELOPE_KEYS

ROOT = Path(__file__).resolve().parents[1]

#: a job whose step runs on a worker thread that stops only when its work is done, as an image
#: tile does (it stops at the next checkpoint between tiles)
_SLOW_STEP = """
import sys, time, anyio
import swarm.cli as cli

def step():
    print("step started", file=sys.stderr, flush=True)
    time.sleep(60)

async def job(args, job):
    await anyio.to_thread.run_sync(step)
    return 0

cli._run_job = job
sys.exit(cli.main(["delegate", "hi"]))
"""


def _read_until(stream: object, wanted: str, got: list[str], timeout: float) -> bool:
    """Read ``stream`` lines into ``got`` on a thread; whether ``wanted`` arrived within ``timeout``."""
    seen = threading.Event()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            got.append(line)
            if wanted in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    return seen.wait(timeout)


def test_a_second_ctrl_c_while_a_step_finishes_quits_at_once_without_a_traceback(tmp_path: Path) -> None:
    """After Ctrl-C the process waited silently for the image tile in progress (18 s on a busy
    CPU), and a second Ctrl-C there printed a threading traceback, then aborted (SIGABRT)."""
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _SLOW_STEP], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    got: list[str] = []
    try:
        assert _read_until(child.stderr, "step started", got, 60), "".join(got)
        child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while "Ctrl-C again" not in "".join(got) and time.monotonic() < deadline:
            time.sleep(0.1)
        err = "".join(got)
        assert "interrupted; the finished steps are kept" in err, err
        assert "stopping the step in progress (Ctrl-C again to quit now)" in err, err
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=20) == 130
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    time.sleep(0.2)  # the reader's last lines
    err = "".join(got)
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_an_input_refused_before_the_job_gets_the_whole_envelope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``swarm run image_tools upscale --input '{"path": "nope.png"}' --json`` had no project,
    action nor elapsed_ms, and its totals were empty: the summary line said "cost unknown"."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "image_tools", "upscale", "--input", '{"path": "nope.png"}', "--json"]) == 1
    envelope = json.loads(capsys.readouterr().out)
    assert tuple(envelope) == ENVELOPE_KEYS
    assert (envelope["project"], envelope["action"], envelope["status"]) == ("image_tools", "upscale", "FAILED")
    assert envelope["error"]["type"] == "InputError" and "nope.png" in envelope["error"]["message"]
    assert envelope["totals"]["cost_usd"] == 0.0
    assert main(["run", "image_tools", "upscale", "--input", '{"path": "nope.png"}']) == 1
    err = capsys.readouterr().err
    assert "cost $0.000000" in err and "cost unknown" not in err, err


def test_research_help_says_how_to_research_your_own_documents(capsys: pytest.CaptureFixture[str]) -> None:
    """``swarm research --help`` said nothing of where sources come from: a newcomer's own folder
    is searched only once ``swarm index build`` has indexed it."""
    with pytest.raises(SystemExit):
        main(["research", "--help"])
    out = capsys.readouterr().out
    assert "swarm index build" in out and "SEARXNG_URL" in out, out


@pytest.mark.parametrize(("command", "choices"), [("config", "{check}"), ("index", "{build,stats}"), ("threads", "{import}")])
def test_a_command_without_its_subcommand_names_the_choices_not_an_internal_name(command: str, choices: str) -> None:
    """It said "required: config_command" (the parser's internal name)."""
    done = subprocess.run([sys.executable, "-m", "swarm.cli", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.rstrip().endswith(f"the following arguments are required: {choices}"), done.stderr
    assert "_command" not in done.stderr
