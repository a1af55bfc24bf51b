"""The in-process executor: the very same dispatcher the RunPod worker runs, via ``Runtime.run``."""

from __future__ import annotations

from typing import Any

from graphs.context import ProgressFn


class LocalExecutor:
    """Runs jobs in this process through ``runtime.run`` (``swarm.runtime.Runtime``)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def __repr__(self) -> str:
        return "LocalExecutor()"

    async def run(self, job: dict[str, Any], progress: ProgressFn | None = None, wait_budget_s: float | None = None) -> dict[str, Any]:
        """The job's envelope; ``wait_budget_s`` is accepted for symmetry and ignored (the job runs here)."""
        return await self.runtime.run(job, progress)
