"""A job's ``webhook``, POSTed when the job ends, as RunPod does.

RunPod POSTs the job's ``/status`` answer to the URL a request named in ``webhook`` when the job
ends, and calls again up to twice, 10 s apart, when the answer is no 2xx or none comes. Delivery
never holds up the job: each runs as a task of its own on the server's loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from core.redact import redact

log = logging.getLogger("swarm.endpoint")
#: how many times RunPod POSTs one job's end (the first call and two more)
ATTEMPTS = 3


class Webhooks:
    """The deliveries in flight; ``close`` cancels those still waiting."""

    def __init__(self, retry_delay_s: float = 10.0, timeout_s: float = 10.0) -> None:
        self.retry_delay_s = retry_delay_s
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str, body: dict[str, Any]) -> None:
        """POST ``body`` (the job as ``/status`` shows it now) to ``url``, in the background."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        why = ""
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    response = await http.post(url, json=body)
                except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
                    why = f"{type(exc).__name__}: {exc}"
                else:
                    if response.is_success:
                        log.info("job %s: webhook answered %d", body.get("id"), response.status_code)
                        return
                    why = f"HTTP {response.status_code}"
                if attempt < ATTEMPTS:
                    await asyncio.sleep(self.retry_delay_s)
        log.warning("job %s: webhook %s not delivered after %d attempts (%s)", body.get("id"), redact(url), ATTEMPTS, redact(why))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
