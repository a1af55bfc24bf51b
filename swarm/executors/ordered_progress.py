"""A worker's progress updates sent one at a time, in order, the newest of each job winning.

``runpod.serverless.progress_update`` starts a thread per update, each with its own event loop
and HTTP session: two updates sent a millisecond apart (the route, then "drafting with local")
race, and under load the older one often lands last. The endpoint keeps the last one it got, so
a client polling the job read the route for the whole five-second draft (seen in CI).

``OrderedProgress.send`` queues the update and returns at once (the job's loop never waits on
HTTP); one sender thread posts them in the order they were made. While an update waits, a newer
one of the same job replaces it: only the newest state is worth sending. ``flush`` waits, for
a bounded time, until a job's updates are out, so none lands after the job's result.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from core.redact import redact

log = logging.getLogger("swarm.worker")

Send = Callable[[dict[str, Any], Any], None]


def _sdk_send(job: dict[str, Any], data: Any) -> None:
    """One update through the SDK, in this thread, until it is sent (the SDK's own thread body)."""
    from runpod.serverless.modules import rp_progress

    target = getattr(rp_progress, "_thread_target", None)
    if target is None:  # an SDK without it: its own thread per update, unordered as before
        rp_progress.progress_update(job, data)
        return
    target(job, data)


class OrderedProgress:
    """Posts progress updates in order on one thread; the newest update of a job replaces a
    waiting one. ``send`` never blocks on the network."""

    def __init__(self, send: Send = _sdk_send) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiting: dict[str, tuple[dict[str, Any], Any]] = {}  # job id -> its newest update
        self._order: deque[str] = deque()  # job ids, in the order their waiting update was made
        self._sending: str | None = None
        self._thread: threading.Thread | None = None

    def send(self, job: dict[str, Any], data: Any) -> None:
        job_id = str(job.get("id"))
        with self._lock:
            if job_id not in self._waiting:
                self._order.append(job_id)
            self._waiting[job_id] = (job, data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress-updates", daemon=True)
                self._thread.start()

    def flush(self, job_id: str, timeout_s: float = 2.0) -> bool:
        """Wait until no update of ``job_id`` waits or is being sent; False when ``timeout_s``
        passed, and then the update still waiting is dropped: none may land after the result."""
        with self._idle:
            done = self._idle.wait_for(lambda: job_id not in self._waiting and self._sending != job_id, timeout_s)
            if not done and self._waiting.pop(job_id, None) is not None:
                self._order.remove(job_id)
            return done

    def _run(self) -> None:
        try:
            self._post_all()
        finally:  # however it ended: a later ``send`` starts a new sender, no ``flush`` waits on this one
            with self._lock:
                self._sending = None
                if self._thread is threading.current_thread():
                    self._thread = None
                self._idle.notify_all()

    def _post_all(self) -> None:
        while True:
            with self._lock:
                self._sending = None
                self._idle.notify_all()
                if not self._order:
                    self._thread = None
                    return
                job_id = self._order.popleft()
                job, data = self._waiting.pop(job_id)
                self._sending = job_id
            try:
                self._send(job, data)
            except Exception as exc:  # progress is best effort; the job itself goes on
                log.warning("progress update of job %s failed: %s", job_id, redact(str(exc)))
