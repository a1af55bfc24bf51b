"""Config: the schema of ``config.yaml``, ``${ENV}`` interpolation, validation, hot reload.

Every choice of model, backend, tier, fallback and route lives in config. Loading is pure
(no side effects beyond reading the file); ``ConfigStore`` re-reads an edited file before the
next job and keeps the last good config when a new one fails validation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ConfigError
from core.redact import MASK, redact_data, register_config_secrets
from core.rules import Tier

log = logging.getLogger("core.config")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"
_SECRET_FIELD = re.compile(r"(?i)(api_key|secret|token|password|dsn)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per million tokens."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)


class LocalServerSpec(_Strict):
    """A GGUF model served on loopback by llama-cpp-python, started on demand."""

    gguf: str = Field(description="path, or pkg:<python package>/<file> inside an installed package")
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = None
    autostart: bool = True
    startup_timeout_s: float = Field(default=90.0, gt=0)


class ModelSpec(_Strict):
    """One model the router may call, reached through litellm."""

    family: str = Field(description="provider family used by fallback_chain and routing")
    litellm_model: str
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="env var holding the key; unset or empty -> model unavailable"
    )
    timeout_s: float = Field(default=60.0, gt=0, le=600)
    max_output_tokens: int = Field(default=1024, ge=1)
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


class CircuitSpec(_Strict):
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)


class RetrySpec(_Strict):
    """Retries only where they pay: a 429 whose Retry-After is short."""

    max_retry_after_s: float = Field(default=2.0, ge=0)
    max_retries: int = Field(default=1, ge=0, le=5)


class LLMSection(_Strict):
    default: str
    tiers: dict[Tier, list[str]]
    fallback_chain: list[str] = Field(default_factory=list)
    circuit: CircuitSpec = CircuitSpec()
    retry: RetrySpec = RetrySpec()


class SearchSection(_Strict):
    default: str = "local"
    fallback_chain: list[str] = Field(default_factory=list)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    circuit: CircuitSpec = CircuitSpec()


class UpscaleSpec(_Strict):
    model: str = "realesrgan-anime-6b"
    scale: int = Field(default=4, ge=1, le=8)
    tile: int = Field(default=256, ge=0)
    tile_pad: int = Field(default=16, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: auto: fp16 on CUDA; on CPU the fastest path within PSNR >= 45 dB of fp32, measured once per
    #: machine and model (bf16 where the CPU has avx512_bf16/amx_bf16). fp32: bit-level agreement.
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


class RembgSpec(_Strict):
    model: str = "isnet-anime"
    fallback_models: list[str] = Field(default_factory=lambda: ["u2netp"])
    #: zlib level of the PNG cutouts (1: ~4x faster than 6 for ~6% more bytes, same pixels)
    png_compress_level: int = Field(default=1, ge=0, le=9)
    #: images of one batch in flight at once (default: one per CPU core)
    batch_workers: int | None = Field(default=None, ge=1, le=64)
    #: auto: the fastest path within mask IoU >= 0.99 and mean alpha diff <= 1 level of onnxruntime
    #: fp32, measured once per machine and model (torch bf16/fp16 where the CPU has them); fp32:
    #: onnxruntime fp32 (agrees with the rembg library); torch-fp32/bf16/fp16: those, pinned
    precision: Literal["auto", "fp32", "torch-fp32", "torch-bf16", "torch-fp16"] = "auto"


class ImageSection(_Strict):
    upscale: UpscaleSpec = UpscaleSpec()
    rembg: RembgSpec = RembgSpec()
    models_dir: str = "~/.cache/runpod-swarm/models"
    max_input_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_input_pixels: int = Field(default=16_777_216, ge=1)
    max_output_pixels: int = Field(default=268_435_456, ge=1)


class StorageSection(_Strict):
    default: str = "local"
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ProvidersSection(_Strict):
    llm: LLMSection
    search: SearchSection = SearchSection()
    image: ImageSection = ImageSection()
    storage: StorageSection = StorageSection()


class DelegationRoute(_Strict):
    primary: str
    reviewer: str | None = None


class ConsensusRoute(_Strict):
    """``consensus``: the models (or families) asked at once, and who writes the synthesis."""

    models: list[str] = Field(min_length=2, max_length=8)
    synthesizer: str


class RoutingSection(_Strict):
    delegation: dict[str, DelegationRoute]
    consensus: ConsensusRoute | None = None


class CheckpointerSection(_Strict):
    """Where job checkpoints live. ``auto``: PostgreSQL when ``dsn`` is set (so every RunPod
    worker can resume any job), else SQLite at ``path`` (resume within this machine/volume)."""

    kind: Literal["auto", "sqlite", "postgres", "memory"] = "sqlite"
    path: str = "~/.cache/runpod-swarm/checkpoints.sqlite"
    dsn: str | None = None
    retention_days: float = Field(default=7.0, gt=0)

    @model_validator(mode="after")
    def _resolve_auto(self) -> CheckpointerSection:
        if self.kind == "auto":
            object.__setattr__(self, "kind", "postgres" if self.dsn else "sqlite")
        return self


class RunPodRunnerSpec(_Strict):
    endpoint_id: str = ""
    api_key_env: str = "RUNPOD_API_KEY"
    base_url: str = "https://api.runpod.ai/v2"
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0)


#: the most worker processes ``runner.local.processes`` may ask for
MAX_LOCAL_PROCESSES = 64


class LocalRunnerSpec(_Strict):
    """The local executor: ``processes`` > 1 runs jobs in that many worker processes."""

    processes: int = Field(default=1, ge=1, le=MAX_LOCAL_PROCESSES)


class RunnerSection(_Strict):
    kind: Literal["auto", "local", "runpod"] = "auto"
    local: LocalRunnerSpec = LocalRunnerSpec()
    runpod: RunPodRunnerSpec = RunPodRunnerSpec()
    wait_budget_s: float = Field(default=45.0, gt=0)


class WorkerSection(_Strict):
    """The RunPod worker: jobs per worker and what to load once at start."""

    concurrency: int = Field(default=1, ge=1, le=64)
    warm: list[Literal["llm", "upscale", "remove_background"]] = Field(default_factory=lambda: ["llm"])  # type: ignore[arg-type]


class LimitsSection(_Strict):
    max_task_chars: int = Field(default=20_000, ge=1)
    max_revisions: int = Field(default=1, ge=0, le=5)
    max_question_chars: int = Field(default=2_000, ge=1)
    job_deadline_s: float = Field(default=900.0, gt=0, le=86_400)
    #: research: undecided sentences sent to the reviewer in its one entailment call; 0 turns it off
    max_entailment_sentences: int = Field(default=12, ge=0, le=100)


class ThreadsSection(_Strict):
    """Conversations: a thread keeps its newest ``max_turns`` turns; a prompt carries the newest
    turns that fit in ``max_chars``."""

    max_turns: int = Field(default=20, ge=2, le=1000)
    max_chars: int = Field(default=24_000, ge=1000, le=1_000_000)


class ObservabilitySection(_Strict):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    otlp_endpoint: str | None = None
    capture_content: bool = False


class BudgetSpec(_Strict):
    """Per-job limits for one tier; unset -> no limit. Checked before each LLM call."""

    max_tokens: int | None = Field(default=None, ge=1, description="input + output tokens of every call of a job")
    max_cost_usd: float | None = Field(default=None, ge=0, description="summed cost of every call of a job")


class McpHttpSpec(_Strict):
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


class McpSection(_Strict):
    """The MCP server: which tools it lists and how its HTTP transport is guarded."""

    enabled_tools: list[str] | None = Field(
        default=None, description="tools to list (job_* tools are always on); null -> every available tool"
    )
    max_inline_image_bytes: int = Field(default=2 * 1024 * 1024, ge=0, description="largest image returned as base64")
    report_page_chars: int = Field(default=20_000, ge=1000, description="page size of swarm://jobs/{id}/report")
    http: McpHttpSpec = McpHttpSpec()


class SwarmConfig(_Strict):
    """The whole of ``config.yaml``, validated."""

    providers: ProvidersSection
    models: dict[str, ModelSpec]
    routing: RoutingSection
    checkpointer: CheckpointerSection = CheckpointerSection()
    runner: RunnerSection = RunnerSection()
    worker: WorkerSection = WorkerSection()
    limits: LimitsSection = LimitsSection()
    threads: ThreadsSection = ThreadsSection()
    observability: ObservabilitySection = ObservabilitySection()
    mcp: McpSection = McpSection()
    budgets: dict[Tier, BudgetSpec] = Field(default_factory=dict, description="per-tier token/cost budget per job")

    @model_validator(mode="after")
    def _cross_references(self) -> SwarmConfig:
        problems: list[str] = []
        names = set(self.models)
        families = {m.family for m in self.models.values()}
        llm = self.providers.llm
        valid_models = ", ".join(sorted(names))
        if llm.default not in names:
            problems.append(f"providers.llm.default: unknown model {llm.default!r}; valid: {valid_models}")
        for tier, models in llm.tiers.items():
            for i, name in enumerate(models):
                if name not in names:
                    problems.append(
                        f"providers.llm.tiers.{tier}[{i}]: unknown model {name!r}; valid: {valid_models}"
                    )
        for i, name in enumerate(llm.fallback_chain):
            if name not in names and name not in families:
                problems.append(
                    f"providers.llm.fallback_chain[{i}]: {name!r} is neither a model nor a family;"
                    f" families: {', '.join(sorted(families))}"
                )
        for kind, route in self.routing.delegation.items():
            for role in ("primary", "reviewer"):
                target = getattr(route, role)
                if target is None:
                    continue
                base = target.split("+", 1)[0]
                if base not in names and base not in families:
                    problems.append(
                        f"routing.delegation.{kind}.{role}: {target!r} names no model or family;"
                        f" families: {', '.join(sorted(families))}"
                    )
        problems += _consensus_problems(self.routing.consensus, names, families)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def family_of(self, name: str) -> str:
        """Family of a model name, or the name itself when it already is a family."""
        spec = self.models.get(name)
        return spec.family if spec else name


def _consensus_problems(route: ConsensusRoute | None, names: set[str], families: set[str]) -> list[str]:
    """``routing.consensus`` entries that name no model or family."""
    if route is None:
        return []
    targets = [*((f"models[{i}]", m) for i, m in enumerate(route.models)), ("synthesizer", route.synthesizer)]
    return [f"routing.consensus.{key}: {target!r} names no model or family; families: {', '.join(sorted(families))}"
            for key, target in targets if target not in names and target not in families]


# --- interpolation -------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of operator config.

    An unset ``${VAR}`` becomes the empty string: a backend whose key or URL is empty is
    unavailable at call time, which is not a startup failure. Only config files go through
    this function, never request data.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, str):
        return _VAR.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value


def _format_validation_error(exc: ValidationError, file: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = loc.replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling (see README, Config reference)"
        elif err["type"] == "missing":
            msg = "required key is missing; add it (see README, Config reference)"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        lines.append(f"{file}: {loc + ': ' if loc else ''}{msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> SwarmConfig:
    """Read, interpolate and validate one config file; raise ``ConfigError`` naming the keys."""
    file = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found; set SWARM_CONFIG or pass --config", file=str(file)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(file)) from None
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping with providers, models, routing", file=str(file))
    try:
        config = SwarmConfig.model_validate(interpolate(raw, env))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(file))) from None
    register_config_secrets(config.model_dump(mode="json"))  # a key written literally in the file, too
    return config


def config_path(explicit: str | Path | None = None) -> Path:
    """``--config`` beats ``SWARM_CONFIG`` beats the project's own ``config.yaml``."""
    chosen = explicit or os.environ.get("SWARM_CONFIG")
    return Path(chosen).expanduser() if chosen else DEFAULT_CONFIG_PATH


def redacted_dump(config: SwarmConfig) -> dict[str, Any]:
    """The effective config as data, with every secret-looking field masked."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (MASK if _SECRET_FIELD.search(str(k)) and v else walk(v)) for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return redact_data(walk(config.model_dump(mode="json")))


def state_dir() -> Path:
    """Where jobs, checkpoints and the local index live unless config says otherwise."""
    return Path(os.environ.get("SWARM_HOME") or "~/.cache/runpod-swarm").expanduser()


class ConfigStore:
    """Hot swap: hands out the current config, re-reading the file when it changed.

    A changed file that fails validation is refused and logged; the last good config keeps
    serving and ``last_error`` says why.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = config_path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, str] | None = None
        self.last_error: str | None = None
        self.version = 0
        self._config = load_config(self.path)
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> tuple[int, int, str] | None:
        try:
            stat = self.path.stat()
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, digest)

    def current(self) -> SwarmConfig:
        """The config for the next job (reloaded if the file changed and still validates)."""
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError as exc:
                self.last_error = f"{self.path}: cannot read ({exc.strerror}); keeping the last good config"
                log.error(self.last_error)
                return self._config
            if self._stamp and (stat.st_mtime_ns, stat.st_size) == self._stamp[:2]:
                return self._config
            stamp = self._read_stamp()
            if stamp and self._stamp and stamp[2] == self._stamp[2]:
                self._stamp = stamp
                return self._config
            try:
                new = load_config(self.path)
            except ConfigError as exc:
                self.last_error = f"{exc}\nrefused the edited config; the last good one keeps serving"
                log.error(self.last_error)
                self._stamp = stamp
                return self._config
            self._config, self._stamp, self.last_error = new, stamp, None
            self.version += 1
            log.info("config reloaded from %s (version %d)", self.path, self.version)
            return self._config
