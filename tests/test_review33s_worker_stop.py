"""A worker of ``swarm endpoint serve`` stopped while its background warm-up measures the upscaler's
precision (first start on a fresh ``SWARM_HOME``).

It printed ``terminate called without an active exception`` (the interpreter went down under the
warm-up thread, still in torch/ncnn) or was killed 2 s after SIGTERM, and left
``precision.json.<machine>.measuring`` behind. Now the worker stops its warm-up at the
measurement's next run, waits for it, and exits 0, with nothing left behind and no traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "rpa_REVIEW33SWORKERSTOPKEY0123456789"


def _config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["worker"]["warm"] = ["upscale"]  # no local model server: the image warm-up alone, in the background
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_worker_stopped_while_its_warm_up_measures_exits_0_and_leaves_nothing_behind(tmp_path: Path) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    env = {"SWARM_HOME": str(home), "SWARM_CONFIG": str(_config(tmp_path)), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    server = EndpointServer(Settings(api_key=KEY), workers=1, worker_command=[sys.executable, "-u", "handler.py"],
                            worker_env_extra=env, log_dir=logs, restart=None)
    server.start()
    (worker_id, proc), = server.pool.procs.items()
    try:
        deadline = time.monotonic() + 240
        while not list(home.glob("precision.json.*.measuring")):  # the measurement holds its lock
            assert proc.poll() is None, (logs / f"{worker_id}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the warm-up never started measuring"
            time.sleep(0.05)
        time.sleep(1.0)  # well into a run
    finally:
        server.stop()  # SIGTERM to the worker's group; SIGKILL once its grace is over
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    log = (logs / f"{worker_id}.log").read_text()
    assert proc.returncode == 0, (proc.returncode, log[-3000:])
    assert "terminate called" not in log and "Traceback" not in log, log[-3000:]
    assert "background warm-up of upscale stopped after" in log, log[-3000:]
    assert list(home.glob("*.measuring")) == []
    assert not (home / "precision.json").exists()  # nothing half-measured was cached
