"""A worker process for crash tests: run one job through ``Runtime.run`` and print its envelope.

Usage: ``python tests/reliability_worker.py '<job json>'`` with SWARM_HOME / SWARM_CONFIG /
SWARM_LOCAL_LLM_PORT set by the test. The test SIGKILLs it mid-graph and starts another.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def main(job: dict) -> None:
    from swarm.runtime import Runtime

    runtime = Runtime()
    try:
        result = await runtime.run(job)
    finally:
        await runtime.aclose()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
