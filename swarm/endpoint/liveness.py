"""The workers the local endpoint knows, and when it takes one for gone (its running jobs then fail).

A worker the endpoint started itself (``WorkerPool``) is alive while its process runs: the
endpoint watches that process, so a worker whose event loop is held for seconds (its first job's
imports, a model load, a precision measurement beside it, all slowed on a loaded machine) keeps
its jobs, and one that exits or is killed loses them at once (one whose process runs but does not
poll for ``Settings.worker_stall_s``, stopped or wedged, loses them then). A worker started by hand is known by
its requests alone: it is alive while it holds a long poll open (``job-take``, ``job-stop``) or was
seen (a request, or a long poll's end) within ``Settings.worker_lost_s``. Pings never count: they
come from the SDK's forked heartbeat process, which can outlive a killed worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: whether the process of the worker with this id runs; None for a worker the endpoint did not start
ProcessCheck = Callable[[str], "bool | None"]
#: how many pings a stop is signalled again for a job no ping has listed (RunPod's SDK pings every 10 s)
STOP_UNLISTED_PINGS = 3


@dataclass
class Worker:
    """A worker process known by the id it polls with (its ``RUNPOD_POD_ID``)."""

    id: str
    last_seen: float = field(default_factory=time.monotonic)
    open_polls: int = 0
    last_ping: float | None = None
    reported: set[str] = field(default_factory=set)
    stopping: set[str] = field(default_factory=set)
    stop: list[str] = field(default_factory=list)
    stop_ready: asyncio.Event = field(default_factory=asyncio.Event)
    exited: str | None = None  # how its process ended, when the endpoint started it and saw it exit
    #: of a stopped job no ping has listed yet: the pings since its stop that did not list it
    unlisted: dict[str, int] = field(default_factory=dict)

    def pinged(self, job_ids: str | None, known: Callable[[str], bool]) -> None:
        """A heartbeat listing the jobs the worker still runs (``JobStore.pinged``); ``known(id)``:
        whether the endpoint still tracks that job (a removed one's included). A stopped job no
        ping lists is signalled again for ``STOP_UNLISTED_PINGS`` pings (a ping's list can predate
        the worker's take of the job), then let go: it ended before any ping saw it."""
        self.last_ping = time.monotonic()
        before, self.reported = self.reported, {j for j in (job_ids or "").split(",") if j}
        for j in self.stopping - self.reported - before:
            self.unlisted[j] = self.unlisted.get(j, 0) + 1
        self.stopping = {j for j in self.stopping if j in self.reported
                         or (j not in before and known(j) and self.unlisted.get(j, 0) <= STOP_UNLISTED_PINGS)}
        self.unlisted = {j: n for j, n in self.unlisted.items() if j in self.stopping and j not in self.reported}
        again = [j for j in self.stopping if j not in self.stop]
        if again:
            self.stop.extend(again)
            self.stop_ready.set()


    def forget_stop(self, job_id: str) -> None:
        """The job runs again (``JobStore.retry``): an earlier run's stop must not reach the new one."""
        self.stopping.discard(job_id)
        self.unlisted.pop(job_id, None)
        self.stop = [j for j in self.stop if j != job_id]


def alive(worker: Worker, now: float, lost_s: float, process: ProcessCheck | None = None,
          stall_s: float = 120.0) -> bool:
    """Whether ``worker`` still counts as running the jobs it took (module docstring): for a worker
    the endpoint started, its process runs and it polled within ``stall_s`` (a process stopped or
    wedged, SIGSTOP, a deadlock, kept its job to the execution timeout: 600 s, or days); for any
    other, it polled within ``lost_s``."""
    if worker.exited is not None:
        return False
    running = process(worker.id) if process is not None else None
    polled = worker.open_polls > 0 or now - worker.last_seen <= (lost_s if running is None else stall_s)
    return polled and running is not False
