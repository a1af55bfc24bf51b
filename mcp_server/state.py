"""The state every MCP request shares: the runtime, the runner, the job manager, the subscribers.

``mcp_server.server`` builds one per lifespan; tools and resources reach it through
``mcp_server.calls.server_state``. The runtime and the job manager are built on first use,
so starting the server and answering ``tools/list`` imports neither.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.subscriptions import ResourceUpdated

from core.errors import ProviderUnavailable

if TYPE_CHECKING:
    from mcp_server.jobs import JobManager
    from swarm.threads import ThreadStore


@dataclass
class ServerState:
    """Shared by every request: the runtime (config, circuits, models), the runner and the jobs."""

    config_path: str | None
    bus: Any = None
    jobs_path: Path | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("swarm.mcp"))
    subscribers: dict[str, list[Any]] = field(default_factory=dict)  # uri -> sessions (resources/subscribe)
    _runtime: Any = None
    _jobs: JobManager | None = None
    _threads: ThreadStore | None = None
    _threads_at: tuple[Any, ...] = ()  # the checkpointer settings _threads was opened with
    _retired: list[Any] = field(default_factory=list)  # thread stores left by a config edit, closed at shutdown
    _threads_lock: threading.Lock = field(default_factory=threading.Lock)
    _watching: set[str] = field(default_factory=set)  # jobs another process runs whose row is watched
    _watchers: set[Any] = field(default_factory=set)

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from swarm.runtime import Runtime

            self._runtime = Runtime(self.config_path)
        return self._runtime

    def runner(self) -> Any:
        """The runner chosen by config (``runner.kind``), re-chosen when config changes."""
        from swarm.executors import make_executor

        return make_executor(self.runtime.config, self.runtime)

    @property
    def jobs_file(self) -> Path:
        """The job store: ``jobs_path``, else ``core.config.state_dir()/jobs.sqlite``."""
        from core.config import state_dir

        return self.jobs_path or state_dir() / "jobs.sqlite"

    @property
    def jobs(self) -> JobManager:
        """The job manager over the store at ``jobs_file``, built on first use."""
        if self._jobs is None:
            # imported on first use: the store's sqlite3 is not needed to start or list tools
            from mcp_server.jobloop import JobLoop
            from mcp_server.jobs import JobManager
            from mcp_server.jobstore import JobStore

            store = JobStore(self.jobs_file)
            self._jobs = JobManager(
                store,
                runner=self.runner,
                wait_budget_s=lambda: self.runtime.config.runner.wait_budget_s,
                on_finished=self._job_finished,
                job_loop=JobLoop(),  # jobs never block the protocol loop
                on_completed=self._thread_turns,
                stopped_job=lambda job_id, project, action: self.runtime.stopped_job(job_id, project, action),
                max_running=lambda: self.runtime.config.mcp.max_running_jobs,
                retention_days=lambda: self.runtime.config.checkpointer.retention_days,
                last_step=lambda job_id: self.runtime.last_step(job_id),
            )
        return self._jobs

    @property
    def threads(self) -> ThreadStore:
        """Conversations, in the checkpointer's kind of store (swarm.threads), opened on first use."""
        section = self.runtime.config.checkpointer
        where = (section.kind, section.path, section.dsn)
        with self._threads_lock:  # the protocol loop and the jobs' loop may both ask first
            if self._threads is not None and self._threads_at != where:
                # checkpointer.path (or kind, or dsn) edited while serving: the threads follow the
                # checkpoints there, as they would after a restart (they stayed behind and were lost).
                # The old store is closed at shutdown, not now: a call may still be using it.
                self._retired.append(self._threads)
                self._threads = None
            if self._threads is None:
                from swarm.threads import open_thread_store

                self._threads = open_thread_store(section)
                self._threads_at = where
            return self._threads

    def _thread_turns(self, row: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        """A completed job's turns join its thread, if it has one (before its result is stored)."""
        if not row.get("thread_id"):
            return envelope
        from swarm.threads import record_turns

        return record_turns(self.threads, row, envelope, self.runtime.config.threads.max_turns)

    def subscribe(self, uri: str, session: Any) -> None:
        sessions = self.subscribers.setdefault(uri, [])
        if session not in sessions:
            sessions.append(session)
        self._watch_elsewhere(uri)

    def _watch_elsewhere(self, uri: str) -> None:
        """A job another server process runs on this store ends there, and only that process was
        told: watch its row here, so this server's subscribers hear it too."""
        job_id = uri.removeprefix("swarm://jobs/")
        if job_id == uri or "/" in job_id or not self.jobs_file.exists() or job_id in self._watching:
            return
        row = self.jobs.store.get(job_id)
        if row is None or row["status"] != "IN_PROGRESS" or self.jobs.status(job_id, None)["running_here"]:
            return
        self._watching.add(job_id)

        async def watch() -> None:
            try:
                settled = await self.jobs.settles_elsewhere(job_id)
                if settled:
                    await self._job_finished(job_id)
            finally:
                self._watching.discard(job_id)

        self._watchers.add(task := asyncio.get_running_loop().create_task(watch()))
        task.add_done_callback(self._watchers.discard)

    def unsubscribe(self, uri: str, session: Any) -> None:
        sessions = self.subscribers.get(uri, [])
        if session in sessions:
            sessions.remove(session)

    async def _job_finished(self, job_id: str) -> None:
        """Tell listeners (subscriptions/listen) and subscribers (resources/subscribe) a job changed."""
        uri = f"swarm://jobs/{job_id}"
        if self.bus is not None:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for session in list(self.subscribers.get(uri, [])):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a session that went away is dropped, the others still hear
                self.unsubscribe(uri, session)

    async def start(self) -> None:
        """Resume the jobs a previous server left unfinished (same job ids, from checkpoints), and
        drop finished ones older than ``checkpointer.retention_days`` (as their checkpoints go);
        unfinished ones that old have lost their checkpoints and fail as ``JobExpired`` (``jobresume``)."""
        if self.jobs_file.exists():  # no store yet -> nothing to resume, and nothing heavy to import
            days = self.runtime.config.checkpointer.retention_days
            try:
                if pruned := self.jobs.store.prune(days * 86400):
                    self.log.info("dropped %d finished job(s) older than %g days (checkpointer.retention_days)",
                                  pruned, days)
                self.jobs.resume_unfinished()
            except ProviderUnavailable as exc:  # a read-only jobs.sqlite stopped the server with a traceback
                self.log.error("%s; the server runs, and each job says so until the store can be written", exc)

    async def aclose(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        runtime = self._runtime
        if self._jobs is not None:
            # the runtime's checkpointers and worker pool live on the jobs' loop: close them there
            await self._jobs.aclose(final=_closer(runtime) if runtime is not None else None)
            self._jobs.store.close()
        elif runtime is not None:
            await runtime.aclose()
        for retired in self._retired:
            retired.close()
        if self._threads is not None:
            self._threads.close()


def _closer(runtime: Any) -> Any:
    """The jobs loop's last step: the worker-process pool (runner.local.processes > 1), then the runtime."""

    async def close() -> None:
        from swarm.executors import close_pool

        await close_pool(runtime)
        await runtime.aclose()

    return close
