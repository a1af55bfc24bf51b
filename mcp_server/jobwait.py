"""Waiting for a job: one this process runs (``_wait_here``, relaying its progress), or one
another server process runs, whose row in the store says when it ends (``_row_settles``,
``settles_elsewhere``), taking it up here when that process dies meanwhile. ``WaitsForJobs`` is a
base of ``JobManager`` (mcp_server.jobs), which provides the state it declares.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from graphs.context import ProgressFn
from mcp_server.cancel import call_cancelled
from mcp_server.jobstore import FINAL_STATUSES, JobStore

log = logging.getLogger("swarm.jobs")

#: how often ``job_result`` re-reads the row of a job another server process runs
ROW_POLL_S = 0.5


class WaitsForJobs:
    """Waits for jobs (see the module); ``JobManager`` provides the state below."""

    store: JobStore
    _tasks: dict[str, asyncio.Future[dict[str, Any]]]
    _listeners: dict[str, set[ProgressFn]]
    _closing: bool

    def _adopt(self, row: dict[str, Any]) -> asyncio.Future[dict[str, Any]] | None:
        """Run here an unfinished job whose process is gone (``ResumesJobs._adopt``)."""
        raise NotImplementedError

    async def _wait_here(self, job_id: str, task: asyncio.Future[dict[str, Any]], row: dict[str, Any], budget: float,
                         progress: ProgressFn | None, cancel_with_call: bool = False) -> None:
        """Wait up to ``budget`` for a job this process runs, relaying its progress to ``progress``;
        with ``cancel_with_call``, a client's cancel of the waiting call cancels the job."""
        listeners = self._listeners.setdefault(job_id, set())
        if progress is not None:
            listeners.add(progress)
            last = row.get("progress")
            if last:  # a poller sees at once where the job stands
                try:
                    fraction = last.get("fraction")
                    await progress(last["stage"], last["message"], fraction if fraction is not None else last.get("reached"))
                except Exception:  # a client that went away must not fail the poll
                    log.debug("progress replay for job %s failed", job_id, exc_info=True)
        try:
            await asyncio.wait_for(asyncio.shield(task), budget)
        except TimeoutError:
            pass  # still running: the caller gets a handle
        except asyncio.CancelledError:
            if _current_cancelled():
                if cancel_with_call and call_cancelled():  # the spec: a cancelled request's work SHOULD stop
                    log.info("job %s: the client cancelled the call that started it; cancelling the job", job_id)
                    task.cancel()  # the job writes its CANCELLED row (partial output kept) on its own loop
                raise  # else the caller went away (the connection closed): the job keeps running
            await self._settled(job_id)  # job_cancel stopped the job; wait for its row
        finally:
            if progress is not None:
                listeners.discard(progress)

    async def settles_elsewhere(self, job_id: str, timeout_s: float = 86_400.0) -> bool:
        """Wait until a job this process does not run is final in the store (another server ran
        it), taking it up here if its process dies meanwhile; whether it ended within ``timeout_s``
        (``False`` too when this process took it up: its own end is announced as usual)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._closing:
            row = self.store.get(job_id)
            if row is None:
                return False
            if row["status"] in FINAL_STATUSES:
                return True
            if job_id in self._tasks or self._adopt(row) is not None:
                return False
            await asyncio.sleep(ROW_POLL_S)
        return False

    async def _row_settles(self, job_id: str, owner: str | None, timeout_s: float) -> dict[str, Any] | None:
        """The job's row once it is final, or as it stands after ``timeout_s`` (a job another
        server process runs: only the store says when it ends)."""
        deadline = time.monotonic() + timeout_s
        row = self.store.get(job_id, owner)
        while row is not None and row["status"] not in FINAL_STATUSES and time.monotonic() < deadline:
            await asyncio.sleep(min(ROW_POLL_S, max(0.0, deadline - time.monotonic())))
            row = self.store.get(job_id, owner)
            # its server died meanwhile: taken over here (the wait went on to its end with the job
            # frozen, and only the next call resumed it)
            if row is not None and job_id not in self._tasks and self._adopt(row) is not None:
                return self.store.get(job_id, owner) or row
        return row

    async def _settled(self, job_id: str, timeout_s: float = 10.0) -> None:
        """Wait until the job's row is final (a cancelled job writes it on its own loop)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = self.store.get(job_id)
            if row is None or row["status"] in FINAL_STATUSES:
                return
            await asyncio.sleep(0.02)


def _current_cancelled() -> bool:
    task = asyncio.current_task()
    return bool(task and task.cancelling())
