"""Where jobs run, and how many at once: the jobs' own event loop and the slot limiter.

``JobManager`` (mcp_server.jobs) runs every job as a task on a ``JobLoop``, named
``JOB_TASK_PREFIX + job_id``, and holds one of ``JobSlots`` while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from graphs.context import ProgressFn

#: jobs one manager runs at once unless told (``mcp.max_running_jobs``)
DEFAULT_MAX_RUNNING = 32


class JobLoop:
    """An event loop in a daemon thread where jobs run, so the server's loop stays responsive.

    A job may block its loop (a heavy first import, CPU-bound image work); with the jobs on
    their own loop, the MCP server keeps answering pings, polls and other calls meanwhile.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="swarm-jobs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def stop(self, final: Callable[[], Awaitable[None]] | None = None) -> None:
        """Cancel what still runs there, run ``final()`` on that loop, then end the thread."""

        async def wind_down() -> None:
            current = asyncio.current_task()

            async def cancel(tasks: list[asyncio.Task[Any]]) -> None:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            # the jobs first; then ``final`` closes what they used while its own helpers still run
            # (psycopg_pool's workers: cancelled before its close, the close re-raised their
            # cancellation and left the pool's connections open); then whatever is left
            await cancel([t for t in asyncio.all_tasks() if t.get_name().startswith(JOB_TASK_PREFIX)])
            if final is not None:
                await final()
            await cancel([t for t in asyncio.all_tasks() if t is not current])

        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wind_down(), self.loop))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
            if not self._thread.is_alive():
                self.loop.close()


#: the name of a job's task on the jobs' loop (``JobLoop.stop`` cancels these first)
JOB_TASK_PREFIX = "swarm-job-"


async def named(coro: Awaitable[Any], name: str) -> Any:
    """``coro``, in a task called ``name`` (``run_coroutine_threadsafe`` names its tasks Task-N)."""
    task = asyncio.current_task()
    if task is not None:
        task.set_name(name)
    return await coro


class JobSlots:
    """At most ``max_running()`` jobs run at once (default ``DEFAULT_MAX_RUNNING``); the others
    wait, queued, in submission order (their progress says so) and start as slots free."""

    def __init__(self, max_running: Callable[[], int] | None = None) -> None:
        self._max_running = max_running or (lambda: DEFAULT_MAX_RUNNING)
        self._running = 0
        self._slots: asyncio.Condition | None = None  # made on the jobs' loop, where every job runs

    @contextlib.asynccontextmanager
    async def hold(self, progress: ProgressFn) -> AsyncIterator[None]:
        """Hold one of ``mcp.max_running_jobs`` slots while the job runs (a client in a loop, or a
        model retrying, started hundreds of jobs at once on one local model); a job past the limit
        waits, saying so in its progress, and a cancel stops the wait too."""
        if self._slots is None:
            self._slots = asyncio.Condition()
        slots = self._slots
        async with slots:
            limit = self._max_running()
            if self._running >= limit:
                await progress("queued", f"{self._running} jobs run in this server, its limit"
                               f" (mcp.max_running_jobs={limit}): this one starts when one ends", None)
                await slots.wait_for(lambda: self._running < self._max_running())
            self._running += 1
        try:
            yield
        finally:
            async with slots:
                self._running -= 1
                slots.notify()
