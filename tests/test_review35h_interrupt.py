"""After a Ctrl-C (or a kill) of a job, ``swarm`` says "stopping the step in progress" only while
a step really runs on a worker thread. It said so after the resume line of a plain delegate job
(about 1 run in 9 on a loaded machine): AnyIO's idle worker, told to stop when the event loop
ended, was still exiting, and any thread the job had started was taken for a step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from swarm import cli

ROOT = Path(__file__).resolve().parents[1]

#: a job that leaves two pools' workers idle, then waits to be interrupted
_IDLE_POOLS = """
import asyncio, concurrent.futures, sys, anyio
import swarm.cli as cli

async def job(args, job):
    await anyio.to_thread.run_sync(int)  # AnyIO's worker: parked, it exits once the loop has ended
    pool = concurrent.futures.ThreadPoolExecutor(1)  # left open: its worker is parked till the exit
    await asyncio.get_running_loop().run_in_executor(pool, int)
    print("ready", file=sys.stderr, flush=True)
    await asyncio.sleep(120)
    return 0

cli._run_job = job
sys.exit(cli.main(["delegate", "hi"]))
"""


@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                      (signal.SIGTERM, 143, "terminated")])
def test_idle_pool_threads_left_by_the_job_are_no_step_in_progress(tmp_path: Path, signum: int, code: int,
                                                                   said: str) -> None:
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _IDLE_POOLS], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stderr is not None
        assert child.stderr.readline() == "ready\n"
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)  # it waited forever for the parked worker
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == code, err
    assert "Ctrl-C again" not in err and "step in progress" not in err, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert f": {said}; the finished steps are kept: resume with: " in last, err


def test_a_pool_thread_that_takes_a_moment_to_exit_is_waited_for_unsaid(capsys: pytest.CaptureFixture[str]) -> None:
    """As AnyIO's worker on a loaded machine: in the pool's own code only, it exits a moment later."""
    before = set(threading.enumerate())
    parked = threading.Thread(target=threading.Event().wait, args=(0.3,), name="AnyIO worker thread")
    parked.start()
    cli._wait_for_the_step_in_flight(before, 130)
    assert capsys.readouterr().err == ""
    parked.join(30)  # the wait is a short moment, longer on a loaded machine


def _step(running: threading.Event) -> None:
    running.set()
    time.sleep(0.3)


def test_a_step_still_running_is_said_and_waited_for(capsys: pytest.CaptureFixture[str]) -> None:
    before = set(threading.enumerate())
    running = threading.Event()
    step = threading.Thread(target=_step, args=(running,))
    step.start()
    assert running.wait(30)
    cli._wait_for_the_step_in_flight(before, 130)
    assert not step.is_alive()
    assert capsys.readouterr().err == "stopping the step in progress (Ctrl-C again to quit now)\n"


def test_anyio_workers_are_told_apart_idle_from_running_a_step() -> None:
    """AnyIO's real worker threads: parked between two calls, and while one runs the job's code."""

    async def main() -> None:
        before = set(threading.enumerate())
        await anyio.to_thread.run_sync(int)
        workers = [thread for thread in threading.enumerate() if thread not in before]
        assert workers and cli._running_steps(workers) == []  # parked in the pool: no step
        running, release = threading.Event(), threading.Event()

        def step() -> None:
            running.set()
            release.wait(30)

        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, step)
            await anyio.to_thread.run_sync(running.wait, 30)
            busy = cli._running_steps([thread for thread in threading.enumerate() if thread not in before])
            release.set()
        assert len(busy) == 1

    anyio.run(main)
