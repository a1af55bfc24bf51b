"""What an action receives: the job's id, config, providers and a progress callback.

Actions (``graphs/<name>/action.py``) get a ``JobContext`` and nothing else; they never read
env vars or build clients themselves, so the same action runs under the MCP server's local
runner and inside the RunPod worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from graphs.budget import budgeted

if TYPE_CHECKING:
    from core.config import SwarmConfig
    from providers.base import ImageProvider, LLMProvider, SearchProvider, StorageProvider

ProgressFn = Callable[[str, str, "float | None"], Awaitable[None]]


async def _no_progress(stage: str, message: str, fraction: float | None = None) -> None:
    return None


@dataclass
class Providers:
    """The providers of one config version. Each is built on first use (lazy imports)."""

    config: SwarmConfig
    factories: dict[str, Callable[[], Any]]
    _built: dict[str, Any] = field(default_factory=dict)

    def get(self, kind: str) -> Any:
        """The provider for ``kind`` (llm, search, storage, upscale, remove_background)."""
        if kind not in self._built:
            factory = self.factories.get(kind)
            if factory is None:
                raise ConfigError(
                    f"no {kind} provider is configured; valid: {', '.join(sorted(self.factories))}"
                )
            self._built[kind] = factory()
            if kind == "llm":  # per-job token/cost budget and content capture (graphs.budget)
                self._built[kind] = budgeted(self._built[kind])
        return self._built[kind]

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """Build once per config version (e.g. a compiled graph over these providers)."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    @property
    def llm(self) -> LLMProvider:
        return self.get("llm")

    @property
    def search(self) -> SearchProvider:
        return self.get("search")

    @property
    def storage(self) -> StorageProvider:
        return self.get("storage")

    def image(self, action: str) -> ImageProvider:
        return self.get(action)


#: ``JobContext.extras`` key: the job id named a finished job, whose stored result came back
REPLAYED = "replayed"
#: ``JobContext.extras`` key: the nodes a job stopped midway was resumed at (``graphs.run``)
RESUMED_AT = "resumed_at"
#: ``JobContext.extras`` key of the identities (``step_identity``) of the trace steps a resumed or
#: replayed job's earlier runs made (``graphs.run``): its telemetry exports only this run's
EARLIER_STEPS = "earlier_steps"


def step_identity(step: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells one trace step from another: its step, kind, provider, model and time."""
    return step.get("step"), step.get("kind"), step.get("provider"), step.get("model"), step.get("at")




@dataclass
class JobContext:
    """Everything one job may use. ``progress(stage, message, fraction)`` reaches the client."""

    job_id: str
    config: SwarmConfig
    providers: Providers
    checkpointer: Any = None
    progress: ProgressFn = _no_progress
    extras: dict[str, Any] = field(default_factory=dict)
    #: the job id was minted for this job just now, so no checkpoint can exist under it yet
    new_job: bool = False
    #: ``project/action`` of the job: its checkpoints record it, so a job id given again for
    #: another action is refused instead of resuming the other graph's state
    job_kind: str | None = None
    #: when the dispatcher stops the job (``time.monotonic()``; ``limits.job_deadline_s`` after it
    #: started): work that can tell up front it would not finish (an upscale) reads it from here
    deadline_at: float | None = None
