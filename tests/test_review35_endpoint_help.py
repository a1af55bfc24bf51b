"""`swarm endpoint serve --help` says the defaults a newcomer needs to reach the endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_endpoint_serve_help_names_host_port_and_endpoint_id_defaults() -> None:
    done = subprocess.run([sys.executable, "-m", "swarm", "endpoint", "serve", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(done.stdout.split())
    assert "(default: 127.0.0.1)" in text and "(default: 8000)" in text, text
    assert "(default: $RUNPOD_ENDPOINT_ID, else local)" in text, text
