"""The sections of ``config.yaml``: one frozen pydantic model per section, field limits included.

``core.config`` assembles them into ``SwarmConfig`` (and re-exports every name here); the checks
that span sections live in ``core.config_refs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_backends import (
    STORAGE_BACKENDS,
    SearchBackends,
    StorageBackends,
    StrictModel,
    as_details,
    chain_problems,
    checked_backends,
    only_local_index,
    raise_all,
    unknown_name,
)
from core.paths import state_dir
from core.rules import MCP_ACTION_TOOLS, MCP_ALWAYS_ON_TOOLS, LogLevel, Tier, log_level_name

#: what a ``*_env`` key holds: the name of an environment variable, never the secret itself
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"


#: a part (between ``_``) this long with digits and lower-case letters is a key's body, not a word
#: of a name: ``gsk_4fQx9LmZ2wRt7YpK3nB8vC1dE6hJ0sAa`` (Groq), a Mistral key, a Gemini key without
#: a ``-``, a hex token; names are written in capitals (``TOGETHERAIMIXTRAL8X22B_KEY`` is one)
_KEY_BODY = re.compile(r"(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[a-z])[A-Za-z0-9]{16,}")


def env_name(value: str | None) -> str | None:
    """A ``*_env`` key's value, checked to be a variable's name; the error never repeats the value
    (a key pasted here by mistake would otherwise reach the error, the log and the terminal).
    A key whose characters happen to make a valid name is refused too: it was printed as the name
    of an unset variable in ``config check``, ``doctor``, and every job's trace."""
    from core.redact import redact

    if value and not re.fullmatch(ENV_NAME_PATTERN, value):
        raise ValueError("must be the name of an environment variable (letters, digits and _, not starting"
                         " with a digit); put the key itself in that variable, not in config")
    if value and (redact(value) != value or any(_KEY_BODY.fullmatch(part) for part in value.split("_"))):
        raise ValueError("looks like a key, not the name of an environment variable (such as DEEPSEEK_API_KEY);"
                         " put the key itself in that variable, not in config")
    return value


class Price(StrictModel):
    """USD per million tokens."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)


class LocalServerSpec(StrictModel):
    """A GGUF model served on loopback by llama-cpp-python, started on demand."""

    gguf: str = Field(min_length=1, description="path, or pkg:<python package>/<file> inside an installed package")
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = None
    autostart: bool = True
    startup_timeout_s: float = Field(default=90.0, gt=0)


#: litellm parameters every call sets from a key of its model (or from the call): not for extra_params
_SET_BY = {
    "model": "litellm_model", "messages": "the call", "api_key": "api_key_env", "api_base": "api_base",
    "base_url": "api_base", "timeout": "timeout_s", "request_timeout": "timeout_s", "max_tokens": "max_output_tokens",
    "stream": "stop_on_loop", "num_retries": "providers.llm.retry", "max_retries":
    "providers.llm.retry", "response_format": "structured_output",
}


class ModelSpec(StrictModel):
    """One model the router may call, reached through litellm."""

    family: str = Field(min_length=1, description="provider family used by fallback_chain and routing")
    litellm_model: str = Field(min_length=1, description="litellm's model string, e.g. deepseek/deepseek-chat")
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="env var holding the key; unset or empty -> model unavailable"
    )
    timeout_s: float = Field(default=60.0, gt=0, le=600)
    max_output_tokens: int = Field(default=1024, ge=1, le=1_000_000)  # 10,000,000 loaded, and every call failed
    structured_output: Literal["json_schema", "json_object_schema", "json_object", "prompt"] = (
        "json_schema"
    )
    price: Price = Price()
    local_server: LocalServerSpec | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)
    free_text_params: dict[str, Any] = Field(
        default_factory=dict,
        description="extra litellm params for free-text calls only (a call with a json_schema keeps"
        " its own): e.g. repeat and frequency penalties that stop a small model looping",
    )
    stop_on_loop: bool = Field(
        default=False,
        description="stream free-text answers and end one where a sentence comes round a third time"
        " (providers/llm/loop_guard.py): for small local models that loop to their token limit",
    )

    _env_name = field_validator("api_key_env")(env_name)

    @field_validator("extra_params", "free_text_params")
    @classmethod
    def _not_ours(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A parameter each call sets from its own key is refused here: it overrode that key on every
        call without a word (``api_key`` written here, in clear, beside an unset ``api_key_env``;
        ``num_retries`` under the fallback chain; ``stream`` past the loop guard)."""
        taken = [f"{name!r} (set it with {_SET_BY[name]})" for name in value if name in _SET_BY]
        if taken:
            raise ValueError(f"{', '.join(taken)}: each call sets {'it' if len(taken) == 1 else 'these'} itself")
        return value

    @field_validator("api_base")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        """A base URL whose port is no port (``SWARM_LOCAL_LLM_PORT=99999``) passed ``config check``
        and then failed every job as an internal error ("Port out of range 0-65535")."""
        if value:
            import urllib.parse

            try:
                port = urllib.parse.urlsplit(value).port  # reading it checks it
            except ValueError:
                port = -1
            if port is not None and not 1 <= port <= 65535:  # 0 ("any free port") reaches no server
                raise ValueError("its port is no port (1-65535); check the variable that sets it")
        return value

    @model_validator(mode="after")
    def _local_base(self) -> ModelSpec:
        """A served model's ``api_base`` is where its server listens: checked at load, not at the
        first job (``config check`` said valid, and every job then failed on it)."""
        if self.local_server is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.api_base or "")
            # the server is started on 127.0.0.1 (``[::1]`` loaded and every call then went unanswered)
            if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
                raise_all("ModelSpec", [InitErrorDetails(type=PydanticCustomError(
                    "local_base", "a local_server model needs api_base http://127.0.0.1:<port>/v1"),
                    loc=("api_base",), input=self.api_base)])
        return self


class CircuitSpec(StrictModel):
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)


class RetrySpec(StrictModel):
    """Retries only where they pay: a 429 whose Retry-After is short."""

    max_retry_after_s: float = Field(default=2.0, ge=0)
    max_retries: int = Field(default=1, ge=0, le=5)


class LLMSection(StrictModel):
    default: str
    tiers: dict[Tier, Annotated[list[str], Field(min_length=1)]]  # an empty tier is a typo: its jobs would get only the fallback chain
    fallback_chain: list[str] = Field(default_factory=list)
    circuit: CircuitSpec = CircuitSpec()
    retry: RetrySpec = RetrySpec()


class SearchSection(StrictModel):
    """``providers.search``: the chain tries ``fallback_chain`` in order (just ``default`` when it is empty)."""

    default: str = "local"
    fallback_chain: list[str] = Field(default_factory=list)
    backends: dict[str, dict[str, Any]] = Field(default_factory=only_local_index)
    circuit: CircuitSpec = CircuitSpec()

    @field_validator("backends")
    @classmethod
    def _typed_backends(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return checked_backends(SearchBackends, value)

    @model_validator(mode="wrap")
    @classmethod
    def _chain_names_configured_backends(cls, data: Any, handler: Any) -> Any:
        """Every name the chain may try has its settings under ``backends`` (the chain builds
        each one from them), checked on the raw section too, so a bad backend setting and a
        misspelled chain entry are named in the same run."""
        try:
            section = handler(data)
        except ValidationError as exc:
            raw = data if isinstance(data, Mapping) else {}
            names = chain_problems(raw.get("default", "local"), raw.get("fallback_chain"), raw.get("backends"))
            if not names:
                raise
            raise_all(cls.__name__, [*as_details(exc), *names])
            raise
        raise_all(cls.__name__, chain_problems(section.default, section.fallback_chain, section.backends))
        return section


class UpscaleSpec(StrictModel):
    model: str = "realesrgan-anime-6b"
    scale: int = Field(default=4, ge=1, le=8)
    tile: int = Field(default=256, ge=0)
    tile_pad: int = Field(default=16, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: auto: the fastest path within PSNR >= 45 dB of fp32, measured once per machine and model: on
    #: CPU bf16 where it has avx512_bf16/amx_bf16, fp16 where it has avx512_fp16/amx_fp16, ncnn (fp32 or bf16 storage); on
    #: CUDA fp16, and bf16 from sm_80. fp32: bit-level agreement (IEEE on CUDA: no TF32); bf16/fp16: pinned
    #: (emulated without them).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _renamed_half(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "half" in data:
            raise ValueError(
                "half was replaced by precision: auto (measured per machine), fp32, bf16 or fp16; "
                "half: off -> precision: fp32, half: on -> precision: bf16 on CPU / fp16 on CUDA"
            )
        return data


class RembgSpec(StrictModel):
    model: str = "isnet-anime"
    fallback_models: list[str] = Field(default_factory=lambda: ["u2netp"])
    #: zlib level of the PNG cutouts (1: ~4x faster than 6 for ~6% more bytes, same pixels)
    png_compress_level: int = Field(default=1, ge=0, le=9)
    #: images of one batch in flight at once (default: one per CPU core)
    batch_workers: int | None = Field(default=None, ge=1, le=64)
    #: auto: the fastest path within mask IoU >= 0.99 and mean alpha diff <= 1 level of onnxruntime
    #: fp32, measured once per machine and model (ncnn and ncnn-bf16 where ncnn is installed, torch
    #: bf16/fp16 where the CPU has them); fp32: onnxruntime fp32 (agrees with the rembg library);
    #: ncnn/ncnn-bf16/torch-fp32/bf16/fp16: those, pinned
    precision: Literal["auto", "fp32", "ncnn", "ncnn-bf16", "torch-fp32", "torch-bf16", "torch-fp16"] = "auto"


class ImageSection(StrictModel):
    upscale: UpscaleSpec = UpscaleSpec()
    rembg: RembgSpec = RembgSpec()
    #: empty: ``$SWARM_MODELS_DIR``, else ``<state_dir>/models`` (``core.paths.models_dir_default``)
    models_dir: str = ""
    max_input_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_input_pixels: int = Field(default=16_777_216, ge=1)
    max_output_pixels: int = Field(default=268_435_456, ge=1)


class StorageSection(StrictModel):
    """``providers.storage``: ``default`` is the backend every artifact goes to; when it fails,
    ``fallback_chain`` is tried in order (``providers.storage.chain``)."""

    default: str = "local"
    fallback_chain: list[str] = Field(default_factory=list)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    circuit: CircuitSpec = CircuitSpec()

    @field_validator("fallback_chain")
    @classmethod
    def _known_chain(cls, value: list[str]) -> list[str]:
        raise_all("StorageSection", [unknown_name((i,), name, "storage backend", list(STORAGE_BACKENDS))
                                     for i, name in enumerate(value) if name not in STORAGE_BACKENDS])
        return value

    @property
    def order(self) -> list[str]:
        """The stores in the order tried: ``default``, then ``fallback_chain`` (each once)."""
        return list(dict.fromkeys([self.default, *self.fallback_chain]))

    @field_validator("default")
    @classmethod
    def _known_default(cls, value: str) -> str:
        # local needs no settings (it defaults to SWARM_HOME/artifacts); s3 says what is missing
        raise_all("StorageSection", [] if value in STORAGE_BACKENDS else [
            unknown_name((), value, "storage backend", list(STORAGE_BACKENDS))])
        return value

    @field_validator("backends")
    @classmethod
    def _typed_backends(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return checked_backends(StorageBackends, value)


class ProvidersSection(StrictModel):
    llm: LLMSection
    search: SearchSection = SearchSection()
    image: ImageSection = ImageSection()
    storage: StorageSection = StorageSection()


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
