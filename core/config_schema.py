"""The sections of ``config.yaml``: one frozen pydantic model per section, field limits included.

The ``models`` table and the ``providers:`` sections live in ``core.config_providers`` and are
re-exported here; ``core.config`` assembles them all into ``SwarmConfig`` (and re-exports every
name here); the checks that span sections live in ``core.config_refs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_backends import SearchBackends, StorageBackends, StrictModel, raise_all
from core.config_providers import (
    ENV_NAME_PATTERN,
    CircuitSpec,
    ImageSection,
    LLMSection,
    LocalServerSpec,
    ModelSpec,
    Price,
    ProvidersSection,
    RembgSpec,
    RetrySpec,
    SearchSection,
    StorageSection,
    UpscaleSpec,
    env_name,
)
from core.paths import state_dir
from core.rules import MCP_ACTION_TOOLS, MCP_ALWAYS_ON_TOOLS, LogLevel, log_level_name

__all__ = [
    "ENV_NAME_PATTERN", "MAX_LOCAL_PROCESSES", "BudgetSpec", "CheckpointerSection", "CircuitSpec", "ConsensusRoute",
    "DelegationRoute", "ImageSection", "LLMSection", "LimitsSection", "LocalRunnerSpec", "LocalServerSpec",
    "McpHttpSpec", "McpSection", "ModelSpec", "ObservabilitySection", "Price", "ProvidersSection", "RembgSpec",
    "RetrySpec", "RoutingSection", "RunPodRunnerSpec", "RunnerSection", "SearchBackends", "SearchSection",
    "StorageBackends", "StorageSection", "StrictModel", "ThreadsSection", "UpscaleSpec", "WorkerSection", "env_name",
]


class DelegationRoute(StrictModel):
    primary: str
    reviewer: str | None = None


class ConsensusRoute(StrictModel):
    """``consensus``: the models (or families) asked at once, and who writes the synthesis."""

    models: list[str] = Field(min_length=2, max_length=8)
    synthesizer: str

    @field_validator("models")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        """Every consensus job was refused "lists a model twice", blaming the caller, not the config."""
        twice = sorted({m for m in value if value.count(m) > 1})
        if twice:
            raise ValueError(f"names {', '.join(twice)} twice; list each model once")
        return value


class RoutingSection(StrictModel):
    delegation: dict[str, DelegationRoute]
    consensus: ConsensusRoute | None = None


class CheckpointerSection(StrictModel):
    """Where job checkpoints live. ``auto``: PostgreSQL when ``dsn`` is set (so every RunPod
    worker can resume any job), else SQLite at ``path`` (resume within this machine/volume)."""

    kind: Literal["auto", "sqlite", "postgres", "memory"] = "sqlite"
    #: empty: ``<state_dir>/checkpoints.sqlite``, resolved when a config is loaded (not at import:
    #: a user without a home gets a ConfigError from ``load_config``, not a traceback on import)
    path: str = ""
    dsn: str | None = None
    #: at most 100 years: a larger one (a user's "forever") once reached before 1582, the start of
    #: the checkpoint ids' clock, and every saved job was pruned as old
    retention_days: float = Field(default=7.0, gt=0, le=36_525)

    @model_validator(mode="after")
    def _resolve_auto(self) -> CheckpointerSection:
        if self.kind == "auto":
            object.__setattr__(self, "kind", "postgres" if self.dsn else "sqlite")
        if self.kind == "postgres" and not self.dsn:  # else every job failed on it, after config check said valid
            raise_all("CheckpointerSection", [InitErrorDetails(type=PydanticCustomError(
                "no_dsn", "postgres needs a dsn: set SWARM_CHECKPOINTER_DSN (the shipped dsn:"
                ' "${SWARM_CHECKPOINTER_DSN}"), e.g. postgresql://USER@HOST:5432/DB'), loc=("dsn",), input=self.dsn)])
        if not self.path:
            object.__setattr__(self, "path", str(state_dir() / "checkpoints.sqlite"))
        return self


class RunPodRunnerSpec(StrictModel):
    endpoint_id: str = ""
    api_key_env: str = "RUNPOD_API_KEY"
    base_url: str = "https://api.runpod.ai/v2"
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0)
    forward_credentials: bool = Field(
        default=True,
        description="send this side's provider keys (the variables models and search backends take"
        " their keys from) with each job, for that job only; false sends none (core/credentials.py)",
    )

    _env_name = field_validator("api_key_env")(env_name)


#: the most worker processes ``runner.local.processes`` may ask for
MAX_LOCAL_PROCESSES = 64


class LocalRunnerSpec(StrictModel):
    """The local executor: ``processes`` > 1 runs jobs in that many worker processes."""

    processes: int = Field(default=1, ge=1, le=MAX_LOCAL_PROCESSES)


class RunnerSection(StrictModel):
    kind: Literal["auto", "local", "runpod"] = "auto"
    local: LocalRunnerSpec = LocalRunnerSpec()
    runpod: RunPodRunnerSpec = RunPodRunnerSpec()
    wait_budget_s: float = Field(default=45.0, gt=0)


class WorkerSection(StrictModel):
    """The RunPod worker: jobs per worker and what to load once at start."""

    concurrency: int = Field(default=1, ge=1, le=64)
    warm: list[Literal["llm", "upscale", "remove_background"]] = Field(default_factory=lambda: ["llm"])  # type: ignore[arg-type]


class LimitsSection(StrictModel):
    max_task_chars: int = Field(default=20_000, ge=1)
    max_revisions: int = Field(default=1, ge=0, le=5)
    max_question_chars: int = Field(default=2_000, ge=1)
    job_deadline_s: float = Field(default=900.0, gt=0, le=86_400)
    #: research: undecided sentences sent to the reviewer in its one entailment call; 0 turns it off
    max_entailment_sentences: int = Field(default=12, ge=0, le=100)


class ThreadsSection(StrictModel):
    """Conversations: a thread keeps its newest ``max_turns`` turns; a prompt carries the newest
    turns that fit in ``max_chars``, an answer too long for the room left shortened (``graphs.turns``)."""

    max_turns: int = Field(default=20, ge=2, le=1000)
    max_chars: int = Field(default=24_000, ge=1000, le=1_000_000)


class ObservabilitySection(StrictModel):
    log_level: LogLevel = "INFO"
    otlp_endpoint: str | None = None
    capture_content: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """``debug`` is ``DEBUG`` (``SWARM_LOG_LEVEL=debug`` lands here through interpolation);
        logging's aliases ``WARN`` and ``FATAL`` are ``WARNING`` and ``CRITICAL``."""
        return log_level_name(value) if isinstance(value, str) else value

    @field_validator("otlp_endpoint")
    @classmethod
    def _collector_url(cls, value: str | None) -> str | None:
        """"not a url" loaded, and every job then logged an exporter ERROR: the OTLP/HTTP
        collector's base URL (``http://host:4318``) or nothing."""
        if value:
            from urllib.parse import urlsplit

            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be the OTLP/HTTP collector's URL, e.g. http://127.0.0.1:4318 (or empty for none)")
        return value


class BudgetSpec(StrictModel):
    """Per-job limits for one tier; unset -> no limit. Checked before each LLM call."""

    max_tokens: int | None = Field(default=None, ge=1, description="input + output tokens of every call of a job")
    max_cost_usd: float | None = Field(default=None, ge=0, description="summed cost of every call of a job")


class McpHttpSpec(StrictModel):
    """``swarm-mcp --http``: who may connect, how they prove it, how much they may send."""

    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header values accepted besides loopback, e.g. mcp.example.com:*"
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Origin header values accepted besides loopback, e.g. https://app.example.com"
    )
    auth_tokens_env: str | None = Field(
        default="SWARM_MCP_TOKENS",
        description="env var holding bearer tokens: 'name=token,name2=token2' or one bare token; unset -> no auth",
    )
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)

    _env_name = field_validator("auth_tokens_env")(env_name)


class McpSection(StrictModel):
    """The MCP server: which tools it lists and how its HTTP transport is guarded."""

    enabled_tools: list[str] | None = Field(
        default=None, description="tools to list (job_* tools are always on); null -> every available tool"
    )
    max_inline_image_bytes: int = Field(default=2 * 1024 * 1024, ge=0, description="largest image returned as base64")
    report_page_chars: int = Field(default=20_000, ge=1000, description="page size of swarm://jobs/{id}/report")
    max_running_jobs: int = Field(default=32, ge=1, le=10_000,
                                  description="jobs one server runs at once; the rest wait, queued, and say so in their progress")
    file_roots: list[str] = Field(
        default_factory=list,
        description="folders whose files the image tools' path may read; empty: any over stdio, none over HTTP",
    )
    http: McpHttpSpec = McpHttpSpec()

    @field_validator("file_roots")
    @classmethod
    def _absolute_roots(cls, value: list[str]) -> list[str]:
        raise_all(cls.__name__, [
            InitErrorDetails(
                type=PydanticCustomError("relative_root", f"{root!r} is not an absolute path; give the full path of a folder"),
                loc=(i,), input=root)
            for i, root in enumerate(value) if not Path(root).expanduser().is_absolute()
        ])
        return value

    @field_validator("enabled_tools")
    @classmethod
    def _known_tools(cls, value: list[str] | None) -> list[str] | None:
        valid = {*MCP_ACTION_TOOLS, *MCP_ALWAYS_ON_TOOLS}
        raise_all(cls.__name__, [
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_tool", f"unknown tool {name!r}; valid: {', '.join(MCP_ACTION_TOOLS)}"
                    f" ({', '.join(MCP_ALWAYS_ON_TOOLS)} are always on)"),
                loc=(i,), input=name)
            for i, name in enumerate(value or []) if name not in valid
        ])
        return value
